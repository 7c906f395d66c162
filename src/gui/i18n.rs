//! Every string an operator or engineer sees, from the message files `assets/i18n/<lang>.toml`
//! (flat `key = "text"` tables with `{name}` placeholders; compiled in, so a station never runs
//! with a missing file). A key missing in a language falls back to English, then to the key.

use std::collections::HashMap;

/// Languages the desk speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    /// English.
    En,
    /// Korean (the first customers' lines).
    Ko,
}

impl Language {
    /// From a code (`ko`, `ko_KR.UTF-8`, `en`); anything else is English.
    pub fn from_code(code: &str) -> Self {
        if code.to_ascii_lowercase().starts_with("ko") {
            Language::Ko
        } else {
            Language::En
        }
    }

    /// From station.toml's `[gui] language`, else the OS locale (`LC_ALL`, `LC_MESSAGES`, `LANG`).
    pub fn choose(configured: Option<&str>) -> Self {
        if let Some(c) = configured {
            return Self::from_code(c);
        }
        ["LC_ALL", "LC_MESSAGES", "LANG"]
            .iter()
            .filter_map(|v| std::env::var(v).ok())
            .find(|v| !v.is_empty())
            .map(|v| Self::from_code(&v))
            .unwrap_or(Language::En)
    }

    /// The code shown on the language switch.
    pub fn code(self) -> &'static str {
        match self {
            Language::En => "EN",
            Language::Ko => "한국어",
        }
    }
}

/// The English message file.
pub const EN: &str = include_str!("../../assets/i18n/en.toml");
/// The Korean message file.
pub const KO: &str = include_str!("../../assets/i18n/ko.toml");

/// Messages of one language.
#[derive(Debug, Clone)]
pub struct Messages {
    language: Language,
    table: HashMap<String, String>,
    fallback: HashMap<String, String>,
}

fn parse(text: &str) -> HashMap<String, String> {
    // The files are ours and compiled in; a broken one shows keys instead of text rather than
    // stopping the station, and the test `every_key_is_in_every_language` catches it first.
    toml::from_str::<toml::Table>(text)
        .map(|t| {
            t.into_iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k, s.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

impl Messages {
    /// The messages of `language`.
    pub fn new(language: Language) -> Self {
        let own = match language {
            Language::En => EN,
            Language::Ko => KO,
        };
        Self {
            language,
            table: parse(own),
            fallback: parse(EN),
        }
    }

    /// Which language.
    pub fn language(&self) -> Language {
        self.language
    }

    /// The text of `key`.
    pub fn t<'a>(&'a self, key: &'a str) -> &'a str {
        self.table
            .get(key)
            .or_else(|| self.fallback.get(key))
            .map(String::as_str)
            .unwrap_or(key)
    }

    /// The text of `key` with `{name}` placeholders filled.
    pub fn f(&self, key: &str, args: &[(&str, &str)]) -> String {
        let mut s = self.t(key).to_string();
        for (name, value) in args {
            s = s.replace(&format!("{{{name}}}"), value);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_in_every_language() {
        let en = parse(EN);
        let ko = parse(KO);
        assert!(en.len() > 50, "the English file did not parse");
        let missing: Vec<_> = en.keys().filter(|k| !ko.contains_key(*k)).collect();
        assert!(missing.is_empty(), "missing in ko.toml: {missing:?}");
        let extra: Vec<_> = ko.keys().filter(|k| !en.contains_key(*k)).collect();
        assert!(extra.is_empty(), "only in ko.toml: {extra:?}");
        for (k, v) in &en {
            let places = |s: &str| s.matches('{').count();
            assert_eq!(places(v), places(&ko[k]), "placeholders differ for {k}");
        }
    }
}
