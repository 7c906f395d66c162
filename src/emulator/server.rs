//! Listeners and connections: plain HTTP on TCP, HTTPS on TCP (with the peer's certificate
//! chain handed to the handlers), plain HTTP on a Unix socket (for the Node SDK). Each
//! connection is served by hyper directly, so that an injected "dropped connection" can close
//! the socket without an answer, which axum's own `serve` cannot do.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::{Extension, Router};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixListener};
use tokio::sync::{Notify, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::error::EmulatorError;
use super::routes::Connection;

/// How long a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds a TCP listener (synchronously, so that `Emulator::start` works inside or outside a runtime).
pub fn bind_tcp(addr: SocketAddr) -> Result<(std::net::TcpListener, SocketAddr), EmulatorError> {
    let bind = |source| EmulatorError::Bind {
        address: addr.to_string(),
        source,
    };
    let listener = std::net::TcpListener::bind(addr).map_err(bind)?;
    listener.set_nonblocking(true).map_err(bind)?;
    let local = listener.local_addr().map_err(bind)?;
    Ok((listener, local))
}

/// Binds a Unix socket, replacing a stale socket file left by an earlier run.
pub fn bind_unix(path: &Path) -> Result<std::os::unix::net::UnixListener, EmulatorError> {
    let bind = |source| EmulatorError::Bind {
        address: path.display().to_string(),
        source,
    };
    if std::fs::symlink_metadata(path).is_ok_and(|m| {
        use std::os::unix::fs::FileTypeExt;
        m.file_type().is_socket()
    }) {
        std::fs::remove_file(path).map_err(bind)?;
    }
    let listener = std::os::unix::net::UnixListener::bind(path).map_err(bind)?;
    listener.set_nonblocking(true).map_err(bind)?;
    Ok(listener)
}

/// Hands a bound listener to the runtime; `None` (logged) when that fails.
pub(crate) fn tokio_tcp(listener: std::net::TcpListener) -> Option<TcpListener> {
    TcpListener::from_std(listener)
        .map_err(|e| tracing::error!(error = %e, "cannot hand the listener to the runtime"))
        .ok()
}

/// The TLS handshake of one accepted connection, at most `HANDSHAKE_TIMEOUT`, and the client's
/// certificate chain (DER, leaf first) when it sent one. `None` (logged at debug, the `listener`
/// named) when the handshake failed or took too long: only that connection is lost.
pub(crate) async fn accept_tls(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    listener: &str,
) -> Option<(TlsStream<TcpStream>, Option<Vec<Vec<u8>>>)> {
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(%peer, listener, error = %e, "TLS handshake failed");
            return None;
        }
        Err(_) => {
            tracing::debug!(%peer, listener, "TLS handshake timed out");
            return None;
        }
    };
    let certificates = tls
        .get_ref()
        .1
        .peer_certificates()
        .map(|c| c.iter().map(|d| d.as_ref().to_vec()).collect());
    Some((tls, certificates))
}

async fn serve<I>(
    io: I,
    router: Router,
    peer_certificates: Option<Arc<Vec<Vec<u8>>>>,
    mut shutdown: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let connection = Connection {
        peer_certificates,
        kill: Arc::new(Notify::new()),
    };
    let kill = connection.kill.clone();
    let service = TowerToHyperService::new(router.layer(Extension(connection)));
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), service);
    tokio::select! {
        result = conn => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        }
        () = kill.notified() => tracing::debug!("dropping a connection (injected fault)"),
        _ = shutdown.changed() => {}
    }
}

/// Accepts plain-HTTP connections until shutdown.
pub async fn run_tcp(
    listener: std::net::TcpListener,
    router: Router,
    mut shutdown: watch::Receiver<bool>,
) {
    let Some(listener) = tokio_tcp(listener) else {
        return;
    };
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(serve(stream, router.clone(), None, shutdown.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => return,
        }
    }
}

/// Accepts HTTPS connections until shutdown; the client's chain goes to the handlers.
pub async fn run_tls(
    listener: std::net::TcpListener,
    acceptor: TlsAcceptor,
    router: Router,
    mut shutdown: watch::Receiver<bool>,
) {
    let Some(listener) = tokio_tcp(listener) else {
        return;
    };
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let acceptor = acceptor.clone();
                    let router = router.clone();
                    let shutdown = shutdown.clone();
                    tokio::spawn(async move {
                        if let Some((tls, certs)) = accept_tls(&acceptor, stream, peer, "HTTPS").await {
                            serve(tls, router, certs.map(Arc::new), shutdown).await;
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => return,
        }
    }
}

/// Accepts Unix-socket connections until shutdown, then removes the socket file.
pub async fn run_unix(
    listener: std::os::unix::net::UnixListener,
    path: PathBuf,
    router: Router,
    mut shutdown: watch::Receiver<bool>,
) {
    let Ok(listener) = UnixListener::from_std(listener) else {
        tracing::error!(path = %path.display(), "cannot hand the Unix socket to the runtime");
        return;
    };
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(serve(stream, router.clone(), None, shutdown.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a Unix-socket connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => {
                let _ = std::fs::remove_file(&path);
                return;
            }
        }
    }
}
