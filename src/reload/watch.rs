//! Notices settings files changing on disk. Watches each file's
//! directory, not the file: Kubernetes updates a mounted ConfigMap by
//! swapping a symlink (`..data`) in that directory, and editors often
//! replace a file rather than write into it; neither is an event on the
//! old file. Events on the settings files' names, and on names starting
//! with `..` (the ConfigMap machinery), are passed on; others in the same
//! directory (log files, say) are not. The reload task debounces them and
//! compares file contents before reloading.
//!
//! A leaf: paths in, a channel of "something changed" out.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc::UnboundedSender;

/// Watches the directories of `files`; each event sends `()` on `changed`.
/// Keep the returned watcher alive for as long as events are wanted.
pub fn watch_directories_of(
    files: &[PathBuf],
    changed: UnboundedSender<()>,
) -> notify::Result<RecommendedWatcher> {
    let names: BTreeSet<OsString> = files
        .iter()
        .filter_map(|f| f.file_name().map(ToOwned::to_owned))
        .collect();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        // Reads do not change anything.
        if matches!(event.kind, EventKind::Access(_)) {
            return;
        }
        if event.paths.iter().any(|p| concerns(p, &names)) {
            let _ = changed.send(());
        }
    })?;
    let directories: BTreeSet<PathBuf> = files.iter().map(|f| directory_of(f)).collect();
    for dir in directories {
        watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    }
    Ok(watcher)
}

/// `path` is one of the settings files, or ConfigMap machinery
/// (`..data`, `..2026_12_04_10_00_00.123`) that may have swapped them.
fn concerns(path: &Path, names: &BTreeSet<OsString>) -> bool {
    path.file_name()
        .is_some_and(|n| names.contains(n) || n.as_encoded_bytes().starts_with(b".."))
}

fn directory_of(file: &Path) -> PathBuf {
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// What the files hold now (following symlinks), as one number: equal
/// fingerprints mean nothing worth a reload happened. A file that cannot
/// be read counts as its error, so it differs from any content.
pub fn fingerprint(files: &[PathBuf]) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for file in files {
        match std::fs::read(file) {
            Ok(bytes) => bytes.hash(&mut hasher),
            Err(e) => e.kind().hash(&mut hasher),
        }
    }
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_follows_content_not_timestamps() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.yaml");
        std::fs::write(&file, "x: 1\n").unwrap();
        let files = vec![file.clone()];
        let first = fingerprint(&files);
        std::fs::write(&file, "x: 1\n").unwrap();
        assert_eq!(fingerprint(&files), first, "same bytes rewritten");
        std::fs::write(&file, "x: 2\n").unwrap();
        assert_ne!(fingerprint(&files), first);
        std::fs::remove_file(&file).unwrap();
        assert_ne!(fingerprint(&files), first);
    }

    #[test]
    fn only_the_settings_files_and_configmap_links_concern_a_reload() {
        let names: BTreeSet<OsString> = [OsString::from("gateway.yaml")].into();
        assert!(concerns(Path::new("/etc/gw/gateway.yaml"), &names));
        assert!(concerns(Path::new("/etc/gw/..data"), &names));
        assert!(concerns(Path::new("/etc/gw/..data_tmp"), &names));
        assert!(!concerns(Path::new("/etc/gw/stdout.log"), &names));
        assert!(!concerns(Path::new("/etc/gw/.gateway.yaml.swp"), &names));
    }

    #[test]
    fn a_bare_file_name_is_watched_in_the_working_directory() {
        assert_eq!(directory_of(Path::new("gw.yaml")), PathBuf::from("."));
        assert_eq!(
            directory_of(Path::new("/etc/gw/gw.yaml")),
            PathBuf::from("/etc/gw")
        );
    }
}
