//! A problem found in the settings, located by file (or environment
//! variable, or `--set`) and key: what `gateway check` prints, one line
//! each, and why the gateway refuses to start. A leaf of `settings`.

use std::fmt;

/// One thing wrong with the configuration, located as precisely as figment
/// can tell: the file (or environment variable / command line) and the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub source: String,
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.source, self.key, self.message)
    }
}

/// Every problem found; the gateway refuses to start while there is one.
#[derive(Debug, Clone)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.0 {
            writeln!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}
