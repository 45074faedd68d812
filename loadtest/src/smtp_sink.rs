//! The SMTP sink: a relay on loopback that takes every message and counts it, so herald's
//! email path is measured without a real mail server in the way. It speaks what a pooled
//! client needs (EHLO with PIPELINING, MAIL, RCPT, DATA with dot-unstuffing left undone since
//! only the end marker matters, RSET, NOOP, QUIT), answers 250 at once, and counts messages
//! and distinct `X-Herald-Message-Id`s (a difference is a duplicate). It sets `TCP_NODELAY`
//! and writes each reply in one write, so it adds no wait of its own to an exchange.
//!
//! It runs on a thread of its own with its own single-threaded runtime, so its work is kept
//! apart from herald's tasks (on 2 cores it still shares the machine).

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::sink_tally::Tally;

/// Starts the sink on `127.0.0.1:0`; answers its address and tally.
pub fn start() -> anyhow::Result<(SocketAddr, Arc<Tally>)> {
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    std_listener.set_nonblocking(true)?;
    let addr = std_listener.local_addr()?;
    let tally = Arc::new(Tally::default());
    let t = tally.clone();
    std::thread::Builder::new()
        .name("smtp-sink".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("smtp sink: {e}");
                    return;
                }
            };
            rt.block_on(async move {
                let Ok(listener) = TcpListener::from_std(std_listener) else {
                    return;
                };
                while let Ok((stream, _)) = listener.accept().await {
                    t.connected();
                    // Each reply is one write; without this a reply could wait for the
                    // client's delayed ACK of the previous one.
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(session(stream, t.clone()));
                }
            });
        })?;
    Ok((addr, tally))
}

async fn session(stream: TcpStream, tally: Arc<Tally>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    if write.write_all(b"220 sink ESMTP\r\n").await.is_err() {
        return;
    }
    let mut line = String::new();
    loop {
        line.clear();
        match lines.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n",
            "HELO" | "MAIL" | "RCPT" | "RSET" | "NOOP" => b"250 OK\r\n",
            "DATA" => {
                if write.write_all(b"354 go on\r\n").await.is_err() {
                    return;
                }
                let mut id = None;
                loop {
                    line.clear();
                    match lines.read_line(&mut line).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    if line == ".\r\n" {
                        break;
                    }
                    if id.is_none() {
                        if let Some(v) = line.strip_prefix("X-Herald-Message-Id:") {
                            id = Some(v.trim().to_string());
                        }
                    }
                }
                tally.took(id.as_deref().unwrap_or(""));
                b"250 OK queued\r\n"
            }
            "QUIT" => {
                let _ = write.write_all(b"221 bye\r\n").await;
                return;
            }
            _ => b"502 not implemented\r\n",
        };
        if write.write_all(reply).await.is_err() {
            return;
        }
    }
}
