//! Memory of local rate-limit state under a key spray (part of `make bench`).
//!
//! Feeds 1,000,000 distinct keys (as a client rotating IPs or API keys would)
//! into one local policy, then lets them go idle and runs the eviction the
//! upkeep actor runs every 10 s. Prints resident memory at each step.

use std::hash::{BuildHasher, RandomState};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use gateway::settings::{OnStoreError, RateLimitKey, RateLimitPolicy, RateLimitScope};
use gateway::tools::{KeyMaterial, Policy};

const KEYS: u32 = 1_000_000;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let policy = Policy::new(RateLimitPolicy {
        name: "per_ip".into(),
        requests: 100,
        period: Duration::from_secs(1),
        burst: 100,
        key: RateLimitKey::Ip,
        scope: RateLimitScope::Local,
        on_store_error: OnStoreError::Local,
    });
    // The gateway hashes local keys with a per-process seed, like this.
    let seed = RandomState::new();
    let before = rss_kib();
    let started = Instant::now();
    for i in 0..KEYS {
        let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
        let key = seed.hash_one(KeyMaterial::Ip(ip));
        assert!(policy.check_local(key).allowed);
    }
    let spray = started.elapsed();
    let full = rss_kib();
    println!(
        "{KEYS} distinct keys in {:.2}s ({:.0} ns/decision): {} keys held, RSS {} KiB -> {} KiB (+{:.1} MiB, {:.0} bytes/key)",
        spray.as_secs_f64(),
        spray.as_nanos() as f64 / f64::from(KEYS),
        policy.local_keys(),
        before,
        full,
        (full - before) as f64 / 1024.0,
        (full - before) as f64 * 1024.0 / f64::from(KEYS)
    );
    // A key is evictable once its state equals a fresh key's, i.e. once the
    // one cell it used has been replenished (10 ms at 100 per second).
    std::thread::sleep(Duration::from_millis(1100));
    let left = policy.evict_idle_keys();
    let after = rss_kib();
    println!("after idle eviction: {left} keys held, RSS {after} KiB");
    println!(
        "RESULT keys={KEYS} rss_growth_mib={:.1} bytes_per_key={:.0} keys_after_eviction={left} rss_after_eviction_kib={after}",
        (full - before) as f64 / 1024.0,
        (full - before) as f64 * 1024.0 / f64::from(KEYS)
    );
}
