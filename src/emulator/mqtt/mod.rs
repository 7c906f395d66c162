//! The emulator's MQTT listener: MQTT 3.1.1 over TLS, where devices register with DPS and then
//! talk to the local IoT hub exactly as the official device SDKs do (REFERENCE.md §11). One
//! listener serves both, the CONNECT username telling them apart (`connect`). Packets come from
//! `rumqttc`'s codec (`packet_io`); every connection is its own task, so a client that sends
//! garbage, never sends CONNECT or disappears costs only its own connection.

mod connect;
mod dps_session;
mod hub_session;
pub mod packet_io;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{
    ConnAck, ConnectReturnCode, Packet, PubAck, SubAck, SubscribeReasonCode, UnsubAck,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::app::App;
use super::error::EmulatorError;
use super::server;
use connect::Client;
use dps_session::DpsSession;
use packet_io::{PacketError, PacketIo};

/// The longest keep-alive IoT Hub allows (seconds); a client asking for 0 (none) gets this.
const MAX_KEEP_ALIVE_SECS: u64 = 1767;

/// What handling one packet leads to: packets to send, then maybe the end of the connection.
pub(crate) struct Outcome {
    replies: Vec<Packet>,
    close: Option<String>,
}

impl Outcome {
    fn reply(replies: Vec<Packet>) -> Self {
        Self {
            replies,
            close: None,
        }
    }

    fn close(reason: impl Into<String>) -> Self {
        Self {
            replies: Vec::new(),
            close: Some(reason.into()),
        }
    }
}

/// Binds the MQTT address and, for 127.0.0.1, the same port on `::1` where that works (the SDKs
/// connect to `localhost`, which may resolve to either).
pub(crate) fn bind(
    addr: SocketAddr,
) -> Result<Vec<(std::net::TcpListener, SocketAddr)>, EmulatorError> {
    let first = server::bind_tcp(addr)?;
    let port = first.1.port();
    let mut out = vec![first];
    if addr.ip() == std::net::IpAddr::from([127, 0, 0, 1]) {
        match server::bind_tcp(SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port))) {
            Ok(v6) => out.push(v6),
            Err(e) => tracing::debug!("MQTT: not also on [::1]:{port}: {e}"),
        }
    }
    Ok(out)
}

/// Accepts connections until shutdown.
pub(crate) async fn run(
    listener: std::net::TcpListener,
    acceptor: TlsAcceptor,
    app: Arc<App>,
    mut shutdown: watch::Receiver<bool>,
) {
    let Some(listener) = server::tokio_tcp(listener) else {
        return;
    };
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "MQTT: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            if let Some((tls, certificates)) =
                server::accept_tls(&acceptor, tcp, peer, "MQTT").await
            {
                let certificates = certificates.unwrap_or_default();
                serve(PacketIo::new(tls), &certificates, &app, shutdown).await;
            }
        });
    }
}

/// Serves one connection: CONNECT first, then packets until DISCONNECT, an error, silence past
/// the keep-alive, or shutdown.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut io: PacketIo<S>,
    certificates: &[Vec<u8>],
    app: &App,
    mut shutdown: watch::Receiver<bool>,
) {
    let first = tokio::time::timeout(app.limits.mqtt_connect_timeout, io.read()).await;
    let connect = match first {
        Ok(Ok(Packet::Connect(c))) => c,
        Ok(Ok(other)) => {
            tracing::info!(
                "MQTT: the first packet was not CONNECT ({:?}); closing",
                packet_name(&other)
            );
            return io.close().await;
        }
        Ok(Err(e)) => {
            tracing::info!("MQTT: before CONNECT: {e}; closing");
            return io.close().await;
        }
        Err(_) => {
            tracing::info!(
                "MQTT: no CONNECT within {:?}; closing",
                app.limits.mqtt_connect_timeout
            );
            return io.close().await;
        }
    };
    let client = match connect::accept(app, &connect, certificates) {
        Ok(client) => client,
        Err(refusal) => {
            tracing::warn!(client_id = %connect.client_id, code = ?refusal.code, "MQTT CONNECT refused: {}", refusal.reason);
            let _ = io
                .write(&Packet::ConnAck(ConnAck::new(refusal.code, false)))
                .await;
            return io.close().await;
        }
    };
    if io
        .write(&Packet::ConnAck(ConnAck::new(
            ConnectReturnCode::Success,
            false,
        )))
        .await
        .is_err()
    {
        return;
    }
    tracing::debug!(client_id = %connect.client_id, "MQTT CONNECT accepted");
    let keep_alive = match u64::from(connect.keep_alive) {
        0 => MAX_KEEP_ALIVE_SECS,
        s => s.min(MAX_KEEP_ALIVE_SECS),
    };
    // MQTT 3.1.1 §3.1.2.10: one and a half keep-alive periods of silence end the connection.
    let silence = Duration::from_millis(keep_alive * 1500);
    let mut next_pkid: u16 = 0;
    loop {
        let packet = tokio::select! {
            read = tokio::time::timeout(silence, io.read()) => match read {
                Ok(Ok(p)) => p,
                Ok(Err(PacketError::Closed)) => break,
                Ok(Err(e)) => {
                    tracing::info!(client_id = %connect.client_id, "MQTT: {e}; closing");
                    break;
                }
                Err(_) => {
                    tracing::info!(client_id = %connect.client_id, "MQTT: silent past 1.5 keep-alive periods; closing");
                    break;
                }
            },
            _ = shutdown.changed() => break,
        };
        next_pkid = next_pkid.checked_add(1).unwrap_or(1);
        let outcome = handle(app, &client, certificates, packet, next_pkid);
        let mut failed = false;
        for reply in &outcome.replies {
            if io.write(reply).await.is_err() {
                failed = true;
                break;
            }
        }
        if failed {
            break;
        }
        if let Some(reason) = outcome.close {
            tracing::info!(client_id = %connect.client_id, "MQTT: {reason}; closing");
            break;
        }
    }
    io.close().await;
}

fn packet_name(p: &Packet) -> &'static str {
    match p {
        Packet::Connect(_) => "CONNECT",
        Packet::ConnAck(_) => "CONNACK",
        Packet::Publish(_) => "PUBLISH",
        Packet::PubAck(_) => "PUBACK",
        Packet::PubRec(_) => "PUBREC",
        Packet::PubRel(_) => "PUBREL",
        Packet::PubComp(_) => "PUBCOMP",
        Packet::Subscribe(_) => "SUBSCRIBE",
        Packet::SubAck(_) => "SUBACK",
        Packet::Unsubscribe(_) => "UNSUBSCRIBE",
        Packet::UnsubAck(_) => "UNSUBACK",
        Packet::PingReq => "PINGREQ",
        Packet::PingResp => "PINGRESP",
        Packet::Disconnect => "DISCONNECT",
    }
}

/// One packet after CONNECT.
fn handle(
    app: &App,
    client: &Client,
    certificates: &[Vec<u8>],
    packet: Packet,
    next_pkid: u16,
) -> Outcome {
    match packet {
        Packet::Publish(publish) => {
            let ack = (publish.qos == QoS::AtLeastOnce)
                .then(|| Packet::PubAck(PubAck::new(publish.pkid)));
            let mut outcome = match client {
                Client::Dps {
                    scope,
                    registration_id,
                    sas,
                } => DpsSession {
                    scope,
                    registration_id,
                    sas: sas.as_deref(),
                    peer_certificates: certificates,
                }
                .publish(app, &publish, next_pkid),
                Client::Hub { device_id } => hub_session::publish(app, device_id, &publish),
            };
            if outcome.close.is_none()
                && let Some(ack) = ack
            {
                // The PUBACK first: the SDKs wait for it before they look at the answer.
                outcome.replies.insert(0, ack);
            }
            outcome
        }
        Packet::Subscribe(subscribe) => {
            let codes = subscribe
                .filters
                .iter()
                .map(|f| {
                    let allowed = match client {
                        Client::Dps { .. } => f.path == dps_session::RESPONSE_FILTER,
                        Client::Hub { device_id } => {
                            hub_session::allowed_filter(device_id, &f.path)
                        }
                    };
                    match (allowed, f.qos) {
                        (false, _) => SubscribeReasonCode::Failure,
                        (true, QoS::AtMostOnce) => SubscribeReasonCode::Success(QoS::AtMostOnce),
                        (true, _) => SubscribeReasonCode::Success(QoS::AtLeastOnce),
                    }
                })
                .collect();
            Outcome::reply(vec![Packet::SubAck(SubAck::new(subscribe.pkid, codes))])
        }
        Packet::Unsubscribe(u) => Outcome::reply(vec![Packet::UnsubAck(UnsubAck::new(u.pkid))]),
        Packet::PingReq => Outcome::reply(vec![Packet::PingResp]),
        Packet::PubAck(_) => Outcome::reply(Vec::new()),
        Packet::Disconnect => Outcome::close("the client sent DISCONNECT"),
        other => Outcome::close(format!(
            "{} is not expected from a device here",
            packet_name(&other)
        )),
    }
}
