//! Duplicate keys in a settings file. YAML and JSON parsers keep the last of
//! two equal keys without a word, so `retries: 3` written twice in one
//! section would silently drop the first; the gateway refuses the file
//! instead, naming the key and the line (TOML refuses them by itself).
//!
//! The file is read once more, by the format's own parser, through a
//! visitor that builds nothing and stops at the first key a map repeats.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// A key written twice in one map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Duplicate {
    /// The dotted key (`upstreams.u.retries`), as far as the parser tells.
    pub key: String,
    /// Where the parser noticed: the repeated key (JSON) or the start of
    /// the map holding it (YAML).
    pub line: Option<usize>,
}

/// The first repeated key of a YAML text, or `None`. Syntax errors are
/// left to the loader.
pub fn first_duplicate_yaml(text: &str) -> Option<Duplicate> {
    duplicate_in(serde_yaml::Deserializer::from_str(text))
}

/// The first repeated key of a JSON text, or `None`.
pub fn first_duplicate_json(text: &str) -> Option<Duplicate> {
    duplicate_in(&mut serde_json::Deserializer::from_str(text))
}

/// Reads the parser's error back: `[path: ]duplicate key 'k'[ at line N column M]`.
fn duplicate_in<'de, D: Deserializer<'de>>(de: D) -> Option<Duplicate> {
    let message = de.deserialize_any(Walk).err()?.to_string();
    let at = message.find(DUPLICATE)?;
    let path = message[..at].trim_end_matches([' ', ':']);
    let rest = &message[at + DUPLICATE.len()..];
    let key = rest.trim_start().strip_prefix('\'')?.split('\'').next()?;
    let line = rest
        .split_once(" at line ")
        .and_then(|(_, l)| l.split_whitespace().next()?.parse().ok());
    Some(Duplicate {
        key: if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        },
        line,
    })
}

const DUPLICATE: &str = "duplicate key";

/// Visits every value, keeping nothing but each map's keys.
struct Walk;

impl<'de> DeserializeSeed<'de> for Walk {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_any(Walk)
    }
}

impl<'de> Visitor<'de> for Walk {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any settings value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_some<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_any(Walk)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Walk)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key_seed(KeyText)? {
            if !seen.insert(key.clone()) {
                return Err(de::Error::custom(format_args!("{DUPLICATE} '{key}'")));
            }
            map.next_value_seed(Walk)?;
        }
        Ok(())
    }
}

/// A map key as text (settings keys are strings; a number or a boolean
/// used as a key is shown as written).
struct KeyText;

impl<'de> DeserializeSeed<'de> for KeyText {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<String, D::Error> {
        de.deserialize_any(KeyText)
    }
}

impl Visitor<'_> for KeyText {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }
    fn visit_bool<E>(self, v: bool) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_i64<E>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_u64<E>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_f64<E>(self, v: f64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_unit<E>(self) -> Result<String, E> {
        Ok("null".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_key_is_found_with_its_path_and_line() {
        let yaml = "server:\n  workers: 2\nupstreams:\n  u:\n    retries: 1\n    retries: 3\n";
        assert_eq!(
            first_duplicate_yaml(yaml),
            Some(Duplicate {
                key: "upstreams.u.retries".into(),
                line: Some(5)
            })
        );
        let json = r#"{"server": {"workers": 2, "workers": 3}}"#;
        let found = first_duplicate_json(json).expect("duplicate");
        assert_eq!(found.key, "workers");
        assert_eq!(found.line, Some(1));
    }

    #[test]
    fn equal_keys_in_different_maps_are_fine() {
        let yaml = "a: {x: 1}\nb: {x: 2}\nlist: [{x: 1}, {x: 2}]\n";
        assert_eq!(first_duplicate_yaml(yaml), None);
        assert_eq!(
            first_duplicate_yaml("not: [valid"),
            None,
            "syntax is the loader's"
        );
        assert_eq!(first_duplicate_json(r#"{"a": 1, "b": {"a": 2}}"#), None);
    }
}
