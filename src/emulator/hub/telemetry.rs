//! Device-to-cloud messages the local hub received, kept in memory (newest last, the oldest
//! dropped beyond a cap) so that tests, the demo and `dps-station hub-telemetry` can read what a
//! device sent, with its properties, as a back-end would read it from the hub.

use std::collections::{BTreeMap, VecDeque};

use base64::Engine as _;
use serde_json::{Value, json};

use crate::emulator::sas::percent_decode;

/// How many messages are kept, all devices together; older ones are dropped.
pub const MAX_KEPT_MESSAGES: usize = 100_000;

/// How many body bytes are kept, all devices together: the message cap alone would let clients
/// sending 256 KiB messages fill 25 GiB; older messages are dropped beyond this too.
pub const MAX_KEPT_BODY_BYTES: usize = 64 * 1024 * 1024;

/// One device-to-cloud message.
#[derive(Debug, Clone)]
pub struct TelemetryMessage {
    /// The device that sent it.
    pub device_id: String,
    /// When the hub received it (RFC 3339, UTC).
    pub enqueued_time_utc: String,
    /// Application properties from the topic (`devices/{id}/messages/events/{k=v&...}`).
    pub properties: BTreeMap<String, String>,
    /// System properties from the topic (`$.mid`, `$.ct`, `$.ce`, ...), names without `$.`.
    pub system_properties: BTreeMap<String, String>,
    /// The body as sent.
    pub body: Vec<u8>,
}

impl TelemetryMessage {
    /// A message from the property part of its topic (what follows `messages/events/`).
    pub fn new(device_id: &str, properties: &str, body: Vec<u8>, now: String) -> Self {
        let mut app = BTreeMap::new();
        let mut system = BTreeMap::new();
        for pair in properties.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let (k, v) = (percent_decode(k), percent_decode(v));
            match k.strip_prefix("$.") {
                Some(name) => system.insert(name.to_owned(), v),
                None => app.insert(k, v),
            };
        }
        Self {
            device_id: device_id.to_owned(),
            enqueued_time_utc: now,
            properties: app,
            system_properties: system,
            body,
        }
    }

    /// The message as JSON: the body as text when it is UTF-8, else in `bodyBase64`.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "deviceId": self.device_id,
            "enqueuedTimeUtc": self.enqueued_time_utc,
            "properties": self.properties,
            "systemProperties": self.system_properties,
        });
        match std::str::from_utf8(&self.body) {
            Ok(text) => v["body"] = json!(text),
            Err(_) => {
                v["bodyBase64"] =
                    json!(base64::engine::general_purpose::STANDARD.encode(&self.body))
            }
        }
        v
    }
}

/// The kept messages.
#[derive(Debug, Default)]
pub struct TelemetryStore {
    messages: VecDeque<TelemetryMessage>,
    /// Body bytes of `messages`.
    bytes: usize,
    received: u64,
}

impl TelemetryStore {
    /// Keeps a message, dropping the oldest beyond [`MAX_KEPT_MESSAGES`] or
    /// [`MAX_KEPT_BODY_BYTES`].
    pub fn push(&mut self, message: TelemetryMessage) {
        self.bytes += message.body.len();
        self.messages.push_back(message);
        while self.messages.len() > MAX_KEPT_MESSAGES || self.bytes > MAX_KEPT_BODY_BYTES {
            match self.messages.pop_front() {
                Some(old) => self.bytes -= old.body.len(),
                None => break,
            }
        }
        self.received += 1;
    }

    /// The kept messages of one device (case-insensitive ID), or of all, oldest first.
    pub fn messages(&self, device_id: Option<&str>) -> Vec<TelemetryMessage> {
        self.messages
            .iter()
            .filter(|m| device_id.is_none_or(|d| m.device_id.eq_ignore_ascii_case(d)))
            .cloned()
            .collect()
    }

    /// How many messages were received since start, dropped ones included.
    pub fn received(&self) -> u64 {
        self.received
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_properties_split_into_application_and_system() {
        let m = TelemetryMessage::new(
            "dev-1",
            "%24.mid=abc&%24.ct=application%2Fjson&temperatureAlert=true&a%20b=c%26d",
            b"{}".to_vec(),
            "2026-01-01T00:00:00Z".into(),
        );
        assert_eq!(m.system_properties["mid"], "abc");
        assert_eq!(m.system_properties["ct"], "application/json");
        assert_eq!(m.properties["temperatureAlert"], "true");
        assert_eq!(m.properties["a b"], "c&d");
        assert_eq!(m.to_json()["body"], "{}");
        let binary = TelemetryMessage::new("d", "", vec![0xff, 0], String::new());
        assert_eq!(binary.to_json()["bodyBase64"], "/wA=");
    }

    #[test]
    fn oldest_messages_go_beyond_the_cap() {
        let mut store = TelemetryStore::default();
        for i in 0..MAX_KEPT_MESSAGES + 3 {
            store.push(TelemetryMessage::new("d", "", vec![], i.to_string()));
        }
        let kept = store.messages(Some("D"));
        assert_eq!(kept.len(), MAX_KEPT_MESSAGES);
        assert_eq!(kept[0].enqueued_time_utc, "3");
        assert_eq!(store.received(), (MAX_KEPT_MESSAGES + 3) as u64);
    }

    #[test]
    fn oldest_messages_go_beyond_the_byte_cap() {
        let mut store = TelemetryStore::default();
        let size = 256 * 1024;
        let fit = MAX_KEPT_BODY_BYTES / size;
        for i in 0..fit + 2 {
            store.push(TelemetryMessage::new("d", "", vec![0; size], i.to_string()));
        }
        let kept = store.messages(None);
        assert_eq!(kept.len(), fit);
        assert_eq!(kept[0].enqueued_time_utc, "2");
        assert_eq!(store.bytes, fit * size);
        assert_eq!(store.received(), (fit + 2) as u64);
    }
}
