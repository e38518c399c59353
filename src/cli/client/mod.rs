//! Client commands of the `herald` binary (`publish`, `subscribe`, `topics`,
//! `groups`, `dlq`): each builds a request from its flags, calls the generated
//! gRPC client and prints the answer as an aligned table or, with `--json`, as
//! JSON. This file holds what they share: error wording, flag parsers
//! (durations, times, sizes) and output helpers; connecting (TLS, token) is
//! in [`connect`].
//!
//! CLI layer; uses `anyhow` and the generated types in [`crate::proto`].

pub mod connect;
pub mod dlq;
pub mod groups;
pub mod publish;
pub mod subscribe;
pub mod topics;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::time::{Duration, SystemTime};

use anyhow::{Result, anyhow};
use serde::Serialize;
use tonic::{Code, Status};

use connect::{ClientAuth, Transport};

use crate::proto;

/// Where client commands look for Herald when neither `--server` nor
/// `HERALD_SERVER` says otherwise.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:50051";
/// Environment variable naming the server, below `--server`.
pub const SERVER_ENV: &str = "HERALD_SERVER";
/// How long to wait for the TCP/HTTP2 connection before giving up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for the answer of a unary call (for streams: for the response
/// headers only, so `subscribe` can run for as long as it likes).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// What every client command needs: the server, how to reach it and the
/// output format.
#[derive(Debug, Clone)]
pub struct Context {
    /// The server URL, always with a scheme; quoted in connection errors.
    pub server: String,
    /// Print JSON instead of tables.
    pub json: bool,
    /// TLS files and token.
    pub auth: ClientAuth,
}

impl Context {
    /// Resolves the server: `--server`, else `HERALD_SERVER`, else
    /// [`DEFAULT_SERVER`]. A bare `host:port` gets `http://` in front, or
    /// `https://` when TLS flags are given.
    pub fn new(server: Option<String>, json: bool, auth: ClientAuth) -> Context {
        let server = server
            .or_else(|| std::env::var(SERVER_ENV).ok())
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_SERVER.to_string());
        // An http:// URL with TLS flags is reported by `connect`.
        let server = connect::server_url(&server, &auth).unwrap_or(server);
        Context { server, json, auth }
    }

    /// Connects now (not lazily), so an unreachable server is reported
    /// before any work is done.
    ///
    /// # Errors
    /// The address is malformed, TLS files are unreadable, or nothing
    /// answers there within 5 s.
    pub async fn connect(&self) -> Result<Transport> {
        connect::server_url(&self.server, &self.auth)?;
        let endpoint = connect::endpoint(&self.server, &self.auth)?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(CALL_TIMEOUT);
        let bearer = connect::Bearer::new(self.auth.token.as_deref())?;
        let channel = endpoint.connect().await.map_err(|e| self.unreachable(&e))?;
        Ok(tonic::service::interceptor::InterceptedService::new(
            channel, bearer,
        ))
    }

    /// Awaits a generated-client call and unwraps its response.
    ///
    /// # Errors
    /// The call failed; see [`Context::status_error`] for the wording.
    pub async fn call<T>(
        &self,
        call: impl Future<Output = Result<tonic::Response<T>, Status>>,
    ) -> Result<T> {
        call.await
            .map(tonic::Response::into_inner)
            .map_err(|s| self.status_error(&s))
    }

    /// `CODE: message`, e.g. `NOT_FOUND: topic "x" does not exist`; a
    /// connection lost mid-call is worded like a failed connect.
    pub fn status_error(&self, status: &Status) -> anyhow::Error {
        if status.code() == Code::Unavailable
            && let Some(source) = std::error::Error::source(status)
        {
            return self.unreachable(source);
        }
        anyhow!("{}: {}", code_name(status.code()), status.message())
    }

    fn unreachable(&self, e: &(dyn std::error::Error + 'static)) -> anyhow::Error {
        anyhow!(
            "cannot reach Herald at {}: {} — is `herald serve` running?",
            self.server,
            transport_reason(e)
        )
    }
}

/// The most telling part of a transport error chain: the I/O error if there
/// is one ("connection refused"), else the innermost message.
fn transport_reason(e: &(dyn std::error::Error + 'static)) -> String {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut innermost = e.to_string();
    while let Some(err) = current {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
                std::io::ErrorKind::TimedOut => "connection timed out".into(),
                _ => io.to_string(),
            };
        }
        if err.downcast_ref::<tonic::TimeoutExpired>().is_some() {
            return format!("no answer within {}", human_duration(CONNECT_TIMEOUT));
        }
        innermost = err.to_string();
        current = err.source();
    }
    innermost
}

/// The canonical name of a gRPC code, as in `google.rpc.Code`.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

// ---------------------------------------------------------------------------
// Flag parsers (clap `value_parser`s).

/// A duration such as `30s`, `1m 30s`, `500ms` or `0`.
///
/// # Errors
/// Not a humantime duration.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if s.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 500ms, 30s, 1m 30s, 7d)"))
}

/// An RFC 3339 UTC time such as `2026-01-31T12:00:00Z`.
///
/// # Errors
/// Not an RFC 3339 time.
pub fn parse_time(s: &str) -> Result<prost_types::Timestamp, String> {
    humantime::parse_rfc3339_weak(s)
        .map(prost_types::Timestamp::from)
        .map_err(|e| format!("{e} (expected RFC 3339 UTC, e.g. 2026-01-31T12:00:00Z)"))
}

/// A size in bytes: `1048576`, `512KiB`, `1 GiB`, `10MB` (KB/MB/GB/TB are
/// powers of 1000, KiB/MiB/GiB/TiB powers of 1024).
///
/// # Errors
/// Not a number with an optional known unit, or too big.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a size (examples: 1048576, 512KiB, 10GB)"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        other => {
            return Err(format!(
                "unknown size unit {other:?} (use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB)"
            ));
        }
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("{s:?} is too big"))
}

/// `KEY=VALUE`, for `--attr`.
///
/// # Errors
/// No `=` or an empty key.
pub fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

// ---------------------------------------------------------------------------
// Conversions and formatting of proto values.

/// Proto duration from a std one (saturating; these come from flags).
pub fn proto_duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration::try_from(d).unwrap_or(prost_types::Duration {
        seconds: i64::MAX,
        nanos: 0,
    })
}

/// Std duration from a proto one; negative durations read as zero.
pub fn std_duration(d: &prost_types::Duration) -> Duration {
    Duration::try_from(*d).unwrap_or(Duration::ZERO)
}

/// `30s`, `1m 30s`, `2h 5m`, `250ms`: precise enough to read, no noise.
pub fn human_duration(d: Duration) -> String {
    let rounded = if d >= Duration::from_secs(60) {
        Duration::from_secs(d.as_secs())
    } else if d >= Duration::from_secs(1) {
        Duration::from_millis(d.as_millis() as u64)
    } else {
        Duration::from_micros(d.as_micros() as u64)
    };
    if rounded.is_zero() {
        return "0s".into();
    }
    humantime::format_duration(rounded).to_string()
}

/// Human form of an optional proto duration, `none` when unset.
pub fn human_opt_duration(d: Option<&prost_types::Duration>, none: &str) -> String {
    d.map(|d| human_duration(std_duration(d)))
        .unwrap_or_else(|| none.to_string())
}

/// The protobuf JSON form of a duration: `30s`, `1.500s`.
pub fn json_duration(d: &prost_types::Duration) -> String {
    let d = std_duration(d);
    let nanos = d.subsec_nanos();
    if nanos == 0 {
        format!("{}s", d.as_secs())
    } else if nanos.is_multiple_of(1_000_000) {
        format!("{}.{:03}s", d.as_secs(), nanos / 1_000_000)
    } else if nanos.is_multiple_of(1_000) {
        format!("{}.{:06}s", d.as_secs(), nanos / 1_000)
    } else {
        format!("{}.{:09}s", d.as_secs(), nanos)
    }
}

fn system_time(ts: &prost_types::Timestamp) -> SystemTime {
    SystemTime::try_from(*ts).unwrap_or(SystemTime::UNIX_EPOCH)
}

/// RFC 3339 with microseconds (the server's resolution), for JSON.
pub fn json_time(ts: &prost_types::Timestamp) -> String {
    humantime::format_rfc3339_micros(system_time(ts)).to_string()
}

/// `2026-01-31T12:00:00Z (5m 3s ago)`, `-` when unset.
pub fn human_time(ts: Option<&prost_types::Timestamp>) -> String {
    let Some(ts) = ts else {
        return "-".into();
    };
    let t = system_time(ts);
    let at = humantime::format_rfc3339_seconds(t);
    match SystemTime::now().duration_since(t) {
        Ok(age) => format!(
            "{at} ({} ago)",
            human_duration(Duration::from_secs(age.as_secs()))
        ),
        Err(_) => at.to_string(),
    }
}

/// Age of a time, rounded to seconds (`5m 3s`), `-` when unset.
pub fn human_age(ts: Option<&prost_types::Timestamp>) -> String {
    ts.and_then(|ts| SystemTime::now().duration_since(system_time(ts)).ok())
        .map(|age| human_duration(Duration::from_secs(age.as_secs())))
        .unwrap_or_else(|| "-".into())
}

/// `1.2 MiB` for 1258291.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Cuts `s` to `max` characters, marking the cut with `…`.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// One-line preview of a payload: the text when it is printable UTF-8
/// (newlines and tabs shown escaped), else `base64:…`; cut to `max`
/// characters with the full size noted.
pub fn data_preview(data: &[u8], max: usize) -> String {
    if data.is_empty() {
        return String::new();
    }
    let text = match std::str::from_utf8(data) {
        Ok(s)
            if !s
                .chars()
                .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) =>
        {
            s.replace('\\', "\\\\")
                .replace('\n', "\\n")
                .replace('\r', "\\r")
                .replace('\t', "\\t")
        }
        _ => format!("base64:{}", base64_encode(data)),
    };
    if text.chars().count() <= max {
        text
    } else {
        format!("{} ({} bytes)", truncate(&text, max), data.len())
    }
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (RFC 4648 §4).
pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(BASE64[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 (padding optional, whitespace ignored).
///
/// # Errors
/// A character outside the alphabet, or a dangling final character.
pub fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes().filter(|c| !c.is_ascii_whitespace()) {
        if c == b'=' {
            break;
        }
        let value = BASE64
            .iter()
            .position(|&a| a == c)
            .ok_or_else(|| format!("invalid base64 character {:?}", char::from(c)))?;
        acc = (acc << 6) | value as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if bits >= 6 {
        return Err("truncated base64".into());
    }
    Ok(out)
}

/// An event as client commands print it in JSON. `data` is the payload as a
/// string when it is UTF-8, else `null` with `data_base64` set.
#[derive(Debug, Serialize)]
pub struct EventView {
    /// Topic the event was read from.
    pub topic: String,
    /// Offset in the topic.
    pub offset: u64,
    /// Event id.
    pub id: String,
    /// Event type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Emitting service.
    pub source: String,
    /// Ordering key.
    pub key: String,
    /// When it happened (RFC 3339).
    pub time: Option<String>,
    /// When the server stored it (RFC 3339).
    pub publish_time: Option<String>,
    /// MIME type of the payload.
    pub content_type: String,
    /// Schema version of the payload.
    pub schema_version: String,
    /// Extension attributes, sorted by key.
    pub attributes: BTreeMap<String, String>,
    /// The payload when it is valid UTF-8.
    pub data: Option<String>,
    /// The payload, base64, when it is not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_base64: Option<String>,
}

impl From<&proto::Event> for EventView {
    fn from(e: &proto::Event) -> Self {
        let (data, data_base64) = match std::str::from_utf8(&e.data) {
            Ok(s) => (Some(s.to_string()), None),
            Err(_) => (None, Some(base64_encode(&e.data))),
        };
        EventView {
            topic: e.topic.clone(),
            offset: e.offset,
            id: e.id.clone(),
            event_type: e.r#type.clone(),
            source: e.source.clone(),
            key: e.key.clone(),
            time: e.time.as_ref().map(json_time),
            publish_time: e.publish_time.as_ref().map(json_time),
            content_type: e.content_type.clone(),
            schema_version: e.schema_version.clone(),
            attributes: e
                .attributes
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            data,
            data_base64,
        }
    }
}

// ---------------------------------------------------------------------------
// Output.

/// Writes `text` and a newline to stdout.
///
/// # Errors
/// stdout is closed (e.g. a pipe into `head` ended).
pub fn print_line(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()?;
    Ok(())
}

/// Prints one pretty JSON document.
///
/// # Errors
/// Serialization or stdout failed.
pub fn print_json(value: &impl Serialize) -> Result<()> {
    print_line(&serde_json::to_string_pretty(value)?)
}

/// Left-aligned `label  value` lines.
pub fn fields(rows: &[(&str, String)]) -> String {
    let width = rows
        .iter()
        .map(|(l, _)| l.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (label, value) in rows {
        let _ = writeln!(out, "{label:<width$}  {value}");
    }
    out.trim_end().to_string()
}

/// A table with a header row and columns aligned on the widest cell;
/// columns holding only numbers are right-aligned.
#[derive(Debug, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table with these column titles.
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row (missing cells print empty, extra cells are dropped).
    pub fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    /// Whether no row was added.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text, without a trailing newline.
    pub fn render(&self) -> String {
        let columns = self.header.len();
        fn cell(row: &[String], i: usize) -> &str {
            row.get(i).map(String::as_str).unwrap_or("")
        }
        let widths: Vec<usize> = (0..columns)
            .map(|i| {
                self.rows
                    .iter()
                    .map(|r| cell(r, i).chars().count())
                    .chain([self.header[i].chars().count()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let numeric: Vec<bool> = (0..columns)
            .map(|i| {
                !self.rows.is_empty()
                    && self.rows.iter().all(|r| {
                        let c = cell(r, i);
                        c.is_empty() || c == "-" || c.parse::<f64>().is_ok()
                    })
            })
            .collect();
        let mut out = String::new();
        let rows =
            std::iter::once(self.header.as_slice()).chain(self.rows.iter().map(Vec::as_slice));
        for row in rows {
            let mut line = String::new();
            for i in 0..columns {
                if i > 0 {
                    line.push_str("  ");
                }
                let (text, width) = (cell(row, i), widths[i]);
                if numeric[i] {
                    let _ = write!(line, "{text:>width$}");
                } else {
                    let _ = write!(line, "{text:<width$}");
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out.trim_end_matches('\n').to_string()
    }

    /// Prints the table to stdout.
    ///
    /// # Errors
    /// stdout is closed.
    pub fn print(&self) -> Result<()> {
        print_line(&self.render())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print_like_people_write_them() {
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("1m 30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("soon").is_err());
        assert_eq!(human_duration(Duration::from_secs(90)), "1m 30s");
        assert_eq!(human_duration(Duration::from_millis(90_123)), "1m 30s");
        assert_eq!(human_duration(Duration::from_millis(1500)), "1s 500ms");
        assert_eq!(human_duration(Duration::ZERO), "0s");
        assert_eq!(
            json_duration(&proto_duration(Duration::from_millis(1500))),
            "1.500s"
        );
        assert_eq!(
            json_duration(&proto_duration(Duration::from_secs(30))),
            "30s"
        );
    }

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_bytes("1048576").unwrap(), 1 << 20);
        assert_eq!(parse_bytes("512KiB").unwrap(), 512 << 10);
        assert_eq!(parse_bytes("10 GB").unwrap(), 10_000_000_000);
        assert!(parse_bytes("10 parsecs").is_err());
        assert!(parse_bytes("-1").is_err());
        assert!(parse_bytes("99999999999TiB").is_err());
        assert_eq!(human_bytes(1_258_291), "1.2 MiB");
        assert_eq!(human_bytes(12), "12 B");
    }

    #[test]
    fn base64_round_trips() {
        for data in [
            &b""[..],
            b"f",
            b"fo",
            b"foo",
            b"foob",
            b"\xff\x00\x10binary",
        ] {
            let text = base64_encode(data);
            assert_eq!(base64_decode(&text).unwrap(), data, "{text}");
        }
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert!(base64_decode("Zm9v!").is_err());
    }

    #[test]
    fn previews_escape_text_and_encode_binary() {
        assert_eq!(data_preview(b"a\nb", 80), "a\\nb");
        assert_eq!(data_preview(b"\x00\x01", 80), "base64:AAE=");
        let long = "x".repeat(100);
        assert_eq!(
            data_preview(long.as_bytes(), 10),
            format!("{}… (100 bytes)", "x".repeat(9))
        );
    }

    #[test]
    fn tables_align_and_right_align_numbers() {
        let mut t = Table::new(&["NAME", "EVENTS"]);
        t.push(vec!["orders".into(), "12".into()]);
        t.push(vec!["a".into(), "1200".into()]);
        assert_eq!(t.render(), "NAME    EVENTS\norders      12\na         1200");
    }

    #[test]
    fn server_address_gets_a_scheme() {
        let ctx = Context::new(Some("127.0.0.1:9".into()), false, ClientAuth::default());
        assert_eq!(ctx.server, "http://127.0.0.1:9");
        let ctx = Context::new(Some("https://h:1".into()), false, ClientAuth::default());
        assert_eq!(ctx.server, "https://h:1");
    }
}
