//! Connection strings: the `=` of base64 keys survives, malformed strings get messages that say
//! what is wrong, and the key never shows in `Debug`.

use dps_station::dps::{ConnectionString, ConnectionStringError};
use dps_station::secret::SecretString;

const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

fn parse(s: &str) -> Result<ConnectionString, ConnectionStringError> {
    ConnectionString::parse(&SecretString::new(s))
}

#[test]
fn splits_each_pair_on_the_first_equals() {
    let cs = parse(&format!(
        "HostName=mydps.azure-devices-provisioning.net;SharedAccessKeyName=provisioningserviceowner;SharedAccessKey={KEY}"
    ))
    .unwrap();
    assert_eq!(cs.host_name(), "mydps.azure-devices-provisioning.net");
    assert_eq!(cs.key_name(), "provisioningserviceowner");
    assert_eq!(cs.key().expose(), KEY);
    // Key with two trailing '=' and names in another case and order, trailing ';'.
    let cs =
        parse("sharedaccesskey=cGFzc3dvcmQxMjM0NTY3OA==;HOSTNAME=h.example;SharedAccessKeyName=p;")
            .unwrap();
    assert_eq!(cs.key().expose(), "cGFzc3dvcmQxMjM0NTY3OA==");
    assert_eq!(cs.host_name(), "h.example");
}

#[test]
fn debug_never_shows_the_key() {
    let cs = parse(&format!(
        "HostName=h.example;SharedAccessKeyName=p;SharedAccessKey={KEY}"
    ))
    .unwrap();
    let debug = format!("{cs:?}");
    assert!(!debug.contains(KEY), "{debug}");
    assert!(debug.contains("h.example"));
}

#[test]
fn malformed_strings_get_clear_errors() {
    let cases: Vec<(String, ConnectionStringError, &str)> = vec![
        (
            String::new(),
            ConnectionStringError::Empty,
            "DPS_CONNECTION_STRING",
        ),
        (
            format!("HostName=h;SharedAccessKey={KEY}"),
            ConnectionStringError::MissingField("SharedAccessKeyName"),
            "SharedAccessKeyName",
        ),
        (
            format!("SharedAccessKeyName=p;SharedAccessKey={KEY}"),
            ConnectionStringError::MissingField("HostName"),
            "HostName",
        ),
        (
            "HostName=h;SharedAccessKeyName=p".into(),
            ConnectionStringError::MissingField("SharedAccessKey"),
            "SharedAccessKey",
        ),
        (
            format!("HostName=h;garbage;SharedAccessKeyName=p;SharedAccessKey={KEY}"),
            ConnectionStringError::MissingEquals { index: 2 },
            "part 2",
        ),
        (
            format!("HostName=h;HostName=i;SharedAccessKeyName=p;SharedAccessKey={KEY}"),
            ConnectionStringError::Duplicate("HostName".into()),
            "twice",
        ),
        (
            "HostName=h;SharedAccessKeyName=p;SharedAccessKey=not*base64".into(),
            ConnectionStringError::KeyNotBase64,
            "base64",
        ),
        (
            format!("HostName=https://h/x;SharedAccessKeyName=p;SharedAccessKey={KEY}"),
            ConnectionStringError::BadHostName("https://h/x".into()),
            "host name",
        ),
        (
            format!("HostName=h;DeviceId=d;SharedAccessKey={KEY}"),
            ConnectionStringError::UnknownField("DeviceId".into()),
            "device",
        ),
        (
            format!("HostName=;SharedAccessKeyName=p;SharedAccessKey={KEY}"),
            ConnectionStringError::EmptyField("HostName"),
            "empty",
        ),
    ];
    for (text, expected, words) in cases {
        let err = parse(&text).unwrap_err();
        assert_eq!(err, expected, "for {text:?}");
        let message = err.to_string();
        assert!(
            message.contains(words),
            "{message:?} should mention {words:?}"
        );
        assert!(!message.contains(KEY), "the key leaked into {message:?}");
    }
}
