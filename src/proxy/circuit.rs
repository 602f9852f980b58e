//! One target's circuit, the passive half of upstream health: closed (takes
//! traffic), open (skipped until `fail_timeout` is over), half-open (one
//! probe request at a time; `half_open_successes` good answers in a row
//! close it, any failure opens it again).
//!
//! Fed by the proxy after every exchange through `balancer::Upstream`. What
//! opens it: `max_fails` failed exchanges in a row (no connection, no answer
//! in time, a broken exchange), and with `circuit_breaker` also
//! `consecutive_5xx` 5xx answers in a row or an `error_ratio` of failures
//! and 5xx answers over a window of at least `min_requests`. Lock-free:
//! a handful of atomics, updated with relaxed ordering (a decision that is
//! a request late is acceptable; a lock on every request is not).

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};

use crate::settings::{CircuitBreaker, UpstreamSettings};

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;

/// What an exchange with the target came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// An answer that is not a server error.
    Answered,
    /// 500, 502, 503 or 504 from the target.
    ServerError,
    /// No connection, no answer in time, or a broken exchange.
    Failed,
}

impl Outcome {
    pub fn of_status(status: u16) -> Self {
        if matches!(status, 500 | 502 | 503 | 504) {
            Self::ServerError
        } else {
            Self::Answered
        }
    }
}

/// What an outcome did to the circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    None,
    /// Closed -> open (or half-open -> open again, reported as `None`).
    Opened,
    /// Half-open -> closed.
    Closed,
}

#[derive(Debug, Default)]
pub struct Circuit {
    state: AtomicU8,
    open_until_ms: AtomicU64,
    consecutive_failures: AtomicU32,
    consecutive_5xx: AtomicU32,
    half_open_successes: AtomicU32,
    window_start_ms: AtomicU64,
    window_requests: AtomicU32,
    window_errors: AtomicU32,
}

impl Circuit {
    /// Whether the target may take a request now; moves an open circuit
    /// whose time is over to half-open. `in_flight`: the target's requests
    /// in flight (half-open admits one at a time).
    pub fn admits(&self, now_ms: fn() -> u64, in_flight: usize) -> bool {
        match self.state.load(Relaxed) {
            CLOSED => true,
            OPEN => {
                if now_ms() < self.open_until_ms.load(Relaxed) {
                    return false;
                }
                if self
                    .state
                    .compare_exchange(OPEN, HALF_OPEN, Relaxed, Relaxed)
                    .is_ok()
                {
                    self.half_open_successes.store(0, Relaxed);
                }
                in_flight == 0
            }
            _ => in_flight == 0,
        }
    }

    pub fn state_name(&self, now_ms: u64) -> &'static str {
        match self.state.load(Relaxed) {
            CLOSED => "closed",
            OPEN if now_ms < self.open_until_ms.load(Relaxed) => "open",
            _ => "half_open",
        }
    }

    pub fn is_closed(&self) -> bool {
        self.state.load(Relaxed) == CLOSED
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures.load(Relaxed)
    }

    /// Records one exchange. `may_open` is asked before a closed circuit
    /// opens (the upstream's cap on ejected targets); the clock is read
    /// only with a breaker's window or a state change (not per answer).
    pub fn record(
        &self,
        outcome: Outcome,
        settings: &UpstreamSettings,
        now_ms: fn() -> u64,
        may_open: impl FnOnce() -> bool,
    ) -> Transition {
        let breaker = settings.circuit_breaker.as_ref();
        // Without a breaker a 5xx is an answer like any other.
        let outcome = match (outcome, breaker) {
            (Outcome::ServerError, None) => Outcome::Answered,
            (o, _) => o,
        };
        let tripped = match outcome {
            Outcome::Answered => {
                self.consecutive_failures.store(0, Relaxed);
                self.consecutive_5xx.store(0, Relaxed);
                false
            }
            Outcome::Failed => {
                self.consecutive_5xx.store(0, Relaxed);
                self.consecutive_failures.fetch_add(1, Relaxed) + 1 >= settings.max_fails
            }
            Outcome::ServerError => {
                self.consecutive_failures.store(0, Relaxed);
                let in_a_row = self.consecutive_5xx.fetch_add(1, Relaxed) + 1;
                breaker.is_some_and(|b| b.consecutive_5xx > 0 && in_a_row >= b.consecutive_5xx)
            }
        };
        let tripped = match breaker {
            Some(b) => self.count_in_window(b, outcome != Outcome::Answered, now_ms()) || tripped,
            None => tripped,
        };
        match self.state.load(Relaxed) {
            HALF_OPEN if outcome == Outcome::Answered => {
                let needed = breaker.map_or(1, |b| b.half_open_successes);
                if self.half_open_successes.fetch_add(1, Relaxed) + 1 >= needed
                    && self
                        .state
                        .compare_exchange(HALF_OPEN, CLOSED, Relaxed, Relaxed)
                        .is_ok()
                {
                    self.consecutive_failures.store(0, Relaxed);
                    return Transition::Closed;
                }
                Transition::None
            }
            HALF_OPEN => {
                // The probe failed: open again, whatever the cap (it was
                // already counted as ejected).
                self.open(settings, now_ms());
                Transition::None
            }
            CLOSED if tripped && may_open() => {
                if self
                    .state
                    .compare_exchange(CLOSED, OPEN, Relaxed, Relaxed)
                    .is_ok()
                {
                    self.open(settings, now_ms());
                    return Transition::Opened;
                }
                Transition::None
            }
            _ => Transition::None,
        }
    }

    fn open(&self, settings: &UpstreamSettings, now_ms: u64) {
        let duration = settings.fail_timeout.as_millis().min(u128::from(u64::MAX)) as u64;
        self.open_until_ms.store(now_ms + duration.max(1), Relaxed);
        self.state.store(OPEN, Relaxed);
        self.window_requests.store(0, Relaxed);
        self.window_errors.store(0, Relaxed);
    }

    /// Counts the exchange in the tumbling window; true when the error
    /// ratio is reached over enough requests.
    fn count_in_window(&self, b: &CircuitBreaker, error: bool, now_ms: u64) -> bool {
        let window = b.window.as_millis().min(u128::from(u64::MAX)) as u64;
        let start = self.window_start_ms.load(Relaxed);
        if now_ms.saturating_sub(start) >= window
            && self
                .window_start_ms
                .compare_exchange(start, now_ms, Relaxed, Relaxed)
                .is_ok()
        {
            self.window_requests.store(0, Relaxed);
            self.window_errors.store(0, Relaxed);
        }
        let requests = self.window_requests.fetch_add(1, Relaxed) + 1;
        let errors = if error {
            self.window_errors.fetch_add(1, Relaxed) + 1
        } else {
            self.window_errors.load(Relaxed)
        };
        b.error_ratio > 0.0
            && requests >= b.min_requests
            && f64::from(errors) >= b.error_ratio * f64::from(requests)
    }
}
