//! The emulator's MQTT listener with the project's own device client and raw packets, on a port
//! from the OS: DPS registration over MQTT for every credential kind, the hub identity DPS
//! creates and what a device does there, throttling, and bad input refused as the services do
//! while other clients go on. The decoder is fuzzed with random and mutated packets (bounded).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use dps_station::emulator::device_client::DeviceCredential;
use dps_station::emulator::mqtt::packet_io::{self, PacketIo};
use dps_station::emulator::mqtt_device::{
    self, MqttDevice, MqttDeviceError, MqttEndpoint, tls_config,
};
use dps_station::emulator::{EmulatorConfig, Limits, sas};
use dps_station::identity::symmetric::derive_device_key;
use dps_station::secret::SecretString;
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{Connect, ConnectReturnCode, Packet, Publish};
use serde_json::{Value, json};
use tokio::net::TcpStream;

use crate::common::{Dps, V, device_cert, now, start};
use crate::device::{ca, leaf};

fn mqtt_emulator(limits: Limits) -> Dps {
    start(EmulatorConfig {
        mqtt: Some("127.0.0.1:0".parse().unwrap()),
        limits,
        ..EmulatorConfig::loopback()
    })
}

fn endpoint(dps: &Dps) -> MqttEndpoint {
    MqttEndpoint {
        addr: dps.emu.mqtt_addr().unwrap(),
        server_name: "localhost".into(),
        trust_pem: dps.emu.ca_certificate_pem().unwrap().to_owned(),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn group_key(dps: &Dps, group: &str) -> SecretString {
    let body = json!({ "enrollmentGroupId": group, "attestation": { "type": "symmetricKey" },
        "initialTwin": { "properties": { "desired": { "mode": "factory" } } } });
    assert_eq!(
        dps.put(&format!("/enrollmentGroups/{group}"), &body).status,
        200
    );
    let att = dps
        .call(
            "POST",
            &format!("/enrollmentGroups/{group}/attestationmechanism?{V}"),
            None,
            &[],
        )
        .body;
    SecretString::new(att["symmetricKey"]["primaryKey"].as_str().unwrap())
}

/// A raw TLS connection speaking packets, for what no well-behaved client sends.
async fn raw(
    addr: SocketAddr,
    trust: &str,
) -> PacketIo<tokio_rustls::client::TlsStream<TcpStream>> {
    raw_as(
        addr,
        trust,
        &DeviceCredential::SymmetricKey(SecretString::new("AA==")),
    )
    .await
}

/// The same with a credential (its certificate, for X.509).
async fn raw_as(
    addr: SocketAddr,
    trust: &str,
    credential: &DeviceCredential,
) -> PacketIo<tokio_rustls::client::TlsStream<TcpStream>> {
    let tls = tls_config("raw", trust, credential).unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    PacketIo::new(stream)
}

fn connect_packet(client_id: &str, username: &str, password: &str) -> Packet {
    let mut c = Connect::new(client_id);
    c.keep_alive = 30;
    c.set_login(username, password);
    Packet::Connect(c)
}

async fn connack(
    io: &mut PacketIo<tokio_rustls::client::TlsStream<TcpStream>>,
) -> ConnectReturnCode {
    match tokio::time::timeout(Duration::from_secs(10), io.read()).await {
        Ok(Ok(Packet::ConnAck(a))) => a.code,
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

/// The server ends the connection: the next read sees it closed (within 10 s).
async fn closed(io: &mut PacketIo<tokio_rustls::client::TlsStream<TcpStream>>) {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), io.read()).await {
            Ok(Ok(_)) => continue,
            Ok(Err(_)) => return,
            Err(_) => panic!("the server kept the connection open"),
        }
    }
}

fn refused_code(e: MqttDeviceError) -> ConnectReturnCode {
    match e {
        MqttDeviceError::Refused { code, .. } => code,
        other => panic!("expected a CONNACK refusal, got {other}"),
    }
}

fn status_of(e: MqttDeviceError) -> u16 {
    match e {
        MqttDeviceError::Status { status, .. } => status,
        other => panic!("expected a DPS status, got {other}"),
    }
}

#[test]
fn x509_group_chains_and_sas_keys_register_over_mqtt_and_reach_the_local_hub() {
    let dps = mqtt_emulator(Limits::default());
    let ep = endpoint(&dps);
    let scope = dps.emu.id_scope().to_owned();
    let root = ca("MQTT Root", None);
    let intermediate = ca("MQTT Intermediate", Some(&root));
    let group = json!({
        "enrollmentGroupId": "mqtt-x509",
        "attestation": { "type": "x509", "x509": { "signingCertificates": { "primary": { "certificate": root.pem } } } },
        "initialTwin": { "tags": { "plant": "P1" }, "properties": { "desired": { "interval": 5 } } },
    });
    assert_eq!(dps.put("/enrollmentGroups/mqtt-x509", &group).status, 200);
    let (cert, key) = leaf("grp-mqtt-1", &intermediate);
    let member = DeviceCredential::X509 {
        chain_pem: format!("{cert}{}", intermediate.pem),
        key_pem: key,
    };
    let key_b64 = group_key(&dps, "mqtt-sym");
    let sym = DeviceCredential::SymmetricKey(derive_device_key(&key_b64, "sym-mqtt-1").unwrap());

    runtime().block_on(async {
        for (id, cred) in [("grp-mqtt-1", &member), ("sym-mqtt-1", &sym)] {
            let tls = tls_config(id, &ep.trust_pem, cred).unwrap();
            let a = mqtt_device::register(&ep, tls.clone(), &scope, id, cred)
                .await
                .unwrap();
            assert_eq!(a.status, "assigned", "{id}");
            assert_eq!(a.assigned_hub.as_deref(), Some("localhost"));
            assert_eq!(a.device_id.as_deref(), Some(id));
            let mut device = mqtt_device::connect_to_hub(&ep, tls, "localhost", id, cred)
                .await
                .unwrap();
            let twin = device.twin().await.unwrap();
            let expected = if id == "grp-mqtt-1" {
                json!(5)
            } else {
                Value::Null
            };
            assert_eq!(twin["desired"]["interval"], expected, "{id}");
            for i in 0..3 {
                device
                    .send_telemetry(
                        id,
                        &format!("%24.mid=m{i}&n={i}"),
                        format!("{{\"i\":{i}}}").as_bytes(),
                    )
                    .await
                    .unwrap();
            }
            device.disconnect().await;
        }
    });
    let kept = dps.emu.telemetry(Some("grp-mqtt-1"));
    assert_eq!(kept.len(), 3);
    assert_eq!(kept[2].properties["n"], "2");
    assert_eq!(kept[2].system_properties["mid"], "m2");
    assert_eq!(dps.emu.telemetry(None).len(), 6);
    let devices = dps.emu.hub_devices();
    let grp = devices
        .iter()
        .find(|d| d["deviceId"] == "grp-mqtt-1")
        .unwrap();
    assert_eq!(grp["authentication"], "certificateAuthority");
    assert_eq!(grp["twin"]["tags"]["plant"], "P1");
    // The registration state is the HTTPS device API's: the same record, readable by the service API.
    let state = dps.get("/registrations/sym-mqtt-1");
    assert_eq!(state.body["assignedHub"], "localhost");
    assert_eq!(state.body["status"], "assigned");
}

#[test]
fn sas_with_and_without_skn_registration_and_the_answers_on_the_response_topic() {
    let dps = mqtt_emulator(Limits {
        registrations_per_minute: Some(2),
        ..Limits::default()
    });
    let ep = endpoint(&dps);
    let scope = dps.emu.id_scope().to_owned();
    let key = group_key(&dps, "answers");
    runtime().block_on(async {
        let tls = tls_config(
            "t",
            &ep.trust_pem,
            &DeviceCredential::SymmetricKey(key.clone()),
        )
        .unwrap();
        let mut results = Vec::new();
        for (id, skn) in [
            ("skn-1", Some("registration")),
            ("skn-2", None),
            ("skn-3", None),
        ] {
            let device_key = derive_device_key(&key, id).unwrap();
            let password = sas::make_token(
                &format!("{scope}/registrations/{id}"),
                &device_key,
                skn,
                now() + 600,
            )
            .unwrap();
            let username =
                format!("{scope}/registrations/{id}/api-version=2019-03-31&ClientVersion=test");
            let mut device = MqttDevice::connect(&ep, tls.clone(), id, &username, Some(&password))
                .await
                .unwrap();
            results.push(device.register(id, None).await);
            device.disconnect().await;
        }
        assert_eq!(results[0].as_ref().unwrap().status, "assigned");
        assert_eq!(results[1].as_ref().unwrap().status, "assigned");
        // Two registrations a minute: the third is throttled, 429 on the response topic.
        let third = results.pop().unwrap().unwrap_err();
        assert_eq!(status_of(third), 429);

        // The raw answer topics: 202 with retry-after, then 200 on a poll, 404 for no enrollment.
        let (cert, key_pem, _) = device_cert("nobody-1");
        let nobody = DeviceCredential::X509 {
            chain_pem: cert,
            key_pem: SecretString::new(key_pem),
        };
        let mut io = raw_as(ep.addr, &ep.trust_pem, &nobody).await;
        let username = format!("{scope}/registrations/nobody-1/api-version=2019-03-31");
        io.write(&connect_packet("nobody-1", &username, ""))
            .await
            .unwrap();
        assert_eq!(
            connack(&mut io).await,
            ConnectReturnCode::Success,
            "no enrollment: refused at register, not CONNECT"
        );
        let mut publish = Publish::new(
            "$dps/registrations/PUT/iotdps-register/?$rid=77",
            QoS::AtLeastOnce,
            "{}",
        );
        publish.pkid = 9;
        io.write(&Packet::Publish(publish)).await.unwrap();
        let mut saw_puback = false;
        loop {
            match io.read().await.unwrap() {
                Packet::PubAck(a) => {
                    assert_eq!(a.pkid, 9);
                    saw_puback = true;
                }
                Packet::Publish(p) => {
                    assert!(saw_puback, "the PUBACK comes before the answer");
                    assert_eq!(p.qos, QoS::AtLeastOnce);
                    assert!(
                        p.topic.starts_with("$dps/registrations/res/4"),
                        "{}",
                        p.topic
                    );
                    assert!(
                        p.topic.ends_with("/?$rid=77") || p.topic.contains("/?$rid=77&"),
                        "{}",
                        p.topic
                    );
                    let body: Value = serde_json::from_slice(&p.payload).unwrap();
                    assert!(body["errorCode"].as_u64().unwrap() >= 400_000, "{body}");
                    break;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        io.write(&Packet::PingReq).await.unwrap();
        assert_eq!(io.read().await.unwrap(), Packet::PingResp);
        io.write(&Packet::Disconnect).await.unwrap();
        closed(&mut io).await;
    });
}

#[test]
fn bad_connects_and_publishes_are_refused_and_other_clients_go_on() {
    let dps = mqtt_emulator(Limits {
        mqtt_connect_timeout: Duration::from_millis(300),
        ..Limits::default()
    });
    let ep = endpoint(&dps);
    let scope = dps.emu.id_scope().to_owned();
    let key = group_key(&dps, "bad-input");
    let good_key = derive_device_key(&key, "good-1").unwrap();
    let good = DeviceCredential::SymmetricKey(good_key.clone());
    let (stranger_pem, stranger_key, _) = device_cert("stranger-1");
    let stranger = DeviceCredential::X509 {
        chain_pem: stranger_pem,
        key_pem: SecretString::new(stranger_key),
    };
    let off = json!({ "registrationId": "off-1", "provisioningStatus": "disabled", "attestation": { "type": "symmetricKey" } });
    assert_eq!(dps.put("/enrollments/off-1", &off).status, 200);
    let att = dps
        .call(
            "POST",
            &format!("/enrollments/off-1/attestationmechanism?{V}"),
            None,
            &[],
        )
        .body;
    let off_cred = DeviceCredential::SymmetricKey(SecretString::new(
        att["symmetricKey"]["primaryKey"].as_str().unwrap(),
    ));
    runtime().block_on(async {
        let tls = tls_config("good-1", &ep.trust_pem, &good).unwrap();
        // A healthy hub device stays connected throughout.
        mqtt_device::register(&ep, tls.clone(), &scope, "good-1", &good)
            .await
            .unwrap();
        let mut healthy =
            mqtt_device::connect_to_hub(&ep, tls.clone(), "localhost", "good-1", &good)
                .await
                .unwrap();

        let dps_user = |id: &str| format!("{scope}/registrations/{id}/api-version=2019-03-31");
        let token = |id: &str, k: &SecretString, se: i64| {
            sas::make_token(&format!("{scope}/registrations/{id}"), k, None, se).unwrap()
        };
        let cases: Vec<(&str, Packet, ConnectReturnCode)> = vec![
            (
                "username shape",
                connect_packet(
                    "good-1",
                    "not-a-dps-username",
                    &token("good-1", &good_key, now() + 600),
                ),
                ConnectReturnCode::BadUserNamePassword,
            ),
            (
                "unknown api-version",
                connect_packet(
                    "good-1",
                    &format!("{scope}/registrations/good-1/api-version=1999-01-01"),
                    &token("good-1", &good_key, now() + 600),
                ),
                ConnectReturnCode::BadUserNamePassword,
            ),
            (
                "client id is not the registration id",
                connect_packet(
                    "other",
                    &dps_user("good-1"),
                    &token("good-1", &good_key, now() + 600),
                ),
                ConnectReturnCode::BadClientId,
            ),
            (
                "no certificate and no password",
                connect_packet("good-1", &dps_user("good-1"), ""),
                ConnectReturnCode::NotAuthorized,
            ),
            (
                "token for another registration",
                connect_packet(
                    "good-1",
                    &dps_user("good-1"),
                    &token("other-1", &good_key, now() + 600),
                ),
                ConnectReturnCode::NotAuthorized,
            ),
            (
                "not a SAS token",
                connect_packet("good-1", &dps_user("good-1"), "hunter2"),
                ConnectReturnCode::NotAuthorized,
            ),
            (
                "expired",
                connect_packet(
                    "good-1",
                    &dps_user("good-1"),
                    &token("good-1", &good_key, now() - 3600),
                ),
                ConnectReturnCode::NotAuthorized,
            ),
            (
                "another scope",
                connect_packet(
                    "good-1",
                    "0ne00000000/registrations/good-1/api-version=2019-03-31",
                    &token("good-1", &good_key, now() + 600),
                ),
                ConnectReturnCode::NotAuthorized,
            ),
            (
                "hub: no such device",
                connect_packet(
                    "ghost",
                    "localhost/ghost/?api-version=2019-10-01",
                    "SharedAccessSignature sr=localhost%2Fdevices%2Fghost&sig=x&se=9999999999",
                ),
                ConnectReturnCode::NotAuthorized,
            ),
            (
                "hub: another hub",
                connect_packet(
                    "good-1",
                    "elsewhere.azure-devices.net/good-1/?api-version=2019-10-01",
                    "x",
                ),
                ConnectReturnCode::NotAuthorized,
            ),
            (
                "hub: wrong key",
                connect_packet(
                    "good-1",
                    "localhost/good-1/?api-version=2019-10-01",
                    &sas::make_token(
                        "localhost/devices/good-1",
                        &derive_device_key(&key, "x").unwrap(),
                        None,
                        now() + 600,
                    )
                    .unwrap(),
                ),
                ConnectReturnCode::NotAuthorized,
            ),
            (
                "hub: token for another device",
                connect_packet(
                    "good-1",
                    "localhost/good-1/?api-version=2019-10-01",
                    &sas::make_token("localhost/devices/other", &good_key, None, now() + 600)
                        .unwrap(),
                ),
                ConnectReturnCode::NotAuthorized,
            ),
        ];
        for (what, packet, code) in cases {
            let mut io = raw(ep.addr, &ep.trust_pem).await;
            io.write(&packet).await.unwrap();
            assert_eq!(connack(&mut io).await, code, "{what}");
            closed(&mut io).await;
        }

        // A wrong signature passes DPS's CONNECT, as on the real service, and the registration
        // is refused on the response topic with 401.
        let forged =
            DeviceCredential::SymmetricKey(derive_device_key(&key, "someone-else").unwrap());
        let e = mqtt_device::register(&ep, tls.clone(), &scope, "good-1", &forged)
            .await
            .unwrap_err();
        assert_eq!(status_of(e), 401);
        // A certificate that matches no enrollment: CONNECT passes, the registration is 404.
        let stranger_tls = tls_config("stranger-1", &ep.trust_pem, &stranger).unwrap();
        let e = mqtt_device::register(&ep, stranger_tls.clone(), &scope, "stranger-1", &stranger)
            .await
            .unwrap_err();
        assert_eq!(status_of(e), 404);
        // ... and it is no hub device either.
        let e =
            mqtt_device::connect_to_hub(&ep, stranger_tls, "localhost", "stranger-1", &stranger)
                .await
                .err()
                .unwrap();
        assert_eq!(refused_code(e), ConnectReturnCode::NotAuthorized);

        // A disabled enrollment is not assigned (its registration says so) and makes no identity.
        let a = mqtt_device::register(&ep, tls.clone(), &scope, "off-1", &off_cred)
            .await
            .unwrap();
        assert_eq!(a.status, "disabled");
        assert!(
            dps.emu
                .hub_devices()
                .iter()
                .all(|d| d["deviceId"] != "off-1")
        );

        // A hub device publishing to another device's topic, or to a DPS topic: disconnected.
        let hub_connect = || {
            connect_packet(
                "good-1",
                "localhost/good-1/?api-version=2019-10-01",
                &sas::make_token("localhost/devices/good-1", &good_key, None, now() + 600).unwrap(),
            )
        };
        for topic in [
            "devices/other/messages/events/",
            "$dps/registrations/PUT/iotdps-register/?$rid=1",
            "$iothub/methods/res/200/?$rid=1",
        ] {
            let mut io = raw(ep.addr, &ep.trust_pem).await;
            io.write(&hub_connect()).await.unwrap();
            assert_eq!(connack(&mut io).await, ConnectReturnCode::Success);
            let mut p = Publish::new(topic, QoS::AtLeastOnce, "x");
            p.pkid = 5;
            io.write(&Packet::Publish(p)).await.unwrap();
            loop {
                match tokio::time::timeout(Duration::from_secs(10), io.read()).await {
                    Ok(Ok(Packet::PubAck(_))) => panic!("a publish to '{topic}' was acknowledged"),
                    Ok(Ok(_)) => continue,
                    Ok(Err(_)) => break,
                    Err(_) => panic!("the connection stayed open after a publish to '{topic}'"),
                }
            }
        }
        // A DPS client publishing outside its two topics: disconnected.
        let mut io = raw(ep.addr, &ep.trust_pem).await;
        io.write(&connect_packet(
            "good-1",
            &dps_user("good-1"),
            &token("good-1", &good_key, now() + 600),
        ))
        .await
        .unwrap();
        assert_eq!(connack(&mut io).await, ConnectReturnCode::Success);
        io.write(&Packet::Publish(Publish::new(
            "devices/good-1/messages/events/",
            QoS::AtMostOnce,
            "x",
        )))
        .await
        .unwrap();
        closed(&mut io).await;

        // An oversized packet (remaining length over the limit): closed before its body is read.
        let mut io = raw(ep.addr, &ep.trust_pem).await;
        io.write(&hub_connect()).await.unwrap();
        assert_eq!(connack(&mut io).await, ConnectReturnCode::Success);
        let big = Publish::new(
            "devices/good-1/messages/events/",
            QoS::AtLeastOnce,
            vec![b'x'; packet_io::MAX_PACKET_BYTES + 1],
        );
        let mut p = big;
        p.pkid = 1;
        let mut bytes = BytesMut::new();
        p.write(&mut bytes).unwrap();
        let _ = write_raw(&mut io, &bytes).await;
        closed(&mut io).await;

        // Malformed bytes after CONNECT, and a client that never sends CONNECT.
        let mut io = raw(ep.addr, &ep.trust_pem).await;
        let _ = write_raw(&mut io, &[0xff, 0xff, 0xff, 0xff, 0xff, 0x01]).await;
        closed(&mut io).await;
        let mut silent = raw(ep.addr, &ep.trust_pem).await;
        let started = std::time::Instant::now();
        closed(&mut silent).await;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "dropped after the CONNECT timeout"
        );

        // The healthy device never noticed.
        healthy
            .send_telemetry("good-1", "", b"still here")
            .await
            .unwrap();
        healthy.disconnect().await;
    });
    assert!(
        dps.emu
            .telemetry(Some("good-1"))
            .iter()
            .any(|m| m.body == b"still here")
    );
    assert!(dps.emu.telemetry(Some("other")).is_empty());
}

async fn write_raw(
    io: &mut PacketIo<tokio_rustls::client::TlsStream<TcpStream>>,
    bytes: &[u8],
) -> Result<(), packet_io::PacketError> {
    io.write_bytes(bytes).await
}

/// Random and mutated packets through the codec the listener uses: it answers with a packet,
/// "more bytes", or an error, and never panics. Bounded: a fixed number of cases, seeded.
#[test]
fn the_mqtt_decoder_survives_random_and_mutated_packets() {
    let mut rng = Lcg(0x5eed_1234_abcd_0001);
    let mut valid: Vec<Vec<u8>> = Vec::new();
    let mut c = Connect::new("dev-1");
    c.set_login(
        "0ne0001/registrations/dev-1/api-version=2019-03-31",
        "SharedAccessSignature sr=a&sig=b&se=1",
    );
    for p in [
        Packet::Connect(c),
        Packet::Publish({
            let mut p = Publish::new(
                "$dps/registrations/PUT/iotdps-register/?$rid=1",
                QoS::AtLeastOnce,
                "{\"registrationId\":\"dev-1\"}",
            );
            p.pkid = 7;
            p
        }),
        Packet::Subscribe(rumqttc::mqttbytes::v4::Subscribe::new(
            "$dps/registrations/res/#",
            QoS::AtLeastOnce,
        )),
        Packet::PingReq,
        Packet::Disconnect,
    ] {
        let mut b = BytesMut::new();
        p.write(&mut b, 1 << 20).unwrap();
        valid.push(b.to_vec());
    }
    let mut decoded = 0;
    for case in 0..40_000u32 {
        let bytes: Vec<u8> = if case % 2 == 0 {
            let len = (rng.next() % 64) as usize;
            (0..len).map(|_| rng.next() as u8).collect()
        } else {
            let mut b = valid[(rng.next() as usize) % valid.len()].clone();
            for _ in 0..1 + rng.next() % 4 {
                let i = (rng.next() as usize) % b.len();
                match rng.next() % 3 {
                    0 => b[i] = rng.next() as u8,
                    1 => b.truncate(i.max(1)),
                    _ => b.insert(i, rng.next() as u8),
                }
            }
            b
        };
        let mut buffer = BytesMut::from(bytes.as_slice());
        // Drain the buffer as the listener would: packets until "more bytes" or an error.
        for _ in 0..8 {
            match packet_io::decode(&mut buffer) {
                Ok(Some(_)) => decoded += 1,
                Ok(None) | Err(_) => break,
            }
        }
    }
    assert!(
        decoded > 100,
        "mutated valid packets still decode sometimes ({decoded})"
    );
}

/// The listener itself under mutated packet streams over TLS: each connection ends or is
/// answered, and a good client registers afterwards. Bounded: 60 connections.
#[test]
fn the_listener_survives_mutated_packet_streams() {
    let dps = mqtt_emulator(Limits {
        mqtt_connect_timeout: Duration::from_millis(200),
        ..Limits::default()
    });
    let ep = endpoint(&dps);
    let scope = dps.emu.id_scope().to_owned();
    let key = group_key(&dps, "fuzz");
    let mut rng = Lcg(0xfeed_0000_0000_0042);
    runtime().block_on(async {
        let mut c = Connect::new("fz-1");
        c.set_login(
            format!("{scope}/registrations/fz-1/api-version=2019-03-31"),
            sas::make_token(
                &format!("{scope}/registrations/fz-1"),
                &derive_device_key(&key, "fz-1").unwrap(),
                None,
                now() + 600,
            )
            .unwrap(),
        );
        let mut connect = BytesMut::new();
        Packet::Connect(c).write(&mut connect, 1 << 20).unwrap();
        let mut publish = Publish::new(
            "$dps/registrations/PUT/iotdps-register/?$rid=1",
            QoS::AtLeastOnce,
            "{\"registrationId\":\"fz-1\"}",
        );
        publish.pkid = 3;
        let mut body = BytesMut::new();
        Packet::Publish(publish).write(&mut body, 1 << 20).unwrap();
        for case in 0..60 {
            let mut stream = if case % 3 == 0 {
                Vec::new()
            } else {
                connect.to_vec()
            };
            let mut tail = body.to_vec();
            for _ in 0..1 + rng.next() % 6 {
                let i = (rng.next() as usize) % tail.len();
                tail[i] = rng.next() as u8;
            }
            if case % 3 == 0 {
                let i = (rng.next() as usize) % connect.len();
                stream.extend_from_slice(&connect[..i]);
                stream.push(rng.next() as u8);
            }
            stream.extend_from_slice(&tail);
            let mut io = raw(ep.addr, &ep.trust_pem).await;
            let _ = write_raw(&mut io, &stream).await;
            // Whatever comes back, the connection ends (bad packet) or stays usable: close it.
            let _ = tokio::time::timeout(Duration::from_millis(300), io.read()).await;
        }
        let cred = DeviceCredential::SymmetricKey(derive_device_key(&key, "after-fuzz").unwrap());
        let tls = tls_config("after-fuzz", &ep.trust_pem, &cred).unwrap();
        let a = mqtt_device::register(&ep, tls, &scope, "after-fuzz", &cred)
            .await
            .unwrap();
        assert_eq!(a.status, "assigned");
    });
}

/// A small seeded generator (no rand dependency in tests for a reproducible fuzz run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Refused and accepted MQTT clients leave log lines that name them and the reason, never a key,
/// a SAS signature or a password. Global subscriber at TRACE: the only one in this test binary.
#[test]
fn mqtt_logs_name_the_client_and_never_a_secret() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .try_init()
        .expect("the only subscriber of this test binary");
    let dps = mqtt_emulator(Limits::default());
    let ep = endpoint(&dps);
    let scope = dps.emu.id_scope().to_owned();
    let key = group_key(&dps, "log-check");
    let device_key = derive_device_key(&key, "log-dev-1").unwrap();
    let wrong_key = derive_device_key(&key, "someone-else").unwrap();
    let good = DeviceCredential::SymmetricKey(device_key.clone());
    let wrong_token = sas::make_token(
        &format!("{scope}/registrations/log-dev-1"),
        &wrong_key,
        None,
        now() + 600,
    )
    .unwrap();
    let expired_token = sas::make_token(
        &format!("{scope}/registrations/log-dev-1"),
        &device_key,
        None,
        now() - 3600,
    )
    .unwrap();
    let good_hub_token = sas::make_token(
        "localhost/devices/log-dev-1",
        &device_key,
        None,
        now() + 600,
    )
    .unwrap();
    let secret_word = "hunter2-not-a-token";
    runtime().block_on(async {
        let tls = tls_config("log-dev-1", &ep.trust_pem, &good).unwrap();
        mqtt_device::register(&ep, tls.clone(), &scope, "log-dev-1", &good)
            .await
            .unwrap();
        let mut d = mqtt_device::connect_to_hub(&ep, tls, "localhost", "log-dev-1", &good)
            .await
            .unwrap();
        d.send_telemetry("log-dev-1", "", b"x").await.unwrap();
        d.disconnect().await;
        let forged = DeviceCredential::SymmetricKey(wrong_key.clone());
        let tls = tls_config("log-dev-1", &ep.trust_pem, &forged).unwrap();
        let e = mqtt_device::register(&ep, tls, &scope, "log-dev-1", &forged)
            .await
            .unwrap_err();
        assert_eq!(status_of(e), 401);
        for (user, password) in [
            (
                format!("{scope}/registrations/log-dev-1/api-version=2019-03-31"),
                expired_token.clone(),
            ),
            (
                "localhost/log-dev-1/?api-version=2019-10-01".to_owned(),
                format!("SharedAccessSignature {secret_word}"),
            ),
            (
                "localhost/log-dev-1/?api-version=2019-10-01".to_owned(),
                secret_word.to_owned(),
            ),
        ] {
            let mut io = raw(ep.addr, &ep.trust_pem).await;
            io.write(&connect_packet("log-dev-1", &user, &password))
                .await
                .unwrap();
            assert_eq!(connack(&mut io).await, ConnectReturnCode::NotAuthorized);
            closed(&mut io).await;
        }
    });
    drop(dps);
    let log = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    assert!(
        log.contains("MQTT CONNECT refused") && log.contains("log-dev-1"),
        "the refusal is logged with the client"
    );
    let sig_of = |token: &str| {
        token
            .split('&')
            .find_map(|f| f.strip_prefix("sig="))
            .unwrap()
            .to_owned()
    };
    for secret in [
        key.expose().to_owned(),
        device_key.expose().to_owned(),
        wrong_key.expose().to_owned(),
        sig_of(&wrong_token),
        sas::percent_decode(&sig_of(&wrong_token)),
        sig_of(&good_hub_token),
        sig_of(&expired_token),
        secret_word.to_owned(),
    ] {
        assert!(!log.contains(&secret), "a secret reached the log");
    }
}

/// A client that goes silent is dropped after one and a half keep-alive periods (MQTT 3.1.1
/// §3.1.2.10); one that sends PINGREQ in time is kept.
#[test]
fn silent_clients_are_dropped_after_one_and_a_half_keep_alive_periods() {
    let dps = mqtt_emulator(Limits::default());
    let ep = endpoint(&dps);
    let scope = dps.emu.id_scope().to_owned();
    let key = group_key(&dps, "keep-alive");
    let device_key = derive_device_key(&key, "ka-1").unwrap();
    let password = sas::make_token(
        &format!("{scope}/registrations/ka-1"),
        &device_key,
        None,
        now() + 600,
    )
    .unwrap();
    let username = format!("{scope}/registrations/ka-1/api-version=2019-03-31");
    runtime().block_on(async {
        let connect = || {
            let mut c = Connect::new("ka-1");
            c.keep_alive = 1;
            c.set_login(username.clone(), password.clone());
            Packet::Connect(c)
        };
        // Pinging every 0.5 s for 3 s: still connected, every PINGREQ answered.
        let mut pinging = raw(ep.addr, &ep.trust_pem).await;
        pinging.write(&connect()).await.unwrap();
        assert_eq!(connack(&mut pinging).await, ConnectReturnCode::Success);
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            pinging.write(&Packet::PingReq).await.unwrap();
            assert_eq!(pinging.read().await.unwrap(), Packet::PingResp);
        }
        // Silent: dropped after 1.5 s, well before 5 s.
        let mut silent = raw(ep.addr, &ep.trust_pem).await;
        silent.write(&connect()).await.unwrap();
        assert_eq!(connack(&mut silent).await, ConnectReturnCode::Success);
        let started = std::time::Instant::now();
        closed(&mut silent).await;
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(1400) && waited < Duration::from_secs(5),
            "{waited:?}"
        );
    });
}
