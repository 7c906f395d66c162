//! A device-side MQTT client of the emulator, speaking what the official device SDKs speak
//! (REFERENCE.md §11): DPS registration over MQTT, then the assigned hub (telemetry, twin).
//! The demo uses it to show that every identity the station stored connects to its hub and
//! sends its first message; `bench mqtt` and the tests drive many of them. Async (tokio), with
//! blocking wrappers for plain threads.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{Connect, ConnectReturnCode, Packet, Publish, Subscribe};
use rustls::pki_types::ServerName;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::clock;
use super::device_client::{Assignment, DeviceCredential, tls_client_config};
use super::mqtt::packet_io::{PacketError, PacketIo};
use super::sas;

/// The api-version the Python SDK puts in its DPS username.
pub const DPS_MQTT_API_VERSION: &str = "2019-03-31";
/// The api-version the Python SDK puts in its hub username.
pub const HUB_MQTT_API_VERSION: &str = "2019-10-01";

/// The longest wait before polling a registration: the service's retry-after, capped, since
/// the emulator assigns at once and the demo and bench need not sit out whole seconds.
const MAX_POLL_WAIT: Duration = Duration::from_millis(50);

/// How long any one answer may take.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a device's MQTT session failed.
#[derive(Debug, thiserror::Error)]
pub enum MqttDeviceError {
    /// The credential or the trust PEM cannot be used.
    #[error("'{who}': {message}")]
    Credential {
        /// Registration or device ID.
        who: String,
        /// What is wrong.
        message: String,
    },
    /// TCP or TLS failed.
    #[error("'{who}': cannot reach {addr}: {message}")]
    Connect {
        /// Registration or device ID.
        who: String,
        /// Where.
        addr: SocketAddr,
        /// Why.
        message: String,
    },
    /// CONNACK with a refusal.
    #[error("'{who}': the server refused CONNECT ({code:?})")]
    Refused {
        /// Registration or device ID.
        who: String,
        /// The return code.
        code: ConnectReturnCode,
    },
    /// A DPS or hub answer with an error status.
    #[error("'{who}': answered {status}: {body}")]
    Status {
        /// Registration or device ID.
        who: String,
        /// The status from the response topic.
        status: u16,
        /// The body.
        body: String,
    },
    /// Unexpected packets, a closed connection, a timeout.
    #[error("'{who}': {message}")]
    Protocol {
        /// Registration or device ID.
        who: String,
        /// What happened.
        message: String,
    },
}

/// Where the MQTT listener is and how to trust it.
#[derive(Debug, Clone)]
pub struct MqttEndpoint {
    /// The listener (`RunningEmulator::mqtt_addr`).
    pub addr: SocketAddr,
    /// The name checked against the server certificate (`localhost`).
    pub server_name: String,
    /// PEM of the CA that signed it (`RunningEmulator::ca_certificate_pem`).
    pub trust_pem: String,
}

/// A TLS client configuration for one credential (its certificate for X.509, none otherwise).
pub fn tls_config(
    who: &str,
    trust_pem: &str,
    credential: &DeviceCredential,
) -> Result<Arc<rustls::ClientConfig>, MqttDeviceError> {
    let config = tls_client_config(trust_pem, credential, &[&rustls::version::TLS12]).map_err(
        |message| MqttDeviceError::Credential {
            who: who.to_owned(),
            message,
        },
    )?;
    Ok(Arc::new(config))
}

/// One connected device.
pub struct MqttDevice {
    who: String,
    io: PacketIo<TlsStream<TcpStream>>,
    next_pkid: u16,
}

impl MqttDevice {
    /// TCP, TLS 1.2, CONNECT; `Refused` on a CONNACK that is not 0.
    pub async fn connect(
        endpoint: &MqttEndpoint,
        tls: Arc<rustls::ClientConfig>,
        client_id: &str,
        username: &str,
        password: Option<&str>,
    ) -> Result<Self, MqttDeviceError> {
        let who = client_id.to_owned();
        let fail = |message: String| MqttDeviceError::Connect {
            who: who.clone(),
            addr: endpoint.addr,
            message,
        };
        let name = ServerName::try_from(endpoint.server_name.clone())
            .map_err(|e| fail(format!("bad server name: {e}")))?;
        let tcp = tokio::time::timeout(ANSWER_TIMEOUT, TcpStream::connect(endpoint.addr))
            .await
            .map_err(|_| fail("timed out".into()))?
            .map_err(|e| fail(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let stream =
            tokio::time::timeout(ANSWER_TIMEOUT, TlsConnector::from(tls).connect(name, tcp))
                .await
                .map_err(|_| fail("the TLS handshake timed out".into()))?
                .map_err(|e| fail(format!("TLS: {e}")))?;
        let mut device = Self {
            who: who.clone(),
            io: PacketIo::new(stream),
            next_pkid: 0,
        };
        let mut connect = Connect::new(client_id);
        connect.keep_alive = 60;
        connect.clean_session = false;
        connect.set_login(username, password.unwrap_or(""));
        device.send(&Packet::Connect(connect)).await?;
        match device.receive().await? {
            Packet::ConnAck(ack) if ack.code == ConnectReturnCode::Success => Ok(device),
            Packet::ConnAck(ack) => Err(MqttDeviceError::Refused {
                who,
                code: ack.code,
            }),
            other => Err(device.protocol(format!("expected CONNACK, got {other:?}"))),
        }
    }

    fn protocol(&self, message: String) -> MqttDeviceError {
        MqttDeviceError::Protocol {
            who: self.who.clone(),
            message,
        }
    }

    fn pkid(&mut self) -> u16 {
        self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
        self.next_pkid
    }

    async fn send(&mut self, packet: &Packet) -> Result<(), MqttDeviceError> {
        let result = self.io.write(packet).await;
        result.map_err(|e| self.protocol(e.to_string()))
    }

    async fn receive(&mut self) -> Result<Packet, MqttDeviceError> {
        match tokio::time::timeout(ANSWER_TIMEOUT, self.io.read()).await {
            Ok(Ok(p)) => Ok(p),
            Ok(Err(PacketError::Closed)) => {
                Err(self.protocol("the server closed the connection".into()))
            }
            Ok(Err(e)) => Err(self.protocol(e.to_string())),
            Err(_) => Err(self.protocol(format!("no answer within {ANSWER_TIMEOUT:?}"))),
        }
    }

    /// Subscribes to one filter at QoS 1 and waits for its SUBACK.
    pub async fn subscribe(&mut self, filter: &str) -> Result<(), MqttDeviceError> {
        let pkid = self.pkid();
        let mut sub = Subscribe::new(filter, QoS::AtLeastOnce);
        sub.pkid = pkid;
        self.send(&Packet::Subscribe(sub)).await?;
        loop {
            match self.receive().await? {
                Packet::SubAck(ack) if ack.pkid == pkid => return Ok(()),
                _ => continue,
            }
        }
    }

    /// Publishes at QoS 1 and waits for its PUBACK; PUBLISHes arriving meanwhile are kept in
    /// `inbox`.
    async fn publish_acked(
        &mut self,
        topic: String,
        body: Vec<u8>,
        inbox: &mut Vec<Publish>,
    ) -> Result<(), MqttDeviceError> {
        let pkid = self.pkid();
        let mut publish = Publish::new(topic, QoS::AtLeastOnce, body);
        publish.pkid = pkid;
        self.send(&Packet::Publish(publish)).await?;
        loop {
            match self.receive().await? {
                Packet::PubAck(ack) if ack.pkid == pkid => return Ok(()),
                Packet::Publish(p) => {
                    self.ack(&p).await?;
                    inbox.push(p);
                }
                _ => continue,
            }
        }
    }

    async fn ack(&mut self, p: &Publish) -> Result<(), MqttDeviceError> {
        if p.qos == QoS::AtLeastOnce {
            self.send(&Packet::PubAck(rumqttc::mqttbytes::v4::PubAck::new(p.pkid)))
                .await?;
        }
        Ok(())
    }

    /// Waits for the PUBLISH whose topic starts with `prefix` and carries `$rid={rid}`.
    async fn answer(
        &mut self,
        prefix: &str,
        rid: u32,
        inbox: &mut Vec<Publish>,
    ) -> Result<(u16, String, Value), MqttDeviceError> {
        let wanted = format!("$rid={rid}");
        loop {
            let found = inbox.iter().position(|p| {
                p.topic.starts_with(prefix)
                    && p.topic
                        .split_once('?')
                        .is_some_and(|(_, q)| q.split('&').any(|kv| kv == wanted))
            });
            if let Some(i) = found {
                let p = inbox.remove(i);
                let status = p.topic[prefix.len()..]
                    .split('/')
                    .next()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                let body = serde_json::from_slice(&p.payload).unwrap_or(Value::Null);
                return Ok((status, p.topic, body));
            }
            match self.receive().await? {
                Packet::Publish(p) => {
                    self.ack(&p).await?;
                    inbox.push(p);
                }
                _ => continue,
            }
        }
    }

    /// Registers with DPS as the SDKs do (connect as `{scope}/registrations/{id}/...` first):
    /// subscribe, PUT iotdps-register, poll iotdps-get-operationstatus after retry-after.
    pub async fn register(
        &mut self,
        registration_id: &str,
        payload: Option<&Value>,
    ) -> Result<Assignment, MqttDeviceError> {
        self.subscribe("$dps/registrations/res/#").await?;
        let mut inbox = Vec::new();
        let mut rid: u32 = 1;
        let body = json!({ "registrationId": registration_id, "payload": payload });
        self.publish_acked(
            format!("$dps/registrations/PUT/iotdps-register/?$rid={rid}"),
            body.to_string().into_bytes(),
            &mut inbox,
        )
        .await?;
        for _ in 0..100 {
            let (status, topic, body) = self
                .answer("$dps/registrations/res/", rid, &mut inbox)
                .await?;
            if status >= 300 {
                return Err(MqttDeviceError::Status {
                    who: self.who.clone(),
                    status,
                    body: body.to_string(),
                });
            }
            if let Some(assignment) = Assignment::from_operation(&body) {
                return Ok(assignment);
            }
            let wait = topic
                .split_once('?')
                .and_then(|(_, q)| q.split('&').find_map(|kv| kv.strip_prefix("retry-after=")))
                .and_then(|s| s.parse::<u64>().ok())
                .map_or(MAX_POLL_WAIT, |s| Duration::from_secs(s).min(MAX_POLL_WAIT));
            tokio::time::sleep(wait).await;
            let operation_id = body
                .get("operationId")
                .and_then(Value::as_str)
                .unwrap_or("");
            rid += 1;
            self.publish_acked(
                format!(
                    "$dps/registrations/GET/iotdps-get-operationstatus/?$rid={rid}&operationId={operation_id}"
                ),
                b" ".to_vec(),
                &mut inbox,
            )
            .await?;
        }
        Err(self.protocol("still assigning after 100 polls".into()))
    }

    /// Sends one device-to-cloud message (QoS 1, waits for the PUBACK). `properties` is the
    /// url-encoded part after `messages/events/` (`%24.mid=1&k=v`).
    pub async fn send_telemetry(
        &mut self,
        device_id: &str,
        properties: &str,
        body: &[u8],
    ) -> Result<(), MqttDeviceError> {
        let mut inbox = Vec::new();
        self.publish_acked(
            format!("devices/{device_id}/messages/events/{properties}"),
            body.to_vec(),
            &mut inbox,
        )
        .await
    }

    /// Reads the device's twin (`{"desired": ..., "reported": ...}`).
    pub async fn twin(&mut self) -> Result<Value, MqttDeviceError> {
        self.subscribe("$iothub/twin/res/#").await?;
        let mut inbox = Vec::new();
        let rid = 1;
        self.publish_acked(
            format!("$iothub/twin/GET/?$rid={rid}"),
            Vec::new(),
            &mut inbox,
        )
        .await?;
        let (status, _, body) = self.answer("$iothub/twin/res/", rid, &mut inbox).await?;
        if status != 200 {
            return Err(MqttDeviceError::Status {
                who: self.who.clone(),
                status,
                body: body.to_string(),
            });
        }
        Ok(body)
    }

    /// DISCONNECT and close.
    pub async fn disconnect(mut self) {
        let _ = self.io.write(&Packet::Disconnect).await;
        self.io.close().await;
    }
}

/// The CONNECT password for a symmetric key: a SAS token for `resource`, valid for an hour.
fn sas_password(
    who: &str,
    resource: &str,
    credential: &DeviceCredential,
) -> Result<Option<String>, MqttDeviceError> {
    match credential {
        DeviceCredential::SymmetricKey(key) => {
            sas::make_token(resource, key, None, clock::unix_now() + 3600)
                .map(Some)
                .ok_or_else(|| MqttDeviceError::Credential {
                    who: who.to_owned(),
                    message: "the symmetric key is not base64".into(),
                })
        }
        DeviceCredential::X509 { .. } => Ok(None),
        DeviceCredential::Tpm { .. } => Err(MqttDeviceError::Credential {
            who: who.to_owned(),
            message: "TPM devices register over HTTPS (the SDKs have no TPM over MQTT)".into(),
        }),
    }
}

/// Connects to DPS as `registration_id` and registers.
pub async fn register(
    endpoint: &MqttEndpoint,
    tls: Arc<rustls::ClientConfig>,
    id_scope: &str,
    registration_id: &str,
    credential: &DeviceCredential,
) -> Result<Assignment, MqttDeviceError> {
    let username = format!(
        "{id_scope}/registrations/{registration_id}/api-version={DPS_MQTT_API_VERSION}&ClientVersion=dps-station%2F{}",
        env!("CARGO_PKG_VERSION")
    );
    let password = sas_password(
        registration_id,
        &format!("{id_scope}/registrations/{registration_id}"),
        credential,
    )?;
    let mut device = MqttDevice::connect(
        endpoint,
        tls,
        registration_id,
        &username,
        password.as_deref(),
    )
    .await?;
    let result = device.register(registration_id, None).await;
    device.disconnect().await;
    result
}

/// Connects to the hub as `device_id`.
pub async fn connect_to_hub(
    endpoint: &MqttEndpoint,
    tls: Arc<rustls::ClientConfig>,
    hub_host_name: &str,
    device_id: &str,
    credential: &DeviceCredential,
) -> Result<MqttDevice, MqttDeviceError> {
    let username = format!(
        "{hub_host_name}/{device_id}/?api-version={HUB_MQTT_API_VERSION}&DeviceClientType=dps-station%2F{}",
        env!("CARGO_PKG_VERSION")
    );
    let password = sas_password(
        device_id,
        &format!("{hub_host_name}/devices/{device_id}"),
        credential,
    )?;
    MqttDevice::connect(endpoint, tls, device_id, &username, password.as_deref()).await
}

/// Blocking: connects to the hub with the stored credential, reads its twin, sends one message
/// and disconnects; returns the twin. What the demo does for each provisioned device.
pub fn first_contact(
    endpoint: &MqttEndpoint,
    hub_host_name: &str,
    device_id: &str,
    credential: &DeviceCredential,
    body: &[u8],
) -> Result<Value, MqttDeviceError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| MqttDeviceError::Protocol {
            who: device_id.to_owned(),
            message: format!("cannot start a runtime: {e}"),
        })?;
    runtime.block_on(async {
        let tls = tls_config(device_id, &endpoint.trust_pem, credential)?;
        let mut device =
            connect_to_hub(endpoint, tls, hub_host_name, device_id, credential).await?;
        let twin = device.twin().await?;
        let mid = uuid::Uuid::new_v4();
        device
            .send_telemetry(
                device_id,
                &format!("%24.mid={mid}&%24.ct=application%2Fjson&%24.ce=utf-8"),
                body,
            )
            .await?;
        device.disconnect().await;
        Ok(twin)
    })
}
