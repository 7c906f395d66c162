//! `central serve`: the HTTPS listener (tokio-rustls, hyper HTTP/1.1) in front of the routes.
//!
//! Each accepted connection does its TLS handshake (bounded in time), then its client certificate,
//! if it sent one, goes into every request's extensions as a [`PeerCertificate`]; the station layer
//! ([`stations::authenticate`]) turns it into an `AuthedStation` for the routes that need one. On
//! shutdown the listener stops accepting, open connections finish their request (at most
//! [`DRAIN_TIMEOUT`]) and the process exits. Nothing is kept in memory that another replica would
//! need: run as many as you like against one database.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::{Extension, Router, middleware};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::ca::{self, Authority, CaError};
use super::db::{self, PoolError};
use super::state::{ApiRefusal, Central, SharedCentral, refuse};
use super::stations::{self, PeerCertificate};
use super::tls::{self, TlsError};
use super::{health, ingest, join, leases, status};

/// How long a TLS handshake may take before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send a request's headers (a stalled client frees its connection).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long open connections get to finish after a shutdown signal.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// What `central serve` needs, all from its arguments.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// `postgres://` URL of a login in `dps_central_service`.
    pub database: String,
    /// The directory `central init` wrote.
    pub dir: PathBuf,
    /// Where to listen (port 0: any free port; the ready callback gets the real one).
    pub listen: SocketAddr,
    /// Database connections in the pool.
    pub pool: usize,
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Certificates(#[from] CaError),
    #[error(transparent)]
    Pool(#[from] PoolError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot listen on {address}: {source}; pick a free address with --listen")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
}

/// Every route of the service. Routes that need a joined station go into `authed` (behind the
/// station layer); join and health are open.
pub fn router(state: SharedCentral, authority: Arc<Authority>) -> Router {
    // Issue 18's other areas: their `routes()` are merged into `authed` here.
    let authed: Router<SharedCentral> = Router::new()
        .merge(status::routes())
        .merge(ingest::routes())
        .merge(leases::routes());
    let authed = authed.route_layer(middleware::from_fn_with_state(
        state.clone(),
        stations::authenticate,
    ));
    Router::new()
        .merge(health::routes())
        .merge(join::routes(authority))
        .merge(authed)
        .fallback(not_found)
        .with_state(state)
}

async fn not_found(uri: axum::http::Uri) -> ApiRefusal {
    refuse(
        StatusCode::NOT_FOUND,
        "not_found",
        format!(
            "the central service has no {}: check the station's dps-station version and the service URL",
            uri.path()
        ),
    )
}

/// Runs the service until `shutdown` completes; `ready` is called with the bound address once
/// connections are accepted.
pub async fn serve(
    options: ServeOptions,
    ready: impl FnOnce(SocketAddr),
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let authority = Arc::new(Authority::load(&options.dir)?);
    let signer = ca::load_signer(&options.dir)?;
    let pool = db::pool(&options.database, options.pool.max(1))?;
    let acceptor = TlsAcceptor::from(tls::server_config(&authority)?);
    let health = health::check(&pool).await;
    if !health.ok {
        tracing::warn!(
            schema_version = health.schema_version,
            writable = health.writable,
            "the central database is not ready (unreachable, read-only or not migrated: `dps-station central migrate`); serving 503s until it is"
        );
    }
    let state: SharedCentral = Arc::new(Central { db: pool, signer });
    let app = router(state, authority);
    let listener = TcpListener::bind(options.listen)
        .await
        .map_err(|source| ServeError::Bind {
            address: options.listen,
            source,
        })?;
    let local = listener.local_addr().map_err(|source| ServeError::Bind {
        address: options.listen,
        source,
    })?;
    ready(local);

    let (stop, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    connections.spawn(connection(
                        acceptor.clone(),
                        stream,
                        peer,
                        app.clone(),
                        stopping.clone(),
                    ));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!(
        open = connections.len(),
        "shutting down: finishing open requests"
    );
    let _ = stop.send(true);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            "connections still open after the drain time: closed"
        );
        connections.abort_all();
    }
    Ok(())
}

/// One connection: handshake, then HTTP/1.1 until the client closes or the service stops.
async fn connection(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    mut stopping: watch::Receiver<bool>,
) {
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            // An unknown CA's client certificate ends here.
            tracing::info!(%peer, error = %e, "TLS handshake refused");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let certificate = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|leaf| Arc::new(leaf.as_ref().to_vec()));
    let service = TowerToHyperService::new(app.layer(Extension(PeerCertificate(certificate))));
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true)
        .serve_connection(TokioIo::new(tls), service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        }
        _ = stopping.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
