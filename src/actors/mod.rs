//! Dedicated actix actors: state that must be serialised or batched lives
//! here, off the request workers.
//!
//! - `rate_limiter`: cluster rate-limit decisions, pipelined to Redis per
//!   tick, and eviction of idle local rate-limit keys;
//! - `session_cache`: the Redis pub/sub subscription that drops cached
//!   sessions on every replica when one replica logs a user out.
//!
//! Workers never wait on an actor for anything a lock-free structure in
//! shared state can answer (local limits are decided in the worker).

pub mod rate_limiter;
pub mod session_cache;
