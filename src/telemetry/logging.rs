//! Structured logging: slog with a JSON (or text) drain on stdout behind
//! slog-async, so request workers never block on the terminal or a pipe.
//!
//! One logger serves startup, configuration, shutdown and access-log events.
//! When the async channel is full, records are dropped and the drop is
//! reported, rather than stalling the request path.
//!
//! Lines are batched: writers append to a buffer that a flusher thread
//! writes out every [`FLUSH_INTERVAL`] (or at once past [`FLUSH_BYTES`]), so
//! a busy gateway makes one `write` per batch instead of one per line. A
//! line reaches stdout at most `FLUSH_INTERVAL` late; the guard flushes what
//! is left at exit. The buffer is bounded ([`MAX_PENDING_BYTES`]): when
//! stdout stalls, new lines are dropped and the drop is reported.
//!
//! Access-log lines, the one event per request, skip the async channel:
//! each worker has its own writer ([`AccessLogSink::worker_writer`]; JSON
//! encoded by `json_line.rs`) that writes the line straight from the
//! borrowed request data into the shared buffer. That costs the worker a
//! memory append, never I/O, and saves converting every field into an
//! owned value for the channel.

use std::cell::Cell;
use std::io::{self, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use slog::{info, o, Drain, FnValue, Logger, PushFnValue, Record};

use super::exchange::millis;
use super::json_line::AccessLine;
use crate::context::IpText;
use crate::settings::{LogFormat, LoggingSettings};

/// Slots of the other events' queue (access lines do not use it). Its slots
/// are allocated up front: 65,536 of them held 6.5 MiB at idle.
const CHANNEL_SIZE: usize = 4_096;
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(50);
pub const FLUSH_BYTES: usize = 64 * 1024;
/// Past this much unwritten output (stdout stalled), lines are dropped.
pub const MAX_PENDING_BYTES: usize = 8 * 1024 * 1024;
/// Largest written-out buffer kept for the next batch: a usual batch fits,
/// a stall's backlog is freed.
const SPARE_CAPACITY_MAX: usize = 1024 * 1024;

#[derive(Default)]
struct Batch {
    buf: Vec<u8>,
    /// The last written-out buffer, emptied, swapped in at the next drain:
    /// the batch keeps its capacity instead of regrowing from empty after
    /// every write (that regrowth cost ~650 instructions per request).
    spare: Vec<u8>,
    closed: bool,
    /// No flusher thread: the writer itself writes out each line.
    direct: bool,
    /// Lines dropped since the last report.
    dropped: u64,
}

/// Output shared by the log thread (appends) and the flusher (writes out).
#[derive(Clone, Default)]
struct BatchedStdout(Arc<(Mutex<Batch>, Condvar)>);

impl BatchedStdout {
    /// Takes the pending bytes and writes them, outside the lock.
    fn drain_to_stdout(&self) {
        let (mut pending, dropped) = {
            let mut batch = self.0 .0.lock().unwrap_or_else(|p| p.into_inner());
            let spare = std::mem::take(&mut batch.spare);
            (
                std::mem::replace(&mut batch.buf, spare),
                std::mem::take(&mut batch.dropped),
            )
        };
        if dropped > 0 {
            let report = serde_json::json!({
                "ts": now_rfc3339().as_str(),
                "level": "warning",
                "msg": "log output too slow: lines dropped",
                "dropped": dropped,
                "version": env!("CARGO_PKG_VERSION"),
            });
            pending.extend_from_slice(report.to_string().as_bytes());
            pending.push(b'\n');
        }
        if !pending.is_empty() {
            let mut out = io::stdout().lock();
            // Nowhere to report a failed log write; the line is lost.
            let _ = out.write_all(&pending);
            let _ = out.flush();
        }
        if pending.capacity() <= SPARE_CAPACITY_MAX {
            pending.clear();
            let mut batch = self.0 .0.lock().unwrap_or_else(|p| p.into_inner());
            if batch.spare.capacity() < pending.capacity() {
                batch.spare = pending;
            }
        }
    }

    fn spawn_flusher(&self) -> io::Result<JoinHandle<()>> {
        let shared = self.clone();
        std::thread::Builder::new()
            .name("gateway-log-flush".into())
            .spawn(move || loop {
                let closed = {
                    let (lock, wake) = &*shared.0;
                    let batch = lock.lock().unwrap_or_else(|p| p.into_inner());
                    let (batch, _) = wake
                        .wait_timeout(batch, FLUSH_INTERVAL)
                        .unwrap_or_else(|p| p.into_inner());
                    batch.closed
                };
                shared.drain_to_stdout();
                if closed {
                    return;
                }
            })
    }

    fn close(&self) {
        let (lock, wake) = &*self.0;
        lock.lock().unwrap_or_else(|p| p.into_inner()).closed = true;
        wake.notify_all();
    }
}

impl BatchedStdout {
    /// Appends one whole line to the batch (the shared lock is taken once
    /// per line), or counts it dropped when the output is stalled.
    fn push_line(&self, line: &[u8]) {
        let (lock, wake) = &*self.0;
        let mut batch = lock.lock().unwrap_or_else(|p| p.into_inner());
        if batch.buf.len() + line.len() > MAX_PENDING_BYTES {
            batch.dropped += 1;
        } else {
            batch.buf.extend_from_slice(line);
        }
        if batch.direct {
            drop(batch);
            self.drain_to_stdout();
        } else if batch.buf.len() >= FLUSH_BYTES {
            wake.notify_one();
        }
    }
}

/// The log thread's writer: the JSON serializer writes each record in many
/// small pieces, so they gather in a private line buffer and the shared
/// batch is locked once per line.
struct LineWriter {
    shared: BatchedStdout,
    line: Vec<u8>,
}

impl LineWriter {
    fn new(shared: BatchedStdout) -> Self {
        Self {
            shared,
            line: Vec::with_capacity(512),
        }
    }
}

impl Write for LineWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.line.extend_from_slice(bytes);
        if bytes.ends_with(b"\n") {
            self.shared.push_line(&self.line);
            self.line.clear();
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Keeps logging alive; dropping it writes out everything still queued.
pub struct LogGuard {
    async_guard: Option<slog_async::AsyncGuard>,
    output: BatchedStdout,
    flusher: Option<JoinHandle<()>>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        // First let the async thread finish its queue, then the flusher.
        drop(self.async_guard.take());
        self.output.close();
        if let Some(flusher) = self.flusher.take() {
            let _ = flusher.join();
        }
        self.output.drain_to_stdout();
    }
}

/// Appends the current time (RFC 3339) to an access-log line.
pub fn push_timestamp(line: &mut Vec<u8>) {
    let ts = now_rfc3339();
    line.extend_from_slice(&ts.buf[..ts.len]);
}

/// The time as RFC 3339 text, formatted on the stack.
struct Timestamp {
    buf: [u8; 40],
    len: usize,
}

impl Timestamp {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

fn now_rfc3339() -> Timestamp {
    let mut ts = Timestamp {
        buf: [0; 40],
        len: 0,
    };
    let mut out = io::Cursor::new(&mut ts.buf[..]);
    if time::OffsetDateTime::now_utc()
        .format_into(&mut out, &time::format_description::well_known::Rfc3339)
        .is_ok()
    {
        ts.len = out.position() as usize;
    }
    ts
}

type LineDrain = Box<dyn Drain<Ok = (), Err = slog::Never> + Send>;

/// The formatter of every line, JSON or text, writing into `output`.
fn line_drain(format: LogFormat, output: &BatchedStdout) -> LineDrain {
    match format {
        LogFormat::Json => Box::new(
            slog_json::Json::new(LineWriter::new(output.clone()))
                .add_key_value(o!(
                    "ts" => PushFnValue(|_: &Record, ser| ser.emit(now_rfc3339().as_str())),
                    "level" => FnValue(|r: &Record| level_name(r.level())),
                    "msg" => PushFnValue(|r: &Record, ser| ser.emit(r.msg())),
                ))
                .build()
                .fuse(),
        ),
        LogFormat::Text => {
            let decorator = slog_term::PlainDecorator::new(LineWriter::new(output.clone()));
            Box::new(slog_term::FullFormat::new(decorator).build().fuse())
        }
    }
}

/// Hands each worker its own access-log writer over the shared output.
#[derive(Clone)]
pub struct AccessLogSink {
    output: BatchedStdout,
    format: LogFormat,
}

impl AccessLogSink {
    /// A writer for the calling worker (built once per worker, in the
    /// server factory), used only on that worker's thread. Whether a line
    /// is written is the generation's choice (`Gateway::access_log`), so a
    /// reload can turn access lines on or off.
    pub fn worker_writer(&self) -> AccessLogWriter {
        match self.format {
            LogFormat::Json => AccessLogWriter(AccessOutput::Json {
                output: self.output.clone(),
                line: Cell::new(Vec::with_capacity(512)),
            }),
            LogFormat::Text => {
                let drain = std::sync::Mutex::new(line_drain(self.format, &self.output));
                let version = o!("version" => env!("CARGO_PKG_VERSION"));
                AccessLogWriter(AccessOutput::Text(Logger::root(
                    drain.ignore_res(),
                    version,
                )))
            }
        }
    }
}

/// One worker's access-log output.
pub struct AccessLogWriter(AccessOutput);

enum AccessOutput {
    /// `format: json`: the line encoded into this buffer, kept between
    /// lines for its capacity (`json_line`), then appended to the batch.
    Json {
        output: BatchedStdout,
        line: Cell<Vec<u8>>,
    },
    /// `format: text`: slog's terminal format, as every other event.
    Text(Logger),
}

impl AccessLogWriter {
    pub fn write(&self, line: &AccessLine<'_>) {
        match &self.0 {
            AccessOutput::Json { output, line: buf } => {
                let mut text = buf.take();
                text.clear();
                line.write_json(&mut text, push_timestamp);
                output.push_line(&text);
                buf.set(text);
            }
            AccessOutput::Text(log) => info!(log, "request";
                "request_id" => line.request_id,
                "method" => line.method,
                "path" => line.path,
                "status" => line.status,
                "duration_ms" => millis(line.duration),
                "upstream_ms" => line.upstream_duration.map(millis),
                "bytes_in" => line.bytes_in,
                "bytes_out" => line.bytes_out,
                "user_agent" => line.user_agent,
                "route" => line.route,
                "upstream" => line.upstream,
                "target" => line.target,
                "client_ip" => line.client_ip.map(IpText::as_str),
                "user" => line.user,
                TraceIdField(line.trace_id),
            ),
        }
    }
}

/// `trace_id`, written only with tracing on.
struct TraceIdField<'a>(Option<&'a str>);

impl slog::KV for TraceIdField<'_> {
    fn serialize(&self, _: &slog::Record<'_>, out: &mut dyn slog::Serializer) -> slog::Result {
        match self.0 {
            Some(id) => out.emit_str("trace_id", id),
            None => Ok(()),
        }
    }
}

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

/// The level of the process logger, changed by a reload without
/// rebuilding the logger.
#[derive(Clone)]
pub struct LevelHandle(Arc<AtomicUsize>);

impl LevelHandle {
    fn new(level: slog::Level) -> Self {
        Self(Arc::new(AtomicUsize::new(level.as_usize())))
    }

    pub fn set(&self, level: slog::Level) {
        self.0.store(level.as_usize(), Ordering::Relaxed);
    }

    pub fn get(&self) -> slog::Level {
        slog::Level::from_usize(self.0.load(Ordering::Relaxed)).unwrap_or(slog::Level::Info)
    }

    fn allows(&self, level: slog::Level) -> bool {
        level.as_usize() <= self.0.load(Ordering::Relaxed)
    }
}

/// Passes records at or above the handle's current level.
struct ReloadableLevel<D> {
    drain: D,
    level: LevelHandle,
}

impl<D: Drain> Drain for ReloadableLevel<D> {
    type Ok = Option<D::Ok>;
    type Err = D::Err;

    fn log(&self, record: &Record, values: &slog::OwnedKVList) -> Result<Self::Ok, Self::Err> {
        if self.level.allows(record.level()) {
            self.drain.log(record, values).map(Some)
        } else {
            Ok(None)
        }
    }

    fn is_enabled(&self, level: slog::Level) -> bool {
        self.level.allows(level) && self.drain.is_enabled(level)
    }
}

/// The process logger, its guard, the access-log sink and the handle
/// that changes the logger's level.
pub fn build(settings: &LoggingSettings) -> (Logger, LogGuard, AccessLogSink, LevelHandle) {
    let level = LevelHandle::new(settings.level);
    let output = BatchedStdout::default();
    let (drain, async_guard) = async_drain(line_drain(settings.format, &output), level.clone());
    // Without the flusher thread lines would wait for the next full batch;
    // fall back to writing each line at once.
    let flusher = output.spawn_flusher().ok();
    if flusher.is_none() {
        output.0 .0.lock().unwrap_or_else(|p| p.into_inner()).direct = true;
    }
    let logger = Logger::root(drain, o!("version" => env!("CARGO_PKG_VERSION")));
    let access = AccessLogSink {
        output: output.clone(),
        format: settings.format,
    };
    (
        logger,
        LogGuard {
            async_guard: Some(async_guard),
            output,
            flusher,
        },
        access,
        level,
    )
}

/// Level filtering happens before the channel, so records below the level
/// never take a slot in it.
fn async_drain<D>(drain: D, level: LevelHandle) -> (FilteredAsync, slog_async::AsyncGuard)
where
    D: Drain<Ok = (), Err = slog::Never> + Send + 'static,
{
    let (drain, guard) = slog_async::Async::new(drain)
        .chan_size(CHANNEL_SIZE)
        .overflow_strategy(slog_async::OverflowStrategy::DropAndReport)
        .thread_name("gateway-log".into())
        .build_with_guard();
    let filtered = ReloadableLevel {
        drain: drain.fuse(),
        level,
    };
    (filtered.fuse(), guard)
}

type FilteredAsync = slog::Fuse<ReloadableLevel<slog::Fuse<slog_async::Async>>>;
