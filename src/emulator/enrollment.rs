//! Turning a client's enrollment body into the document the service stores, and the stored
//! document into what the service answers: the fields it knows (others are dropped, as the
//! service's model binding drops them), its defaults, computed certificate info, generated
//! symmetric keys, and the read-only fields it sets itself.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};

use super::api_error::ApiError;
use super::certinfo;
use super::ids;

/// Individual enrollment or enrollment group: the two share almost all of their semantics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `/enrollments`.
    Individual,
    /// `/enrollmentGroups`.
    Group,
}

impl Kind {
    /// The body field that holds the ID.
    pub fn id_field(self) -> &'static str {
        match self {
            Kind::Individual => "registrationId",
            Kind::Group => "enrollmentGroupId",
        }
    }

    /// How the ID is named in messages.
    pub fn id_name(self) -> &'static str {
        match self {
            Kind::Individual => "registration ID",
            Kind::Group => "enrollment group ID",
        }
    }

    /// What the thing is called in messages.
    pub fn noun(self) -> &'static str {
        match self {
            Kind::Individual => "individual enrollment",
            Kind::Group => "enrollment group",
        }
    }

    /// `x-ms-item-type` of a query over them.
    pub fn item_type(self) -> &'static str {
        match self {
            Kind::Individual => "enrollment",
            Kind::Group => "enrollmentGroup",
        }
    }

    /// 404 sub-code (confirmed: 404201 / 404204).
    pub fn not_found_code(self) -> u32 {
        match self {
            Kind::Individual => super::api_error::code::ENROLLMENT_NOT_FOUND,
            Kind::Group => super::api_error::code::GROUP_NOT_FOUND,
        }
    }

    /// 409 sub-code.
    pub fn exists_code(self) -> u32 {
        match self {
            Kind::Individual => super::api_error::code::ENROLLMENT_EXISTS,
            Kind::Group => super::api_error::code::GROUP_EXISTS,
        }
    }

    /// Fields the service's model has for this kind (2021-10-01 plus the 2026-11-01 additions).
    fn fields(self) -> &'static [&'static str] {
        match self {
            Kind::Individual => &[
                "registrationId",
                "deviceId",
                "optionalDeviceInformation",
                "attestation",
                "capabilities",
                "iotHubHostName",
                "initialTwin",
                "provisioningStatus",
                "reprovisionPolicy",
                "allocationPolicy",
                "iotHubs",
                "customAllocationDefinition",
                "namespaceName",
                "certificateAuthorityName",
                "certificatePolicyName",
            ],
            Kind::Group => &[
                "enrollmentGroupId",
                "attestation",
                "capabilities",
                "iotHubHostName",
                "initialTwin",
                "provisioningStatus",
                "reprovisionPolicy",
                "allocationPolicy",
                "iotHubs",
                "customAllocationDefinition",
                "namespaceName",
                "certificateAuthorityName",
                "certificatePolicyName",
            ],
        }
    }
}

/// Where the emulator is: what `prepare` needs to know beyond the body.
pub struct Context<'a> {
    /// Linked IoT hubs; empty = any.
    pub linked_hubs: &'a [String],
    /// The stored document this body replaces, if any.
    pub existing: Option<&'a Value>,
    /// Now, RFC 3339.
    pub now: &'a str,
}

/// The ID a body names, for per-item bulk errors (empty when it has none).
pub fn body_id(kind: Kind, body: &Value) -> String {
    body.get(kind.id_field())
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned()
}

/// A fresh etag: base64 of a quoted GUID, the style of the service's Cosmos etags.
pub fn new_etag() -> String {
    STANDARD.encode(format!("\"{}\"", uuid::Uuid::new_v4()))
}

/// A service-generated symmetric key: 64 random bytes, base64.
pub fn generate_key() -> String {
    let mut bytes = [0u8; 64];
    rand::fill(&mut bytes);
    STANDARD.encode(bytes)
}

fn bad(kind: Kind, id: &str, what: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("{} '{id}': {what}", kind.noun()))
}

/// Validates a body and builds the document to store (with keys, certificates and read-only fields).
pub fn prepare(
    kind: Kind,
    body: Value,
    path_id: Option<&str>,
    ctx: &Context<'_>,
) -> Result<Value, ApiError> {
    let Value::Object(input) = body else {
        return Err(ApiError::bad_request(format!(
            "the body must be a JSON object (an {})",
            kind.noun()
        )));
    };
    let id = match input.get(kind.id_field()) {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => match path_id {
            Some(p) => p.to_owned(),
            None => {
                return Err(ApiError::bad_request(format!(
                    "the {} has no {}",
                    kind.noun(),
                    kind.id_field()
                )));
            }
        },
        Some(_) => {
            return Err(ApiError::bad_request(format!(
                "{} must be a string",
                kind.id_field()
            )));
        }
    };
    ids::validate(kind.id_name(), &id).map_err(ApiError::bad_request)?;
    if let Some(p) = path_id
        && ids::key(p) != ids::key(&id)
    {
        return Err(bad(
            kind,
            &id,
            format!(
                "the body's {} does not match '{p}' in the path",
                kind.id_field()
            ),
        ));
    }

    let mut doc = Map::new();
    for field in kind.fields() {
        if let Some(v) = input.get(*field)
            && !v.is_null()
        {
            doc.insert((*field).to_owned(), v.clone());
        }
    }
    doc.insert(kind.id_field().to_owned(), Value::String(id.clone()));

    let attestation = doc
        .remove("attestation")
        .ok_or_else(|| bad(kind, &id, "attestation is required"))?;
    let previous = ctx.existing.and_then(|e| e.get("attestation"));
    doc.insert(
        "attestation".into(),
        prepare_attestation(kind, &id, attestation, previous)?,
    );

    defaults_and_checks(kind, &id, &mut doc, ctx.linked_hubs)?;

    let created = ctx
        .existing
        .and_then(|e| e.get("createdDateTimeUtc"))
        .cloned()
        .unwrap_or_else(|| Value::String(ctx.now.to_owned()));
    doc.insert("createdDateTimeUtc".into(), created);
    doc.insert(
        "lastUpdatedDateTimeUtc".into(),
        Value::String(ctx.now.to_owned()),
    );
    doc.insert("etag".into(), Value::String(new_etag()));
    if kind == Kind::Individual
        && let Some(state) = ctx.existing.and_then(|e| e.get("registrationState"))
    {
        doc.insert("registrationState".into(), state.clone());
    }
    Ok(Value::Object(doc))
}

fn defaults_and_checks(
    kind: Kind,
    id: &str,
    doc: &mut Map<String, Value>,
    linked_hubs: &[String],
) -> Result<(), ApiError> {
    match doc.get("provisioningStatus") {
        None => {
            doc.insert("provisioningStatus".into(), json!("enabled"));
        }
        Some(Value::String(s)) if s == "enabled" || s == "disabled" => {}
        Some(other) => {
            return Err(bad(
                kind,
                id,
                format!("provisioningStatus {other} is not 'enabled' or 'disabled'"),
            ));
        }
    }
    let iot_edge = match doc.get("capabilities") {
        None => false,
        Some(Value::Object(c)) => match c.get("iotEdge") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(bad(
                    kind,
                    id,
                    format!("capabilities.iotEdge {other} is not a boolean"),
                ));
            }
        },
        Some(other) => {
            return Err(bad(
                kind,
                id,
                format!("capabilities {other} is not an object"),
            ));
        }
    };
    doc.insert("capabilities".into(), json!({ "iotEdge": iot_edge }));

    let mut policy = json!({ "updateHubAssignment": true, "migrateDeviceData": true });
    match doc.get("reprovisionPolicy") {
        None => {}
        Some(Value::Object(r)) => {
            for f in ["updateHubAssignment", "migrateDeviceData"] {
                match r.get(f) {
                    None | Some(Value::Null) => {}
                    Some(Value::Bool(b)) => policy[f] = json!(b),
                    Some(other) => {
                        return Err(bad(
                            kind,
                            id,
                            format!("reprovisionPolicy.{f} {other} is not a boolean"),
                        ));
                    }
                }
            }
        }
        Some(other) => {
            return Err(bad(
                kind,
                id,
                format!("reprovisionPolicy {other} is not an object"),
            ));
        }
    }
    doc.insert("reprovisionPolicy".into(), policy);

    match doc.get("allocationPolicy") {
        None => {
            doc.insert("allocationPolicy".into(), json!("hashed"));
        }
        Some(Value::String(s))
            if ["hashed", "geoLatency", "static", "custom"].contains(&s.as_str()) =>
        {
            if s == "custom" {
                let def = doc.get("customAllocationDefinition");
                let ok = def
                    .and_then(|d| d.get("webhookUrl"))
                    .and_then(Value::as_str)
                    .is_some_and(|u| !u.is_empty())
                    && def
                        .and_then(|d| d.get("apiVersion"))
                        .and_then(Value::as_str)
                        .is_some_and(|v| !v.is_empty());
                if !ok {
                    return Err(bad(
                        kind,
                        id,
                        "allocationPolicy 'custom' needs customAllocationDefinition with webhookUrl and apiVersion",
                    ));
                }
            }
        }
        Some(other) => {
            return Err(bad(
                kind,
                id,
                format!(
                    "allocationPolicy {other} is not one of hashed, geoLatency, static, custom"
                ),
            ));
        }
    }

    if let Some(hubs) = doc.get("iotHubs") {
        let Some(list) = hubs.as_array() else {
            return Err(bad(kind, id, "iotHubs must be an array of host names"));
        };
        for hub in list {
            let Some(h) = hub.as_str() else {
                return Err(bad(kind, id, "iotHubs must be an array of host names"));
            };
            if !linked_hubs.is_empty() && !linked_hubs.iter().any(|l| l.eq_ignore_ascii_case(h)) {
                return Err(bad(
                    kind,
                    id,
                    format!(
                        "IoT hub '{h}' is not linked to this DPS instance (linked: {})",
                        linked_hubs.join(", ")
                    ),
                ));
            }
        }
    }
    for f in ["deviceId", "iotHubHostName"] {
        if let Some(v) = doc.get(f)
            && !v.is_string()
        {
            return Err(bad(kind, id, format!("{f} must be a string")));
        }
    }
    if let Some(Value::String(d)) = doc.get("deviceId")
        && (d.is_empty() || d.len() > 128)
    {
        return Err(bad(
            kind,
            id,
            format!("deviceId '{d}' must have 1 to 128 characters"),
        ));
    }
    Ok(())
}

fn prepare_attestation(
    kind: Kind,
    id: &str,
    attestation: Value,
    previous: Option<&Value>,
) -> Result<Value, ApiError> {
    let Value::Object(a) = attestation else {
        return Err(bad(kind, id, "attestation must be an object"));
    };
    let ty = a.get("type").and_then(Value::as_str).ok_or_else(|| {
        bad(
            kind,
            id,
            "attestation.type is required (none, tpm, x509 or symmetricKey)",
        )
    })?;
    match ty.to_ascii_lowercase().as_str() {
        "none" => Ok(json!({ "type": "none" })),
        "tpm" => {
            if kind == Kind::Group {
                return Err(bad(
                    kind,
                    id,
                    "enrollment groups do not support TPM attestation",
                ));
            }
            let tpm = a.get("tpm").and_then(Value::as_object);
            let ek = tpm
                .and_then(|t| t.get("endorsementKey"))
                .and_then(Value::as_str);
            let Some(ek) = ek.filter(|e| !e.is_empty()) else {
                return Err(bad(kind, id, "a TPM attestation needs tpm.endorsementKey"));
            };
            let Ok(ek_bytes) = STANDARD.decode(ek.trim()) else {
                return Err(bad(kind, id, "tpm.endorsementKey is not base64"));
            };
            // DPS answers "Endorsement key is invalid" to anything but the TPM's TPM2B_PUBLIC
            // (a DER SubjectPublicKeyInfo, the usual mistake, included).
            if let Err(e) = crate::identity::tpm_ek::parse_tpm2b_public(&ek_bytes) {
                return Err(bad(
                    kind,
                    id,
                    format!(
                        "Endorsement key is invalid ({e}); give the TPM's TPM2B_PUBLIC in base64, not a DER public key"
                    ),
                ));
            }
            let mut out = json!({ "type": "tpm", "tpm": { "endorsementKey": ek } });
            if let Some(srk) = tpm
                .and_then(|t| t.get("storageRootKey"))
                .and_then(Value::as_str)
            {
                out["tpm"]["storageRootKey"] = json!(srk);
            }
            Ok(out)
        }
        "symmetrickey" => {
            let given = a.get("symmetricKey").and_then(Value::as_object);
            let mut keys = Map::new();
            for slot in ["primaryKey", "secondaryKey"] {
                let key = match given.and_then(|g| g.get(slot)) {
                    None | Some(Value::Null) => generate_key(),
                    Some(Value::String(s)) if s.is_empty() => generate_key(),
                    Some(Value::String(s)) => {
                        let len = STANDARD.decode(s.trim()).map(|b| b.len()).map_err(|_| {
                            bad(kind, id, format!("symmetricKey.{slot} is not base64"))
                        })?;
                        if !(16..=64).contains(&len) {
                            return Err(bad(
                                kind,
                                id,
                                format!(
                                    "symmetricKey.{slot} decodes to {len} bytes; DPS takes 16 to 64"
                                ),
                            ));
                        }
                        s.trim().to_owned()
                    }
                    Some(_) => {
                        return Err(bad(
                            kind,
                            id,
                            format!("symmetricKey.{slot} must be a string"),
                        ));
                    }
                };
                keys.insert(slot.to_owned(), Value::String(key));
            }
            Ok(json!({ "type": "symmetricKey", "symmetricKey": keys }))
        }
        "x509" => {
            let x = a
                .get("x509")
                .and_then(Value::as_object)
                .ok_or_else(|| bad(kind, id, "an x509 attestation needs the x509 object"))?;
            let prev_x = previous.and_then(|p| p.get("x509"));
            let mut out = Map::new();
            let cert_field = match kind {
                Kind::Individual => "clientCertificates",
                Kind::Group => "signingCertificates",
            };
            for field in ["clientCertificates", "signingCertificates"] {
                let Some(certs) = x.get(field).filter(|v| !v.is_null()) else {
                    continue;
                };
                if field != cert_field {
                    return Err(bad(
                        kind,
                        id,
                        format!(
                            "an {} takes x509.{cert_field}, not x509.{field}",
                            kind.noun()
                        ),
                    ));
                }
                out.insert(
                    field.to_owned(),
                    prepare_certificates(
                        kind,
                        id,
                        field,
                        certs,
                        prev_x.and_then(|p| p.get(field)),
                    )?,
                );
            }
            if let Some(refs) = x.get("caReferences").filter(|v| !v.is_null()) {
                if kind == Kind::Individual {
                    return Err(bad(
                        kind,
                        id,
                        "an individual enrollment takes x509.clientCertificates, not caReferences",
                    ));
                }
                let mut r = Map::new();
                for slot in ["primary", "secondary"] {
                    match refs.get(slot) {
                        None | Some(Value::Null) => {}
                        Some(Value::String(s)) if !s.is_empty() => {
                            r.insert(slot.to_owned(), json!(s));
                        }
                        Some(_) => {
                            return Err(bad(
                                kind,
                                id,
                                format!("x509.caReferences.{slot} must be a CA certificate name"),
                            ));
                        }
                    }
                }
                if r.is_empty() {
                    return Err(bad(kind, id, "x509.caReferences names no CA"));
                }
                out.insert("caReferences".into(), Value::Object(r));
            }
            if out.is_empty() {
                return Err(bad(
                    kind,
                    id,
                    format!(
                        "an x509 attestation needs x509.{cert_field}{}",
                        if kind == Kind::Group {
                            " or x509.caReferences"
                        } else {
                            ""
                        }
                    ),
                ));
            }
            Ok(json!({ "type": "x509", "x509": out }))
        }
        other => Err(bad(
            kind,
            id,
            format!("attestation.type '{other}' is not none, tpm, x509 or symmetricKey"),
        )),
    }
}

fn prepare_certificates(
    kind: Kind,
    id: &str,
    field: &str,
    certs: &Value,
    previous: Option<&Value>,
) -> Result<Value, ApiError> {
    let mut out = Map::new();
    for slot in ["primary", "secondary"] {
        let Some(entry) = certs.get(slot).filter(|v| !v.is_null()) else {
            continue;
        };
        let certificate = entry
            .get("certificate")
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty());
        let stored = match certificate {
            Some(c) => {
                let der = certinfo::decode(c)
                    .map_err(|e| bad(kind, id, format!("x509.{field}.{slot}: {e}")))?;
                let info = certinfo::info(&der)
                    .map_err(|e| bad(kind, id, format!("x509.{field}.{slot}: {e}")))?;
                json!({ "certificate": c, "info": info })
            }
            None => {
                // A body read back with GET carries only `info`: keep the certificate it describes.
                let thumb = entry
                    .get("info")
                    .and_then(|i| i.get("sha256Thumbprint"))
                    .and_then(Value::as_str);
                let prev = previous.and_then(|p| p.get(slot));
                let prev_thumb = prev
                    .and_then(|p| p.get("info"))
                    .and_then(|i| i.get("sha256Thumbprint"))
                    .and_then(Value::as_str);
                match (thumb, prev_thumb, prev) {
                    (Some(t), Some(pt), Some(p)) if t.eq_ignore_ascii_case(pt) => p.clone(),
                    _ => {
                        return Err(bad(
                            kind,
                            id,
                            format!("x509.{field}.{slot} has no certificate"),
                        ));
                    }
                }
            }
        };
        out.insert(slot.to_owned(), stored);
    }
    if out.is_empty() {
        return Err(bad(
            kind,
            id,
            format!("x509.{field} has neither a primary nor a secondary certificate"),
        ));
    }
    Ok(Value::Object(out))
}

/// The attestation as the attestationmechanism POST returns it: keys included, certificates as info only.
pub fn attestation_with_keys(doc: &Value) -> Value {
    let mut a = doc
        .get("attestation")
        .cloned()
        .unwrap_or_else(|| json!({ "type": "none" }));
    strip_certificates(&mut a);
    a
}

fn strip_certificates(attestation: &mut Value) {
    if let Some(x) = attestation.get_mut("x509").and_then(Value::as_object_mut) {
        for field in ["clientCertificates", "signingCertificates"] {
            if let Some(certs) = x.get_mut(field).and_then(Value::as_object_mut) {
                for entry in certs.values_mut() {
                    if let Some(e) = entry.as_object_mut() {
                        e.remove("certificate");
                    }
                }
            }
        }
    }
}

/// The document as GET, PUT and queries return it: no symmetric keys, certificates as info only.
pub fn render(doc: &Value) -> Value {
    let mut out = doc.clone();
    if let Some(a) = out.get_mut("attestation") {
        strip_certificates(a);
        if let Some(sk) = a.get_mut("symmetricKey").and_then(Value::as_object_mut) {
            sk.remove("primaryKey");
            sk.remove("secondaryKey");
        }
    }
    out
}

/// The symmetric keys of a stored document, primary first.
pub fn symmetric_keys(doc: &Value) -> Vec<String> {
    let sk = doc.get("attestation").and_then(|a| a.get("symmetricKey"));
    ["primaryKey", "secondaryKey"]
        .iter()
        .filter_map(|slot| {
            sk.and_then(|s| s.get(*slot))
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .collect()
}

/// The attestation type of a stored document.
pub fn attestation_type(doc: &Value) -> &str {
    doc.get("attestation")
        .and_then(|a| a.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("none")
}

/// DER of the certificates stored under `x509.<field>`, primary first.
pub fn certificates_der(doc: &Value, field: &str) -> Vec<Vec<u8>> {
    let certs = doc
        .get("attestation")
        .and_then(|a| a.get("x509"))
        .and_then(|x| x.get(field));
    ["primary", "secondary"]
        .iter()
        .filter_map(|slot| {
            certs
                .and_then(|c| c.get(*slot))
                .and_then(|e| e.get("certificate"))
                .and_then(Value::as_str)
        })
        .filter_map(|c| certinfo::decode(c).ok())
        .collect()
}
