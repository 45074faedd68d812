//! Email over SMTP against aiosmtpd (`smtp_relay.py` beside this file), a relay herald did
//! not write: what it received is checked as a mail client would see it.

mod smtp;

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::Value;

const INSTALL: &str = "the SMTP relay needs Python 3 with aiosmtpd: \
                       `python3 -m pip install aiosmtpd` (.ci/run installs it)";

pub const USER: &str = "herald";
pub const PASSWORD: &str = "relay-secret";

/// A running relay; stops when dropped (its stdin closes).
pub struct Relay {
    pub port: u16,
    child: Child,
    stdin: Option<ChildStdin>,
    received: Arc<Mutex<Vec<Value>>>,
}

impl Relay {
    /// Starts the relay on a free loopback port and waits until it accepts connections.
    pub fn start() -> Relay {
        Relay::start_with(&[])
    }

    /// Starts the relay requiring STARTTLS with this certificate and key (PEM files).
    pub fn start_tls(cert: &str, key: &str) -> Relay {
        Relay::start_with(&[cert, key])
    }

    /// Starts the relay speaking TLS from the first byte (SMTPS) with this certificate and key.
    pub fn start_implicit_tls(cert: &str, key: &str) -> Relay {
        Relay::start_with(&[cert, key, "implicit"])
    }

    fn start_with(tls: &[&str]) -> Relay {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            l.local_addr().expect("addr").port()
        };
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/email/smtp_relay.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args([&port.to_string(), USER, PASSWORD])
            .args(tls)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("starting the relay: {e}; {INSTALL}"));
        let stdout = child.stdout.take().expect("stdout");
        let received: Arc<Mutex<Vec<Value>>> = Arc::default();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let r = received.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if v["ready"] == true {
                    let _ = ready_tx.send(());
                } else {
                    r.lock().push(v);
                }
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("the relay did not start; {INSTALL}"));
        let stdin = child.stdin.take();
        Relay {
            port,
            child,
            stdin,
            received,
        }
    }

    /// Waits until `n` messages arrived; answers them in arrival order.
    pub async fn wait_for(&self, n: usize) -> Vec<Value> {
        let start = Instant::now();
        loop {
            let got = self.received.lock().clone();
            if got.len() >= n {
                return got;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the relay received {} of {n} messages",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A header's value in a raw message (unfolded), by name, case-insensitively.
pub fn header(raw: &str, name: &str) -> Option<String> {
    let head = raw.split("\r\n\r\n").next().unwrap_or(raw);
    let mut value: Option<String> = None;
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some(v) = value.as_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
            continue;
        }
        if value.is_some() {
            return value;
        }
        if let Some((n, v)) = line.split_once(':') {
            if n.eq_ignore_ascii_case(name) {
                value = Some(v.trim().to_string());
            }
        }
    }
    value
}

/// The body text with quoted-printable soft breaks and `=3D` undone (enough to find links).
pub fn decoded(raw: &str) -> String {
    raw.replace("=\r\n", "").replace("=3D", "=")
}
