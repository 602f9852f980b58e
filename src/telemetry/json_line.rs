//! The access log's JSON encoder: one line per request, written straight
//! into a buffer the worker reuses, then appended to the shared output.
//!
//! Used by `logging::AccessLogSink` instead of slog-json for the one event
//! per request. Keys are the gateway's own static names, so they are copied
//! as they are; values a client chose (path, user agent, request id) take
//! serde_json's escaping only when they hold a byte that needs it. The
//! output is the same JSON object slog-json writes, without its per-piece
//! writes and key escaping.

use std::cell::Cell;
use std::fmt::{self, Write as _};

use slog::{Drain, Key, OwnedKVList, Record, Serializer, KV};

/// Where a finished line goes (`logging`'s batched stdout).
pub trait LineSink: Send {
    fn push_line(&self, line: &[u8]);
}

pub struct JsonLineDrain<S> {
    sink: S,
    /// The line being written, kept between records for its capacity.
    line: Cell<Vec<u8>>,
    timestamp: fn(&mut Vec<u8>),
}

impl<S: LineSink> JsonLineDrain<S> {
    /// `timestamp` appends the current time, as JSON string content.
    pub fn new(sink: S, timestamp: fn(&mut Vec<u8>)) -> Self {
        Self {
            sink,
            line: Cell::new(Vec::with_capacity(512)),
            timestamp,
        }
    }
}

impl<S: LineSink> Drain for JsonLineDrain<S> {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record, values: &OwnedKVList) -> Result<(), slog::Never> {
        let mut line = self.line.take();
        line.clear();
        line.extend_from_slice(b"{\"ts\":\"");
        (self.timestamp)(&mut line);
        line.extend_from_slice(b"\",\"level\":\"");
        line.extend_from_slice(level_name(record.level()).as_bytes());
        line.extend_from_slice(b"\",\"msg\":");
        let mut fields = Fields(&mut line);
        match record.msg().as_str() {
            Some(msg) => fields.string(msg),
            None => fields.string(&record.msg().to_string()),
        }
        // Serialising into a Vec cannot fail.
        let _ = record.kv().serialize(record, &mut fields);
        let _ = values.serialize(record, &mut fields);
        line.extend_from_slice(b"}\n");
        self.sink.push_line(&line);
        self.line.set(line);
        Ok(())
    }
}

pub fn level_name(level: slog::Level) -> &'static str {
    match level {
        slog::Level::Critical => "critical",
        slog::Level::Error => "error",
        slog::Level::Warning => "warning",
        slog::Level::Info => "info",
        slog::Level::Debug => "debug",
        slog::Level::Trace => "trace",
    }
}

/// Appends `,"key":value` for each field.
struct Fields<'a>(&'a mut Vec<u8>);

impl Fields<'_> {
    fn key(&mut self, key: Key) {
        self.0.extend_from_slice(b",\"");
        self.0.extend_from_slice(key.as_bytes());
        self.0.extend_from_slice(b"\":");
    }

    fn string(&mut self, value: &str) {
        let plain = value.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\');
        if plain {
            self.0.push(b'"');
            self.0.extend_from_slice(value.as_bytes());
            self.0.push(b'"');
        } else {
            let _ = serde_json::to_writer(&mut *self.0, value);
        }
    }

    fn integer(&mut self, key: Key, value: impl itoa::Integer) {
        self.key(key);
        self.0
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }
}

impl Serializer for Fields<'_> {
    fn emit_arguments(&mut self, key: Key, val: &fmt::Arguments) -> slog::Result {
        self.key(key);
        match val.as_str() {
            Some(text) => self.string(text),
            None => {
                let mut text = String::new();
                let _ = text.write_fmt(*val);
                self.string(&text);
            }
        }
        Ok(())
    }

    fn emit_str(&mut self, key: Key, val: &str) -> slog::Result {
        self.key(key);
        self.string(val);
        Ok(())
    }

    fn emit_none(&mut self, key: Key) -> slog::Result {
        self.key(key);
        self.0.extend_from_slice(b"null");
        Ok(())
    }

    fn emit_unit(&mut self, key: Key) -> slog::Result {
        self.emit_none(key)
    }

    fn emit_bool(&mut self, key: Key, val: bool) -> slog::Result {
        self.key(key);
        self.0
            .extend_from_slice(if val { b"true" } else { b"false" });
        Ok(())
    }

    fn emit_f64(&mut self, key: Key, val: f64) -> slog::Result {
        self.key(key);
        // Non-finite numbers become null, as in serde_json.
        let _ = serde_json::to_writer(&mut *self.0, &val);
        Ok(())
    }

    fn emit_f32(&mut self, key: Key, val: f32) -> slog::Result {
        self.emit_f64(key, f64::from(val))
    }

    fn emit_u8(&mut self, key: Key, val: u8) -> slog::Result {
        self.integer(key, val);
        Ok(())
    }
    fn emit_u16(&mut self, key: Key, val: u16) -> slog::Result {
        self.integer(key, val);
        Ok(())
    }
    fn emit_u32(&mut self, key: Key, val: u32) -> slog::Result {
        self.integer(key, val);
        Ok(())
    }
    fn emit_u64(&mut self, key: Key, val: u64) -> slog::Result {
        self.integer(key, val);
        Ok(())
    }
    fn emit_usize(&mut self, key: Key, val: usize) -> slog::Result {
        self.integer(key, val);
        Ok(())
    }
    fn emit_i8(&mut self, key: Key, val: i8) -> slog::Result {
        self.integer(key, val);
        Ok(())
    }
    fn emit_i16(&mut self, key: Key, val: i16) -> slog::Result {
        self.integer(key, val);
        Ok(())
    }
    fn emit_i32(&mut self, key: Key, val: i32) -> slog::Result {
        self.integer(key, val);
        Ok(())
    }
    fn emit_i64(&mut self, key: Key, val: i64) -> slog::Result {
        self.integer(key, val);
        Ok(())
    }
    fn emit_isize(&mut self, key: Key, val: isize) -> slog::Result {
        self.integer(key, val);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use slog::{info, o, Logger};

    use super::*;

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl LineSink for Lines {
        fn push_line(&self, line: &[u8]) {
            self.0.lock().unwrap().extend_from_slice(line);
        }
    }

    #[test]
    fn lines_are_json_with_every_field_escaped_where_needed() {
        let lines = Lines::default();
        let drain = JsonLineDrain::new(lines.clone(), |b| {
            b.extend_from_slice(b"2026-01-01T00:00:00Z")
        });
        let log = Logger::root(Mutex::new(drain).fuse(), o!("version" => "1.2.3"));
        let agent = "Mozilla \"quoted\" \\ tab\there \u{fc}";
        info!(log, "request";
            "path" => "/a b", "status" => 200u16, "duration_ms" => 1.25f64,
            "user" => None::<&str>, "user_agent" => agent, "bytes_in" => Some(12u64),
            "neg" => -7i64, "ok" => true, "shown" => %format_args!("x{}", 1));
        info!(log, "second"; "n" => 2usize);
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        let parsed: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect(l))
            .collect();
        assert_eq!(parsed.len(), 2);
        let first = &parsed[0];
        assert_eq!(first["ts"], "2026-01-01T00:00:00Z");
        assert_eq!(first["level"], "info");
        assert_eq!(first["msg"], "request");
        assert_eq!(first["path"], "/a b");
        assert_eq!(first["status"], 200);
        assert_eq!(first["duration_ms"], 1.25);
        assert!(first["user"].is_null());
        assert_eq!(first["user_agent"], agent);
        assert_eq!(first["bytes_in"], 12);
        assert_eq!(first["neg"], -7);
        assert_eq!(first["ok"], true);
        assert_eq!(first["shown"], "x1");
        assert_eq!(first["version"], "1.2.3");
        assert_eq!(parsed[1]["n"], 2);
    }
}
