//! Markup: every value from outside (names, IDs, policy text, audit fields) goes through
//! [`esc`], and pages are built from these few pieces so that rule is easy to keep.

use std::fmt::Write as _;

use signet_spiffe::SpiffeId;

/// `text` safe inside an element or a quoted attribute.
pub(super) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
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

/// `text` as a URL query value.
pub(super) fn query_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The pages in the navigation bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Nav {
    Overview,
    Topology,
    Services,
    Policies,
    Audit,
    Ca,
    None,
}

const NAV: &[(Nav, &str, &str)] = &[
    (Nav::Overview, "/ui", "Overview"),
    (Nav::Topology, "/ui/topology", "Topology"),
    (Nav::Services, "/ui/services", "Services"),
    (Nav::Policies, "/ui/policies", "Policies"),
    (Nav::Audit, "/ui/audit", "Audit"),
    (Nav::Ca, "/ui/ca", "CA"),
];

/// Who is looking, for the frame around every page.
#[derive(Debug)]
pub(super) struct Viewer<'a> {
    pub(super) operator: &'a SpiffeId,
    pub(super) csrf: &'a str,
    pub(super) trust_domain: &'a str,
}

/// A whole page: `body` is markup built with [`esc`].
pub(super) fn page(title: &str, nav: Nav, viewer: Option<&Viewer<'_>>, body: &str) -> String {
    let mut out = String::with_capacity(body.len() + 2048);
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · Signet</title>\
         <link rel=\"stylesheet\" href=\"/ui/assets/console.css\">\
         <script src=\"/ui/assets/console.js\" defer></script></head><body>\
         <a class=\"skip\" href=\"#main\">Skip to content</a>",
        esc(title)
    );
    out.push_str("<header><span class=\"brand\">Signet</span>");
    if let Some(v) = viewer {
        out.push_str("<nav aria-label=\"Console\"><ul>");
        for (item, href, label) in NAV {
            let current = if *item == nav {
                " aria-current=\"page\""
            } else {
                ""
            };
            let _ = write!(out, "<li><a href=\"{href}\"{current}>{label}</a></li>");
        }
        out.push_str("</ul></nav>");
        let _ = write!(
            out,
            "<div class=\"who\"><span class=\"td\">{}</span> <span class=\"operator\" \
             data-testid=\"operator\">{}</span>\
             <form method=\"post\" action=\"/ui/sign-out\">{}\
             <button type=\"submit\">Sign out</button></form></div>",
            esc(v.trust_domain),
            esc(v.operator.as_str()),
            csrf_field(v.csrf)
        );
    }
    let _ = writeln!(
        out,
        "</header><main id=\"main\"><h1>{}</h1>{body}</main></body></html>",
        esc(title)
    );
    out
}

/// The hidden field every state-changing form carries.
pub(super) fn csrf_field(token: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(token)
    )
}

/// A table with a caption, column headers, and rows of cells already escaped.
pub(super) fn table(caption: &str, headers: &[&str], rows: &[Vec<String>], testid: &str) -> String {
    let mut out = format!(
        "<table data-testid=\"{}\"><caption>{}</caption><thead><tr>",
        esc(testid),
        esc(caption)
    );
    for h in headers {
        let _ = write!(out, "<th scope=\"col\">{}</th>", esc(h));
    }
    out.push_str("</tr></thead><tbody>");
    if rows.is_empty() {
        let _ = write!(
            out,
            "<tr><td colspan=\"{}\" class=\"empty\">None.</td></tr>",
            headers.len().max(1)
        );
    }
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

/// A short label-value list.
pub(super) fn facts(pairs: &[(&str, String)]) -> String {
    let mut out = String::from("<dl class=\"facts\">");
    for (k, v) in pairs {
        let _ = write!(out, "<div><dt>{}</dt><dd>{v}</dd></div>", esc(k));
    }
    out.push_str("</dl>");
    out
}

/// A badge: `kind` is one of the stylesheet's (`ok`, `warn`, `bad`, `muted`).
pub(super) fn badge(kind: &str, text: &str) -> String {
    format!("<span class=\"badge {kind}\">{}</span>", esc(text))
}

/// Unix milliseconds as RFC 3339 UTC (seconds), the console's one way of writing a time.
pub(super) fn time_ms(ms: i64) -> String {
    crate::model::rfc3339(ms)
}

/// A `<time>` element for Unix milliseconds.
pub(super) fn time_el(ms: i64) -> String {
    let text = time_ms(ms);
    format!("<time datetime=\"{text}\">{text}</time>")
}

/// A time that counts down in the browser (console.js), with the server's reading as text.
pub(super) fn countdown(ms: i64, now_ms: i64) -> String {
    format!(
        "<time class=\"countdown\" datetime=\"{}\" data-expires=\"{ms}\" data-testid=\"countdown\">{}</time>",
        time_ms(ms),
        esc(&left(ms - now_ms))
    )
}

/// `ms` of time left as `in 1h 02m 03s`, or `expired`.
pub(super) fn left(ms: i64) -> String {
    if ms <= 0 {
        return "expired".to_owned();
    }
    let s = ms / 1000;
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    if h > 0 {
        format!("in {h}h {m:02}m {s:02}s")
    } else {
        format!("in {m}m {s:02}s")
    }
}

/// Now, in Unix milliseconds.
pub(super) fn now_ms() -> i64 {
    crate::server::store::unix_ms(std::time::SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_values_is_escaped() {
        assert_eq!(
            esc("<script>alert(\"x\")</script>&'"),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;"
        );
        let t = table("c", &["h"], &[vec![esc("<b>")]], "t");
        assert!(t.contains("&lt;b&gt;") && !t.contains("<b>"));
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(
            query_value("spiffe://a/b c&d=e"),
            "spiffe%3A%2F%2Fa%2Fb%20c%26d%3De"
        );
    }

    #[test]
    fn times_are_rfc3339_utc_and_countdowns_say_what_is_left() {
        assert_eq!(time_ms(0), "1970-01-01T00:00:00Z");
        assert_eq!(time_ms(1_764_955_200_123), "2025-12-05T17:20:00Z");
        assert_eq!(left(3_723_000), "in 1h 02m 03s");
        assert_eq!(left(59_000), "in 0m 59s");
        assert_eq!(left(0), "expired");
    }
}
