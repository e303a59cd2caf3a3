//! Lets gRPC C-core clients (py-spiffe, grpc-java on Netty) reach the Workload API.
//!
//! Over a Unix socket they send the socket's path, percent-encoded, as the HTTP/2
//! `:authority` (`run%2Fsignet%2Fworkload.sock`), and the HTTP/2 server refuses that as a
//! malformed authority (hyperium/h2#487) before any of our code runs. The authority means
//! nothing on a local socket, so this reader sits between the socket and the server and
//! rewrites every request's header block with `:authority: localhost`. It decodes each
//! block (HPACK, with the dynamic table the client's encoder keeps) and writes it back out
//! as literals that touch no table, so the server's decoder needs no state from us. Every
//! other frame, and the whole server-to-client direction, passes through untouched.
//!
//! The input is any local user's, so every size is bounded: a frame at most 64 KiB, a
//! header block (with its continuations) at most 64 KiB, decoded headers at most 64 KiB,
//! the dynamic table at most the 4 KiB the server allows. Anything malformed fails the
//! connection with `InvalidData`.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// Larger than any frame the server accepts (its SETTINGS_MAX_FRAME_SIZE is 16 KiB).
const MAX_FRAME: usize = 64 * 1024;
const MAX_BLOCK: usize = 64 * 1024;
const MAX_DECODED: usize = 64 * 1024;
/// The HPACK dynamic table the server advertises (SETTINGS_HEADER_TABLE_SIZE, default).
const TABLE_SIZE: usize = 4096;
/// The largest frame the server takes (SETTINGS_MAX_FRAME_SIZE, default): rewritten blocks
/// are split to fit.
const OUT_FRAME: usize = 16 * 1024;

/// A header block being collected across HEADERS and CONTINUATION frames.
struct Block {
    stream: u32,
    flags: u8,
    priority: Option<[u8; 5]>,
    fragment: Vec<u8>,
}

/// The socket, with its client's header blocks rewritten.
pub struct LocalAuthority<S> {
    inner: S,
    decoder: fluke_hpack::Decoder<'static>,
    preface_left: usize,
    /// Read from the socket, not yet a whole frame.
    pending: Vec<u8>,
    /// Rewritten, not yet handed to the server.
    ready: Vec<u8>,
    block: Option<Block>,
}

impl<S> std::fmt::Debug for LocalAuthority<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalAuthority")
            .field("pending", &self.pending.len())
            .field("ready", &self.ready.len())
            .finish_non_exhaustive()
    }
}

impl<S> LocalAuthority<S> {
    pub fn new(inner: S) -> Self {
        let mut decoder = fluke_hpack::Decoder::new();
        decoder.set_max_allowed_table_size(TABLE_SIZE);
        Self {
            inner,
            decoder,
            preface_left: PREFACE_LEN,
            pending: Vec::new(),
            ready: Vec::new(),
            block: None,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Moves every whole frame in `pending` to `ready`, rewriting header blocks.
    fn process(&mut self) -> std::io::Result<()> {
        if self.preface_left > 0 {
            let n = self.preface_left.min(self.pending.len());
            self.ready.extend(self.pending.drain(..n));
            self.preface_left -= n;
            if self.preface_left > 0 {
                return Ok(());
            }
        }
        let mut at = 0;
        while self.pending.len() - at >= FRAME_HEADER_LEN {
            let head = &self.pending[at..at + FRAME_HEADER_LEN];
            let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
            if len > MAX_FRAME {
                return Err(bad("a frame larger than the server takes"));
            }
            if self.pending.len() - at < FRAME_HEADER_LEN + len {
                break;
            }
            let (kind, flags) = (head[3], head[4]);
            let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
            let frame = at..at + FRAME_HEADER_LEN + len;
            let payload = at + FRAME_HEADER_LEN..frame.end;
            match kind {
                HEADERS => {
                    if self.block.is_some() {
                        return Err(bad("HEADERS inside another header block"));
                    }
                    let payload = self.pending[payload].to_vec();
                    self.headers(stream, flags, &payload)?;
                }
                CONTINUATION => {
                    let fragment = self.pending[payload].to_vec();
                    let block = self
                        .block
                        .as_mut()
                        .filter(|b| b.stream == stream)
                        .ok_or_else(|| bad("CONTINUATION outside a header block"))?;
                    if block.fragment.len() + fragment.len() > MAX_BLOCK {
                        return Err(bad("a header block larger than 64 KiB"));
                    }
                    block.fragment.extend_from_slice(&fragment);
                    if flags & END_HEADERS != 0 {
                        self.finish()?;
                    }
                }
                _ if self.block.is_some() => {
                    return Err(bad("a frame inside a header block"));
                }
                _ => {
                    let bytes = &self.pending[frame.clone()];
                    self.ready.extend_from_slice(bytes);
                }
            }
            at = frame.end;
        }
        self.pending.drain(..at);
        Ok(())
    }

    fn headers(&mut self, stream: u32, flags: u8, payload: &[u8]) -> std::io::Result<()> {
        let mut body = payload;
        let mut padding = 0;
        if flags & PADDED != 0 {
            let (&pad, rest) = body
                .split_first()
                .ok_or_else(|| bad("a short HEADERS frame"))?;
            padding = usize::from(pad);
            body = rest;
        }
        let mut priority = None;
        if flags & PRIORITY != 0 {
            let (fields, rest) = body
                .split_at_checked(5)
                .ok_or_else(|| bad("a short HEADERS frame"))?;
            let mut copy = [0; 5];
            copy.copy_from_slice(fields);
            priority = Some(copy);
            body = rest;
        }
        let fragment = body
            .get(
                ..body
                    .len()
                    .checked_sub(padding)
                    .ok_or_else(|| bad("padding past the frame"))?,
            )
            .ok_or_else(|| bad("padding past the frame"))?;
        self.block = Some(Block {
            stream,
            flags,
            priority,
            fragment: fragment.to_vec(),
        });
        if flags & END_HEADERS != 0 {
            self.finish()?;
        }
        Ok(())
    }

    /// Decodes the collected block and writes it out again, `:authority` made `localhost`.
    fn finish(&mut self) -> std::io::Result<()> {
        let Some(block) = self.block.take() else {
            return Ok(());
        };
        let mut headers = Vec::new();
        let mut decoded = 0;
        let mut too_large = false;
        let decoder = &mut self.decoder;
        // The decoder panics on some malformed input: that is this connection's failure.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            decoder.decode_with_cb(&block.fragment, |name, value| {
                decoded += name.len() + value.len() + 32;
                if decoded > MAX_DECODED {
                    too_large = true;
                    return;
                }
                let value = if name.as_ref() == b":authority" {
                    b"localhost".to_vec()
                } else {
                    value.into_owned()
                };
                headers.push((name.into_owned(), value));
            })
        }));
        match result {
            Ok(Ok(())) if !too_large => {}
            Ok(Ok(())) => return Err(bad("decoded headers larger than 64 KiB")),
            Ok(Err(e)) => return Err(bad(&format!("a malformed header block ({e:?})"))),
            Err(_) => return Err(bad("a malformed header block")),
        }
        let mut encoded = Vec::with_capacity(decoded);
        for (name, value) in &headers {
            // Literal header field without indexing, new name (RFC 7541 §6.2.2).
            encoded.push(0x00);
            literal(&mut encoded, name);
            literal(&mut encoded, value);
        }
        self.frames(&block, &encoded);
        Ok(())
    }

    /// The block as a HEADERS frame and as many CONTINUATION frames as it needs.
    fn frames(&mut self, block: &Block, encoded: &[u8]) {
        let priority_len = if block.priority.is_some() { 5 } else { 0 };
        let first = encoded.len().min(OUT_FRAME - priority_len);
        let (head, mut rest) = encoded.split_at(first);
        let mut flags = block.flags & (END_STREAM | PRIORITY);
        if rest.is_empty() {
            flags |= END_HEADERS;
        }
        frame_header(
            &mut self.ready,
            priority_len + head.len(),
            HEADERS,
            flags,
            block.stream,
        );
        if let Some(priority) = block.priority {
            self.ready.extend_from_slice(&priority);
        }
        self.ready.extend_from_slice(head);
        while !rest.is_empty() {
            let n = rest.len().min(OUT_FRAME);
            let (chunk, after) = rest.split_at(n);
            let flags = if after.is_empty() { END_HEADERS } else { 0 };
            frame_header(&mut self.ready, n, CONTINUATION, flags, block.stream);
            self.ready.extend_from_slice(chunk);
            rest = after;
        }
    }
}

fn bad(what: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("Workload API client sent {what}"),
    )
}

fn frame_header(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream: u32) {
    let len = u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes();
    out.extend_from_slice(&len[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
}

/// An HPACK string literal, not Huffman-coded: a 7-bit-prefix length, then the bytes.
fn literal(out: &mut Vec<u8>, bytes: &[u8]) {
    integer(out, bytes.len(), 7, 0x00);
    out.extend_from_slice(bytes);
}

/// An HPACK integer with an `n`-bit prefix on a first byte starting with `high` bits.
fn integer(out: &mut Vec<u8>, value: usize, n: u32, high: u8) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(high | value as u8);
        return;
    }
    out.push(high | max as u8);
    let mut rest = value - max;
    while rest >= 128 {
        out.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    out.push(rest as u8);
}

impl<S: AsyncRead + Unpin> AsyncRead for LocalAuthority<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.ready.is_empty() {
                let n = this.ready.len().min(buf.remaining());
                buf.put_slice(&this.ready[..n]);
                this.ready.drain(..n);
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 8192];
            let mut read = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) => {
                    let got = read.filled();
                    if got.is_empty() {
                        // End of stream: whatever partial frame is left is the server's
                        // to find short.
                        let rest = std::mem::take(&mut this.pending);
                        this.ready.extend(rest);
                        if this.ready.is_empty() {
                            return Poll::Ready(Ok(()));
                        }
                        continue;
                    }
                    this.pending.extend_from_slice(got);
                    if this.pending.len() > MAX_FRAME + FRAME_HEADER_LEN + PREFACE_LEN {
                        return Poll::Ready(Err(bad("more than a frame at once")));
                    }
                    this.process()?;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for LocalAuthority<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(headers: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut encoder = fluke_hpack::Encoder::new();
        encoder.encode(headers.iter().copied())
    }

    /// The bytes the server would read for `input` fed in `step`-byte pieces.
    fn rewrite(input: &[u8], step: usize) -> std::io::Result<Vec<u8>> {
        let mut r = LocalAuthority::new(tokio::io::empty());
        for piece in input.chunks(step) {
            r.pending.extend_from_slice(piece);
            r.process()?;
        }
        Ok(r.ready)
    }

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        frame_header(&mut out, payload.len(), kind, flags, stream);
        out.extend_from_slice(payload);
        out
    }

    /// Header blocks in what the server reads, decoded.
    fn decoded(bytes: &[u8]) -> Vec<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut decoder = fluke_hpack::Decoder::new();
        let mut at = PREFACE_LEN;
        let mut blocks = Vec::new();
        let mut block = Vec::new();
        while at < bytes.len() {
            let len = usize::from(bytes[at]) << 16
                | usize::from(bytes[at + 1]) << 8
                | usize::from(bytes[at + 2]);
            let (kind, flags) = (bytes[at + 3], bytes[at + 4]);
            let payload = &bytes[at + 9..at + 9 + len];
            if kind == HEADERS || kind == CONTINUATION {
                let skip = if kind == HEADERS && flags & PRIORITY != 0 {
                    5
                } else {
                    0
                };
                block.extend_from_slice(&payload[skip..]);
                if flags & END_HEADERS != 0 {
                    blocks.push(decoder.decode(&block).unwrap());
                    block.clear();
                }
            }
            at += 9 + len;
        }
        blocks
    }

    #[test]
    fn a_path_as_authority_becomes_localhost_and_all_else_is_kept() {
        let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        let settings = frame(0x4, 0, 0, &[0, 3, 0, 0, 0, 100]);
        let request = [
            (b":method".as_slice(), b"POST".as_slice()),
            (b":scheme", b"http"),
            (b":path", b"/SpiffeWorkloadAPI/FetchX509SVID"),
            (b":authority", b"run%2Fsignet%2Fworkload.sock"),
            (b"workload.spiffe.io", b"true"),
        ];
        // The client's encoder indexes: the second request refers to the first's entries.
        let mut encoder = fluke_hpack::Encoder::new();
        let first = encoder.encode(request.iter().copied());
        let second = encoder.encode(request.iter().copied());
        let data = frame(0x0, END_STREAM, 1, b"\0\0\0\0\0");
        let padded = {
            let mut p = vec![3u8];
            p.extend_from_slice(&second);
            p.extend_from_slice(&[0, 0, 0]);
            p
        };
        let (half1, half2) = first.split_at(first.len() / 2);
        let input = [
            preface.clone(),
            settings.clone(),
            frame(HEADERS, 0, 1, half1),
            frame(CONTINUATION, END_HEADERS, 1, half2),
            data.clone(),
            frame(HEADERS, END_HEADERS | PADDED | END_STREAM, 3, &padded),
        ]
        .concat();
        for step in [1, 7, 4096] {
            let out = rewrite(&input, step).unwrap();
            assert_eq!(&out[..PREFACE_LEN], preface.as_slice());
            assert_eq!(
                &out[PREFACE_LEN..PREFACE_LEN + settings.len()],
                settings.as_slice()
            );
            let blocks = decoded(&out);
            assert_eq!(blocks.len(), 2);
            for block in &blocks {
                let authority = block.iter().find(|(n, _)| n == b":authority").unwrap();
                assert_eq!(authority.1, b"localhost");
                assert_eq!(block.len(), request.len());
                assert!(
                    block
                        .iter()
                        .any(|(n, v)| n == b"workload.spiffe.io" && v == b"true")
                );
            }
            assert!(
                out.windows(data.len()).any(|w| w == data.as_slice()),
                "other frames pass through"
            );
        }
    }

    #[test]
    fn malformed_or_oversized_input_fails_the_connection() {
        let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        let cases = [
            // An index past every table.
            frame(HEADERS, END_HEADERS, 1, &[0xff, 0xff, 0x7f]),
            // A CONTINUATION with no block open.
            frame(CONTINUATION, END_HEADERS, 1, &encode(&[(b"a", b"b")])),
            // Padding longer than the frame.
            frame(HEADERS, END_HEADERS | PADDED, 1, &[200, 0x82]),
            // A frame larger than the server would ever take.
            {
                let mut big = frame(0x0, 0, 1, &[]);
                big[0] = 0x7f;
                big
            },
            // A data frame inside a header block.
            [
                frame(HEADERS, 0, 1, &encode(&[(b"a", b"b")])),
                frame(0x0, 0, 1, b"x"),
            ]
            .concat(),
        ];
        for case in cases {
            let input = [preface.clone(), case].concat();
            assert!(rewrite(&input, 4096).is_err(), "{input:?}");
        }
        // A table size update past what the server allows.
        let mut update = Vec::new();
        integer(&mut update, 1 << 20, 5, 0x20);
        update.extend(encode(&[(b"a", b"b")]));
        let input = [preface, frame(HEADERS, END_HEADERS, 1, &update)].concat();
        assert!(rewrite(&input, 4096).is_err());
    }
}
