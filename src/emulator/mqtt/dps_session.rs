//! DPS registration over MQTT (REFERENCE.md §11.2), over the same registration core as the
//! HTTPS device API (`device_api::register`, `device_api::operation_status`): the device
//! subscribes to `$dps/registrations/res/#`, publishes to
//! `$dps/registrations/PUT/iotdps-register/?$rid={rid}` and
//! `$dps/registrations/GET/iotdps-get-operationstatus/?$rid={rid}&operationId={id}`, and gets
//! every answer on `$dps/registrations/res/{status}/?$rid={rid}[&retry-after={s}]`, QoS 1.
//! The Python SDK splits that topic on `$`, so `retry-after` never carries one.

use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{Packet, Publish};

use super::super::app::App;
use super::super::device_api::{self, Answer, Credentials};
use super::super::sas::percent_decode;
use super::Outcome;

/// The one filter a DPS client subscribes to.
pub const RESPONSE_FILTER: &str = "$dps/registrations/res/#";

const REGISTER: &str = "$dps/registrations/PUT/iotdps-register/";
const STATUS: &str = "$dps/registrations/GET/iotdps-get-operationstatus/";

/// A connected DPS client.
pub struct DpsSession<'a> {
    /// ID scope from the username.
    pub scope: &'a str,
    /// Registration ID from the username.
    pub registration_id: &'a str,
    /// SAS token from the CONNECT password.
    pub sas: Option<&'a str>,
    /// TLS client certificate chain.
    pub peer_certificates: &'a [Vec<u8>],
}

fn query_value(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == name).then(|| percent_decode(v))
    })
}

impl DpsSession<'_> {
    /// Handles a PUBLISH from the device; the answer is a PUBLISH for `next_pkid`.
    pub fn publish(&self, app: &App, publish: &Publish, next_pkid: u16) -> Outcome {
        let (path, query) = publish
            .topic
            .split_once('?')
            .unwrap_or((&publish.topic, ""));
        let Some(rid) = query_value(query, "$rid").filter(|r| !r.is_empty()) else {
            return Outcome::close(format!(
                "a DPS publish to '{}' without $rid: nowhere to answer",
                publish.topic
            ));
        };
        let credentials = Credentials {
            sas: self.sas,
            peer_certificates: Some(self.peer_certificates),
        };
        let result = if path.eq_ignore_ascii_case(REGISTER) {
            device_api::register(
                app,
                self.scope,
                self.registration_id,
                &publish.payload,
                credentials,
            )
        } else if path.eq_ignore_ascii_case(STATUS) {
            let operation_id = query_value(query, "operationId").unwrap_or_default();
            device_api::operation_status(
                app,
                self.scope,
                self.registration_id,
                &operation_id,
                credentials,
            )
        } else {
            return Outcome::close(format!(
                "a DPS client may publish only to {REGISTER} and {STATUS}, not '{}'",
                publish.topic
            ));
        };
        let answer = result.unwrap_or_else(|e| {
            tracing::debug!(registration_id = %self.registration_id, status = %e.status, code = e.code, message = %e.message, "DPS over MQTT: answering with an error");
            Answer {
                status: e.status,
                body: e.body(),
                retry_after: e.retry_after,
            }
        });
        let mut topic = format!(
            "$dps/registrations/res/{}/?$rid={rid}",
            answer.status.as_u16()
        );
        if let Some(seconds) = answer.retry_after {
            topic.push_str(&format!("&retry-after={seconds}"));
        }
        let mut reply = Publish::new(topic, QoS::AtLeastOnce, answer.body.to_string());
        reply.pkid = next_pkid;
        Outcome::reply(vec![Packet::Publish(reply)])
    }
}
