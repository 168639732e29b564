//! ISC's error body on the answers hyper writes by itself.
//!
//! # Why this module exists
//!
//! A request head hyper cannot parse (a bad method, URI, version or header line), one longer than its read buffer
//! (twice `max_header_bytes`: the relay answers those between one and two times the limit itself) or a URI too
//! long is answered by hyper before any handler runs: a bare `400`, `431` or `414` with `content-length: 0`, no
//! tracking id, nothing in the logs, nothing counted. hyper 1 has no hook for these answers, so this wrapper sits
//! under hyper's connection and recognises them on the way out: a write that is exactly such a head (status 400,
//! 414 or 431, `content-length: 0`, the whole head in one buffer, as hyper writes it) is replaced by the relay's own
//! answer: the same status, an `ErrorResponseDto` with a tracking id, `x-tracking-id`, `Connection: close` (hyper
//! closes the connection after it). The tracking id goes to a debug log line and the answer is counted
//! (`trigger_relay_malformed_requests_total`, or `trigger_relay_request_headers_too_large_total` for 431).
//!
//! No handler of the relay answers 400, 414 or 431 with an empty body (every error answer carries ISC's body), so a
//! match is always hyper's own. Cost for every other write: one comparison of its first bytes. HTTP/2 frames
//! never begin with `HTTP/1.1 `; HTTP/2's own protocol errors are frames, not answers, and are left alone.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::StatusCode;
use prometheus::IntCounter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::error::{ApiError, TRACKING_HEADER};

/// Counters for the answers replaced on one listener.
#[derive(Clone)]
pub(crate) struct Counters {
    pub listener: &'static str,
    pub malformed: IntCounter,
    pub oversized: IntCounter,
}

/// The connection's IO, with hyper's bare error answers replaced (see the module docs).
pub(crate) struct HyperAnswers<I> {
    inner: I,
    counters: Counters,
    /// The replacement being written: its bytes, how many are written, and how many of hyper's bytes it stands
    /// for (reported as written once it is all out).
    replacing: Option<(Vec<u8>, usize, usize)>,
}

impl<I> HyperAnswers<I> {
    pub(crate) fn new(inner: I, counters: Counters) -> Self {
        Self {
            inner,
            counters,
            replacing: None,
        }
    }
}

/// The status of `buf` when it is one of hyper's own bare error heads, whole.
fn hyper_error_head(buf: &[u8]) -> Option<StatusCode> {
    const PREFIX: &[u8] = b"HTTP/1.1 4";
    if buf.len() > 512 || !buf.starts_with(PREFIX) || !buf.ends_with(b"\r\n\r\n") {
        return None;
    }
    // One head and nothing else (a buffer holding several pipelined answers is never rewritten).
    if buf.windows(4).filter(|w| w == b"\r\n\r\n").count() != 1 {
        return None;
    }
    let status = match buf.get(9..12)? {
        b"400" => StatusCode::BAD_REQUEST,
        b"414" => StatusCode::URI_TOO_LONG,
        b"431" => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        _ => return None,
    };
    let empty = buf
        .windows(b"\r\ncontent-length: 0\r\n".len())
        .any(|w| w.eq_ignore_ascii_case(b"\r\ncontent-length: 0\r\n"));
    empty.then_some(status)
}

/// The relay's answer for one of hyper's, as bytes on the wire.
fn replacement(status: StatusCode, counters: &Counters) -> Vec<u8> {
    let (message, cause) = match status {
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => (
            "the request's headers are too large or too many".to_string(),
            format!(
                "{}.limits.max_header_bytes limits their size (hyper's read buffer holds twice that), and at most 100 header lines are read",
                counters.listener
            ),
        ),
        StatusCode::URI_TOO_LONG => (
            "the request's URI is too long".to_string(),
            "send a shorter path and query".to_string(),
        ),
        _ => (
            "the request is not valid HTTP/1.1".to_string(),
            "its request line or a header line could not be parsed".to_string(),
        ),
    };
    if status == StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE {
        counters.oversized.inc();
    } else {
        counters.malformed.inc();
    }
    let e = ApiError::new(status, message).cause(cause);
    tracing::debug!(listener = counters.listener, tracking_id = %e.tracking_id, status = status.as_u16(), "request head refused before routing");
    let body = e.body();
    let mut out = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{TRACKING_HEADER}: {}\r\nconnection: close\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len(),
        e.tracking_id
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

impl<I: AsyncWrite + Unpin> HyperAnswers<I> {
    /// Write what replaces hyper's answer; `Ready(Ok(n))` with hyper's byte count once it is all out.
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let Some((bytes, written, stands_for)) = &mut self.replacing else {
            return Poll::Ready(Ok(0));
        };
        while *written < bytes.len() {
            match ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..])) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => *written += n,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        let n = *stands_for;
        self.replacing = None;
        Poll::Ready(Ok(n))
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for HyperAnswers<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for HyperAnswers<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.replacing.is_none() {
            match hyper_error_head(buf) {
                Some(status) => {
                    this.replacing = Some((replacement(status, &this.counters), 0, buf.len()))
                }
                None => return Pin::new(&mut this.inner).poll_write(cx, buf),
            }
        }
        this.poll_replacement(cx).map_ok(|n| n.min(buf.len()))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let first = bufs.iter().find(|b| !b.is_empty());
        if this.replacing.is_some() || first.is_some_and(|b| hyper_error_head(b).is_some()) {
            // Only the head is taken (a short write is allowed); hyper sends nothing after it.
            let head = first.map(|b| &b[..]).unwrap_or(&[]);
            return Pin::new(this).poll_write(cx, head);
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.replacing.is_some() {
            ready!(self.poll_replacement(cx))?;
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.replacing.is_some() {
            ready!(self.poll_replacement(cx))?;
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// hyper's own heads are recognised; the relay's answers and anything else are not.
    #[test]
    fn recognises_only_hypers_bare_heads() {
        let cases: &[(&[u8], Option<u16>)] = &[
            (b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: Tue, 01 Dec 2026 00:00:00 GMT\r\n\r\n", Some(400)),
            (b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n", Some(431)),
            (b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\n\r\n", Some(414)),
            // The relay's own 400 has a body.
            (b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 120\r\n\r\n", None),
            (b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", None),
            (b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n", None),
            // Two pipelined answers in one buffer.
            (b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", None),
            // Not a whole head.
            (b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n", None),
            (b"HTTP/1.1 4", None),
            (b"", None),
        ];
        for (buf, want) in cases {
            assert_eq!(
                hyper_error_head(buf).map(|s| s.as_u16()),
                *want,
                "{}",
                String::from_utf8_lossy(buf)
            );
        }
    }
}
