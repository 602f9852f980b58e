//! Structured logging: slog with a JSON (or text) drain on stdout behind
//! slog-async, so request workers never block on the terminal or a pipe.
//!
//! One logger serves startup, configuration, shutdown and access-log events.
//! When the async channel is full, records are dropped and the drop is
//! reported, rather than stalling the request path.

use slog::{o, Drain, FnValue, Logger, PushFnValue, Record};

use crate::settings::{LogFormat, LoggingSettings};

/// Keeps the async drain alive; dropping it flushes what is queued.
pub type LogGuard = slog_async::AsyncGuard;

const CHANNEL_SIZE: usize = 65_536;

fn level_name(level: slog::Level) -> &'static str {
    match level {
        slog::Level::Critical => "critical",
        slog::Level::Error => "error",
        slog::Level::Warning => "warning",
        slog::Level::Info => "info",
        slog::Level::Debug => "debug",
        slog::Level::Trace => "trace",
    }
}

pub fn build(settings: &LoggingSettings) -> (Logger, LogGuard) {
    let level = settings.level;
    let (drain, guard) = match settings.format {
        LogFormat::Json => {
            let json = slog_json::Json::new(std::io::stdout())
                .add_key_value(o!(
                    "ts" => FnValue(|_: &Record| {
                        time::OffsetDateTime::now_utc()
                            .format(&time::format_description::well_known::Rfc3339)
                            .ok()
                    }),
                    "level" => FnValue(|r: &Record| level_name(r.level())),
                    "msg" => PushFnValue(|r: &Record, ser| ser.emit(r.msg())),
                ))
                .build()
                .fuse();
            async_drain(json.filter_level(level).fuse())
        }
        LogFormat::Text => {
            let decorator = slog_term::PlainDecorator::new(std::io::stdout());
            let text = slog_term::FullFormat::new(decorator).build().fuse();
            async_drain(text.filter_level(level).fuse())
        }
    };
    let logger = Logger::root(drain, o!("version" => env!("CARGO_PKG_VERSION")));
    (logger, guard)
}

fn async_drain<D>(drain: D) -> (slog::Fuse<slog_async::Async>, LogGuard)
where
    D: Drain<Ok = (), Err = slog::Never> + Send + 'static,
{
    let (drain, guard) = slog_async::Async::new(drain)
        .chan_size(CHANNEL_SIZE)
        .overflow_strategy(slog_async::OverflowStrategy::DropAndReport)
        .thread_name("gateway-log".into())
        .build_with_guard();
    (drain.fuse(), guard)
}
