//! The access log's JSON line: one per request, encoded straight from the
//! exchange into a buffer the worker reuses, then appended to the shared
//! output (`logging`'s batched stdout).
//!
//! Used by `logging::AccessLogWriter` for `logging.format: json`; the text
//! format still goes through slog. Keys and the constant fields (`level`,
//! `msg`, `version`) are written as runs of fixed bytes; values a client
//! chose (path, user agent, request id) take serde_json's escaping only when
//! they hold a byte that needs it. The line is the object slog's JSON
//! format writes for other events (`ts`, `level`, `msg`, then the fields,
//! then `version`), in the order the gateway has always written them. Going
//! through slog's serializer cost a dynamic call per field and formatted
//! numbers through `f64`: 5.2k instructions per request, more than a sixth
//! of NGINX's whole request.

use std::time::Duration;

use crate::context::IpText;

/// One access-log line's fields (`None` is written as `null`).
pub struct AccessLine<'a> {
    /// Sane by construction (`RequestFacts::begin` keeps or mints it): written unescaped.
    pub request_id: &'a str,
    /// An HTTP token (no quote, backslash or control): written unescaped.
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    /// `duration_ms`: milliseconds with microsecond precision.
    pub duration: Duration,
    /// `upstream_ms`: until the upstream's response head.
    pub upstream_duration: Option<Duration>,
    pub bytes_in: Option<u64>,
    pub bytes_out: Option<u64>,
    pub user_agent: Option<&'a str>,
    pub route: Option<&'a str>,
    pub upstream: Option<&'a str>,
    pub target: Option<&'a str>,
    pub client_ip: Option<&'a IpText>,
    pub user: Option<&'a str>,
    /// Hex digits; written only with tracing on (no `null` field without it).
    pub trace_id: Option<&'a str>,
}

impl AccessLine<'_> {
    /// Appends the line, newline included; `timestamp` appends the time as
    /// JSON string content.
    pub fn write_json(&self, out: &mut Vec<u8>, timestamp: fn(&mut Vec<u8>)) {
        out.extend_from_slice(b"{\"ts\":\"");
        timestamp(out);
        out.extend_from_slice(b"\",\"level\":\"info\",\"msg\":\"request\"");
        if let Some(trace_id) = self.trace_id {
            out.extend_from_slice(b",\"trace_id\":");
            plain_string(out, trace_id);
        }
        out.extend_from_slice(b",\"user\":");
        optional(out, self.user, string);
        out.extend_from_slice(b",\"client_ip\":");
        optional(out, self.client_ip, |out, ip| {
            plain_bytes(out, ip.as_bytes())
        });
        out.extend_from_slice(b",\"target\":");
        optional(out, self.target, string);
        out.extend_from_slice(b",\"upstream\":");
        optional(out, self.upstream, string);
        out.extend_from_slice(b",\"route\":");
        optional(out, self.route, string);
        out.extend_from_slice(b",\"user_agent\":");
        optional(out, self.user_agent, string);
        out.extend_from_slice(b",\"bytes_out\":");
        optional(out, self.bytes_out, integer);
        out.extend_from_slice(b",\"bytes_in\":");
        optional(out, self.bytes_in, integer);
        out.extend_from_slice(b",\"upstream_ms\":");
        optional(out, self.upstream_duration, millis);
        out.extend_from_slice(b",\"duration_ms\":");
        millis(out, self.duration);
        out.extend_from_slice(b",\"status\":");
        integer(out, self.status);
        out.extend_from_slice(b",\"path\":");
        string(out, self.path);
        out.extend_from_slice(b",\"method\":");
        plain_string(out, self.method);
        out.extend_from_slice(b",\"request_id\":");
        plain_string(out, self.request_id);
        out.extend_from_slice(
            concat!(",\"version\":\"", env!("CARGO_PKG_VERSION"), "\"}\n").as_bytes(),
        );
    }
}

fn optional<T>(out: &mut Vec<u8>, value: Option<T>, write: fn(&mut Vec<u8>, T)) {
    match value {
        Some(value) => write(out, value),
        None => out.extend_from_slice(b"null"),
    }
}

/// A JSON string.
fn string(out: &mut Vec<u8>, value: &str) {
    // No early exit: a whole-string fold is vectorised (16 bytes a step).
    let needs_escape = value.bytes().fold(false, |seen, b| {
        seen | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if needs_escape {
        // Writing into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, value);
    } else {
        plain_string(out, value);
    }
}

/// A JSON string whose value holds nothing to escape, by construction.
fn plain_string(out: &mut Vec<u8>, value: &str) {
    plain_bytes(out, value.as_bytes());
}

fn plain_bytes(out: &mut Vec<u8>, value: &[u8]) {
    debug_assert!(!value.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\'));
    out.reserve(value.len() + 2);
    out.push(b'"');
    out.extend_from_slice(value);
    out.push(b'"');
}

fn integer(out: &mut Vec<u8>, value: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

/// Milliseconds rounded to the microsecond, written as serde_json writes
/// that `f64` (`1.0`, `0.385`, `12.5`), in integer arithmetic.
fn millis(out: &mut Vec<u8>, duration: Duration) {
    // In u64: a u128 division is a library call.
    let micros = duration
        .as_secs()
        .saturating_mul(1_000_000)
        .saturating_add(u64::from((duration.subsec_nanos() + 500) / 1000));
    integer(out, micros / 1000);
    let fraction = micros % 1000;
    let digits = [
        b'0' + (fraction / 100) as u8,
        b'0' + (fraction / 10 % 10) as u8,
        b'0' + (fraction % 10) as u8,
    ];
    // Trailing zeros dropped, one digit kept: 1.000 -> 1.0, 1.250 -> 1.25.
    let keep = match (digits[1], digits[2]) {
        (_, d) if d != b'0' => 3,
        (d, _) if d != b'0' => 2,
        _ => 1,
    };
    out.push(b'.');
    out.extend_from_slice(&digits[..keep]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_ip() -> &'static IpText {
        static IP: std::sync::LazyLock<IpText> =
            std::sync::LazyLock::new(|| IpText::new([192, 0, 2, 7].into()));
        &IP
    }

    fn line() -> AccessLine<'static> {
        AccessLine {
            request_id: "abc-123",
            method: "GET",
            path: "/a b",
            status: 200,
            duration: Duration::from_micros(1250),
            upstream_duration: None,
            bytes_in: Some(12),
            bytes_out: None,
            user_agent: Some("Mozilla \"quoted\" \\ tab\there \u{fc}"),
            route: Some("api"),
            upstream: Some("main"),
            target: Some("http://10.0.0.1:8080"),
            client_ip: Some(client_ip()),
            user: None,
            trace_id: None,
        }
    }

    fn parse(line: &AccessLine<'_>) -> serde_json::Value {
        let mut out = Vec::new();
        line.write_json(&mut out, |b| b.extend_from_slice(b"2026-01-01T00:00:00Z"));
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.ends_with('\n') && text.matches('\n').count() == 1,
            "{text}"
        );
        serde_json::from_str(&text).expect(&text)
    }

    fn millis_text(duration: Duration) -> String {
        let mut out = Vec::new();
        millis(&mut out, duration);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_line_is_one_json_object_with_every_field() {
        let parsed = parse(&line());
        assert_eq!(parsed["ts"], "2026-01-01T00:00:00Z");
        assert_eq!(parsed["level"], "info");
        assert_eq!(parsed["msg"], "request");
        assert_eq!(parsed["request_id"], "abc-123");
        assert_eq!(parsed["method"], "GET");
        assert_eq!(parsed["path"], "/a b");
        assert_eq!(parsed["status"], 200);
        assert_eq!(parsed["duration_ms"], 1.25);
        assert!(parsed["upstream_ms"].is_null());
        assert_eq!(parsed["bytes_in"], 12);
        assert!(parsed["bytes_out"].is_null());
        assert_eq!(parsed["user_agent"], line().user_agent.unwrap());
        assert_eq!(parsed["route"], "api");
        assert_eq!(parsed["upstream"], "main");
        assert_eq!(parsed["target"], "http://10.0.0.1:8080");
        assert_eq!(parsed["client_ip"], "192.0.2.7");
        assert!(parsed["user"].is_null());
        assert!(
            parsed.get("trace_id").is_none(),
            "no trace_id with tracing off"
        );
        assert_eq!(parsed["version"], env!("CARGO_PKG_VERSION"));
        let traced = parse(&AccessLine {
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736"),
            upstream_duration: Some(Duration::from_nanos(384_600)),
            ..line()
        });
        assert_eq!(traced["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(traced["upstream_ms"], 0.385);
    }

    #[test]
    fn durations_are_milliseconds_to_the_microsecond() {
        for (nanos, text) in [
            (0, "0.0"),
            (1_000_000, "1.0"),
            (1_000, "0.001"),
            (499, "0.0"),
            (500, "0.001"),
            (12_500_000, "12.5"),
            (384_600, "0.385"),
            (3_600_000_000_000, "3600000.0"),
        ] {
            assert_eq!(millis_text(Duration::from_nanos(nanos)), text, "{nanos} ns");
        }
    }

    proptest::proptest! {
        /// Whatever a client puts in a logged value (controls, quotes,
        /// backslashes, any Unicode), the line stays one JSON object and
        /// the value reads back unchanged.
        #[test]
        fn any_value_reads_back_from_its_line(value in "\\PC*|[\\x00-\\x7f]*") {
            let parsed = parse(&AccessLine { path: &value, user_agent: Some(&value), ..line() });
            proptest::prop_assert_eq!(parsed["path"].as_str(), Some(value.as_str()));
            proptest::prop_assert_eq!(parsed["user_agent"].as_str(), Some(value.as_str()));
        }

        /// A duration is written exactly as serde_json writes its whole
        /// microseconds as milliseconds.
        #[test]
        fn durations_are_written_as_serde_json_writes_them(nanos in 0u64..10_000_000_000_000) {
            let micros = (nanos + 500) / 1000;
            proptest::prop_assert_eq!(
                millis_text(Duration::from_nanos(nanos)),
                serde_json::to_string(&(micros as f64 / 1000.0)).unwrap()
            );
        }
    }
}
