//! Object templates and attribute reading. The templates are where "never leaves the HSM" is
//! decided: private and secret keys are token objects, private, sensitive and not extractable.

use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;

use super::super::ecdsa::P256_EC_PARAMS;
use crate::keystore::{KeyInfo, KeyKind, ObjectType, Pkcs11Uri};

/// The PKCS#11 class for a URI `type=`.
pub fn class_of(t: ObjectType) -> ObjectClass {
    match t {
        ObjectType::Private => ObjectClass::PRIVATE_KEY,
        ObjectType::Public => ObjectClass::PUBLIC_KEY,
        ObjectType::SecretKey => ObjectClass::SECRET_KEY,
        ObjectType::Cert => ObjectClass::CERTIFICATE,
        ObjectType::Data => ObjectClass::DATA,
    }
}

/// The public half of a P-256 key pair: a public token object that verifies.
pub fn ec_public_template(label: &str, id: &[u8]) -> Vec<Attribute> {
    vec![
        Attribute::Token(true),
        Attribute::Private(false),
        Attribute::Verify(true),
        Attribute::Encrypt(false),
        Attribute::Wrap(false),
        Attribute::EcParams(P256_EC_PARAMS.to_vec()),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Id(id.to_vec()),
    ]
}

/// The private half: signs, never leaves the token.
pub fn ec_private_template(label: &str, id: &[u8]) -> Vec<Attribute> {
    vec![
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        // Least privilege: SoftHSM2 (and others) default CKA_DECRYPT and CKA_UNWRAP to true.
        Attribute::Decrypt(false),
        Attribute::Unwrap(false),
        Attribute::Derive(false),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Id(id.to_vec()),
    ]
}

/// A group key: computes HMACs (`CKA_SIGN`), never leaves the token, cannot wrap or derive.
pub fn secret_template(label: &str, id: &[u8]) -> Vec<Attribute> {
    vec![
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        Attribute::Verify(true),
        Attribute::Encrypt(false),
        Attribute::Decrypt(false),
        Attribute::Wrap(false),
        Attribute::Unwrap(false),
        Attribute::Derive(false),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Id(id.to_vec()),
    ]
}

/// A kind as people read it in messages.
pub fn kind_name(kind: &KeyKind) -> String {
    match kind {
        KeyKind::EcPrivate => "an EC private key".to_owned(),
        KeyKind::EcPublic => "an EC public key".to_owned(),
        KeyKind::GenericSecret => "a generic-secret (HMAC) key".to_owned(),
        KeyKind::Certificate => "a certificate".to_owned(),
        KeyKind::Other(s) => s.clone(),
    }
}

/// Reads what `hsm list` shows about one object. Attributes a class lacks are simply absent.
pub fn read_info(
    session: &Session,
    handle: ObjectHandle,
    token: &str,
) -> cryptoki::error::Result<KeyInfo> {
    let attrs = session.get_attributes(
        handle,
        &[
            AttributeType::Class,
            AttributeType::KeyType,
            AttributeType::Label,
            AttributeType::Id,
            AttributeType::Sensitive,
            AttributeType::Extractable,
            AttributeType::NeverExtractable,
        ],
    )?;
    let mut class = None;
    let mut key_type = None;
    let mut label = String::new();
    let mut id = Vec::new();
    let mut sensitive = None;
    let mut extractable = None;
    let mut never_extractable = None;
    for a in attrs {
        match a {
            Attribute::Class(c) => class = Some(c),
            Attribute::KeyType(k) => key_type = Some(k),
            Attribute::Label(l) => label = String::from_utf8_lossy(&l).into_owned(),
            Attribute::Id(i) => id = i,
            Attribute::Sensitive(s) => sensitive = Some(s),
            Attribute::Extractable(e) => extractable = Some(e),
            Attribute::NeverExtractable(e) => never_extractable = Some(e),
            _ => {}
        }
    }
    let (kind, object_type) = match (class, key_type) {
        (Some(ObjectClass::PRIVATE_KEY), Some(KeyType::EC)) => {
            (KeyKind::EcPrivate, Some(ObjectType::Private))
        }
        (Some(ObjectClass::PUBLIC_KEY), Some(KeyType::EC)) => {
            (KeyKind::EcPublic, Some(ObjectType::Public))
        }
        (Some(ObjectClass::SECRET_KEY), Some(KeyType::GENERIC_SECRET)) => {
            (KeyKind::GenericSecret, Some(ObjectType::SecretKey))
        }
        (Some(ObjectClass::CERTIFICATE), _) => (KeyKind::Certificate, Some(ObjectType::Cert)),
        (Some(c), k) => {
            let t = match c {
                ObjectClass::PRIVATE_KEY => Some(ObjectType::Private),
                ObjectClass::PUBLIC_KEY => Some(ObjectType::Public),
                ObjectClass::SECRET_KEY => Some(ObjectType::SecretKey),
                ObjectClass::DATA => Some(ObjectType::Data),
                _ => None,
            };
            let name = match k {
                Some(k) => format!("{c} ({k})"),
                None => format!("{c}"),
            };
            (KeyKind::Other(name), t)
        }
        (None, _) => (
            KeyKind::Other("an object of unknown class".to_owned()),
            None,
        ),
    };
    let uri = Pkcs11Uri {
        token: Some(token.to_owned()),
        object: Some(label.clone()),
        id: Some(id.clone()),
        object_type,
        ..Pkcs11Uri::default()
    };
    Ok(KeyInfo {
        uri,
        label,
        id,
        kind,
        sensitive,
        extractable,
        never_extractable,
    })
}
