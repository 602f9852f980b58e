//! Arbitrary text as a YAML settings file through `settings::load` (the
//! loader of startup, `gateway check` and reloads): it must answer with
//! settings or with problems, never panic.
//!
//! The loader reads files, so each input is written to one file in a
//! per-process temporary directory (removed when the process exits
//! normally; libFuzzer's crash exits leave it in the temporary directory).
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use gateway::settings::{load, Sources};
use gateway::tools::normalize_path;
use libfuzzer_sys::fuzz_target;

fn file() -> &'static PathBuf {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        let dir =
            std::env::temp_dir().join(format!("gateway-fuzz-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temporary directory");
        dir.join("settings.yaml")
    })
}

fuzz_target!(|data: &[u8]| {
    let path = file();
    std::fs::write(path, data).expect("write the settings file");
    let sources = Sources {
        config_files: vec![path.clone()],
        overrides: Vec::new(),
        use_env: false,
    };
    match load(&sources) {
        Ok(settings) => {
            // What was accepted is usable: every route names an upstream
            // and policies that exist, on a normalised prefix.
            for route in &settings.routes {
                assert!(route.upstream < settings.upstreams.len(), "{route:?}");
                assert!(
                    route
                        .rate_limits
                        .iter()
                        .all(|&i| i < settings.rate_limits.len()),
                    "{route:?}"
                );
                assert_eq!(
                    normalize_path(&route.path_prefix).as_deref(),
                    Some(route.path_prefix.as_str()),
                    "{route:?}"
                );
            }
        }
        Err(problems) => assert!(!problems.0.is_empty(), "refused without a problem"),
    }
});
