//! Streaming request bodies: uploads are read as they arrive, never buffered whole, with a
//! byte cap that turns into 413. A body whose declared `Content-Length` is over its cap is
//! refused at once, before any of it is read, and a body that stops arriving for
//! `server.body_idle_timeout_ms` ends its request with 408 ([`IdleTimeout`]).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use futures::{StreamExt, TryStreamExt};
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::io::{AsyncBufRead, AsyncBufReadExt};
use tokio::time::Sleep;
use tokio_util::io::StreamReader;

use super::error::ApiError;

// 0: read so far without trouble.
const OVER_CAP: u8 = 1;
const STALLED: u8 = 2;

/// Marks why a capped body stopped: over its cap (413) or stalled (408), so the handler can
/// answer that rather than a parse error.
#[derive(Clone, Default)]
pub struct CapFlag(Arc<AtomicU8>);

impl CapFlag {
    /// The answer for a body that ended early, if it ended for a reason the client must be
    /// told: 413 over the cap, 408 stalled. `None` for other read errors.
    pub fn refusal(&self, limit: u64) -> Option<ApiError> {
        match self.0.load(Ordering::SeqCst) {
            OVER_CAP => Some(ApiError::too_large(limit)),
            STALLED => Some(ApiError::body_stalled()),
            _ => None,
        }
    }
}

/// 413 at once when the body declares (by `Content-Length`) more than `limit` bytes.
pub fn check_declared(body: &Body, limit: u64) -> Result<(), ApiError> {
    if body.size_hint().lower() > limit {
        Err(ApiError::too_large(limit))
    } else {
        Ok(())
    }
}

/// An async reader over the body that fails once more than `limit` bytes arrive. A body
/// that declares more than `limit` is refused before it is read.
pub fn capped_reader(
    body: Body,
    limit: u64,
) -> Result<(impl AsyncBufRead + Unpin + Send, CapFlag), ApiError> {
    check_declared(&body, limit)?;
    let flag = CapFlag::default();
    let seen = flag.clone();
    let failed = flag.clone();
    let mut total: u64 = 0;
    let stream = body
        .into_data_stream()
        .map_err(move |e| {
            if is_stalled(&e) {
                failed.0.store(STALLED, Ordering::SeqCst);
            }
            io::Error::other(e)
        })
        .and_then(move |chunk| {
            total += chunk.len() as u64;
            let over = total > limit;
            if over {
                seen.0.store(OVER_CAP, Ordering::SeqCst);
            }
            futures::future::ready(if over {
                Err(io::Error::other("body exceeds its size cap"))
            } else {
                Ok(chunk)
            })
        });
    Ok((StreamReader::new(Box::pin(stream)), flag))
}

/// Reads a whole body of at most `limit` bytes (JSON, signed callbacks): 413 when it
/// declares or sends more, 408 when it stalls, 400 when it cannot be read.
pub async fn read_whole(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    check_declared(&body, limit as u64)?;
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            if is_stalled(&e) {
                ApiError::body_stalled()
            } else {
                ApiError::bad_request(format!("could not read the body: {e}"))
            }
        })?;
        if buf.len() + chunk.len() > limit {
            return Err(ApiError::too_large(limit as u64));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
}

/// Whether a body error (however wrapped) is [`BodyStalled`].
fn is_stalled(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(e) = next {
        if e.is::<BodyStalled>() {
            return true;
        }
        // io::Error's `source` skips the error it wraps.
        if let Some(inner) = e.downcast_ref::<io::Error>().and_then(|io| io.get_ref()) {
            if is_stalled(inner) {
                return true;
            }
        }
        next = e.source();
    }
    false
}

/// The error a request body ends with when no byte of it arrived for the idle timeout.
#[derive(Debug, thiserror::Error)]
#[error("no byte of the request body arrived for {0:?}")]
pub struct BodyStalled(pub Duration);

/// A request body that fails with [`BodyStalled`] once nothing arrives for `idle`: a client
/// that declares a body and stops sending would otherwise hold its request (and the
/// handler's buffers) forever. Wrapped around every request body by the server loop.
pub struct IdleTimeout<B> {
    inner: B,
    idle: Duration,
    timer: Option<Pin<Box<Sleep>>>,
    armed: bool,
}

impl<B> IdleTimeout<B> {
    /// Wraps `inner`; the clock starts at the first poll that finds nothing to read.
    pub fn new(inner: B, idle: Duration) -> Self {
        IdleTimeout {
            inner,
            idle,
            timer: None,
            armed: false,
        }
    }
}

impl<B> HttpBody for IdleTimeout<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.armed = false;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let deadline = tokio::time::Instant::now() + this.idle;
                let timer = match &mut this.timer {
                    Some(t) if this.armed => t,
                    Some(t) => {
                        t.as_mut().reset(deadline);
                        t
                    }
                    None => this
                        .timer
                        .insert(Box::pin(tokio::time::sleep_until(deadline))),
                };
                this.armed = true;
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyStalled(this.idle))))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Reads one line (without its `\n` / `\r\n`) into `buf`. `Ok(false)` at end of input. A line
/// longer than `max` is an `InvalidData` error.
pub async fn next_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> io::Result<bool> {
    buf.clear();
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(!buf.is_empty());
        }
        let (take, done) = match available.iter().position(|&b| b == b'\n') {
            Some(pos) => (pos + 1, true),
            None => (available.len(), false),
        };
        if buf.len() + take > max + 2 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("line longer than {max} bytes"),
            ));
        }
        buf.extend_from_slice(&available[..take]);
        reader.consume(take);
        if done {
            while matches!(buf.last(), Some(b'\n' | b'\r')) {
                buf.pop();
            }
            return Ok(true);
        }
    }
}
