//! The SMSC simulator (`smsc.py` beside this file, on the `smpp34` package) as a child
//! process on a free loopback port: what it reports comes back as JSON events.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;

const INSTALL: &str = "the SMSC simulator needs Python 3 with the smpp34 package: \
                       `python3 -m pip install smpp34` (.ci/run installs it)";

/// A running simulator.
pub struct Smsc {
    pub port: u16,
    child: Child,
    stdin: Option<ChildStdin>,
    events: mpsc::UnboundedReceiver<Value>,
    /// Every event received so far, in order.
    pub seen: Vec<Value>,
}

impl Smsc {
    /// Starts the simulator with `args` (see `smsc.py`) on a free port.
    pub async fn start(args: &[&str]) -> Smsc {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            l.local_addr().expect("addr").port()
        };
        Smsc::start_on(port, args).await
    }

    /// Starts the simulator on `port`.
    pub async fn start_on(port: u16, args: &[&str]) -> Smsc {
        let check = Command::new("python3")
            .args(["-c", "import smpp34"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        assert!(matches!(check, Ok(s) if s.success()), "{INSTALL}");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/smpp/smsc.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg("--port")
            .arg(port.to_string())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("starting the simulator: {e}; {INSTALL}"));
        let stdout = child.stdout.take().expect("stdout");
        let (tx, events) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                match serde_json::from_str::<Value>(&line) {
                    Ok(v) => {
                        if tx.send(v).is_err() {
                            break;
                        }
                    }
                    Err(_) => eprintln!("smsc: {line}"),
                }
            }
        });
        let mut smsc = Smsc {
            port,
            stdin: child.stdin.take(),
            child,
            events,
            seen: Vec::new(),
        };
        smsc.wait_for("ready", Duration::from_secs(20)).await;
        smsc
    }

    /// Waits for the next event of `kind`; panics after `limit`.
    pub async fn wait_for(&mut self, kind: &str, limit: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let next = tokio::time::timeout_at(deadline, self.events.recv()).await;
            match next {
                Ok(Some(v)) => {
                    self.seen.push(v.clone());
                    if v["event"] == kind {
                        return v;
                    }
                }
                Ok(None) => panic!("the simulator exited before {kind:?}: {:#?}", self.seen),
                Err(_) => panic!("no {kind:?} from the simulator within {limit:?}"),
            }
        }
    }

    /// Takes every event that has arrived, without waiting.
    pub fn drain(&mut self) {
        while let Ok(v) = self.events.try_recv() {
            self.seen.push(v);
        }
    }

    /// Waits until `n` events of `kind` have been seen in all; panics after `limit`.
    pub async fn wait_count(&mut self, kind: &str, n: usize, limit: Duration) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            self.drain();
            let got: Vec<Value> = self.of(kind);
            if got.len() >= n {
                return got;
            }
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(v)) => self.seen.push(v),
                Ok(None) => panic!("the simulator exited: {:#?}", self.seen),
                Err(_) => panic!("{} of {n} {kind:?} within {limit:?}", got.len()),
            }
        }
    }

    /// Every event of `kind` seen so far.
    pub fn of(&self, kind: &str) -> Vec<Value> {
        self.seen
            .iter()
            .filter(|v| v["event"] == kind)
            .cloned()
            .collect()
    }

    /// Sends a command (see `smsc.py`).
    pub fn command(&mut self, cmd: Value) {
        let stdin = self.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{cmd}").expect("write to the simulator");
        stdin.flush().expect("flush");
    }

    /// Stops the simulator at once (its binds drop without an unbind).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Smsc {
    fn drop(&mut self) {
        // Closing stdin makes it exit; kill in case it does not.
        self.stdin.take();
        self.kill();
    }
}

/// The bytes of a hex string.
pub fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}
