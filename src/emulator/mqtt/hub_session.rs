//! A device connected to the local IoT hub (REFERENCE.md §11.3): telemetry to
//! `devices/{id}/messages/events/{properties}` (kept with its properties), its twin read with
//! `$iothub/twin/GET/?$rid=` and reported properties patched with
//! `$iothub/twin/PATCH/properties/reported/?$rid=`, answers on `$iothub/twin/res/{status}/?$rid=`.
//! A publish to any other topic (another device's, a service topic) ends the connection, as the
//! hub does.

use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{Packet, Publish};
use serde_json::json;

use super::super::app::App;
use super::super::clock;
use super::super::hub::telemetry::TelemetryMessage;
use super::super::ids;
use super::Outcome;

/// Largest device-to-cloud message body IoT Hub takes.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// The filters a hub device may subscribe to.
pub fn allowed_filter(device_id: &str, filter: &str) -> bool {
    filter == format!("devices/{device_id}/messages/devicebound/#")
        || [
            "$iothub/twin/res/#",
            "$iothub/methods/POST/#",
            "$iothub/twin/PATCH/properties/desired/#",
        ]
        .contains(&filter)
}

fn rid_of(query: &str) -> Option<&str> {
    query
        .split('&')
        .find_map(|p| p.strip_prefix("$rid="))
        .filter(|r| !r.is_empty())
}

/// Handles a PUBLISH from a hub device.
pub fn publish(app: &App, device_id: &str, publish: &Publish) -> Outcome {
    if publish.qos == QoS::ExactlyOnce {
        return Outcome::close("IoT Hub does not support QoS 2");
    }
    let topic = publish.topic.as_str();
    let events = format!("devices/{device_id}/messages/events");
    if let Some(rest) = topic.strip_prefix(&events) {
        let Some(properties) = rest.strip_prefix('/').or((rest.is_empty()).then_some("")) else {
            return Outcome::close(format!("device '{device_id}' may not publish to '{topic}'"));
        };
        if publish.payload.len() > MAX_MESSAGE_BYTES {
            return Outcome::close(format!(
                "a message of {} bytes from '{device_id}' is over the hub's {MAX_MESSAGE_BYTES}-byte limit",
                publish.payload.len()
            ));
        }
        app.telemetry().push(TelemetryMessage::new(
            device_id,
            properties,
            publish.payload.to_vec(),
            clock::now_rfc3339(),
        ));
        return Outcome::reply(Vec::new());
    }
    let (path, query) = topic.split_once('?').unwrap_or((topic, ""));
    let rid = rid_of(query);
    let answer = |status: u16, extra: &str, body: Vec<u8>| {
        let rid = rid.unwrap_or("");
        Outcome::reply(vec![Packet::Publish(Publish::new(
            format!("$iothub/twin/res/{status}/?$rid={rid}{extra}"),
            QoS::AtMostOnce,
            body,
        ))])
    };
    match path {
        "$iothub/twin/GET/" if rid.is_some() => {
            let state = app.lock();
            match state.hub_devices.get(&ids::key(device_id)) {
                Some(device) => answer(
                    200,
                    "",
                    device.twin.device_document().to_string().into_bytes(),
                ),
                None => answer(
                    404,
                    "",
                    json!({"message": "the device identity is gone"})
                        .to_string()
                        .into_bytes(),
                ),
            }
        }
        "$iothub/twin/PATCH/properties/reported/" if rid.is_some() => {
            let mut state = app.change();
            let Some(device) = state.hub_devices.get_mut(&ids::key(device_id)) else {
                return answer(404, "", Vec::new());
            };
            match device.twin.patch_reported(&publish.payload) {
                Ok(version) => answer(204, &format!("&$version={version}"), Vec::new()),
                Err(e) => answer(400, "", json!({ "message": e }).to_string().into_bytes()),
            }
        }
        _ => Outcome::close(format!("device '{device_id}' may not publish to '{topic}'")),
    }
}
