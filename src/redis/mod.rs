//! Redis as the gateway uses it, below the two features that share state
//! across replicas (cluster rate limits and sessions): connection pools
//! (`pool`) and the circuit breaker each store puts in front of its Redis
//! (`breaker`). Keys, scripts and meaning belong to the features.

pub mod breaker;
pub mod pool;
