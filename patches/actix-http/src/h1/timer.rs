use std::{fmt, future::Future, pin::Pin, task::Context};

use tokio::time::{sleep_until, Instant, Sleep};
use tracing::trace;

#[derive(Debug)]
pub(super) enum TimerState {
    Disabled,
    // PATCH(gateway, patches/README.md #8): an inactive timer keeps the `Sleep` it last
    // ran, and the next `set` resets it to the new deadline instead of allocating,
    // registering and, at `clear`, deregistering and freeing a new one. The head and
    // keep-alive timers are set and cleared once per request on a kept-alive connection.
    // A kept `Sleep` stays in the timer wheel until reset; if its old deadline passes
    // first, the dispatcher is polled once more and finds the timer inactive.
    Inactive { spare: Option<Pin<Box<Sleep>>> },
    Active { timer: Pin<Box<Sleep>> },
}

impl TimerState {
    pub(super) fn new(enabled: bool) -> Self {
        if enabled {
            Self::Inactive { spare: None }
        } else {
            Self::Disabled
        }
    }

    pub(super) fn is_enabled(&self) -> bool {
        matches!(self, Self::Active { .. } | Self::Inactive { .. })
    }

    pub(super) fn set(&mut self, deadline: Instant, line: u32) {
        if matches!(self, Self::Disabled) {
            trace!("setting disabled timer from line {}", line);
        }

        let timer = match std::mem::replace(self, Self::Disabled) {
            Self::Active { timer: mut kept }
            | Self::Inactive {
                spare: Some(mut kept),
            } => {
                kept.as_mut().reset(deadline);
                kept
            }
            Self::Inactive { spare: None } | Self::Disabled => Box::pin(sleep_until(deadline)),
        };
        *self = Self::Active { timer };
    }

    pub(super) fn set_and_init(&mut self, cx: &mut Context<'_>, deadline: Instant, line: u32) {
        self.set(deadline, line);
        self.init(cx);
    }

    pub(super) fn clear(&mut self, line: u32) {
        match std::mem::replace(self, Self::Disabled) {
            Self::Disabled => {
                trace!("trying to clear a disabled timer from line {}", line);
                *self = Self::Inactive { spare: None };
            }
            Self::Inactive { spare } => {
                trace!("trying to clear an inactive timer from line {}", line);
                *self = Self::Inactive { spare };
            }
            Self::Active { timer } => *self = Self::Inactive { spare: Some(timer) },
        }
    }

    pub(super) fn init(&mut self, cx: &mut Context<'_>) {
        if let TimerState::Active { timer } = self {
            let _ = timer.as_mut().poll(cx);
        }
    }
}

impl fmt::Display for TimerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimerState::Disabled => f.write_str("timer is disabled"),
            TimerState::Inactive { .. } => f.write_str("timer is inactive"),
            TimerState::Active { timer } => {
                let deadline = timer.deadline();
                let now = Instant::now();

                if deadline < now {
                    f.write_str("timer is active and has reached deadline")
                } else {
                    write!(
                        f,
                        "timer is active and due to expire in {} milliseconds",
                        ((deadline - now).as_secs_f32() * 1000.0)
                    )
                }
            }
        }
    }
}
