//! Trace context on the wire: W3C `traceparent`/`tracestate` read and written, B3 (single
//! `b3` header and the `x-b3-*` set) read, so a trace started by Zipkin-era clients joins
//! too. What the proxy sends on is always W3C.

use http::{HeaderMap, HeaderValue};

const TRACEPARENT: &str = "traceparent";
const TRACESTATE: &str = "tracestate";
/// The B3 headers the proxy reads and, having sent W3C instead, removes.
const B3: [&str; 6] = [
    "b3",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
];
/// Longest `tracestate` carried on (W3C asks vendors to keep at least 512 bytes).
const MAX_TRACESTATE: usize = 512;

/// A position in a trace: the trace, the span that is the parent of what comes next, and
/// the head sampling decision that travels with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub sampled: bool,
    /// Vendors' state, carried on unchanged.
    pub tracestate: Option<HeaderValue>,
    /// The request carried B3 headers (read or not): writing this context removes them.
    pub b3: bool,
}

impl TraceContext {
    /// The context a request carries: W3C first, then B3 single, then B3 multi. A malformed
    /// header is ignored, as if absent (W3C: start a new trace rather than fail).
    pub fn extract(headers: &HeaderMap) -> Option<Self> {
        if let Some(v) = headers.get(TRACEPARENT)
            && let Some(mut ctx) = v.to_str().ok().and_then(parse_traceparent)
        {
            ctx.tracestate = headers
                .get(TRACESTATE)
                .filter(|s| s.len() <= MAX_TRACESTATE)
                .cloned();
            ctx.b3 = headers.contains_key("b3") || headers.contains_key("x-b3-traceid");
            return Some(ctx);
        }
        if let Some(v) = headers.get("b3") {
            return v.to_str().ok().and_then(parse_b3_single).map(|mut ctx| {
                ctx.b3 = true;
                ctx
            });
        }
        let trace = headers.get("x-b3-traceid")?.to_str().ok()?;
        let span = headers.get("x-b3-spanid")?.to_str().ok()?;
        let sampled = match headers.get("x-b3-sampled").map(HeaderValue::as_bytes) {
            Some(b"0") => false,
            Some(b"1") | None => true,
            Some(_) => return None,
        } || headers.get("x-b3-flags").is_some_and(|f| f == "1");
        Some(Self {
            trace_id: b3_trace_id(trace)?,
            span_id: hex_array(span)?,
            sampled,
            tracestate: None,
            b3: true,
        })
    }

    /// A new trace's root position (no parent span: `span_id` is the new span's own).
    pub fn root(sampled: bool) -> Self {
        let mut trace_id = [0u8; 16];
        trace_id[..8].copy_from_slice(&nonzero().to_be_bytes());
        trace_id[8..].copy_from_slice(&nonzero().to_be_bytes());
        Self {
            trace_id,
            span_id: new_span_id(),
            sampled,
            tracestate: None,
            b3: false,
        }
    }

    /// The same trace, one span further down: `span_id` is the new span's.
    pub fn child(&self) -> Self {
        Self {
            trace_id: self.trace_id,
            span_id: new_span_id(),
            sampled: self.sampled,
            tracestate: self.tracestate.clone(),
            b3: self.b3,
        }
    }

    /// Writes this context as the request's only trace headers (any B3 ones are removed,
    /// so the next hop cannot read a stale parent from them).
    pub fn inject(&self, headers: &mut HeaderMap) {
        if self.b3 {
            for name in B3 {
                headers.remove(name);
            }
        }
        headers.insert(TRACEPARENT, self.traceparent());
        match &self.tracestate {
            Some(state) => {
                headers.insert(TRACESTATE, state.clone());
            }
            None => {
                headers.remove(TRACESTATE);
            }
        }
    }

    /// `00-<trace id>-<span id>-<flags>`.
    pub fn traceparent(&self) -> HeaderValue {
        let mut text = [0u8; 55];
        text[..3].copy_from_slice(b"00-");
        hex_into(&self.trace_id, &mut text[3..35]);
        text[35] = b'-';
        hex_into(&self.span_id, &mut text[36..52]);
        text[52..].copy_from_slice(if self.sampled { b"-01" } else { b"-00" });
        // Hex digits and dashes only: always a valid header value.
        HeaderValue::from_bytes(&text).unwrap_or(HeaderValue::from_static(""))
    }

    /// The trace id as 32 lowercase hex digits.
    pub fn trace_hex(&self) -> String {
        hex(&self.trace_id)
    }

    /// The span id as 16 lowercase hex digits.
    pub fn span_hex(&self) -> String {
        hex(&self.span_id)
    }
}

/// W3C trace-context level 1 `traceparent`. Versions above 00 are read by their first four
/// fields, as the specification asks of a version-00 reader.
fn parse_traceparent(text: &str) -> Option<TraceContext> {
    let mut parts = text.trim().split('-');
    let version = parts.next()?;
    let trace = parts.next()?;
    let span = parts.next()?;
    let flags = parts.next()?;
    let rest = parts.next();
    if version.len() != 2 || version == "ff" || (version == "00" && rest.is_some()) {
        return None;
    }
    u8::from_str_radix(version, 16).ok()?;
    if trace.len() != 32 || span.len() != 16 || flags.len() != 2 {
        return None;
    }
    let trace_id: [u8; 16] = hex_array(trace)?;
    let span_id: [u8; 8] = hex_array(span)?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    if trace_id == [0; 16] || span_id == [0; 8] || !is_lower_hex(trace) || !is_lower_hex(span) {
        return None;
    }
    Some(TraceContext {
        trace_id,
        span_id,
        sampled: flags & 1 == 1,
        tracestate: None,
        b3: false,
    })
}

/// `b3: {trace}-{span}[-{sampled}[-{parent}]]`; a lone `0` (deny) carries no ids.
fn parse_b3_single(text: &str) -> Option<TraceContext> {
    let mut parts = text.trim().split('-');
    let trace = parts.next()?;
    let span = parts.next()?;
    let sampled = match parts.next() {
        None | Some("1" | "d") => true,
        Some("0") => false,
        Some(_) => return None,
    };
    Some(TraceContext {
        trace_id: b3_trace_id(trace)?,
        span_id: hex_array(span)?,
        sampled,
        tracestate: None,
        b3: true,
    })
}

/// B3 trace ids are 16 or 32 hex digits; a 64-bit one is left-padded to W3C's 128 bits.
fn b3_trace_id(text: &str) -> Option<[u8; 16]> {
    let id = match text.len() {
        32 => hex_array(text)?,
        16 => {
            let low: [u8; 8] = hex_array(text)?;
            let mut id = [0u8; 16];
            id[8..].copy_from_slice(&low);
            id
        }
        _ => return None,
    };
    (id != [0; 16]).then_some(id)
}

fn is_lower_hex(text: &str) -> bool {
    text.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn hex_array<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

const DIGITS: &[u8; 16] = b"0123456789abcdef";

fn hex_into(bytes: &[u8], out: &mut [u8]) {
    for (i, b) in bytes.iter().enumerate() {
        out[i * 2] = DIGITS[usize::from(b >> 4)];
        out[i * 2 + 1] = DIGITS[usize::from(b & 0xf)];
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = vec![0u8; bytes.len() * 2];
    hex_into(bytes, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

fn nonzero() -> u64 {
    loop {
        let x = crate::ids::next();
        if x != 0 {
            return x;
        }
    }
}

fn new_span_id() -> [u8; 8] {
    nonzero().to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn w3c_traceparents_round_trip_with_their_state() {
        let h = headers(&[(TRACEPARENT, TP), (TRACESTATE, "congo=t61rcWkgMzE")]);
        let ctx = TraceContext::extract(&h).unwrap();
        assert_eq!(ctx.trace_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(ctx.span_hex(), "00f067aa0ba902b7");
        assert!(ctx.sampled);
        assert_eq!(ctx.traceparent(), TP);
        let child = ctx.child();
        assert_eq!(child.trace_id, ctx.trace_id);
        assert_ne!(child.span_id, ctx.span_id);
        let mut out = HeaderMap::new();
        child.inject(&mut out);
        assert_eq!(out.get("tracestate").unwrap(), "congo=t61rcWkgMzE");
        assert_eq!(TraceContext::extract(&out), Some(child));
        // B3 headers that came with a request do not travel on beside the W3C ones.
        let mut both = headers(&[(TRACEPARENT, TP), ("b3", "1-2"), ("x-b3-traceid", "x")]);
        let ctx = TraceContext::extract(&both).unwrap();
        assert!(ctx.b3);
        ctx.child().inject(&mut both);
        assert!(both.get("b3").is_none() && both.get("x-b3-traceid").is_none());
    }

    #[test]
    fn malformed_traceparents_are_ignored() {
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "",
        ] {
            assert_eq!(
                TraceContext::extract(&headers(&[(TRACEPARENT, bad)])),
                None,
                "{bad}"
            );
        }
        // A later version is read by its first four fields.
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-what";
        let ctx = TraceContext::extract(&headers(&[(TRACEPARENT, later)])).unwrap();
        assert!(!ctx.sampled);
    }

    #[test]
    fn b3_single_and_multi_headers_are_read() {
        let single = headers(&[(
            "b3",
            "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90",
        )]);
        let ctx = TraceContext::extract(&single).unwrap();
        assert_eq!(ctx.trace_hex(), "80f198ee56343ba864fe8b2a57d3eff7");
        assert_eq!(ctx.span_hex(), "e457b5a2e4d86bd1");
        assert!(ctx.sampled);
        let short = headers(&[("b3", "64fe8b2a57d3eff7-e457b5a2e4d86bd1-0")]);
        let ctx = TraceContext::extract(&short).unwrap();
        assert_eq!(ctx.trace_hex(), "000000000000000064fe8b2a57d3eff7");
        assert!(!ctx.sampled);
        assert_eq!(TraceContext::extract(&headers(&[("b3", "0")])), None);
        let multi = headers(&[
            ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
            ("x-b3-spanid", "e457b5a2e4d86bd1"),
            ("x-b3-sampled", "0"),
        ]);
        let ctx = TraceContext::extract(&multi).unwrap();
        assert_eq!(ctx.span_hex(), "e457b5a2e4d86bd1");
        assert!(!ctx.sampled);
        // W3C wins over B3 when both came.
        let both = headers(&[
            (TRACEPARENT, TP),
            ("b3", "64fe8b2a57d3eff7-e457b5a2e4d86bd1"),
        ]);
        assert_eq!(
            TraceContext::extract(&both).unwrap().trace_hex(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
    }

    #[test]
    fn roots_are_fresh_and_oversized_state_is_dropped() {
        let a = TraceContext::root(true);
        let b = TraceContext::root(false);
        assert_ne!(a.trace_id, b.trace_id);
        assert_eq!(a.traceparent().len(), 55);
        assert!(b.traceparent().to_str().unwrap().ends_with("-00"));
        let big = "a=".to_owned() + &"x".repeat(600);
        let h = headers(&[(TRACEPARENT, TP), (TRACESTATE, &big)]);
        assert_eq!(TraceContext::extract(&h).unwrap().tracestate, None);
    }
}
