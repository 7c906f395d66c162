//! RFC 7512 URIs: every ordering of attributes parses to the same key name, percent-encoding
//! round-trips, and what is not a URI is refused with a message.

use dps_station::keystore::{ObjectType, Pkcs11Uri};

fn permutations(items: &[&str]) -> Vec<Vec<String>> {
    if items.len() <= 1 {
        return vec![items.iter().map(|s| s.to_string()).collect()];
    }
    let mut out = Vec::new();
    for i in 0..items.len() {
        let mut rest = items.to_vec();
        let first = rest.remove(i);
        for mut p in permutations(&rest) {
            p.insert(0, first.to_string());
            out.push(p);
        }
    }
    out
}

#[test]
fn every_ordering_of_attributes_names_the_same_key_and_prints_canonically() {
    let attrs = [
        "token=Station%20CA",
        "object=root%3Bca",
        "id=%01%ff",
        "type=private",
        "serial=0123abcd",
    ];
    let expected = Pkcs11Uri {
        token: Some("Station CA".into()),
        object: Some("root;ca".into()),
        id: Some(vec![0x01, 0xff]),
        object_type: Some(ObjectType::Private),
        serial: Some("0123abcd".into()),
        ..Pkcs11Uri::default()
    };
    let all = permutations(&attrs);
    assert_eq!(all.len(), 120);
    for order in all {
        let text = format!(
            "pkcs11:{}?module-path=/usr/lib/softhsm/libsofthsm2.so",
            order.join(";")
        );
        let uri: Pkcs11Uri = text.parse().unwrap();
        assert_eq!(
            uri,
            Pkcs11Uri {
                module_path: Some("/usr/lib/softhsm/libsofthsm2.so".into()),
                ..expected.clone()
            },
            "{text}"
        );
        let printed = uri.to_string();
        assert_eq!(
            printed,
            "pkcs11:token=Station%20CA;serial=0123abcd;object=root%3Bca;id=%01%FF;type=private?module-path=/usr/lib/softhsm/libsofthsm2.so"
        );
        assert_eq!(printed.parse::<Pkcs11Uri>().unwrap(), uri);
    }
}

#[test]
fn awkward_values_round_trip() {
    for value in [
        "a b",
        "semi;colon",
        "q?mark",
        "pct%25",
        "slash/back\\",
        "ümlaut",
        "amp&eq=",
        "",
        "x",
    ] {
        let uri = Pkcs11Uri {
            token: Some(value.into()),
            object: Some(format!("{value}-key")),
            id: Some(value.as_bytes().to_vec()),
            object_type: Some(ObjectType::SecretKey),
            module_path: Some(format!("/opt/{value}/lib.so")),
            ..Pkcs11Uri::default()
        };
        let text = uri.to_string();
        assert_eq!(text.parse::<Pkcs11Uri>().unwrap(), uri, "{text}");
    }
    for t in [
        ObjectType::Private,
        ObjectType::Public,
        ObjectType::SecretKey,
        ObjectType::Cert,
        ObjectType::Data,
    ] {
        let uri = Pkcs11Uri {
            object_type: Some(t),
            ..Pkcs11Uri::default()
        };
        assert_eq!(uri.to_string().parse::<Pkcs11Uri>().unwrap(), uri);
    }
}

#[test]
fn bad_uris_are_refused_with_a_reason() {
    for (text, needle) in [
        ("token=x", "pkcs11:"),
        ("pkcs11:token", "no `=value`"),
        ("pkcs11:token=a;token=b", "twice"),
        ("pkcs11:id=%zz", "percent-encoding"),
        ("pkcs11:id=%0", "percent-encoding"),
        ("pkcs11:type=secret", "type=secret"),
        ("pkcs11:colour=red", "colour"),
        ("pkcs11:token=a?pin-value=1234", "pin-value"),
        ("pkcs11:token=%ff", "percent-encoding"),
    ] {
        let err = text.parse::<Pkcs11Uri>().unwrap_err().to_string();
        assert!(err.contains(needle), "{text}: {err}");
        assert!(!err.contains("1234"), "{err}");
    }
}
