//! The service API's semantics and the tolerances of REFERENCE.md §4 and §10, over raw HTTPS.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use dps_station::emulator::EmulatorConfig;
use serde_json::{Value, json};

use crate::common::{V, device_cert, loopback, none_enrollment, now, start};

#[test]
fn create_update_with_etags_delete_and_not_found_codes() {
    let dps = loopback();
    let created = dps.put("/enrollments/dev-1", &none_enrollment("dev-1"));
    assert_eq!(created.status, 200, "{}", created.body);
    let etag = created.body["etag"].as_str().unwrap().to_owned();
    for f in ["createdDateTimeUtc", "lastUpdatedDateTimeUtc"] {
        assert!(created.body[f].is_string(), "{f} set by the service");
    }
    assert_eq!(created.body["provisioningStatus"], "enabled");
    assert_eq!(created.body["capabilities"]["iotEdge"], false);
    assert_eq!(
        created.body["reprovisionPolicy"]["updateHubAssignment"],
        true
    );
    assert_eq!(created.body["allocationPolicy"], "hashed");

    // PUT over an existing id without If-Match: 409, with the error body and header.
    let again = dps.put("/enrollments/dev-1", &none_enrollment("dev-1"));
    assert_eq!(again.status, 409);
    assert_eq!(again.error_code(), 409201);
    assert_eq!(again.header("x-ms-error-code"), Some("409201"));
    for f in ["trackingId", "message", "timestampUtc"] {
        assert!(again.body[f].is_string(), "{f} in {}", again.body);
    }

    let path = format!("/enrollments/dev-1?{V}");
    let mut update = none_enrollment("dev-1");
    update["deviceId"] = json!("device-one");
    let wrong = dps.call(
        "PUT",
        &path,
        Some(&update),
        &[("if-match", "\"bm90LXRoZS1ldGFn\"")],
    );
    assert_eq!(wrong.status, 412);
    assert_eq!(
        wrong.header("x-ms-error-code").map(|c| &c[..3]),
        Some("412")
    );

    // Quoted (C#), verbatim (Node, Python) and * all match.
    let quoted = dps.call(
        "PUT",
        &path,
        Some(&update),
        &[("if-match", &format!("\"{etag}\""))],
    );
    assert_eq!(quoted.status, 200, "{}", quoted.body);
    assert_eq!(quoted.body["deviceId"], "device-one");
    assert_eq!(
        quoted.body["createdDateTimeUtc"],
        created.body["createdDateTimeUtc"]
    );
    let etag2 = quoted.body["etag"].as_str().unwrap().to_owned();
    assert_ne!(etag2, etag, "an update changes the etag");
    let stale = dps.call("PUT", &path, Some(&update), &[("if-match", &etag)]);
    assert_eq!(stale.status, 412, "the old etag no longer matches");
    let verbatim = dps.call("PUT", &path, Some(&update), &[("if-match", &etag2)]);
    assert_eq!(verbatim.status, 200);
    let star = dps.call("PUT", &path, Some(&update), &[("if-match", "*")]);
    assert_eq!(star.status, 200);
    let etag3 = star.body["etag"].as_str().unwrap().to_owned();

    assert_eq!(
        dps.call("DELETE", &path, None, &[("if-match", &etag)])
            .status,
        412
    );
    let deleted = dps.call("DELETE", &path, None, &[("if-match", &etag3)]);
    assert_eq!(deleted.status, 204);
    assert_eq!(deleted.body, Value::Null, "204 has no body");
    let gone = dps.get("/enrollments/dev-1");
    assert_eq!((gone.status, gone.error_code()), (404, 404201));
    assert_eq!(dps.call("DELETE", &path, None, &[]).status, 404);
    let group = dps.get("/enrollmentGroups/no-such-group");
    assert_eq!((group.status, group.error_code()), (404, 404204));
    assert_eq!(group.header("x-ms-error-code"), Some("404204"));
}

#[test]
fn paths_and_ids_are_case_insensitive_and_bulk_takes_a_trailing_slash() {
    let dps = loopback();
    assert_eq!(
        dps.put("/enrollments/Dev-A", &none_enrollment("Dev-A"))
            .status,
        200
    );
    assert_eq!(dps.get("/ENROLLMENTS/dev-a").status, 200);
    assert_eq!(
        dps.put("/enrollments/DEV-A", &none_enrollment("DEV-A"))
            .status,
        409,
        "same id in another case"
    );
    let group = json!({ "enrollmentGroupId": "grp", "attestation": { "type": "symmetricKey" } });
    assert_eq!(dps.put("/enrollmentGroups/grp", &group).status, 200);
    let att = dps.call(
        "POST",
        &format!("/enrollmentgroups/grp/attestationmechanism?{V}"),
        None,
        &[],
    );
    assert_eq!(att.status, 200, "Node's lower-case path");
    assert_eq!(att.body["type"], "symmetricKey");

    let bulk = json!({ "mode": "create", "enrollments": [none_enrollment("b-1"), none_enrollment("b-2")] });
    let r = dps.call("POST", &format!("/enrollments/?{V}"), Some(&bulk), &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["isSuccessful"], true);
    assert_eq!(dps.get("/enrollments/b-2").status, 200);
    // Percent-encoded ids in the path.
    assert_eq!(
        dps.put("/enrollments/dev%3A1", &none_enrollment("dev:1"))
            .status,
        200
    );
    assert_eq!(
        dps.get("/enrollments/dev:1").body["registrationId"],
        "dev:1"
    );
}

#[test]
fn registration_ids_follow_dps_rules() {
    let dps = loopback();
    for bad in ["dev%201", "dev.", "dev_", "d%C3%A9v"] {
        let r = dps.put(
            &format!("/enrollments/{bad}"),
            &json!({ "attestation": { "type": "none" } }),
        );
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
    }
    let long = "a".repeat(129);
    assert_eq!(
        dps.put(&format!("/enrollments/{long}"), &none_enrollment(&long))
            .status,
        400
    );
    let mismatch = dps.put("/enrollments/dev-1", &none_enrollment("dev-2"));
    assert_eq!(mismatch.status, 400);
    assert!(mismatch.body["message"].as_str().unwrap().contains("dev-2"));
    let no_attestation = dps.put("/enrollments/dev-3", &json!({ "registrationId": "dev-3" }));
    assert_eq!(no_attestation.status, 400);
    assert_eq!(
        dps.call("PUT", &format!("/enrollments/dev-4?{V}"), None, &[])
            .status,
        400
    );
    let not_json = dps
        .client
        .put(format!("{}/enrollments/dev-4?{V}", dps.emu.service_url()))
        .header("authorization", dps.token())
        .body("{oops")
        .send()
        .unwrap();
    assert_eq!(not_json.status().as_u16(), 400);
}

#[test]
fn symmetric_keys_are_generated_hidden_and_shown_by_attestationmechanism() {
    let dps = loopback();
    let r = dps.put(
        "/enrollments/sk-1",
        &json!({ "registrationId": "sk-1", "attestation": { "type": "symmetricKey" } }),
    );
    assert_eq!(r.status, 200);
    assert!(
        r.body["attestation"]["symmetricKey"]
            .get("primaryKey")
            .is_none(),
        "PUT answer hides keys"
    );
    let got = dps.get("/enrollments/sk-1");
    assert!(
        got.body["attestation"]["symmetricKey"]
            .get("primaryKey")
            .is_none(),
        "GET hides keys"
    );
    let att = dps.call(
        "POST",
        &format!("/enrollments/sk-1/attestationmechanism?{V}"),
        None,
        &[],
    );
    for slot in ["primaryKey", "secondaryKey"] {
        let key = att.body["symmetricKey"][slot].as_str().unwrap();
        assert_eq!(STANDARD.decode(key).unwrap().len(), 64, "{slot}: 64 bytes");
    }
    assert_ne!(
        att.body["symmetricKey"]["primaryKey"],
        att.body["symmetricKey"]["secondaryKey"]
    );
    let given = STANDARD.encode([7u8; 32]);
    let r = dps.put("/enrollments/sk-2", &json!({ "registrationId": "sk-2", "attestation": { "type": "symmetricKey", "symmetricKey": { "primaryKey": given, "secondaryKey": given } } }));
    assert_eq!(r.status, 200);
    let att = dps.call(
        "POST",
        &format!("/enrollments/sk-2/attestationmechanism?{V}"),
        None,
        &[],
    );
    assert_eq!(att.body["symmetricKey"]["primaryKey"], given.as_str());
    let short = STANDARD.encode([7u8; 15]);
    let r = dps.put("/enrollments/sk-3", &json!({ "registrationId": "sk-3", "attestation": { "type": "symmetricKey", "symmetricKey": { "primaryKey": short } } }));
    assert_eq!(r.status, 400, "keys must be 16 to 64 bytes");
}

#[test]
fn certificates_in_all_three_encodings_get_their_info_computed() {
    let dps = loopback();
    let (pem, _key, der) = device_cert("x509-dev");
    let encodings = [
        pem.clone(),
        STANDARD.encode(pem.as_bytes()),
        STANDARD.encode(&der),
    ];
    let mut infos = Vec::new();
    for (i, cert) in encodings.iter().enumerate() {
        let id = format!("x509-dev-{i}");
        let body = json!({ "registrationId": id, "attestation": { "type": "x509", "x509": { "clientCertificates": { "primary": { "certificate": cert } } } } });
        let r = dps.put(&format!("/enrollments/{id}"), &body);
        assert_eq!(r.status, 200, "{}", r.body);
        let info = r.body["attestation"]["x509"]["clientCertificates"]["primary"]["info"].clone();
        assert!(
            r.body["attestation"]["x509"]["clientCertificates"]["primary"]
                .get("certificate")
                .is_none()
        );
        infos.push(info);
    }
    assert_eq!(infos[0], infos[1]);
    assert_eq!(infos[0], infos[2]);
    let info = &infos[0];
    assert_eq!(info["subjectName"], "CN=x509-dev");
    assert_eq!(info["issuerName"], "CN=x509-dev");
    assert_eq!(info["version"], 3);
    use sha2::Digest;
    assert_eq!(
        info["sha256Thumbprint"],
        hex::encode_upper(sha2::Sha256::digest(&der))
    );
    for f in [
        "sha1Thumbprint",
        "notBeforeUtc",
        "notAfterUtc",
        "serialNumber",
    ] {
        assert!(info[f].is_string(), "{f}");
    }
    // A body read back with GET (info only) updates without losing the certificate.
    let mut back = dps.get("/enrollments/x509-dev-0").body;
    back["provisioningStatus"] = json!("disabled");
    let r = dps.call(
        "PUT",
        &format!("/enrollments/x509-dev-0?{V}"),
        Some(&back),
        &[("if-match", "*")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let garbage = json!({ "registrationId": "bad-cert", "attestation": { "type": "x509", "x509": { "clientCertificates": { "primary": { "certificate": "not a certificate" } } } } });
    assert_eq!(dps.put("/enrollments/bad-cert", &garbage).status, 400);
}

#[test]
fn queries_page_with_continuation_tokens_and_always_name_the_item_type() {
    let dps = loopback();
    for chunk in 0..3 {
        let items: Vec<Value> = (0..10)
            .map(|i| none_enrollment(&format!("q-{:02}", chunk * 10 + i)))
            .filter(|e| e["registrationId"].as_str().unwrap() < "q-25")
            .collect();
        let r = dps.call(
            "POST",
            &format!("/enrollments?{V}"),
            Some(&json!({ "mode": "create", "enrollments": items })),
            &[],
        );
        assert_eq!(r.body["isSuccessful"], true);
    }
    let query = json!({ "query": "SELECT * FROM enrollments" });
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = Vec::new();
    for _ in 0..10 {
        let mut headers = vec![("x-ms-max-item-count", "10")];
        if let Some(t) = &token {
            headers.push(("x-ms-continuation", t.as_str()));
        }
        let r = dps.call(
            "POST",
            &format!("/enrollments/query?{V}"),
            Some(&query),
            &headers,
        );
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.header("x-ms-item-type"), Some("enrollment"));
        assert_eq!(r.header("x-ms-max-item-count"), Some("10"));
        let items = r.body.as_array().unwrap();
        pages.push(items.len());
        seen.extend(
            items
                .iter()
                .map(|e| e["registrationId"].as_str().unwrap().to_owned()),
        );
        token = r.header("x-ms-continuation").map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(
        pages,
        vec![10, 10, 5],
        "no continuation header on the last page"
    );
    let mut unique = seen.clone();
    unique.dedup();
    assert_eq!(unique.len(), 25);
    let groups = dps.call(
        "POST",
        &format!("/enrollmentGroups/query?{V}"),
        Some(&json!({ "query": "SELECT * FROM enrollmentGroups" })),
        &[],
    );
    assert_eq!(groups.header("x-ms-item-type"), Some("enrollmentGroup"));
    assert_eq!(groups.body, json!([]));
    assert!(groups.header("x-ms-continuation").is_none());
    let bad = dps.call(
        "POST",
        &format!("/enrollments/query?{V}"),
        Some(&query),
        &[("x-ms-continuation", "forged")],
    );
    assert_eq!(bad.status, 400);
}

#[test]
fn bulk_reports_per_item_errors_and_refuses_more_than_ten() {
    let dps = loopback();
    let eleven: Vec<Value> = (0..11)
        .map(|i| none_enrollment(&format!("k-{i}")))
        .collect();
    let r = dps.call(
        "POST",
        &format!("/enrollments?{V}"),
        Some(&json!({ "mode": "create", "enrollments": eleven })),
        &[],
    );
    assert_eq!(r.status, 400);
    assert!(r.body["message"].as_str().unwrap().contains("10"));
    assert_eq!(
        dps.get("/enrollments/k-0").status,
        404,
        "nothing of a refused bulk call lands"
    );

    let etag = dps.put("/enrollments/k-1", &none_enrollment("k-1")).body["etag"]
        .as_str()
        .unwrap()
        .to_owned();
    let items = vec![
        none_enrollment("k-1"),
        none_enrollment("k-2"),
        json!({ "registrationId": "bad id", "attestation": { "type": "none" } }),
    ];
    let r = dps.call(
        "POST",
        &format!("/enrollments?{V}"),
        Some(&json!({ "mode": "create", "enrollments": items })),
        &[],
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body["isSuccessful"], false);
    let errors = r.body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{}", r.body);
    assert_eq!(errors[0]["registrationId"], "k-1");
    assert_eq!(errors[0]["errorCode"], 409201);
    assert!(errors[0]["errorStatus"].is_string());
    assert_eq!(errors[1]["registrationId"], "bad id");
    assert_eq!(
        dps.get("/enrollments/k-2").status,
        200,
        "the good item landed"
    );

    let mut stale = none_enrollment("k-1");
    stale["etag"] = json!("stale");
    let r = dps.call(
        "POST",
        &format!("/enrollments?{V}"),
        Some(&json!({ "mode": "updateIfMatchETag", "enrollments": [stale] })),
        &[],
    );
    assert_eq!(
        r.body["errors"][0]["errorCode"].as_u64().unwrap() / 1000,
        412
    );
    let r = dps.call(
        "POST",
        &format!("/enrollments?{V}"),
        Some(&json!({ "mode": "updateIfMatchETag", "enrollments": [none_enrollment("k-1")] })),
        &[],
    );
    assert_eq!(
        r.body["errors"][0]["errorCode"].as_u64().unwrap() / 1000,
        412,
        "an existing item without its etag is not replaced"
    );
    let mut fresh = none_enrollment("k-1");
    fresh["etag"] = json!(etag);
    let r = dps.call(
        "POST",
        &format!("/enrollments?{V}"),
        Some(&json!({ "mode": "updateIfMatchEtag", "enrollments": [fresh] })),
        &[],
    );
    assert_eq!(
        r.body["isSuccessful"], true,
        "Node's spelling of the mode is accepted"
    );
    let r = dps.call("POST", &format!("/enrollments?{V}"), Some(&json!({ "mode": "update", "enrollments": [none_enrollment("k-1"), none_enrollment("k-3")] })), &[]);
    assert_eq!(r.body["isSuccessful"], true);
    let r = dps.call("POST", &format!("/enrollments?{V}"), Some(&json!({ "mode": "delete", "enrollments": [none_enrollment("k-1"), none_enrollment("k-9")] })), &[]);
    assert_eq!(r.body["errors"][0]["registrationId"], "k-9");
    assert_eq!(r.body["errors"][0]["errorCode"], 404201);
    assert_eq!(dps.get("/enrollments/k-1").status, 404);
    let bad_mode = dps.call(
        "POST",
        &format!("/enrollments?{V}"),
        Some(&json!({ "mode": "upsert", "enrollments": [none_enrollment("k-5")] })),
        &[],
    );
    assert_eq!(bad_mode.status, 400);
    let groups = json!({ "mode": "create", "enrollmentGroups": [{ "enrollmentGroupId": "g-1", "attestation": { "type": "symmetricKey" } }] });
    let r = dps.call(
        "POST",
        &format!("/enrollmentGroups?{V}"),
        Some(&groups),
        &[],
    );
    assert_eq!(r.body["isSuccessful"], true);
    let r = dps.call(
        "POST",
        &format!("/enrollmentGroups?{V}"),
        Some(&groups),
        &[],
    );
    assert_eq!(r.body["errors"][0]["enrollmentGroupId"], "g-1");
}

#[test]
fn sas_is_checked_as_the_service_does() {
    let dps = loopback();
    let path = format!("/enrollments/x?{V}");
    let host = dps.emu.host();
    let key = dps.emu.primary_key().clone();
    let ok = |token: &str| {
        dps.call_raw("GET", &path, None, &[("authorization", token)])
            .status
    };
    assert_eq!(
        ok(&dps.token_with(&key, &host, now() + 60)),
        404,
        "valid token reaches the handler"
    );
    // The Python SDK's sr: the endpoint URL-encoded, scheme and port included.
    let python_sr = dps_station::emulator::sas::percent_encode(&dps.emu.service_url());
    assert_eq!(ok(&dps.token_with(&key, &python_sr, now() + 60)), 404);
    // The Node SDK's sr: the connection string's host name, raw.
    assert_eq!(
        ok(&dps.token_with(&key, dps.emu.host_name(), now() + 60)),
        404
    );
    assert_eq!(
        ok(&dps.token_with(dps.emu.secondary_key(), &host, now() + 60)),
        404,
        "secondary key"
    );
    assert_eq!(
        ok(&dps.token_with(&key, &host, now() - 200)),
        404,
        "within 5 minutes of skew"
    );
    let expired = dps.call_raw(
        "GET",
        &path,
        None,
        &[("authorization", &dps.token_with(&key, &host, now() - 400))],
    );
    assert_eq!((expired.status, expired.error_code() / 1000), (401, 401));
    assert!(
        expired.body["message"]
            .as_str()
            .unwrap()
            .contains("expired")
    );
    let wrong_key = dps_station::secret::SecretString::new(STANDARD.encode([1u8; 32]));
    assert_eq!(ok(&dps.token_with(&wrong_key, &host, now() + 60)), 401);
    assert_eq!(
        ok(&dps.token_with(&key, "other.azure-devices-provisioning.net", now() + 60)),
        401,
        "sr of another instance"
    );
    // Fields in another order.
    let t = dps.token_with(&key, &host, now() + 60);
    let fields: Vec<&str> = t
        .trim_start_matches("SharedAccessSignature ")
        .split('&')
        .collect();
    let reordered = format!(
        "SharedAccessSignature {}&{}&{}&{}",
        fields[3], fields[2], fields[1], fields[0]
    );
    assert_eq!(ok(&reordered), 404);
    assert_eq!(ok("Bearer eyJ0eXAi"), 401);
    let none = dps.call_raw("GET", &path, None, &[]);
    assert_eq!(none.status, 401);
    assert!(none.header("x-ms-error-code").is_some());
    let wrong_policy = t.replace("skn=provisioningserviceowner", "skn=registration");
    assert_eq!(ok(&wrong_policy), 401);
}

#[test]
fn api_version_is_required() {
    let dps = loopback();
    let missing = dps.call("GET", "/enrollments/x", None, &[]);
    assert_eq!(missing.status, 400);
    assert!(
        missing.body["message"]
            .as_str()
            .unwrap()
            .contains("api-version")
    );
    assert_eq!(
        dps.call("GET", "/enrollments/x?api-version=2030-01-01", None, &[])
            .status,
        400
    );
    assert_eq!(
        dps.call("GET", "/enrollments/x?api-version=2019-03-31", None, &[])
            .status,
        404,
        "older SDK versions are served"
    );
    assert_eq!(
        dps.call("GET", &format!("/nothing-here?{V}"), None, &[])
            .status,
        404
    );
    assert_eq!(
        dps.call("PATCH", &format!("/enrollments/x?{V}"), None, &[])
            .status,
        405
    );
}

#[test]
fn plain_http_listener_serves_the_same_api() {
    let dps = start(EmulatorConfig::loopback());
    let url = dps.emu.http_url().unwrap();
    let r = dps
        .client
        .put(format!("{url}/enrollments/plain-1?{V}"))
        .header("authorization", dps.token())
        .header("content-type", "application/json")
        .body(none_enrollment("plain-1").to_string())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        dps.get("/enrollments/plain-1").status,
        200,
        "one store behind both listeners"
    );
}

#[test]
fn malformed_requests_get_an_answer_never_a_dropped_connection() {
    let dps = loopback();
    let scope = dps.emu.id_scope().to_owned();
    let paths = [
        format!("/{scope}/registrations"),
        format!("/{scope}/registrations/dev-1"),
        format!("/{scope}/registrations/dev-1/operations"),
        format!("/{scope}/registrations/%ff%fe/register"),
        format!("/{scope}/registrations/dev-1/register/extra"),
        "/enrollments/%".to_owned(),
        "/enrollments/%zz/attestationmechanism/x/y".to_owned(),
        "/registrations".to_owned(),
        "/registrations/a/b/c".to_owned(),
        "/enrollmentGroups//query".to_owned(),
        "/".to_owned(),
    ];
    for path in &paths {
        for method in ["GET", "PUT", "POST", "DELETE"] {
            for version in ["?api-version=2021-10-01", "?api-version=2021-06-01", ""] {
                let r = dps.call(
                    method,
                    &format!("{path}{version}"),
                    Some(&json!({ "x": [1, 2] })),
                    &[],
                );
                assert!(
                    (400..500).contains(&r.status),
                    "{method} {path}{version}: {}",
                    r.status
                );
                assert!(r.body["errorCode"].is_u64(), "{method} {path}: {}", r.body);
            }
        }
    }
    for auth in [
        "SharedAccessSignature",
        "SharedAccessSignature sr",
        "SharedAccessSignature sr=&sig=&se=&skn=",
        "SharedAccessSignature sr=a&sig=%&se=99999999999999999999",
    ] {
        assert_eq!(
            dps.call_raw(
                "GET",
                &format!("/enrollments/x?{V}"),
                None,
                &[("authorization", auth)]
            )
            .status,
            401,
            "{auth}"
        );
    }
    let big = json!({ "registrationId": "big", "attestation": { "type": "none" }, "initialTwin": { "tags": { "blob": "x".repeat(100 * 1024) } } });
    let r = dps.put("/enrollments/big", &big);
    assert_eq!(r.status, 413, "over the 96 KB message size");
    let not_utf8 = dps
        .client
        .post(format!("{}/enrollments/query?{V}", dps.emu.service_url()))
        .header("authorization", dps.token())
        .body(vec![0xff, 0xfe, 0x00])
        .send()
        .unwrap();
    assert_eq!(not_utf8.status().as_u16(), 400);
    let expired_device = dps.call_raw("PUT", &format!("/{scope}/registrations/dev-1/register?api-version=2021-06-01"), Some(&json!({})), &[("authorization", &format!("SharedAccessSignature sr={scope}%2Fregistrations%2Fdev-1&sig=AAAA&se=1&skn=registration"))]);
    assert_eq!(
        expired_device.status, 404,
        "no enrollment for dev-1: {}",
        expired_device.body
    );
    assert_eq!(dps.get("/enrollments/x").status, 404, "still serving");
    let _ = now();
}
