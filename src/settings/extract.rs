//! The merged layers into the raw serde structs, reporting EVERY key serde
//! refuses (unknown keys, values of the wrong type), not just the first:
//! serde stops at the first error, so each refused value is reported, taken
//! out of the data, and extraction runs again, until it succeeds. A value
//! taken out falls back to its default, so validation can still run over
//! the rest; its own problems about a key already reported are left out
//! ([`Refused::covers`]), as they would only repeat the first.

use std::collections::BTreeMap;

use figment::error::Kind;
use figment::providers::Serialized;
use figment::value::{Dict, Value};
use figment::{Figment, Profile, Provider};

use super::origin::source_of;
use super::problem::Problem;
use super::raw::RawSettings;

/// More than this many refused values: stop (a file of another program).
const MAX_REFUSED: usize = 200;

/// The keys whose values serde refused, as they are shown (`routes[0].x`).
#[derive(Debug, Default)]
pub struct Refused(Vec<String>);

impl Refused {
    /// A validation problem about `key` adds nothing: `key` is, contains or
    /// lies under a value already refused.
    pub fn covers(&self, key: &str) -> bool {
        self.0.iter().any(|r| {
            let under = |a: &str, b: &str| {
                a.strip_prefix(b)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
            };
            under(key, r) || under(r, key)
        })
    }
}

/// The raw settings of `figment`'s merged data, with every refused value
/// reported into `problems` and replaced by its default.
pub fn extract(figment: &Figment, problems: &mut Vec<Problem>) -> (RawSettings, Refused) {
    let mut refused = Refused::default();
    let mut data = match figment.data() {
        Ok(mut data) => Value::from(data.remove(&Profile::Default).unwrap_or_default()),
        Err(err) => {
            for e in err {
                problems.push(problem(figment, &e.path, &e.kind));
            }
            return (RawSettings::default(), refused);
        }
    };
    // Array elements taken out, by array path, as original indices: later
    // errors name their element by its index in the user's file.
    let mut taken: BTreeMap<Vec<String>, Vec<usize>> = BTreeMap::new();
    let mut attempts: BTreeMap<Vec<String>, u8> = BTreeMap::new();
    while refused.0.len() < MAX_REFUSED {
        let errors = match Figment::from(Serialized::defaults(&data)).extract::<RawSettings>() {
            Ok(raw) => return (raw, refused),
            Err(errors) => errors,
        };
        let mut progressed = false;
        for e in errors {
            let original = original_path(&e.path, &taken);
            let attempt = attempts.entry(original.clone()).or_insert(0);
            if *attempt == 0 {
                let p = problem(figment, &original, &e.kind);
                refused.0.push(p.key.clone());
                problems.push(p);
            }
            *attempt += 1;
            match take_out(&mut data, &e.path, fix_for(&e.kind, *attempt)) {
                TakenOut::Nothing => {}
                TakenOut::Changed => progressed = true,
                TakenOut::ElementRemoved => {
                    progressed = true;
                    if let Some((at, array)) = original.split_last() {
                        let list = taken.entry(array.to_vec()).or_default();
                        list.extend(at.parse::<usize>().ok());
                        list.sort_unstable();
                    }
                }
            }
        }
        if !progressed {
            break;
        }
    }
    (RawSettings::default(), refused)
}

/// What taking a value out did.
#[derive(Debug, PartialEq, Eq)]
enum TakenOut {
    /// Nothing at that path (or nothing more to try): no progress.
    Nothing,
    /// A map entry removed, or an array element replaced in place.
    Changed,
    /// An array element removed: later elements moved up by one.
    ElementRemoved,
}

/// How a refused value is made to stop failing. An unknown key is removed;
/// a value of the wrong type is first replaced by an empty map, then by an
/// empty string (a struct or a string then takes its defaults, and an
/// array element keeps its place, so later indices stay the user's), and
/// only removed when neither fits.
fn fix_for(kind: &Kind, attempt: u8) -> Option<Value> {
    match (kind, attempt) {
        (Kind::UnknownField(..), _) => None,
        (_, 1) => Some(Value::from(Dict::new())),
        (_, 2) => Some(Value::from(String::new())),
        _ => None,
    }
}

/// Replaces (`Some`) or removes (`None`) the value at `path`.
fn take_out(value: &mut Value, path: &[String], fix: Option<Value>) -> TakenOut {
    let index = |segment: &String| segment.parse::<usize>().ok();
    match (value, path) {
        (Value::Dict(_, map), [key]) => match (map.get_mut(key), fix) {
            (None, _) => TakenOut::Nothing,
            (Some(slot), Some(replacement)) => {
                *slot = replacement;
                TakenOut::Changed
            }
            (Some(_), None) => {
                map.remove(key);
                TakenOut::Changed
            }
        },
        (Value::Array(_, items), [at]) => match (index(at).filter(|&i| i < items.len()), fix) {
            (None, _) => TakenOut::Nothing,
            (Some(i), Some(replacement)) => {
                items[i] = replacement;
                TakenOut::Changed
            }
            (Some(i), None) => {
                items.remove(i);
                TakenOut::ElementRemoved
            }
        },
        (Value::Dict(_, map), [key, rest @ ..]) => match map.get_mut(key) {
            Some(inner) => take_out(inner, rest, fix),
            None => TakenOut::Nothing,
        },
        (Value::Array(_, items), [at, rest @ ..]) => {
            match index(at).and_then(|i| items.get_mut(i)) {
                Some(inner) => take_out(inner, rest, fix),
                None => TakenOut::Nothing,
            }
        }
        _ => TakenOut::Nothing,
    }
}

/// `path` with each array index turned back into the index it had in the
/// user's data, before elements were taken out.
fn original_path(path: &[String], taken: &BTreeMap<Vec<String>, Vec<usize>>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(path.len());
    for segment in path {
        let shifted = segment.parse::<usize>().ok().and_then(|mut index| {
            let removed = taken.get(&out)?;
            for &r in removed {
                if r <= index {
                    index += 1;
                }
            }
            Some(index)
        });
        out.push(shifted.map_or_else(|| segment.clone(), |i| i.to_string()));
    }
    out
}

fn problem(figment: &Figment, path: &[String], kind: &Kind) -> Problem {
    let dotted = path.join(".");
    Problem {
        source: if path.is_empty() {
            "settings".to_owned()
        } else {
            source_of(figment, &dotted)
        },
        key: shown_key(path),
        message: describe(kind),
    }
}

/// `routes.0.upstream` as the validation messages write it: `routes[0].upstream`.
fn shown_key(path: &[String]) -> String {
    let mut key = String::new();
    for segment in path {
        if segment.parse::<usize>().is_ok() && !key.is_empty() {
            key.push_str(&format!("[{segment}]"));
        } else {
            if !key.is_empty() {
                key.push('.');
            }
            key.push_str(segment);
        }
    }
    if key.is_empty() {
        "-".to_owned()
    } else {
        key
    }
}

fn describe(kind: &Kind) -> String {
    match kind {
        Kind::UnknownField(field, expected) => {
            format!(
                "unknown key '{field}' (expected one of: {})",
                expected.join(", ")
            )
        }
        Kind::UnknownVariant(variant, expected) => {
            format!(
                "unknown value '{variant}' (expected one of: {})",
                expected.join(", ")
            )
        }
        Kind::InvalidValue(actual, expected) => {
            let found = actual.to_string().replace('`', "'");
            format!("invalid value: found {found}, expected {expected}")
        }
        // The raw structs' names mean nothing to an operator.
        Kind::InvalidType(actual, expected) if expected.starts_with("struct Raw") => {
            let found = actual.to_string().replace('`', "'");
            format!("invalid type: found {found}, expected a map of keys and values")
        }
        other => other.to_string().replace('`', "'"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_key_covers_what_lies_under_it_and_over_it() {
        let refused = Refused(vec!["routes[0].upstream".into(), "server".into()]);
        assert!(refused.covers("routes[0].upstream"));
        assert!(refused.covers("routes[0]"));
        assert!(refused.covers("server.listen"));
        assert!(!refused.covers("routes[1].upstream"));
        assert!(!refused.covers("routes[0].upstreams"));
    }

    #[test]
    fn keys_are_shown_with_indices_in_brackets() {
        let path = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(shown_key(&path(&["routes", "0", "x"])), "routes[0].x");
        assert_eq!(
            shown_key(&path(&["upstreams", "u", "targets", "2"])),
            "upstreams.u.targets[2]"
        );
        assert_eq!(shown_key(&[]), "-");
    }

    #[test]
    fn indices_after_a_removed_element_are_the_users() {
        let mut taken = BTreeMap::new();
        taken.insert(vec!["routes".to_owned()], vec![1]);
        let path = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            original_path(&path(&["routes", "0"]), &taken),
            path(&["routes", "0"])
        );
        assert_eq!(
            original_path(&path(&["routes", "1", "x"]), &taken),
            path(&["routes", "2", "x"])
        );
    }
}
