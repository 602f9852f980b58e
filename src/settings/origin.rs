//! Where a setting came from: a file, an environment variable, `--set`, or
//! the built-in defaults. Every problem the gateway reports about its
//! settings names it, so an operator knows which of the layers to fix.

use figment::Figment;

/// Environment variables with this prefix override settings (`__` nests).
pub const ENV_PREFIX: &str = "GATEWAY_";

/// A file path, `--set`, or the environment variable that sets `path`.
pub fn describe_source(meta: &figment::Metadata, path: &[String]) -> String {
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
pub fn source_of(figment: &Figment, key: &str) -> String {
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
