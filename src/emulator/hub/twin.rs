//! A device twin as the hub keeps it: tags and desired properties from the enrollment's
//! `initialTwin` (DPS writes them at assignment), reported properties the device patches, each
//! half with its own `$version`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// One device's twin.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Twin {
    /// Twin tags (service side only; kept to show what DPS wrote).
    #[serde(default)]
    pub tags: Map<String, Value>,
    /// Desired properties, without `$version`.
    #[serde(default)]
    pub desired: Map<String, Value>,
    /// Version of the desired half, 1 after DPS wrote it.
    #[serde(default)]
    pub desired_version: u64,
    /// Reported properties, without `$version`.
    #[serde(default)]
    pub reported: Map<String, Value>,
    /// Version of the reported half, raised by every patch.
    #[serde(default)]
    pub reported_version: u64,
}

impl Twin {
    /// The twin DPS leaves in the hub for an enrollment's `initialTwin`
    /// (`{"tags": {...}, "properties": {"desired": {...}}}`), or an empty one.
    pub fn from_initial(initial: Option<&Value>) -> Self {
        let object = |v: Option<&Value>| {
            v.and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .filter(|(k, _)| !k.starts_with('$'))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect()
                })
                .unwrap_or_default()
        };
        Self {
            tags: object(initial.and_then(|t| t.get("tags"))),
            desired: object(initial.and_then(|t| t.pointer("/properties/desired"))),
            desired_version: 1,
            reported: Map::new(),
            reported_version: 1,
        }
    }

    /// What a device reads with `$iothub/twin/GET`: both halves with their `$version`.
    pub fn device_document(&self) -> Value {
        let mut desired = self.desired.clone();
        desired.insert("$version".into(), json!(self.desired_version));
        let mut reported = self.reported.clone();
        reported.insert("$version".into(), json!(self.reported_version));
        json!({ "desired": desired, "reported": reported })
    }

    /// Applies a reported-properties patch (JSON merge: `null` removes a property) and returns
    /// the new version. A body that is not a JSON object is refused, as the hub answers 400.
    pub fn patch_reported(&mut self, body: &[u8]) -> Result<u64, String> {
        let patch: Value = serde_json::from_slice(body)
            .map_err(|e| format!("the reported-properties patch is not JSON: {e}"))?;
        let Value::Object(patch) = patch else {
            return Err("the reported-properties patch is not a JSON object".into());
        };
        merge(&mut self.reported, patch);
        self.reported_version += 1;
        Ok(self.reported_version)
    }
}

fn merge(target: &mut Map<String, Value>, patch: Map<String, Value>) {
    for (key, value) in patch {
        if key.starts_with('$') {
            continue;
        }
        match value {
            Value::Null => {
                target.remove(&key);
            }
            Value::Object(inner) => {
                let slot = target
                    .entry(key)
                    .or_insert_with(|| Value::Object(Map::new()));
                if !slot.is_object() {
                    *slot = Value::Object(Map::new());
                }
                if let Value::Object(existing) = slot {
                    merge(existing, inner);
                }
            }
            other => {
                target.insert(key, other);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_twin_then_reported_patches_merge() {
        let initial = json!({"tags": {"line": "A"}, "properties": {"desired": {"interval": 30}}});
        let mut twin = Twin::from_initial(Some(&initial));
        assert_eq!(
            twin.device_document(),
            json!({"desired": {"interval": 30, "$version": 1}, "reported": {"$version": 1}})
        );
        assert_eq!(
            twin.patch_reported(br#"{"fw": {"v": "1.0", "x": 1}}"#),
            Ok(2)
        );
        assert_eq!(
            twin.patch_reported(br#"{"fw": {"x": null}, "ok": true}"#),
            Ok(3)
        );
        assert_eq!(
            twin.device_document()["reported"],
            json!({"fw": {"v": "1.0"}, "ok": true, "$version": 3})
        );
        assert!(twin.patch_reported(b"[1]").is_err());
        assert!(twin.patch_reported(b"{").is_err());
        assert_eq!(twin.reported_version, 3);
    }
}
