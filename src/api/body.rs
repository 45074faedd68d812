//! Streaming request bodies: uploads are read as they arrive, never buffered whole, with a
//! byte cap that turns into 413.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::Body;
use futures::TryStreamExt;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};
use tokio_util::io::StreamReader;

/// Marks that the cap was hit, so the handler can answer 413 rather than a parse error.
#[derive(Clone, Default)]
pub struct CapFlag(Arc<AtomicBool>);

impl CapFlag {
    /// Whether the body went past its cap.
    pub fn exceeded(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// An async reader over the body that fails once more than `limit` bytes arrive.
pub fn capped_reader(body: Body, limit: u64) -> (impl AsyncBufRead + Unpin + Send, CapFlag) {
    let flag = CapFlag::default();
    let seen = flag.clone();
    let mut total: u64 = 0;
    let stream = body
        .into_data_stream()
        .map_err(io::Error::other)
        .and_then(move |chunk| {
            total += chunk.len() as u64;
            let over = total > limit;
            if over {
                seen.0.store(true, Ordering::SeqCst);
            }
            futures::future::ready(if over {
                Err(io::Error::other("body exceeds its size cap"))
            } else {
                Ok(chunk)
            })
        });
    (StreamReader::new(Box::pin(stream)), flag)
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
