//! Mirroring: a copy of a share of a route's requests goes to a subset too, on a task of its
//! own; its answer is read and dropped, and the original never waits for it. Copies are
//! bounded in flight ([`MAX_IN_FLIGHT`] per upstream): past that a copy is skipped, never
//! queued. The copy's `Host` carries a `-shadow` suffix, so the subset's app can tell a copy
//! from a request.
//!
//! A request body is copied as it streams to the original upstream: each frame the original
//! reads is also offered to the copy, without waiting. If the copy falls
//! [`MAX_BUFFERED_FRAMES`] behind, or the body grows past [`MAX_COPIED_BYTES`], or the
//! original's body fails, the copy is abandoned: its body ends in an error, so the subset
//! never receives a truncated request as if it were whole.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Request};
use http_body::{Body as _, Frame};
use http_body_util::BodyExt;
use tokio::sync::mpsc;

use super::balance::Endpoint;
use crate::metrics::Metrics;
use crate::pool::{Body, BoxError};

/// Copies in flight at once, per upstream service.
pub const MAX_IN_FLIGHT: usize = 64;
/// Frames a copy may fall behind the original before it is abandoned.
pub const MAX_BUFFERED_FRAMES: usize = 16;
/// Largest request body copied; a longer one abandons its copy.
pub const MAX_COPIED_BYTES: usize = 1024 * 1024;

/// Sends a copy of `request` to `endpoint` (of the mirror's subset) if it can go without
/// holding anything up, and returns the request to send on (its body now also feeding the
/// copy); counts what happened under `labels` (service, route).
pub fn copy(
    request: Request<Body>,
    endpoint: Option<Arc<Endpoint>>,
    slots: &Arc<tokio::sync::Semaphore>,
    metrics: &Metrics,
    labels: (&str, &str),
) -> Request<Body> {
    let count = |result: &str| metrics.upstream_mirrors.inc(&[labels.0, labels.1, result]);
    let Some(endpoint) = endpoint else {
        count("no-endpoints");
        return request;
    };
    let Ok(permit) = Arc::clone(slots).try_acquire_owned() else {
        count("skipped-busy");
        return request;
    };
    let (request, copy_body, abandoned) = if request.body().is_end_stream() {
        let empty = http_body_util::Empty::new().map_err(Into::into).boxed();
        (request, empty, None)
    } else {
        let (parts, body) = request.into_parts();
        let (tx, rx) = mpsc::channel(MAX_BUFFERED_FRAMES);
        let abandoned = Arc::new(AtomicBool::new(false));
        let tee = Tee {
            inner: body,
            copy: Some(tx),
            copied: 0,
            abandoned: Arc::clone(&abandoned),
        };
        let copy = Copied {
            frames: rx,
            abandoned: Arc::clone(&abandoned),
        };
        (
            Request::from_parts(parts, tee.boxed()),
            copy.boxed(),
            Some(abandoned),
        )
    };
    let mut copy = Request::new(copy_body);
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    if let Some(host) = request
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| HeaderValue::from_str(&format!("{h}-shadow")).ok())
    {
        copy.headers_mut().insert(http::header::HOST, host);
    }
    count("copied");
    let counter = Arc::clone(&metrics.upstream_mirrors);
    let (service, route) = (labels.0.to_owned(), labels.1.to_owned());
    tokio::spawn(async move {
        let _permit = permit;
        match endpoint.pool.send(copy, None).await {
            // Read to the end (so the connection can be reused), then drop.
            Ok(response) => {
                let _ = response.into_body().collect().await;
            }
            Err(e) => tracing::debug!(error = %e, "a mirrored copy failed"),
        }
        if abandoned.is_some_and(|a| a.load(Ordering::Relaxed)) {
            counter.inc(&[&service, &route, "abandoned"]);
        }
    });
    request
}

/// The original's body, offering each frame to the copy as the original reads it.
struct Tee {
    inner: Body,
    /// None once the copy has everything, or was abandoned.
    copy: Option<mpsc::Sender<Frame<Bytes>>>,
    copied: usize,
    abandoned: Arc<AtomicBool>,
}

impl Tee {
    fn abandon(&mut self) {
        if self.copy.take().is_some() {
            self.abandoned.store(true, Ordering::Relaxed);
        }
    }

    fn offer(&mut self, frame: &Frame<Bytes>) {
        let Some(tx) = &self.copy else {
            return;
        };
        let copied = if let Some(data) = frame.data_ref() {
            self.copied += data.len();
            if self.copied > MAX_COPIED_BYTES {
                return self.abandon();
            }
            Frame::data(data.clone())
        } else if let Some(trailers) = frame.trailers_ref() {
            Frame::trailers(trailers.clone())
        } else {
            return;
        };
        if tx.try_send(copied).is_err() {
            self.abandon();
        }
    }
}

impl http_body::Body for Tee {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => self.offer(frame),
            Poll::Ready(Some(Err(_))) => self.abandon(),
            // The whole body went by: the copy ends where the original did.
            Poll::Ready(None) => self.copy = None,
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Tee {
    fn drop(&mut self) {
        // Dropped before its end (the original's upstream answered early, say): the copy
        // never saw the whole body.
        self.abandon();
    }
}

/// The copy's body: the frames the original passed on, ending in an error if the copy was
/// abandoned before the original's body ended.
struct Copied {
    frames: mpsc::Receiver<Frame<Bytes>>,
    abandoned: Arc<AtomicBool>,
}

impl http_body::Body for Copied {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.frames.poll_recv(cx) {
            Poll::Ready(Some(frame)) => Poll::Ready(Some(Ok(frame))),
            Poll::Ready(None) if self.abandoned.load(Ordering::Relaxed) => Poll::Ready(Some(Err(
                "the mirrored copy was abandoned before the body ended".into(),
            ))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::StreamBody;

    fn streamed(chunks: Vec<&'static [u8]>) -> Body {
        let frames = chunks
            .into_iter()
            .map(|c| Ok::<_, BoxError>(Frame::data(Bytes::from_static(c))));
        StreamBody::new(tokio_stream::iter(frames)).boxed()
    }

    fn tee(body: Body) -> (Tee, Copied) {
        let (tx, rx) = mpsc::channel(MAX_BUFFERED_FRAMES);
        let abandoned = Arc::new(AtomicBool::new(false));
        (
            Tee {
                inner: body,
                copy: Some(tx),
                copied: 0,
                abandoned: Arc::clone(&abandoned),
            },
            Copied {
                frames: rx,
                abandoned,
            },
        )
    }

    #[tokio::test]
    async fn the_copy_gets_the_whole_body_as_the_original_reads_it() {
        let (original, copy) = tee(streamed(vec![b"ab", b"cd", b"ef"]));
        let read = original.collect().await.unwrap().to_bytes();
        assert_eq!(&read[..], b"abcdef");
        assert_eq!(&copy.collect().await.unwrap().to_bytes()[..], b"abcdef");
    }

    #[tokio::test]
    async fn a_copy_that_falls_behind_is_abandoned_and_never_looks_whole() {
        let chunks = vec![&b"x"[..]; MAX_BUFFERED_FRAMES + 4];
        let (original, copy) = tee(streamed(chunks));
        // The original reads everything at once, never waiting for the copy.
        let read = original.collect().await.unwrap().to_bytes();
        assert_eq!(read.len(), MAX_BUFFERED_FRAMES + 4);
        let err = copy.collect().await.unwrap_err();
        assert!(err.to_string().contains("abandoned"), "{err}");
    }

    #[tokio::test]
    async fn a_body_past_the_copy_limit_abandons_the_copy_only() {
        static BIG: [u8; MAX_COPIED_BYTES] = [7; MAX_COPIED_BYTES];
        let (original, copy) = tee(streamed(vec![&BIG[..], b"more"]));
        let reader = tokio::spawn(copy.collect());
        let read = original.collect().await.unwrap().to_bytes();
        assert_eq!(read.len(), MAX_COPIED_BYTES + 4);
        assert!(reader.await.unwrap().is_err());
    }

    #[tokio::test]
    async fn an_original_dropped_before_its_end_abandons_the_copy() {
        let (mut original, copy) = tee(streamed(vec![b"ab", b"cd"]));
        let first = original.frame().await.unwrap().unwrap();
        assert_eq!(first.data_ref().map(|d| &d[..]), Some(&b"ab"[..]));
        drop(original);
        assert!(copy.collect().await.is_err());
    }
}
