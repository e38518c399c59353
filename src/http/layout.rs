//! The page shell (header, navigation, breadcrumbs) and the formatting
//! every page shares: sizes, durations, times, payloads, URLs.
//!
//! Edge layer, HTML only (maud escapes every value it interpolates).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::Console;
use super::form::Form;
use super::session::Caller;

/// A page with the header, navigation and breadcrumbs (`(label, href)`;
/// the last one is the current page).
pub(crate) fn page(
    console: &Console,
    caller: &Caller,
    title: &str,
    crumbs: &[(String, String)],
    notice: Option<&str>,
    body: Markup,
) -> Markup {
    let header = html! {
        header.top {
            a.brand href="/" { "Herald" }
            nav {
                a href="/" { "Overview" }
                a href="/topics" { "Topics" }
                a href="/metrics" { "Metrics" }
            }
            @if console.auth_on() {
                @if let Some(who) = &caller.principal {
                    form.inline.who method="post" action="/logout" {
                        (csrf_field(caller))
                        span { (who.name) }
                        button.link type="submit" { "Log out" }
                    }
                }
            }
        }
        @if !crumbs.is_empty() {
            nav.crumbs aria-label="breadcrumbs" {
                @for (i, (label, href)) in crumbs.iter().enumerate() {
                    @if i + 1 == crumbs.len() { span { (label) } }
                    @else { a href=(href) { (label) } " / " }
                }
            }
        }
        @if let Some(n) = notice { p.notice role="status" { (n) } }
    };
    shell(title, html! { (header) main { (body) } })
}

/// A page without navigation (errors, login).
pub(crate) fn bare(title: &str, body: Markup) -> Markup {
    shell(
        title,
        html! { header.top { a.brand href="/" { "Herald" } } main { (body) } },
    )
}

fn shell(title: &str, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Herald" }
                link rel="icon" href="data:,";
                link rel="stylesheet" href=(super::assets::CSS_PATH);
                script src=(super::assets::JS_PATH) defer {}
            }
            body { (content) }
        }
    }
}

/// The hidden CSRF field every form carries.
pub(crate) fn csrf_field(caller: &Caller) -> Markup {
    html! { input type="hidden" name="csrf" value=(caller.csrf); }
}

/// The no-script confirmation step of a dangerous action: the same form
/// again, with every field carried over and `confirmed=1`. (With the
/// script, a dialog does this before the form is sent.)
pub(crate) fn confirm(
    console: &Console,
    caller: &Caller,
    title: &str,
    question: &str,
    action: &str,
    form: &Form,
    back: &str,
) -> Markup {
    let body = html! {
        h1 { (title) }
        form.card method="post" action=(action) {
            p.warn { (question) }
            (csrf_field(caller))
            input type="hidden" name="confirmed" value="1";
            @for (k, v) in form.carried() { input type="hidden" name=(k) value=(v); }
            div.actions {
                button.danger type="submit" { "Confirm" }
                a.button href=(back) { "Cancel" }
            }
        }
    };
    page(console, caller, title, &[], None, body)
}

/// Percent-encodes `s` for a path segment or a query value.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-encodes a query value (alias of [`esc`], for reading).
pub(crate) fn query_escape(s: &str) -> String {
    esc(s)
}

/// `/topics/{topic}`.
pub(crate) fn topic_url(topic: &str) -> String {
    format!("/topics/{}", esc(topic))
}

/// `/topics/{topic}/groups/{group}`.
pub(crate) fn group_url(topic: &str, group: &str) -> String {
    format!("/topics/{}/groups/{}", esc(topic), esc(group))
}

/// `1.5 MiB`.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A duration as config keys write it (`30s`, `2m`, `1h 5m`), whole
/// milliseconds at most.
pub(crate) fn duration(d: Duration) -> String {
    let d = if d >= Duration::from_secs(1) {
        Duration::from_secs(d.as_secs())
    } else {
        Duration::from_millis(d.as_millis() as u64)
    };
    if d.is_zero() {
        return "0s".into();
    }
    humantime::format_duration(d).to_string()
}

/// An optional age: `–` for none.
pub(crate) fn age(d: Option<Duration>) -> String {
    d.map_or_else(|| "–".into(), duration)
}

/// µs since the epoch as an RFC 3339 UTC time; `–` for 0.
pub(crate) fn time_us(us: i64) -> String {
    if us <= 0 {
        return "–".into();
    }
    let t = UNIX_EPOCH + Duration::from_micros(us as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// How long ago `us` (µs since the epoch) was.
pub(crate) fn ago_us(us: i64) -> String {
    let then = UNIX_EPOCH + Duration::from_micros(us.max(0) as u64);
    match SystemTime::now().duration_since(then) {
        Ok(d) => format!("{} ago", duration(d)),
        Err(_) => "just now".into(),
    }
}

/// Events per second, or `–` before there are two samples.
pub(crate) fn rate(r: Option<f64>) -> String {
    match r {
        None => "–".into(),
        Some(r) if r >= 100.0 => format!("{r:.0}/s"),
        Some(r) if r >= 1.0 => format!("{r:.1}/s"),
        Some(r) => format!("{r:.2}/s"),
    }
}

/// An event payload: pretty JSON when it parses as JSON, text when it is
/// UTF-8, otherwise its size and first bytes in hex.
pub(crate) fn payload(data: &[u8]) -> Markup {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data)
        && let Ok(pretty) = serde_json::to_string_pretty(&value)
    {
        return html! { pre.payload.json { (pretty) } };
    }
    match std::str::from_utf8(data) {
        Ok("") => html! { span.muted { "(empty)" } },
        Ok(text) => html! { pre.payload { (text) } },
        Err(_) => {
            let head: String = data.iter().take(64).map(|b| format!("{b:02x} ")).collect();
            html! { pre.payload { (data.len()) " bytes, binary: " (head) @if data.len() > 64 { "…" } } }
        }
    }
}

/// A small line chart of `values` (inline SVG, no script).
pub(crate) fn sparkline(values: &[f64], label: &str) -> Markup {
    if values.len() < 2 {
        return html! { span.muted { "collecting samples…" } };
    }
    let (w, h) = (300.0, 40.0);
    let max = values.iter().copied().fold(0.0_f64, f64::max).max(1e-9);
    let step = w / (values.len() - 1) as f64;
    let points: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            format!(
                "{:.1},{:.1}",
                i as f64 * step,
                h - v / max * (h - 2.0) - 1.0
            )
        })
        .collect();
    html! {
        svg.spark viewBox=(format!("0 0 {w} {h}")) preserveAspectRatio="none" role="img" aria-label=(label) {
            (PreEscaped(format!(
                "<polyline fill=\"none\" stroke=\"currentColor\" stroke-width=\"1.5\" points=\"{}\"/>",
                points.join(" ")
            )))
        }
    }
}
