//! Reading the settings: figment layers (built-in defaults, `--config`
//! files in order, `GATEWAY_<SECTION>__<KEY>` variables, `--set` overrides)
//! into the raw serde structs (`extract`: every refused key reported), then
//! `validate`. Every problem names the file (or variable) and key its value
//! came from, and all of them are reported together.

use std::net::SocketAddr;
use std::path::PathBuf;

use figment::providers::{Env, Format, Json, Serialized, Toml, Yaml};
use figment::value::Value;
use figment::{Figment, Provider};

use super::duplicates::{first_duplicate_json, first_duplicate_yaml};
use super::extract::extract;
use super::origin::{source_of, ENV_PREFIX};
use super::problem::{Problem, Problems};
use super::raw::DEFAULT_ADMIN_LISTEN;
use super::types::Settings;
use super::validate::validate;

/// The file read when no `--config` is given, if it exists.
pub const DEFAULT_CONFIG_FILE: &str = "settings/default.yaml";

/// Where settings come from, as given on the command line.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    pub config_files: Vec<PathBuf>,
    /// `dotted.key=value` overrides, applied last.
    pub overrides: Vec<String>,
    /// Read `GATEWAY_*` variables (tests turn this off for isolation).
    pub use_env: bool,
}

impl Sources {
    /// The settings files read, in order: the `--config` files, or without
    /// any, [`DEFAULT_CONFIG_FILE`] if it exists (else none).
    pub fn files(&self) -> Vec<PathBuf> {
        if !self.config_files.is_empty() {
            return self.config_files.clone();
        }
        let default = PathBuf::from(DEFAULT_CONFIG_FILE);
        if default.is_file() {
            vec![default]
        } else {
            Vec::new()
        }
    }
}

/// Reads every layer and validates the result; all problems at once.
///
/// A file that cannot be read stops here (validating what is left of the
/// layers would only mislead); keys that serde refuses do not: validation
/// runs over the rest, and its problems join theirs.
pub fn load(sources: &Sources) -> Result<Settings, Problems> {
    let mut problems = Vec::new();
    let figment = layered_figment(sources, &mut problems);
    if !problems.is_empty() {
        return Err(Problems(problems));
    }
    let (raw, refused) = extract(&figment, &mut problems);
    let locate = |key: &str| source_of(&figment, key);
    match validate(&raw, &locate) {
        Ok(settings) if problems.is_empty() => Ok(settings),
        Ok(_) => Err(Problems(problems)),
        Err(more) => {
            problems.extend(more.into_iter().filter(|p| !refused.covers(&p.key)));
            Err(Problems(problems))
        }
    }
}

/// Only `admin.listen`, through the same layers as [`load`], without
/// validating the rest: `gateway health` must find a running gateway even
/// when the settings on disk have since become invalid elsewhere (a reload
/// refused them and the old settings serve on). Files that cannot be read
/// or parsed, and a value that is not a socket address, are problems.
pub fn admin_listen(sources: &Sources) -> Result<SocketAddr, Problems> {
    let mut problems = Vec::new();
    let figment = layered_figment(sources, &mut problems);
    if !problems.is_empty() {
        return Err(Problems(problems));
    }
    const KEY: &str = "admin.listen";
    let value = match figment.extract_inner::<String>(KEY) {
        Ok(value) => value,
        Err(e) if matches!(e.kind, figment::error::Kind::MissingField(_)) => {
            DEFAULT_ADMIN_LISTEN.to_owned()
        }
        Err(e) => {
            return Err(Problems(vec![Problem {
                source: source_of(&figment, KEY),
                key: KEY.into(),
                message: e.kind.to_string(),
            }]))
        }
    };
    value.parse().map_err(|_| {
        Problems(vec![Problem {
            source: source_of(&figment, KEY),
            key: KEY.into(),
            message: format!("{value:?} is not a socket address like 0.0.0.0:9090"),
        }])
    })
}

/// What is wrong with a settings file that parses: a key written twice in
/// one map (YAML and JSON keep the last without a word), or nothing set at
/// all (an empty or truncated file would otherwise start a gateway on the
/// defaults, with no routes).
fn file_problem(
    file: &std::path::Path,
    ext: Option<&str>,
    data: &figment::value::Map<figment::Profile, figment::value::Dict>,
) -> Option<String> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let duplicate = match ext {
        Some("yaml" | "yml") => first_duplicate_yaml(&text),
        Some("json") => first_duplicate_json(&text),
        _ => None,
    };
    if let Some(d) = duplicate {
        let line = d
            .line
            .map_or_else(String::new, |l| format!(" (in the map at line {l})"));
        return Some(format!(
            "key '{}' is written twice{line}: refused, since only the last would count",
            d.key
        ));
    }
    let sets_something = data.values().flat_map(|dict| dict.values()).any(|value| {
        !matches!(value, Value::Empty(..)) && !matches!(value, Value::Dict(_, d) if d.is_empty())
    });
    (!sets_something).then(|| {
        "the file sets nothing (empty, or only comments): refused, since a gateway on \
         built-in defaults alone has no routes; check that it was written completely"
            .to_owned()
    })
}

fn layered_figment(sources: &Sources, problems: &mut Vec<Problem>) -> Figment {
    let mut figment = Figment::new();
    for file in sources.files() {
        let shown = file.display().to_string();
        if !file.is_file() {
            problems.push(Problem {
                source: shown,
                key: "-".into(),
                message: "settings file not found or not a regular file".into(),
            });
            continue;
        }
        let ext = file
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        // Each file is parsed on its own first, so a syntax error names it.
        let parsed = match ext.as_deref() {
            Some("yaml" | "yml") => Figment::from(Yaml::file_exact(&file)),
            Some("toml") => Figment::from(Toml::file_exact(&file)),
            Some("json") => Figment::from(Json::file_exact(&file)),
            _ => {
                problems.push(Problem {
                    source: shown,
                    key: "-".into(),
                    message:
                        "unsupported settings file extension (use .yaml, .yml, .toml or .json)"
                            .into(),
                });
                continue;
            }
        };
        let data = match parsed.data() {
            Ok(data) => data,
            Err(err) => {
                for e in err {
                    problems.push(Problem {
                        source: shown.clone(),
                        key: "-".into(),
                        message: e.kind.to_string(),
                    });
                }
                continue;
            }
        };
        if let Some(problem) = file_problem(&file, ext.as_deref(), &data) {
            problems.push(Problem {
                source: shown,
                key: "-".into(),
                message: problem,
            });
            continue;
        }
        figment = figment.merge(parsed);
    }
    if sources.use_env {
        figment = figment.merge(Env::prefixed(ENV_PREFIX).split("__"));
    }
    for item in &sources.overrides {
        match item.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => {
                let value: Value = value.parse().unwrap_or_else(|never| match never {});
                figment = figment.merge(Serialized::default(key.trim(), value));
            }
            _ => problems.push(Problem {
                source: "--set".into(),
                key: item.clone(),
                message: "expected dotted.key=value".into(),
            }),
        }
    }
    figment
}
