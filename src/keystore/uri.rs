//! RFC 7512 PKCS#11 URIs (`pkcs11:token=Station%20CA;object=root;id=%01;type=private`): how the
//! station, its configuration and its audit log name a key, so that a key is found the same way
//! by us, by `pkcs11-tool` and by OpenSSL's pkcs11 provider.

use std::fmt;
use std::str::FromStr;

/// The kind of object a URI names (`type=` in RFC 7512).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectType {
    /// A private key (`CKO_PRIVATE_KEY`): the CA keys.
    Private,
    /// A public key (`CKO_PUBLIC_KEY`).
    Public,
    /// A secret key (`CKO_SECRET_KEY`): the symmetric enrollment-group keys.
    SecretKey,
    /// A certificate (`CKO_CERTIFICATE`).
    Cert,
    /// A data object (`CKO_DATA`).
    Data,
}

impl ObjectType {
    /// The spelling RFC 7512 gives this type.
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectType::Private => "private",
            ObjectType::Public => "public",
            ObjectType::SecretKey => "secret-key",
            ObjectType::Cert => "cert",
            ObjectType::Data => "data",
        }
    }
}

impl FromStr for ObjectType {
    type Err = UriError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "private" => ObjectType::Private,
            "public" => ObjectType::Public,
            "secret-key" => ObjectType::SecretKey,
            "cert" => ObjectType::Cert,
            "data" => ObjectType::Data,
            other => {
                return Err(UriError::BadType {
                    value: other.to_owned(),
                });
            }
        })
    }
}

/// Why a PKCS#11 URI did not parse; the message quotes the offending part, never a PIN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    /// The text does not start with the `pkcs11:` scheme.
    #[error(
        "not a PKCS#11 URI (it must start with `pkcs11:`, e.g. `pkcs11:token=Station;object=root-ca;type=private`)"
    )]
    MissingScheme,
    /// An attribute without `=`.
    #[error("PKCS#11 URI attribute `{attribute}` has no `=value`")]
    MissingValue {
        /// The attribute as written.
        attribute: String,
    },
    /// An attribute this station does not know.
    #[error(
        "PKCS#11 URI attribute `{name}` is not supported (supported: token, manufacturer, serial, model, object, id, type, module-path, module-name)"
    )]
    UnknownAttribute {
        /// The attribute name.
        name: String,
    },
    /// The same attribute twice, which RFC 7512 forbids.
    #[error("PKCS#11 URI attribute `{name}` appears twice")]
    Duplicate {
        /// The attribute name.
        name: String,
    },
    /// A `%` not followed by two hex digits, or a value that is not UTF-8 where text is required.
    #[error("PKCS#11 URI attribute `{name}` has a bad percent-encoding")]
    BadEncoding {
        /// The attribute name.
        name: String,
    },
    /// `type=` with a value outside RFC 7512's list.
    #[error("PKCS#11 URI `type={value}` is not one of private, public, secret-key, cert, data")]
    BadType {
        /// The value as written.
        value: String,
    },
    /// A PIN inside a URI would end up in logs, shell history and the audit log.
    #[error(
        "PKCS#11 URIs with `pin-value` are refused: a PIN in a URI ends up in logs; give it through DPS_STATION_HSM_PIN, --pin-file or the prompt"
    )]
    PinInUri,
}

/// A parsed PKCS#11 URI; every attribute is optional and an absent one matches anything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Pkcs11Uri {
    /// `token=`: the token label (without its space padding).
    pub token: Option<String>,
    /// `manufacturer=`: the token manufacturer.
    pub manufacturer: Option<String>,
    /// `serial=`: the token serial number.
    pub serial: Option<String>,
    /// `model=`: the token model.
    pub model: Option<String>,
    /// `object=`: the object's `CKA_LABEL`.
    pub object: Option<String>,
    /// `id=`: the object's `CKA_ID` (raw bytes).
    pub id: Option<Vec<u8>>,
    /// `type=`: the object class.
    pub object_type: Option<ObjectType>,
    /// `?module-path=`: the PKCS#11 module to load.
    pub module_path: Option<String>,
    /// `?module-name=`: the PKCS#11 module's name, resolved by the profile.
    pub module_name: Option<String>,
}

impl Pkcs11Uri {
    /// A URI naming one object on one token, as the station prints it for keys it made.
    pub fn for_object(token: &str, object: &str, id: &[u8], object_type: ObjectType) -> Pkcs11Uri {
        Pkcs11Uri {
            token: Some(token.to_owned()),
            object: Some(object.to_owned()),
            id: Some(id.to_vec()),
            object_type: Some(object_type),
            ..Pkcs11Uri::default()
        }
    }

    /// The same URI with another object type (a key pair's public half shares label and id).
    pub fn with_type(&self, object_type: ObjectType) -> Pkcs11Uri {
        Pkcs11Uri {
            object_type: Some(object_type),
            ..self.clone()
        }
    }
}

/// Characters RFC 7512 lets stand unencoded in a path attribute value (`unreserved` plus a few
/// `p11-pchar`s); everything else is percent-encoded on output.
fn is_path_safe(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b':'
                | b'['
                | b']'
                | b'@'
                | b'!'
                | b'$'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b'&'
        )
}

/// Characters left unencoded in a query attribute value (a module path keeps its slashes).
fn is_query_safe(b: u8) -> bool {
    (is_path_safe(b) && b != b'&') || matches!(b, b'/' | b'?' | b'|')
}

fn encode(out: &mut String, bytes: &[u8], safe: fn(u8) -> bool) {
    for &b in bytes {
        if safe(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

fn decode(name: &str, value: &str) -> Result<Vec<u8>, UriError> {
    let bad = || UriError::BadEncoding {
        name: name.to_owned(),
    };
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or_else(bad)?;
            let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

fn decode_text(name: &str, value: &str) -> Result<String, UriError> {
    String::from_utf8(decode(name, value)?).map_err(|_| UriError::BadEncoding {
        name: name.to_owned(),
    })
}

fn set<T>(slot: &mut Option<T>, name: &str, value: T) -> Result<(), UriError> {
    if slot.is_some() {
        return Err(UriError::Duplicate {
            name: name.to_owned(),
        });
    }
    *slot = Some(value);
    Ok(())
}

impl FromStr for Pkcs11Uri {
    type Err = UriError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rest = s.strip_prefix("pkcs11:").ok_or(UriError::MissingScheme)?;
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        let mut uri = Pkcs11Uri::default();
        for attribute in path.split(';').filter(|a| !a.is_empty()) {
            let (name, value) =
                attribute
                    .split_once('=')
                    .ok_or_else(|| UriError::MissingValue {
                        attribute: attribute.to_owned(),
                    })?;
            match name {
                "token" => set(&mut uri.token, name, decode_text(name, value)?)?,
                "manufacturer" => set(&mut uri.manufacturer, name, decode_text(name, value)?)?,
                "serial" => set(&mut uri.serial, name, decode_text(name, value)?)?,
                "model" => set(&mut uri.model, name, decode_text(name, value)?)?,
                "object" => set(&mut uri.object, name, decode_text(name, value)?)?,
                "id" => set(&mut uri.id, name, decode(name, value)?)?,
                "type" => set(
                    &mut uri.object_type,
                    name,
                    decode_text(name, value)?.parse()?,
                )?,
                "pin-value" => return Err(UriError::PinInUri),
                other => {
                    return Err(UriError::UnknownAttribute {
                        name: other.to_owned(),
                    });
                }
            }
        }
        for attribute in query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .filter(|a| !a.is_empty())
        {
            let (name, value) =
                attribute
                    .split_once('=')
                    .ok_or_else(|| UriError::MissingValue {
                        attribute: attribute.to_owned(),
                    })?;
            match name {
                "module-path" => set(&mut uri.module_path, name, decode_text(name, value)?)?,
                "module-name" => set(&mut uri.module_name, name, decode_text(name, value)?)?,
                "pin-value" => return Err(UriError::PinInUri),
                other => {
                    return Err(UriError::UnknownAttribute {
                        name: other.to_owned(),
                    });
                }
            }
        }
        Ok(uri)
    }
}

impl fmt::Display for Pkcs11Uri {
    /// Prints the attributes in one canonical order, percent-encoding what RFC 7512 requires and
    /// the whole `id` (it is binary).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut path: Vec<String> = Vec::new();
        let mut text = |name: &str, value: &Option<String>| {
            if let Some(v) = value {
                let mut s = format!("{name}=");
                encode(&mut s, v.as_bytes(), is_path_safe);
                path.push(s);
            }
        };
        text("token", &self.token);
        text("manufacturer", &self.manufacturer);
        text("serial", &self.serial);
        text("model", &self.model);
        text("object", &self.object);
        if let Some(id) = &self.id {
            let mut s = String::from("id=");
            encode(&mut s, id, |_| false);
            path.push(s);
        }
        if let Some(t) = self.object_type {
            path.push(format!("type={}", t.as_str()));
        }
        let mut query: Vec<String> = Vec::new();
        for (name, value) in [
            ("module-name", &self.module_name),
            ("module-path", &self.module_path),
        ] {
            if let Some(v) = value {
                let mut s = format!("{name}=");
                encode(&mut s, v.as_bytes(), is_query_safe);
                query.push(s);
            }
        }
        write!(f, "pkcs11:{}", path.join(";"))?;
        if !query.is_empty() {
            write!(f, "?{}", query.join("&"))?;
        }
        Ok(())
    }
}
