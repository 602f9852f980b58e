//! Target selection and passive health, shared by every worker.
//!
//! Called by the proxy handler once per attempt. State is a handful of
//! atomics per target, so workers never take a lock to pick a target.
//! Passive health is each target's circuit (`circuit.rs`): `max_fails`
//! failures in a row (no connection, no answer within `request_timeout_ms`,
//! or an exchange broken after connecting), and with `circuit_breaker` also
//! 5xx answers, open it for `fail_timeout`; then half-open probes decide.
//! `max_ejected_percent` caps how many targets may be out at once. Retries
//! are held to the upstream's `retry_budget`.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use actix_web::http::header::HeaderValue;
use actix_web::http::uri::{Authority, Parts, PathAndQuery, Scheme};
use actix_web::http::Uri;
use bytes::Bytes;

pub use super::circuit::Outcome;
use super::circuit::{Circuit, Transition};
use crate::settings::{Balance, UpstreamSettings};

fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

#[derive(Debug)]
pub struct Target {
    /// `scheme://host:port`, also the metrics label.
    pub url: String,
    /// The `Host` header for this target (`host`, or `host:port` off the
    /// default ports), built once instead of by the client per request.
    pub host_header: Option<HeaderValue>,
    /// `url` parsed once: every upstream request's URI starts with it.
    origin: Option<(Scheme, Authority)>,
    /// The target's identity for rendezvous hashing (from its URL, so it
    /// survives reloads and reorderings of `targets`).
    hash_seed: u64,
    in_flight: AtomicUsize,
    /// Passive health: closed, open (skipped) or half-open (probing).
    circuit: Circuit,
    /// Active health checks (with `health_check`): failing targets are
    /// skipped until they pass `healthy_threshold` checks in a row.
    check_failing: AtomicBool,
    checks_passed: AtomicU32,
    checks_failed: AtomicU32,
}

fn host_header_of(url: &str) -> Option<HeaderValue> {
    let uri: Uri = url.parse().ok()?;
    let host = uri.host()?;
    let value = match uri.port_u16() {
        None | Some(80) | Some(443) => host.to_owned(),
        Some(port) => format!("{host}:{port}"),
    };
    HeaderValue::from_str(&value).ok()
}

fn origin_of(url: &str) -> Option<(Scheme, Authority)> {
    let parts = url.parse::<Uri>().ok()?.into_parts();
    Some((parts.scheme?, parts.authority?))
}

impl Target {
    /// The URI of an upstream request for `path_and_query` (path and query
    /// as sent upstream): the target's scheme and authority, parsed once,
    /// instead of parsing `url` + path per request. `None` when
    /// `path_and_query` is not a valid request target.
    pub fn uri_for(&self, path_and_query: Bytes) -> Option<Uri> {
        let (scheme, authority) = self.origin.as_ref()?;
        let mut parts = Parts::default();
        parts.scheme = Some(scheme.clone());
        parts.authority = Some(authority.clone());
        parts.path_and_query = Some(PathAndQuery::from_maybe_shared(path_and_query).ok()?);
        Uri::from_parts(parts).ok()
    }

    fn new(url: String) -> Self {
        Self {
            host_header: host_header_of(&url),
            origin: origin_of(&url),
            hash_seed: xxhash_rust::xxh3::xxh3_64(url.as_bytes()),
            url,
            in_flight: AtomicUsize::new(0),
            circuit: Circuit::default(),
            check_failing: AtomicBool::new(false),
            checks_passed: AtomicU32::new(0),
            checks_failed: AtomicU32::new(0),
        }
    }

    /// True unless its circuit is open (or half-open with its probe in
    /// flight), or it is failing its active health checks.
    pub fn is_available(&self) -> bool {
        !self.is_failing_checks() && self.circuit.admits(now_ms, self.in_flight())
    }

    /// `closed`, `open` or `half_open`.
    pub fn circuit_state(&self) -> &'static str {
        self.circuit.state_name(now_ms())
    }

    pub fn is_failing_checks(&self) -> bool {
        self.check_failing.load(Ordering::Relaxed)
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.circuit.consecutive_failures()
    }
}

/// A 64-bit finaliser (SplitMix64): spreads `key ^ seed` so neighbouring
/// keys score targets independently.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// What a failure did to the target's health.
#[derive(Debug, PartialEq, Eq)]
pub enum HealthChange {
    None,
    MarkedDown,
    Recovered,
}

#[derive(Debug)]
pub struct Upstream {
    pub settings: UpstreamSettings,
    pub targets: Vec<Target>,
    next: AtomicUsize,
    /// Requests and status retries in flight, for the retry budget.
    requests_in_flight: AtomicUsize,
    retries_in_flight: AtomicUsize,
    /// A health-check task runs for this upstream.
    checked: AtomicBool,
}

impl Upstream {
    pub fn new(settings: UpstreamSettings) -> Self {
        let targets = settings.targets.iter().cloned().map(Target::new).collect();
        Self {
            settings,
            targets,
            next: AtomicUsize::new(0),
            requests_in_flight: AtomicUsize::new(0),
            retries_in_flight: AtomicUsize::new(0),
            checked: AtomicBool::new(false),
        }
    }

    /// Picks a target not in `exclude`, preferring available ones. Returns
    /// `None` when every target is excluded or down.
    pub fn pick(&self, exclude: &[usize]) -> Option<usize> {
        self.pick_keyed(exclude, None)
    }

    /// [`Upstream::pick`] with the request's hash key for `consistent_hash`
    /// (rendezvous hashing: the usable target with the highest score for
    /// the key wins, so removing a target moves only its own keys and
    /// adding one takes about 1/N of them). Without a key, round robin.
    pub fn pick_keyed(&self, exclude: &[usize], key: Option<u64>) -> Option<usize> {
        let n = self.targets.len();
        let usable = |i: usize| !exclude.contains(&i) && self.targets[i].is_available();
        match (self.settings.balance, key) {
            (Balance::ConsistentHash, Some(key)) => (0..n)
                .filter(|&i| usable(i))
                .max_by_key(|&i| mix(key ^ self.targets[i].hash_seed)),
            (Balance::RoundRobin | Balance::ConsistentHash, _) => {
                let start = self.next.fetch_add(1, Ordering::Relaxed);
                (0..n).map(|k| (start + k) % n).find(|&i| usable(i))
            }
            (Balance::Random, _) => {
                let start = fastrand::usize(..n.max(1));
                (0..n).map(|k| (start + k) % n).find(|&i| usable(i))
            }
            (Balance::LeastRequests, _) => {
                // Random start breaks ties fairly instead of always favouring target 0.
                let start = fastrand::usize(..n.max(1));
                (0..n)
                    .map(|k| (start + k) % n)
                    .filter(|&i| usable(i))
                    .min_by_key(|&i| self.targets[i].in_flight())
            }
        }
    }

    /// Counts a request against a target (for least_requests and the
    /// retry budget); pair with `end`.
    pub fn begin(&self, idx: usize) {
        self.targets[idx].in_flight.fetch_add(1, Ordering::Relaxed);
        self.requests_in_flight.fetch_add(1, Ordering::Relaxed);
    }

    pub fn end(&self, idx: usize) {
        self.targets[idx].in_flight.fetch_sub(1, Ordering::Relaxed);
        self.requests_in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// Admits one retry if the upstream's `retry_budget` allows it (Envoy's
    /// shape: retries in flight stay within `percent` of the requests in
    /// flight, with `min_concurrency` always allowed), so a failing
    /// upstream sees at most about a fifth more requests by default, not
    /// twice as many. Pair a `true` with [`Upstream::end_retry`].
    pub fn begin_retry(&self) -> bool {
        let budget = self.settings.retry_budget;
        let requests = self.requests_in_flight.load(Ordering::Relaxed);
        let allowed =
            (requests * budget.percent as usize / 100).max(budget.min_concurrency as usize);
        let admitted =
            self.retries_in_flight
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| {
                    (r < allowed).then_some(r + 1)
                });
        admitted.is_ok()
    }

    pub fn end_retry(&self) {
        self.retries_in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// True for the one caller that is to run this upstream's health checks.
    pub fn claim_health_checks(&self) -> bool {
        !self.checked.swap(true, Ordering::Relaxed)
    }

    /// Counts one active health check of target `idx`; says whether it
    /// took the target out or brought it back.
    pub fn record_check(&self, idx: usize, passed: bool) -> HealthChange {
        let (Some(hc), Some(t)) = (&self.settings.health_check, self.targets.get(idx)) else {
            return HealthChange::None;
        };
        if passed {
            t.checks_failed.store(0, Ordering::Relaxed);
            let passes = t.checks_passed.fetch_add(1, Ordering::Relaxed) + 1;
            if passes >= hc.healthy_threshold && t.check_failing.swap(false, Ordering::Relaxed) {
                return HealthChange::Recovered;
            }
        } else {
            t.checks_passed.store(0, Ordering::Relaxed);
            let fails = t.checks_failed.fetch_add(1, Ordering::Relaxed) + 1;
            if fails >= hc.unhealthy_threshold && !t.check_failing.swap(true, Ordering::Relaxed) {
                return HealthChange::MarkedDown;
            }
        }
        HealthChange::None
    }

    /// Records what an exchange with target `idx` came to (a response's
    /// status, or a failure that counts against the target); says whether
    /// its circuit opened or closed.
    pub fn record(&self, idx: usize, outcome: Outcome) -> HealthChange {
        let may_open = || {
            // Outlier ejection cap: at least one target may always go.
            let n = self.targets.len();
            let cap = (n * self.settings.max_ejected_percent as usize / 100).max(1);
            let out = self
                .targets
                .iter()
                .filter(|t| !t.circuit.is_closed())
                .count();
            out < cap
        };
        match self.targets[idx]
            .circuit
            .record(outcome, &self.settings, now_ms, may_open)
        {
            Transition::Opened => HealthChange::MarkedDown,
            Transition::Closed => HealthChange::Recovered,
            Transition::None => HealthChange::None,
        }
    }

    pub fn record_success(&self, idx: usize) -> HealthChange {
        self.record(idx, Outcome::Answered)
    }

    #[cfg(test)]
    pub fn record_failure(&self, idx: usize) -> HealthChange {
        self.record(idx, Outcome::Failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn host_header_leaves_out_default_ports() {
        let host = |url: &str| host_header_of(url).map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(
            host("http://10.0.0.1:8080").as_deref(),
            Some("10.0.0.1:8080")
        );
        assert_eq!(host("http://api.internal").as_deref(), Some("api.internal"));
        assert_eq!(
            host("https://api.internal:443").as_deref(),
            Some("api.internal")
        );
        assert_eq!(host("http://[::1]:9000").as_deref(), Some("[::1]:9000"));
    }

    fn upstream(balance: Balance, n: usize) -> Upstream {
        Upstream::new(UpstreamSettings {
            name: "u".into(),
            targets: (0..n)
                .map(|i| format!("http://127.0.0.1:{}", 1000 + i))
                .collect(),
            balance,
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
            retries: 1,
            max_fails: 2,
            fail_timeout: Duration::from_secs(60),
            pool_max_connections: 0,
            pool_keep_alive: Duration::from_secs(1),
            tls_ca_file: None,
            http2: false,
            health_check: Some(crate::settings::HealthCheck {
                path: "/healthz".into(),
                interval: Duration::from_secs(1),
                timeout: Duration::from_secs(1),
                healthy_threshold: 2,
                unhealthy_threshold: 3,
                expected_statuses: Vec::new(),
            }),
            hash_key: None,
            circuit_breaker: None,
            retry_budget: crate::settings::RetryBudget {
                percent: 20,
                min_concurrency: 3,
            },
            max_ejected_percent: 100,
        })
    }

    #[test]
    fn health_checks_take_a_target_out_and_bring_it_back_by_thresholds() {
        let u = upstream(Balance::RoundRobin, 2);
        assert_eq!(u.record_check(0, false), HealthChange::None);
        assert_eq!(u.record_check(0, false), HealthChange::None);
        // A pass in between starts the count again.
        assert_eq!(u.record_check(0, true), HealthChange::None);
        for _ in 0..2 {
            assert_eq!(u.record_check(0, false), HealthChange::None);
        }
        assert_eq!(u.record_check(0, false), HealthChange::MarkedDown);
        assert!(!u.targets[0].is_available());
        assert_eq!(u.pick(&[]), Some(1), "only the passing target is picked");
        assert_eq!(u.record_check(0, false), HealthChange::None);
        assert_eq!(u.record_check(0, true), HealthChange::None);
        assert_eq!(u.record_check(0, true), HealthChange::Recovered);
        assert!(u.targets[0].is_available());
    }

    #[test]
    fn round_robin_cycles() {
        let u = upstream(Balance::RoundRobin, 3);
        let picks: Vec<_> = (0..6).map(|_| u.pick(&[]).unwrap()).collect();
        assert_eq!(picks, vec![0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn least_requests_prefers_idle_target() {
        let u = upstream(Balance::LeastRequests, 3);
        u.begin(0);
        u.begin(2);
        for _ in 0..20 {
            assert_eq!(u.pick(&[]), Some(1));
        }
    }

    #[test]
    fn failing_target_is_skipped_then_recovers() {
        let mut u = upstream(Balance::RoundRobin, 2);
        u.settings.fail_timeout = Duration::from_millis(30);
        assert_eq!(u.record_failure(0), HealthChange::None);
        assert_eq!(u.record_failure(0), HealthChange::MarkedDown);
        for _ in 0..10 {
            assert_eq!(u.pick(&[]), Some(1));
        }
        // An answer to a request sent before it opened changes nothing.
        assert_eq!(u.record_success(0), HealthChange::None);
        assert_eq!(u.pick(&[1]), None);
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(u.pick(&[1]), Some(0), "half-open: a probe may go");
        assert_eq!(u.record_success(0), HealthChange::Recovered);
        let picks: Vec<_> = (0..4).map(|_| u.pick(&[]).unwrap()).collect();
        assert!(picks.contains(&0));
    }

    #[test]
    fn consistent_hash_keeps_keys_and_moves_a_quarter_for_a_fourth_target() {
        let three = upstream(Balance::ConsistentHash, 3);
        let four = upstream(Balance::ConsistentHash, 4);
        let keys: Vec<u64> = (0..10_000u64)
            .map(|k| xxhash_rust::xxh3::xxh3_64(&k.to_le_bytes()))
            .collect();
        let before: Vec<_> = keys
            .iter()
            .map(|&k| three.pick_keyed(&[], Some(k)))
            .collect();
        let again: Vec<_> = keys
            .iter()
            .map(|&k| three.pick_keyed(&[], Some(k)))
            .collect();
        assert_eq!(before, again, "same key, same target");
        let moved = keys
            .iter()
            .zip(&before)
            .filter(|(&k, &b)| four.pick_keyed(&[], Some(k)) != b)
            .count();
        assert!(
            (2_200..=2_800).contains(&moved),
            "{moved} of 10000 keys moved"
        );
        // Every moved key went to the new target, and the three share evenly.
        for (&k, &b) in keys.iter().zip(&before) {
            let now = four.pick_keyed(&[], Some(k));
            assert!(now == b || now == Some(3));
        }
        let on_first = before.iter().filter(|&&t| t == Some(0)).count();
        assert!((3_000..=3_700).contains(&on_first), "{on_first}");
        // A down target's keys go elsewhere; the others stay put.
        three.record_failure(0);
        three.record_failure(0);
        for (&k, &b) in keys.iter().zip(&before).take(500) {
            let now = three.pick_keyed(&[], Some(k));
            assert_ne!(now, Some(0));
            if b != Some(0) {
                assert_eq!(now, b);
            }
        }
    }

    #[test]
    fn the_retry_budget_is_a_fifth_of_requests_in_flight_at_least_three() {
        let u = upstream(Balance::RoundRobin, 2);
        let admitted = (0..10).filter(|_| u.begin_retry()).count();
        assert_eq!(admitted, 3, "an idle upstream still gets 3");
        for _ in 0..admitted {
            u.end_retry();
        }
        for _ in 0..100 {
            u.begin(0);
        }
        let admitted = (0..100).filter(|_| u.begin_retry()).count();
        assert_eq!(admitted, 20, "20% of 100 in flight");
        u.end_retry();
        assert!(u.begin_retry(), "a finished retry frees its place");
    }

    fn breaker(consecutive_5xx: u32, error_ratio: f64) -> crate::settings::CircuitBreaker {
        crate::settings::CircuitBreaker {
            consecutive_5xx,
            error_ratio,
            min_requests: 10,
            window: Duration::from_secs(10),
            half_open_successes: 2,
        }
    }

    #[test]
    fn server_errors_open_a_circuit_only_with_a_breaker() {
        let mut u = upstream(Balance::RoundRobin, 2);
        for _ in 0..10 {
            assert_eq!(u.record(0, Outcome::ServerError), HealthChange::None);
        }
        assert!(u.targets[0].is_available(), "a 5xx is an answer by default");
        u.settings.circuit_breaker = Some(breaker(3, 0.0));
        u.settings.fail_timeout = Duration::ZERO;
        assert_eq!(u.record(0, Outcome::ServerError), HealthChange::None);
        assert_eq!(u.record(0, Outcome::Answered), HealthChange::None, "resets");
        assert_eq!(u.record(0, Outcome::ServerError), HealthChange::None);
        assert_eq!(u.record(0, Outcome::ServerError), HealthChange::None);
        assert_eq!(u.record(0, Outcome::ServerError), HealthChange::MarkedDown);
        assert_eq!(u.targets[0].circuit_state(), "open");
        std::thread::sleep(Duration::from_millis(5));
        // Half-open: one probe at a time; a failed probe opens it again.
        assert!(u.targets[0].is_available());
        assert_eq!(u.targets[0].circuit_state(), "half_open");
        u.begin(0);
        assert!(!u.targets[0].is_available(), "the probe is in flight");
        u.end(0);
        assert_eq!(u.record(0, Outcome::Failed), HealthChange::None);
        std::thread::sleep(Duration::from_millis(5));
        assert!(u.targets[0].is_available());
        assert_eq!(u.record(0, Outcome::Answered), HealthChange::None);
        assert_eq!(
            u.record(0, Outcome::Answered),
            HealthChange::Recovered,
            "2 probes"
        );
        assert_eq!(u.targets[0].circuit_state(), "closed");
    }

    #[test]
    fn an_error_ratio_over_enough_requests_opens_the_circuit() {
        let mut u = upstream(Balance::RoundRobin, 2);
        u.settings.circuit_breaker = Some(breaker(0, 0.5));
        for i in 0..4 {
            let outcome = if i % 2 == 0 {
                Outcome::ServerError
            } else {
                Outcome::Failed
            };
            assert_eq!(
                u.record(1, outcome),
                HealthChange::None,
                "under min_requests"
            );
            assert_eq!(u.record(1, Outcome::Answered), HealthChange::None);
        }
        assert_eq!(u.record(1, Outcome::Answered), HealthChange::None, "4 of 9");
        // 5 errors in 10 requests: 50%.
        assert_eq!(u.record(1, Outcome::ServerError), HealthChange::MarkedDown);
    }

    #[test]
    fn no_more_than_max_ejected_percent_of_targets_are_taken_out() {
        let mut u = upstream(Balance::RoundRobin, 4);
        u.settings.max_ejected_percent = 50;
        for t in 0..4 {
            u.record(t, Outcome::Failed);
        }
        assert_eq!(u.record(0, Outcome::Failed), HealthChange::MarkedDown);
        assert_eq!(u.record(1, Outcome::Failed), HealthChange::MarkedDown);
        assert_eq!(
            u.record(2, Outcome::Failed),
            HealthChange::None,
            "cap: 2 of 4"
        );
        assert!(u.targets[2].is_available());
        let single = upstream(Balance::RoundRobin, 1);
        single.record(0, Outcome::Failed);
        assert_eq!(
            single.record(0, Outcome::Failed),
            HealthChange::MarkedDown,
            "one target may always be taken out"
        );
    }

    #[test]
    fn excluded_and_down_targets_leave_nothing() {
        let u = upstream(Balance::Random, 2);
        u.record_failure(1);
        u.record_failure(1);
        assert_eq!(u.pick(&[0]), None);
        assert_eq!(u.pick(&[]), Some(0));
    }
}
