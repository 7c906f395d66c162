//! Registration-ID rules, templates and symmetric keys as other parts of the station use them.

use dps_station::identity::registration_id::{self, IdUse, RegistrationId, RegistrationIdError};
use dps_station::identity::symmetric::{self, KeyFingerprint, KeyLength};
use dps_station::identity::template::{RegistrationIdTemplate, TemplateError, TemplateValues};
use dps_station::secret::SecretString;

#[test]
fn dps_rules_with_positions() {
    // Allowed: letters, digits, - . _ : ; last character a letter, digit or '-'.
    for ok in ["dev-1", "a", "prefix_1.2:3-", "0", &"z".repeat(128)] {
        registration_id::validate(ok, IdUse::Any).unwrap();
    }
    let cases: [(&str, char, usize); 4] = [
        ("dev 1", ' ', 4),
        ("dev/1", '/', 4),
        ("dév", 'é', 2),
        ("{serial}", '{', 1),
    ];
    for (id, ch, position) in cases {
        let err = registration_id::validate(id, IdUse::Any).unwrap_err();
        assert_eq!(
            err,
            RegistrationIdError::InvalidCharacter {
                id: id.into(),
                ch,
                position
            },
            "{id}"
        );
        assert!(
            err.to_string().contains(&format!("at position {position}")),
            "{err}"
        );
    }
    for (id, ch) in [("dev.", '.'), ("dev_", '_'), ("dev:", ':')] {
        let err = registration_id::validate(id, IdUse::Any).unwrap_err();
        assert_eq!(
            err,
            RegistrationIdError::InvalidLastCharacter {
                id: id.into(),
                ch,
                position: 4
            }
        );
    }
    let err = registration_id::validate(&"a".repeat(65), IdUse::X509CommonName).unwrap_err();
    assert!(
        matches!(
            err,
            RegistrationIdError::TooLong {
                len: 65,
                max: 64,
                ..
            }
        ),
        "{err}"
    );
    let err = registration_id::validate(&"a".repeat(129), IdUse::Any).unwrap_err();
    assert!(
        matches!(
            err,
            RegistrationIdError::TooLong {
                len: 129,
                max: 128,
                ..
            }
        ),
        "{err}"
    );
    // validate keeps the case (DPS is case-insensitive); the station's type lowercases.
    registration_id::validate("Dev-1", IdUse::Any).unwrap();
    assert_eq!(RegistrationId::parse("Dev-1").unwrap().as_str(), "dev-1");
    let json = serde_json::to_string(&RegistrationId::parse("Dev-1").unwrap()).unwrap();
    assert_eq!(json, "\"dev-1\"");
    assert!(serde_json::from_str::<RegistrationId>("\"bad id\"").is_err());
}

#[test]
fn templates_render_and_fail_by_position() {
    let template: RegistrationIdTemplate = "{product}-{serial:06}".parse().unwrap();
    let values = TemplateValues {
        product: Some("Contoso-Thermo"),
        serial: Some("731"),
        model: None,
        hardware_id: Some("A1:B2:C3:D4:E5:F6"),
        device_suggestion: None,
    };
    let id = template.render(&values, IdUse::X509CommonName).unwrap();
    assert_eq!(id.as_str(), "contoso-thermo-000731");
    let hw: RegistrationIdTemplate = "sn-{serial}-mac-{hwid}".parse().unwrap();
    assert_eq!(
        hw.render(&values, IdUse::Any).unwrap().as_str(),
        "sn-731-mac-a1:b2:c3:d4:e5:f6"
    );

    let err = RegistrationIdTemplate::parse("{product}-{batch}").unwrap_err();
    assert_eq!(
        err,
        TemplateError::UnknownPlaceholder {
            template: "{product}-{batch}".into(),
            name: "batch".into(),
            position: 11
        }
    );
    let err = RegistrationIdTemplate::parse("{product}}").unwrap_err();
    assert!(
        matches!(err, TemplateError::UnopenedBrace { position: 10, .. }),
        "{err}"
    );
    let err = RegistrationIdTemplate::parse("x-{serial:06").unwrap_err();
    assert!(
        matches!(err, TemplateError::UnclosedBrace { position: 3, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("position 3"), "{err}");
    let err = RegistrationIdTemplate::parse("{serial:x6}").unwrap_err();
    assert!(
        matches!(err, TemplateError::BadFormat { position: 9, .. }),
        "{err}"
    );
    assert!(RegistrationIdTemplate::parse("").is_err());

    // A serial with a character DPS refuses fails at render time, naming it.
    let bad = TemplateValues {
        serial: Some("12 34"),
        ..values
    };
    let err = template.render(&bad, IdUse::Any).unwrap_err();
    assert!(err.to_string().contains("' ' at position 19"), "{err}");
    // The model was not reported.
    let err = "{model}-{serial}"
        .parse::<RegistrationIdTemplate>()
        .unwrap()
        .render(&values, IdUse::Any)
        .unwrap_err();
    assert!(err.to_string().contains("{model}"), "{err}");
}

#[test]
fn derived_key_vector_and_fingerprints() {
    // REFERENCE.md §7 (concepts-symmetric-key-attestation.md).
    let group = SecretString::new(
        "8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw==",
    );
    let key = symmetric::derive_device_key(&group, "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6").unwrap();
    assert_eq!(key.expose(), "Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc=");
    assert!(!format!("{key:?}").contains("Jsm0"));

    // The fingerprint is SHA-256 of the key bytes (checked against openssl), labelled.
    let fp = KeyFingerprint::of_base64_key(&key).unwrap();
    let dir = crate::support::temp_dir();
    let raw = base64_decode(key.expose());
    crate::support::write(dir.path(), "k.bin", &raw);
    let out = crate::support::openssl_ok(dir.path(), &["dgst", "-sha256", "-r", "k.bin"]);
    assert_eq!(
        fp.as_str(),
        format!("sha256:{}", out.split_whitespace().next().unwrap())
    );
    assert!(!fp.as_str().contains(key.expose()));

    let k64 = symmetric::generate_key(KeyLength::Bytes64);
    assert_eq!(base64_decode(k64.expose()).len(), 64);
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}
