//! HTML building blocks: escaping, the page layout, times and the server-drawn SVG chart.
//!
//! Every value that reaches a page goes through [`esc`] (text and attribute values alike);
//! pages are built from these helpers only, so nothing from a webhook body is ever markup.

use crate::delivery::store::console::AttemptBucket;
use std::fmt::Write as _;

/// Escape text for HTML text and double-quoted attribute values.
pub(crate) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encode a query-string value.
pub(crate) fn qv(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// A time as `2026-12-05 09:30:12Z`, or `—` for none.
pub(crate) fn time(ms: Option<i64>) -> String {
    let Some(ms) = ms else {
        return "—".into();
    };
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) else {
        return ms.to_string();
    };
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// A duration in milliseconds as `850 ms`, `12 s`, `3 min`, `5 h` or `2 d`.
pub(crate) fn age(ms: i64) -> String {
    let ms = ms.max(0);
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..120_000 => format!("{} s", ms / 1000),
        120_000..7_200_000 => format!("{} min", ms / 60_000),
        7_200_000..172_800_000 => format!("{} h", ms / 3_600_000),
        _ => format!("{} d", ms / 86_400_000),
    }
}

/// `datetime-local` input value (UTC) for a time, or empty.
pub(crate) fn input_time(ms: Option<i64>) -> String {
    let Some(ms) = ms else {
        return String::new();
    };
    let text = time(Some(ms));
    // "YYYY-MM-DD HH:MM:SSZ" -> "YYYY-MM-DDTHH:MM:SS"
    text.trim_end_matches('Z').replacen(' ', "T", 1)
}

/// Parse a `datetime-local` value (read as UTC), `YYYY-MM-DD` or Unix milliseconds.
pub(crate) fn parse_input_time(text: &str) -> Option<i64> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if let Ok(ms) = text.parse::<i64>() {
        return Some(ms);
    }
    let (date, clock) = text.split_once(['T', ' ']).unwrap_or((text, "00:00"));
    let mut d = date.split('-').map(|p| p.parse::<i32>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut c = clock
        .trim_end_matches('Z')
        .split(':')
        .map(|p| p.parse::<u8>().ok());
    let (h, min) = (c.next()??, c.next()??);
    let s = c.next().flatten().unwrap_or(0);
    let month = time::Month::try_from(u8::try_from(m).ok()?).ok()?;
    let date = time::Date::from_calendar_date(y, month, u8::try_from(day).ok()?).ok()?;
    let t = time::Time::from_hms(h, min, s).ok()?;
    let at = time::PrimitiveDateTime::new(date, t).assume_utc();
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok()
}

/// A navigation entry: path and label.
const NAV: [(&str, &str); 5] = [
    ("/", "Overview"),
    ("/deliveries", "Deliveries"),
    ("/destinations", "Destinations"),
    ("/attempts", "Attempts"),
    ("/audit", "Audit log"),
];

/// What every page carries besides its body.
pub(crate) struct Chrome<'a> {
    /// The router's mount prefix (`""` at the root).
    pub base: &'a str,
    /// The session's CSRF token, for the logout form (`None`: no session, no logout).
    pub csrf: Option<&'a str>,
    /// The operator's name.
    pub actor: Option<&'a str>,
}

/// A whole page: layout, navigation and `body` (already HTML).
pub(crate) fn page(chrome: &Chrome<'_>, title: &str, current: &str, body: &str) -> String {
    let base = chrome.base;
    let mut nav = String::new();
    for (path, label) in NAV {
        let here = if path == current {
            " aria-current=\"page\""
        } else {
            ""
        };
        let _ = write!(
            nav,
            "<a href=\"{}{}\"{here}>{}</a>",
            esc(base),
            esc(path),
            esc(label)
        );
    }
    let session = match chrome.csrf {
        Some(csrf) => format!(
            "<form method=\"post\" action=\"{}/logout\" class=\"inline\">{}<span class=\"who\">{}</span> \
             <button type=\"submit\">Log out</button></form>",
            esc(base),
            csrf_field(csrf),
            esc(chrome.actor.unwrap_or("operator"))
        ),
        None => String::new(),
    };
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · adcp-webhooks console</title>\
         <link rel=\"stylesheet\" href=\"{}/assets/console.css\">\
         <script src=\"{}/assets/console.js\" defer></script></head>\
         <body><header><strong>adcp-webhooks</strong><nav>{nav}</nav>{session}</header>\
         <main><h1>{}</h1>{body}</main></body></html>",
        esc(title),
        esc(base),
        esc(base),
        esc(title)
    )
}

/// The hidden CSRF field every state-changing form carries.
pub(crate) fn csrf_field(csrf: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(csrf)
    )
}

/// A one-button POST form: `label` is the button's visible text.
pub(crate) fn post_button(
    action: &str,
    csrf: &str,
    fields: &[(&str, &str)],
    label: &str,
    disabled: Option<&str>,
) -> String {
    let mut hidden = csrf_field(csrf);
    for (name, value) in fields {
        let _ = write!(
            hidden,
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
            esc(name),
            esc(value)
        );
    }
    let (attr, note) = match disabled {
        Some(why) => (
            " disabled".to_owned(),
            format!(" <span class=\"note\">{}</span>", esc(why)),
        ),
        None => (String::new(), String::new()),
    };
    format!(
        "<form method=\"post\" action=\"{}\" class=\"inline\">{hidden}\
         <button type=\"submit\"{attr}>{}</button>{note}</form>",
        esc(action),
        esc(label)
    )
}

/// A table from a header row and rows of cells already in HTML.
pub(crate) fn table(class: &str, head: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = format!("<table class=\"{}\"><thead><tr>", esc(class));
    for h in head {
        let _ = write!(out, "<th scope=\"col\">{}</th>", esc(h));
    }
    out.push_str("</tr></thead><tbody>");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{cell}</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    out
}

/// A small bar chart of attempts per bucket: successes in green under failures in red, with
/// a title per bar. `start_ms`..`start_ms + n * bucket_ms` is the time axis.
pub(crate) fn chart(
    buckets: &[AttemptBucket],
    start_ms: i64,
    bucket_ms: i64,
    n: usize,
    label: &str,
) -> String {
    const W: usize = 6;
    const H: u64 = 32;
    let mut slots = vec![(0u64, 0u64); n];
    for b in buckets {
        if let Ok(i) = usize::try_from((b.start_ms - start_ms) / bucket_ms.max(1))
            && let Some(slot) = slots.get_mut(i)
        {
            slot.0 += b.successes;
            slot.1 += b.attempts.saturating_sub(b.successes);
        }
    }
    let max = slots.iter().map(|(s, f)| s + f).max().unwrap_or(0).max(1);
    let mut bars = String::new();
    for (i, (ok, failed)) in slots.iter().enumerate() {
        let x = i * W;
        let ok_h = ok * H / max;
        let fail_h = failed * H / max;
        let when = time(Some(start_ms + bucket_ms * i64::try_from(i).unwrap_or(0)));
        let _ = write!(
            bars,
            "<g><title>{}: {ok} delivered, {failed} failed</title>\
             <rect class=\"ok\" x=\"{x}\" y=\"{}\" width=\"{}\" height=\"{ok_h}\"/>\
             <rect class=\"fail\" x=\"{x}\" y=\"{}\" width=\"{}\" height=\"{fail_h}\"/></g>",
            esc(&when),
            H - ok_h,
            W - 1,
            H - ok_h - fail_h,
            W - 1
        );
    }
    format!(
        "<svg class=\"chart\" role=\"img\" aria-label=\"{}\" width=\"{}\" height=\"{H}\" \
         viewBox=\"0 0 {} {H}\">{bars}</svg>",
        esc(label),
        n * W,
        n * W
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc("<script>alert(\"x\")</script>&'"),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;"
        );
    }

    #[test]
    fn input_times_round_trip() {
        let ms = 1_764_928_212_000;
        assert_eq!(parse_input_time(&input_time(Some(ms))), Some(ms));
        assert_eq!(parse_input_time("2025-12-05"), Some(1_764_892_800_000));
        assert_eq!(parse_input_time("not a time"), None);
    }

    #[test]
    fn chart_has_a_bar_per_bucket() {
        let b = [AttemptBucket {
            start_ms: 3_600_000,
            attempts: 4,
            successes: 3,
        }];
        let svg = chart(&b, 0, 3_600_000, 24, "24 h");
        assert_eq!(svg.matches("<g>").count(), 24);
        assert!(svg.contains("3 delivered, 1 failed"));
    }
}
