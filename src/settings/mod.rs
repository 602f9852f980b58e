//! Settings: figment layers -> raw serde structs -> validation -> the
//! validated types the rest of the gateway trusts.
//!
//! The first step of startup (see `main.rs`): nothing else runs until the
//! layered configuration (defaults, `--config` files, `GATEWAY_*__*`
//! environment, `--set` overrides) has been read and every problem in it
//! reported, each naming the file (or variable) and key it came from.
//!
//! ```text
//! load.rs      figment layers -> extract.rs (every refused key) -> raw.rs (serde, deny_unknown_fields)
//! validate.rs  raw -> types.rs (server, logging, redis, upstreams, rate limits, tracing)
//!   validate_routes.rs  (routes, auth)      checker.rs  (problems, shared checks)
//!   validate_features.rs (optional route features -> features.rs)
//! problem.rs, origin.rs: a problem, and where its key's value came from
//! ```
//!
//! Only the validated types, the loader and its problem report leave this
//! module.

mod checker;
mod duplicates;
mod extract;
mod features;
mod load;
mod origin;
mod problem;
mod raw;
mod raw_features;
mod types;
mod validate;
mod validate_features;
mod validate_routes;

pub use features::*;
pub use load::{admin_listen, load, Sources, DEFAULT_CONFIG_FILE};
pub use origin::ENV_PREFIX;
pub use problem::{Problem, Problems};
pub use types::*;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_features;
