//! A CONNECT decides who a connection is: a DPS registration
//! (`{idScope}/registrations/{registrationId}/api-version=...`) or a device of the local hub
//! (`{hub}/{deviceId}/?api-version=...`), told apart by the username as DPS and IoT Hub share one
//! listener here. The credential (CONNECT password with a SAS token, or the TLS client
//! certificate) is checked now as far as each service's front door does (for DPS: form, resource
//! and expiry; the signature or certificate against the enrollment at registration, which answers
//! 401 on the response topic), and a refusal is the CONNACK return code the services give.

use rumqttc::mqttbytes::Protocol;
use rumqttc::mqttbytes::v4::{Connect, ConnectReturnCode};

use super::super::api_error::code;
use super::super::app::App;
use super::super::device_api::{self, Credentials};
use super::super::hub::{self, HUB_API_VERSIONS};
use super::super::ids;
use super::super::routes::DEVICE_API_VERSIONS;
use super::super::sas::percent_decode;

/// Who a connection belongs to once CONNECT was accepted.
#[derive(Debug, Clone)]
pub enum Client {
    /// A device registering with DPS.
    Dps {
        /// The ID scope from the username.
        scope: String,
        /// The registration ID (= client ID).
        registration_id: String,
        /// The SAS token from the password, if any.
        sas: Option<String>,
    },
    /// A device of the local hub.
    Hub {
        /// The device ID (= client ID), as the identity spells it.
        device_id: String,
    },
}

/// A refused CONNECT: the return code and why (for the log; never the password).
#[derive(Debug)]
pub struct Refusal {
    /// The CONNACK return code.
    pub code: ConnectReturnCode,
    /// What was wrong.
    pub reason: String,
}

fn refuse(code: ConnectReturnCode, reason: impl Into<String>) -> Refusal {
    Refusal {
        code,
        reason: reason.into(),
    }
}

fn query_value<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .trim_start_matches('?')
        .split('&')
        .find_map(|pair| {
            pair.split_once('=')
                .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        })
        .map(|(_, v)| v)
}

/// Checks a CONNECT and says who the client is.
pub fn accept(
    app: &App,
    connect: &Connect,
    peer_certificates: &[Vec<u8>],
) -> Result<Client, Refusal> {
    if connect.protocol != Protocol::V4 {
        return Err(refuse(
            ConnectReturnCode::RefusedProtocolVersion,
            "only MQTT 3.1.1 (protocol level 4) is served, as by DPS and IoT Hub",
        ));
    }
    let (username, password) = match &connect.login {
        Some(login) => (login.username.as_str(), login.password.as_str()),
        None => ("", ""),
    };
    if username.is_empty() {
        return Err(refuse(
            ConnectReturnCode::BadUserNamePassword,
            "CONNECT without a username: DPS wants {idScope}/registrations/{registrationId}/api-version=..., the hub {hub}/{deviceId}/?api-version=...",
        ));
    }
    let dps_parts: Vec<&str> = username.splitn(4, '/').collect();
    let hub_parts: Vec<&str> = username.splitn(3, '/').collect();
    let sas = (!password.is_empty()).then(|| password.to_owned());
    match (dps_parts.as_slice(), hub_parts.as_slice()) {
        ([scope, registrations, registration_id, query], _)
            if registrations.eq_ignore_ascii_case("registrations") =>
        {
            let version = query_value(query, "api-version").map(percent_decode);
            if !version
                .as_deref()
                .is_some_and(|v| DEVICE_API_VERSIONS.contains(&v))
            {
                return Err(refuse(
                    ConnectReturnCode::BadUserNamePassword,
                    format!(
                        "the DPS username's api-version is {}; use one of {}",
                        version.as_deref().unwrap_or("missing"),
                        DEVICE_API_VERSIONS.join(", ")
                    ),
                ));
            }
            if connect.client_id != *registration_id {
                return Err(refuse(
                    ConnectReturnCode::BadClientId,
                    format!(
                        "the client ID '{}' is not the registration ID '{registration_id}' of the username",
                        connect.client_id
                    ),
                ));
            }
            let credentials = Credentials {
                sas: sas.as_deref(),
                peer_certificates: Some(peer_certificates),
            };
            match device_api::check_connect(app, scope, registration_id, credentials) {
                Ok(()) => {}
                Err(e) if e.code == code::BAD_REQUEST => {
                    return Err(refuse(ConnectReturnCode::BadClientId, e.message));
                }
                Err(e) => return Err(refuse(ConnectReturnCode::NotAuthorized, e.message)),
            }
            Ok(Client::Dps {
                scope: (*scope).to_owned(),
                registration_id: (*registration_id).to_owned(),
                sas,
            })
        }
        (_, [host, device_id, query]) => {
            if !host.eq_ignore_ascii_case(&app.hub_host_name) {
                return Err(refuse(
                    ConnectReturnCode::NotAuthorized,
                    format!(
                        "the username names hub '{host}'; this emulator's hub is '{}'",
                        app.hub_host_name
                    ),
                ));
            }
            let version = query_value(query, "api-version").map(percent_decode);
            if !version
                .as_deref()
                .is_some_and(|v| HUB_API_VERSIONS.contains(&v))
            {
                return Err(refuse(
                    ConnectReturnCode::BadUserNamePassword,
                    format!(
                        "the hub username's api-version is {}; use one of {}",
                        version.as_deref().unwrap_or("missing"),
                        HUB_API_VERSIONS.join(", ")
                    ),
                ));
            }
            if connect.client_id != *device_id {
                return Err(refuse(
                    ConnectReturnCode::BadClientId,
                    format!(
                        "the client ID '{}' is not the device ID '{device_id}' of the username",
                        connect.client_id
                    ),
                ));
            }
            if let Err(e) = ids::validate("device ID", device_id) {
                return Err(refuse(ConnectReturnCode::BadClientId, e));
            }
            let state = app.lock();
            let device = match &sas {
                Some(password) => hub::check_sas(&state, &app.hub_host_name, device_id, password),
                None => hub::check_x509(
                    &state,
                    device_id,
                    peer_certificates,
                    device_api::x509_group_of,
                ),
            }
            .map_err(|e| refuse(ConnectReturnCode::NotAuthorized, e.to_string()))?;
            Ok(Client::Hub {
                device_id: device.device_id,
            })
        }
        _ => Err(refuse(
            ConnectReturnCode::BadUserNamePassword,
            format!(
                "the username '{username}' is neither a DPS registration ({{idScope}}/registrations/{{registrationId}}/api-version=...) nor a hub device ({{hub}}/{{deviceId}}/?api-version=...)"
            ),
        )),
    }
}
