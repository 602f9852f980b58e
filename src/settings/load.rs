//! Reading the settings: figment layers (built-in defaults, `--config`
//! files in order, `GATEWAY_<SECTION>__<KEY>` variables, `--set` overrides)
//! into the raw serde structs, section by section so one bad section does
//! not hide another's problems; then `validate`. Every problem names the
//! file (or variable) and key its value came from.

use std::path::PathBuf;

use figment::providers::{Env, Format, Json, Serialized, Toml, Yaml};
use figment::value::Value;
use figment::{Figment, Provider};
use serde::de::DeserializeOwned;

use super::problem::{Problem, Problems};
use super::raw::{RawSettings, SECTIONS};
use super::types::Settings;
use super::validate::validate;

/// The file read when no `--config` is given, if it exists.
pub const DEFAULT_CONFIG_FILE: &str = "settings/default.yaml";
/// Environment variables with this prefix override settings (`__` nests).
pub const ENV_PREFIX: &str = "GATEWAY_";

/// Where settings come from, as given on the command line.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    pub config_files: Vec<PathBuf>,
    /// `dotted.key=value` overrides, applied last.
    pub overrides: Vec<String>,
    /// Read `GATEWAY_*` variables (tests turn this off for isolation).
    pub use_env: bool,
}

/// Reads every layer and validates the result; all problems at once.
pub fn load(sources: &Sources) -> Result<Settings, Problems> {
    let mut problems = Vec::new();
    let figment = layered_figment(sources, &mut problems);
    let raw = extract_sections(&figment, &mut problems);
    if !problems.is_empty() {
        return Err(Problems(problems));
    }
    let locate = |key: &str| source_of(&figment, key);
    validate(&raw, &locate).map_err(Problems)
}

fn layered_figment(sources: &Sources, problems: &mut Vec<Problem>) -> Figment {
    let mut figment = Figment::new();
    let files: Vec<PathBuf> = if sources.config_files.is_empty() {
        let default = PathBuf::from(DEFAULT_CONFIG_FILE);
        if default.is_file() {
            vec![default]
        } else {
            Vec::new()
        }
    } else {
        sources.config_files.clone()
    };
    for file in files {
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
        if let Err(err) = parsed.data() {
            for e in err {
                problems.push(Problem {
                    source: shown.clone(),
                    key: "-".into(),
                    message: e.kind.to_string(),
                });
            }
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

/// Extracts section by section so that one bad section does not hide the
/// problems of the others (serde stops at the first error inside one).
fn extract_sections(figment: &Figment, problems: &mut Vec<Problem>) -> RawSettings {
    let mut raw = RawSettings::default();
    let top = match figment.data() {
        Ok(mut data) => data.remove(&figment::Profile::Default).unwrap_or_default(),
        Err(err) => {
            push_figment_errors(err, "", problems);
            return raw;
        }
    };
    for key in top.keys() {
        if !SECTIONS.contains(&key.as_str()) {
            problems.push(Problem {
                source: source_of(figment, key),
                key: key.clone(),
                message: format!("unknown key; expected one of: {}", SECTIONS.join(", ")),
            });
        }
    }
    fn section<T: DeserializeOwned>(
        figment: &Figment,
        key: &str,
        slot: &mut T,
        problems: &mut Vec<Problem>,
    ) {
        if !figment.contains(key) {
            return;
        }
        match figment.extract_inner::<T>(key) {
            Ok(value) => *slot = value,
            Err(err) => push_figment_errors(err, key, problems),
        }
    }
    section(figment, "server", &mut raw.server, problems);
    section(figment, "admin", &mut raw.admin, problems);
    section(figment, "logging", &mut raw.logging, problems);
    section(figment, "redis", &mut raw.redis, problems);
    section(figment, "upstreams", &mut raw.upstreams, problems);
    section(figment, "rate_limits", &mut raw.rate_limits, problems);
    section(figment, "auth", &mut raw.auth, problems);
    section(figment, "routes", &mut raw.routes, problems);
    raw
}

/// `section` is the key the failed extraction started from: figment appends
/// it after the inner path, so it is moved back to the front here.
fn push_figment_errors(err: figment::Error, section: &str, problems: &mut Vec<Problem>) {
    for e in err {
        let mut path = e.path.clone();
        if !section.is_empty() && path.last().map(String::as_str) == Some(section) {
            path.pop();
            path.insert(0, section.to_owned());
        }
        let source = e
            .metadata
            .as_ref()
            .map_or_else(|| "settings".into(), |m| describe_source(m, &path));
        let key = if path.is_empty() {
            "-".to_owned()
        } else {
            path.join(".")
        };
        problems.push(Problem {
            source,
            key,
            message: e.kind.to_string(),
        });
    }
}

/// A file path, `--set`, or the environment variable that sets `path`.
fn describe_source(meta: &figment::Metadata, path: &[String]) -> String {
    match &meta.source {
        Some(figment::Source::File(file)) => file.display().to_string(),
        Some(figment::Source::Code(_)) => "--set".into(),
        _ if meta.name.contains("environment") => {
            format!("{ENV_PREFIX}{}", path.join("__").to_ascii_uppercase())
        }
        _ => meta.name.to_string(),
    }
}

/// Names where a key's value came from, e.g. `settings/prod.yaml`,
/// `GATEWAY_SERVER__WORKERS` or `--set`.
fn source_of(figment: &Figment, key: &str) -> String {
    let mut probe = key.to_owned();
    loop {
        if let Some(meta) = figment.find_metadata(&probe) {
            let path: Vec<String> = probe.split('.').map(str::to_owned).collect();
            return describe_source(meta, &path);
        }
        match probe.rsplit_once('.') {
            Some((parent, _)) => probe = parent.to_owned(),
            None => return "defaults".into(),
        }
    }
}
