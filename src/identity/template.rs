//! Registration-ID templates: how a batch turns what a device reports (serial number, model,
//! hardware ID) into the ID it is enrolled under, e.g. `{product}-{serial:06}`.
//!
//! A template is checked once, when the batch is set up, so that a typo fails before the first
//! device is plugged in: unknown placeholders, unbalanced braces and literal characters DPS would
//! refuse are errors naming their 1-based position. The rendered ID is lowercased (the station
//! writes lowercase IDs) and checked against the DPS rules.

use std::fmt;
use std::str::FromStr;

use super::registration_id::{IdUse, RegistrationId, RegistrationIdError, is_allowed_char};

/// A value a template may insert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The batch's product name (`{product}`).
    Product,
    /// The device's serial number (`{serial}`).
    Serial,
    /// The device model the device reports (`{model}`).
    Model,
    /// The device's hardware ID, e.g. a MAC address (`{hwid}`).
    HardwareId,
    /// The registration ID the device itself suggests (`{regid}`): a TPM device's `TPM-EK`
    /// reply may carry one (often derived from the EK), and a batch opts in by naming it.
    DeviceSuggestion,
}

impl Field {
    /// The placeholder name as written in templates.
    pub fn name(self) -> &'static str {
        match self {
            Field::Product => "product",
            Field::Serial => "serial",
            Field::Model => "model",
            Field::HardwareId => "hwid",
            Field::DeviceSuggestion => "regid",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        match name {
            "product" => Some(Field::Product),
            "serial" => Some(Field::Serial),
            "model" => Some(Field::Model),
            "hwid" => Some(Field::HardwareId),
            "regid" => Some(Field::DeviceSuggestion),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Field { field: Field, zero_pad: usize },
}

/// Why a template cannot be used. Positions are 1-based character positions in the template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// Nothing to render.
    #[error("the registration-ID template is empty; use e.g. \"{{product}}-{{serial}}\"")]
    Empty,
    /// A `{` with no `}` after it.
    #[error("template \"{template}\": the '{{' at position {position} is never closed by '}}'")]
    UnclosedBrace {
        /// The template as given.
        template: String,
        /// Position of the `{`.
        position: usize,
    },
    /// A `}` with no `{` before it.
    #[error("template \"{template}\": the '}}' at position {position} has no '{{' before it")]
    UnopenedBrace {
        /// The template as given.
        template: String,
        /// Position of the `}`.
        position: usize,
    },
    /// A placeholder name the station does not know.
    #[error(
        "template \"{template}\": unknown placeholder \"{{{name}}}\" at position {position}; known are {{product}}, {{serial}}, {{model}}, {{hwid}} and {{regid}}"
    )]
    UnknownPlaceholder {
        /// The template as given.
        template: String,
        /// The unknown name.
        name: String,
        /// Position of its `{`.
        position: usize,
    },
    /// A format after `:` other than a zero-padded width such as `06`.
    #[error(
        "template \"{template}\": format \"{spec}\" at position {position} is not supported; only a zero-padded width such as {{serial:06}} is"
    )]
    BadFormat {
        /// The template as given.
        template: String,
        /// The format text after `:`.
        spec: String,
        /// Position of the format's first character.
        position: usize,
    },
    /// A literal character DPS would refuse in every rendered ID.
    #[error(
        "template \"{template}\": the character {ch:?} at position {position} is not allowed in a registration ID; allowed are letters a-z, digits 0-9, '-', '.', '_' and ':'"
    )]
    InvalidCharacter {
        /// The template as given.
        template: String,
        /// The offending character.
        ch: char,
        /// Its position.
        position: usize,
    },
}

/// Why a valid template could not produce an ID for one device.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// The template uses a value the device or batch did not supply.
    #[error(
        "template \"{template}\" needs {{{}}} but no {} was given for this device", field.name(), field.name()
    )]
    MissingValue {
        /// The template as given.
        template: String,
        /// The missing field.
        field: Field,
    },
    /// The rendered ID breaks a DPS rule (a bad character in a serial number, too long).
    #[error("template \"{template}\" rendered an invalid registration ID: {source}")]
    InvalidId {
        /// The template as given.
        template: String,
        /// What is wrong with the rendered ID; positions are in the rendered ID.
        #[source]
        source: RegistrationIdError,
    },
}

/// The values a template can insert for one device; `None` where the device has none.
#[derive(Debug, Clone, Copy, Default)]
pub struct TemplateValues<'a> {
    /// The batch's product name.
    pub product: Option<&'a str>,
    /// The device's serial number.
    pub serial: Option<&'a str>,
    /// The device's model.
    pub model: Option<&'a str>,
    /// The device's hardware ID.
    pub hardware_id: Option<&'a str>,
    /// The registration ID the device suggests (TPM devices).
    pub device_suggestion: Option<&'a str>,
}

impl<'a> TemplateValues<'a> {
    fn get(&self, field: Field) -> Option<&'a str> {
        match field {
            Field::Product => self.product,
            Field::Serial => self.serial,
            Field::Model => self.model,
            Field::HardwareId => self.hardware_id,
            Field::DeviceSuggestion => self.device_suggestion,
        }
    }
}

/// A checked registration-ID template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationIdTemplate {
    source: String,
    parts: Vec<Part>,
}

impl RegistrationIdTemplate {
    /// Parses and checks a template such as `{product}-{serial:06}`.
    pub fn parse(template: &str) -> Result<Self, TemplateError> {
        if template.is_empty() {
            return Err(TemplateError::Empty);
        }
        let chars: Vec<char> = template.chars().collect();
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut i = 0;
        while i < chars.len() {
            let ch = chars[i];
            match ch {
                '{' => {
                    let open = i;
                    let Some(close) = chars[open + 1..].iter().position(|&c| c == '}') else {
                        return Err(TemplateError::UnclosedBrace {
                            template: template.to_owned(),
                            position: open + 1,
                        });
                    };
                    let close = open + 1 + close;
                    let inner = &chars[open + 1..close];
                    if inner.contains(&'{') {
                        // `{a{b}`: the first brace is the one left open.
                        return Err(TemplateError::UnclosedBrace {
                            template: template.to_owned(),
                            position: open + 1,
                        });
                    }
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(Self::parse_placeholder(template, inner, open)?);
                    i = close + 1;
                }
                '}' => {
                    return Err(TemplateError::UnopenedBrace {
                        template: template.to_owned(),
                        position: i + 1,
                    });
                }
                _ => {
                    if !is_allowed_char(ch) {
                        return Err(TemplateError::InvalidCharacter {
                            template: template.to_owned(),
                            ch,
                            position: i + 1,
                        });
                    }
                    literal.push(ch.to_ascii_lowercase());
                    i += 1;
                }
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Self {
            source: template.to_owned(),
            parts,
        })
    }

    /// `inner` is the text between the braces; `open` the 0-based index of the `{`.
    fn parse_placeholder(
        template: &str,
        inner: &[char],
        open: usize,
    ) -> Result<Part, TemplateError> {
        let (name, spec) = match inner.iter().position(|&c| c == ':') {
            Some(colon) => (
                &inner[..colon],
                Some((&inner[colon + 1..], open + 1 + colon + 1)),
            ),
            None => (inner, None),
        };
        let name: String = name.iter().collect();
        let Some(field) = Field::from_name(&name) else {
            return Err(TemplateError::UnknownPlaceholder {
                template: template.to_owned(),
                name,
                position: open + 1,
            });
        };
        let zero_pad = match spec {
            None => 0,
            Some((spec, spec_index)) => {
                let text: String = spec.iter().collect();
                let bad = || TemplateError::BadFormat {
                    template: template.to_owned(),
                    spec: text.clone(),
                    position: spec_index + 1,
                };
                // `06`: a leading zero, then a width of at most 3 digits (IDs are at most 128 long).
                if text.len() < 2 || text.len() > 4 || !text.starts_with('0') {
                    return Err(bad());
                }
                let width: usize = text[1..].parse().map_err(|_| bad())?;
                if width == 0 || width > super::registration_id::MAX_LEN {
                    return Err(bad());
                }
                width
            }
        };
        Ok(Part::Field { field, zero_pad })
    }

    /// The template as the user wrote it.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The fields this template needs, so a batch can check its devices report them.
    pub fn fields(&self) -> Vec<Field> {
        self.parts
            .iter()
            .filter_map(|part| match part {
                Part::Field { field, .. } => Some(*field),
                Part::Literal(_) => None,
            })
            .collect()
    }

    /// Renders the ID for one device, lowercased and checked for the given use.
    pub fn render(
        &self,
        values: &TemplateValues<'_>,
        usage: IdUse,
    ) -> Result<RegistrationId, RenderError> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Field { field, zero_pad } => {
                    let Some(value) = values.get(*field) else {
                        return Err(RenderError::MissingValue {
                            template: self.source.clone(),
                            field: *field,
                        });
                    };
                    let len = value.chars().count();
                    for _ in len..*zero_pad {
                        out.push('0');
                    }
                    out.push_str(value);
                }
            }
        }
        RegistrationId::parse_for(&out, usage).map_err(|source| RenderError::InvalidId {
            template: self.source.clone(),
            source,
        })
    }
}

impl fmt::Display for RegistrationIdTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl FromStr for RegistrationIdTemplate {
    type Err = TemplateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values<'a>(serial: &'a str) -> TemplateValues<'a> {
        TemplateValues {
            product: Some("Thermo"),
            serial: Some(serial),
            model: Some("t100"),
            hardware_id: None,
            device_suggestion: None,
        }
    }

    #[test]
    fn the_device_suggestion_is_used_only_where_the_template_names_it() {
        let t = RegistrationIdTemplate::parse("{product}-{regid}").unwrap();
        assert_eq!(t.fields(), vec![Field::Product, Field::DeviceSuggestion]);
        let with = TemplateValues {
            device_suggestion: Some("AB12"),
            ..values("1")
        };
        assert_eq!(t.render(&with, IdUse::Any).unwrap().as_str(), "thermo-ab12");
        let err = t.render(&values("1"), IdUse::Any).unwrap_err();
        assert!(err.to_string().contains("{regid}"), "{err}");
    }

    #[test]
    fn renders_padded_and_lowercased() {
        let t = RegistrationIdTemplate::parse("{product}-{serial:06}").unwrap();
        let id = t.render(&values("42"), IdUse::X509CommonName).unwrap();
        assert_eq!(id.as_str(), "thermo-000042");
        // Padding never truncates.
        let id = t.render(&values("12345678"), IdUse::Any).unwrap();
        assert_eq!(id.as_str(), "thermo-12345678");
        let t = RegistrationIdTemplate::parse("Line1.{model}_{serial}").unwrap();
        assert_eq!(
            t.render(&values("A7"), IdUse::Any).unwrap().as_str(),
            "line1.t100_a7"
        );
    }

    #[test]
    fn errors_name_the_position() {
        let err = RegistrationIdTemplate::parse("{product}-{serail}").unwrap_err();
        assert!(
            matches!(err, TemplateError::UnknownPlaceholder { position: 11, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("{serail}"), "{err}");
        let err = RegistrationIdTemplate::parse("{product-{serial}").unwrap_err();
        assert!(
            matches!(err, TemplateError::UnclosedBrace { position: 1, .. }),
            "{err}"
        );
        let err = RegistrationIdTemplate::parse("{product}-{serial").unwrap_err();
        assert!(
            matches!(err, TemplateError::UnclosedBrace { position: 11, .. }),
            "{err}"
        );
        let err = RegistrationIdTemplate::parse("product}-{serial}").unwrap_err();
        assert!(
            matches!(err, TemplateError::UnopenedBrace { position: 8, .. }),
            "{err}"
        );
        let err = RegistrationIdTemplate::parse("{serial:6}").unwrap_err();
        assert!(
            matches!(err, TemplateError::BadFormat { position: 9, .. }),
            "{err}"
        );
        let err = RegistrationIdTemplate::parse("{product} {serial}").unwrap_err();
        assert!(
            matches!(
                err,
                TemplateError::InvalidCharacter {
                    ch: ' ',
                    position: 10,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn render_errors_name_the_field_or_the_rule() {
        let t = RegistrationIdTemplate::parse("{product}-{hwid}").unwrap();
        let err = t.render(&values("1"), IdUse::Any).unwrap_err();
        assert!(err.to_string().contains("{hwid}"), "{err}");
        let t = RegistrationIdTemplate::parse("{product}-{serial}").unwrap();
        let err = t.render(&values("12/34"), IdUse::Any).unwrap_err();
        assert!(err.to_string().contains("'/' at position 10"), "{err}");
        let long = "9".repeat(60);
        assert!(t.render(&values(&long), IdUse::X509CommonName).is_err());
        assert!(t.render(&values(&long), IdUse::Any).is_ok());
    }
}
