//! Distinguished names as text, one spelling everywhere: RDNs most specific first (RFC 4514
//! order: `CN=dev-1, O=Contoso, C=DE`), as DPS shows them in `X509CertificateInfo`. The identity
//! area (what DPS reports), the ledger (its subject and issuer columns) and the emulator (what it
//! answers as DPS) all use it, so a name never appears in two spellings; none imports another.

use x509_parser::x509::X509Name;

/// A name as DPS shows it: RDNs most specific first, `, ` between them, ` + ` inside a
/// multi-valued RDN, .NET abbreviations, `OID.1.2.3=` for types without one.
pub fn rfc4514(name: &X509Name<'_>) -> String {
    let rdns: Vec<String> = name
        .iter()
        .map(|rdn| {
            rdn.iter()
                .map(|attr| {
                    let oid = attr.attr_type().to_id_string();
                    let key = match abbreviation(&oid) {
                        Some(abbrev) => abbrev.to_owned(),
                        None => format!("OID.{oid}"),
                    };
                    let value = match attr.as_str() {
                        Ok(text) => quote_value(text),
                        // BMPString, TeletexString and other rare types: hex of the DER, as RFC 4514 does.
                        Err(_) => format!("#{}", hex::encode_upper(attr.attr_value().data)),
                    };
                    format!("{key}={value}")
                })
                .collect::<Vec<_>>()
                .join(" + ")
        })
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(", ")
}

/// The abbreviations .NET's `X500DistinguishedName` uses.
fn abbreviation(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.4" => "SN",
        "2.5.4.5" => "SERIALNUMBER",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "S",
        "2.5.4.9" => "STREET",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.12" => "T",
        "2.5.4.42" => "G",
        "2.5.4.43" => "I",
        "1.2.840.113549.1.9.1" => "E",
        "0.9.2342.19200300.100.1.25" => "DC",
        _ => return None,
    })
}

/// .NET quotes a value holding a separator, a quote or surrounding spaces, doubling inner quotes.
fn quote_value(value: &str) -> String {
    let needs_quotes = value.is_empty()
        || value.starts_with(' ')
        || value.ends_with(' ')
        || value.chars().any(|c| {
            matches!(
                c,
                ',' | '+' | '=' | '"' | '\n' | '\r' | '<' | '>' | '#' | ';'
            )
        });
    if needs_quotes {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_with_separators_are_quoted_like_dotnet() {
        assert_eq!(quote_value("Azure IoT"), "Azure IoT");
        assert_eq!(quote_value("a, b"), "\"a, b\"");
        assert_eq!(quote_value("say \"hi\", ok"), "\"say \"\"hi\"\", ok\"");
    }
}
