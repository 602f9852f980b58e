//! Dedicated actix actors: state that must be serialised or batched lives
//! here, off the request workers.
//!
//! - `rate_limiter`: cluster rate-limit decisions, pipelined to Redis per
//!   tick, and eviction of idle local rate-limit keys.
//!
//! Workers never wait on an actor for anything a lock-free structure in
//! shared state can answer (local limits are decided in the worker).

pub mod rate_limiter;
