//! Request bodies kept for retries. A body up to the route's cap is read whole before the
//! first attempt and sent again from memory; a larger one (by `content-length`, or found
//! while reading) is sent once, what was read first followed by the rest, and never retried.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::BodyExt;

use crate::pool::{Body, BoxError};

/// A request body, ready for one or more attempts.
#[derive(Debug)]
pub enum Prepared {
    /// Read whole: each attempt sends a copy.
    Replayable {
        /// The data.
        data: Bytes,
        /// Trailers, when the body had them (gRPC rarely sends request trailers).
        trailers: Option<HeaderMap>,
    },
    /// Too large to keep: sent once.
    Once(Body),
    /// A `Once` body, sent.
    Spent,
}

impl Prepared {
    /// A body for one attempt; `None` once a `Once` body was taken.
    pub fn attempt(&mut self) -> Option<Body> {
        match self {
            Prepared::Replayable { data, trailers } => Some(
                Replay {
                    data: Some(data.clone()).filter(|d| !d.is_empty()),
                    trailers: trailers.clone(),
                }
                .boxed(),
            ),
            Prepared::Once(_) => match std::mem::replace(self, Prepared::Spent) {
                Prepared::Once(body) => Some(body),
                _ => None,
            },
            Prepared::Spent => None,
        }
    }

    /// Whether another attempt can send this body.
    pub fn replayable(&self) -> bool {
        matches!(self, Prepared::Replayable { .. })
    }
}

/// Reads `body` whole if it is at most `cap` bytes (`declared` is its `content-length`).
/// Errors reading it are the client's.
pub async fn prepare(body: Body, declared: Option<u64>, cap: u32) -> Result<Prepared, BoxError> {
    let cap = u64::from(cap);
    if declared.is_some_and(|n| n > cap) || cap == 0 && !body.is_end_stream() {
        return Ok(Prepared::Once(body));
    }
    let mut body = body;
    let mut data = BytesMut::new();
    let mut read = VecDeque::new();
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        match frame.into_data() {
            Ok(chunk) => {
                if data.len() as u64 + chunk.len() as u64 > cap {
                    // Too large after all: send what was read, then the rest, once.
                    read.push_back(data.freeze());
                    read.push_back(chunk);
                    return Ok(Prepared::Once(Prefixed { read, rest: body }.boxed()));
                }
                data.extend_from_slice(&chunk);
            }
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    return Ok(Prepared::Replayable {
                        data: data.freeze(),
                        trailers: Some(trailers),
                    });
                }
            }
        }
    }
    Ok(Prepared::Replayable {
        data: data.freeze(),
        trailers: None,
    })
}

/// A kept body, sent again.
struct Replay {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl http_body::Body for Replay {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(data) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        let len = self.data.as_ref().map_or(0, |d| d.len() as u64);
        SizeHint::with_exact(len)
    }
}

/// What was read while deciding, then the rest of the body.
struct Prefixed {
    read: VecDeque<Bytes>,
    rest: Body,
}

impl http_body::Body for Prefixed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        while let Some(chunk) = self.read.pop_front() {
            if !chunk.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(chunk))));
            }
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.read.is_empty() && self.rest.is_end_stream()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Full, StreamBody};

    fn body(chunks: &[&'static str]) -> Body {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = chunks
            .iter()
            .map(|c| Ok(Frame::data(Bytes::from_static(c.as_bytes()))))
            .collect();
        StreamBody::new(tokio_stream::iter(frames)).boxed()
    }

    async fn text(b: Body) -> String {
        String::from_utf8(b.collect().await.unwrap().to_bytes().to_vec()).unwrap()
    }

    #[tokio::test]
    async fn small_bodies_are_sent_again_whole() {
        let mut p = prepare(body(&["ab", "cd"]), None, 8).await.unwrap();
        assert!(p.replayable());
        assert_eq!(text(p.attempt().unwrap()).await, "abcd");
        assert_eq!(text(p.attempt().unwrap()).await, "abcd");
        let mut empty = prepare(
            Full::new(Bytes::new()).map_err(|n| match n {}).boxed(),
            Some(0),
            8,
        )
        .await
        .unwrap();
        assert!(empty.attempt().unwrap().is_end_stream());
    }

    #[tokio::test]
    async fn large_bodies_are_sent_once_and_whole() {
        // Found too large while reading: what was read comes first.
        let mut p = prepare(body(&["abcd", "efgh", "ij"]), None, 6)
            .await
            .unwrap();
        assert!(!p.replayable());
        assert_eq!(text(p.attempt().unwrap()).await, "abcdefghij");
        assert!(p.attempt().is_none());
        // Declared too large: not read at all.
        let mut p = prepare(body(&["abcdefgh"]), Some(8), 4).await.unwrap();
        assert!(!p.replayable());
        assert_eq!(text(p.attempt().unwrap()).await, "abcdefgh");
    }
}
