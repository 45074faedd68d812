//! The SMSC sink as a child process of a run: started from this same executable, its
//! addresses read from its first stdout line, killed when the handle drops. Its stdin is a
//! pipe we hold, so if this process dies without dropping the handle the sink exits too.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{anyhow, Context};

use super::tally::TallyView;
use super::SinkSettings;

/// A running sink process.
pub struct SinkProcess {
    child: Child,
    _stdin: Option<ChildStdin>,
    _stdout: Option<BufReader<ChildStdout>>,
    /// Where herald binds.
    pub smpp: SocketAddr,
    /// Where `GET /stats` answers.
    pub stats: SocketAddr,
}

#[derive(serde::Deserialize)]
struct Addresses {
    smpp: SocketAddr,
    stats: SocketAddr,
}

impl SinkProcess {
    /// Starts `herald-loadtest smsc-sink` with `settings` on free loopback ports.
    pub fn start(settings: &SinkSettings) -> anyhow::Result<SinkProcess> {
        let exe = std::env::current_exe().context("locating this executable")?;
        let mut child = Command::new(exe)
            .arg("smsc-sink")
            .args(["--port", "0", "--stats-port", "0", "--exit-on-stdin-eof"])
            .args(settings.to_args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the SMSC sink")?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let mut process = SinkProcess {
            child,
            _stdin: stdin,
            _stdout: None,
            smpp: SocketAddr::from(([127, 0, 0, 1], 0)),
            stats: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let stdout = stdout.ok_or_else(|| anyhow!("the SMSC sink has no stdout"))?;
        // Read the first line on a thread, so a sink that never speaks cannot hang us.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let read = reader.read_line(&mut line);
            let _ = tx.send((read.map(|_| line), reader));
        });
        let (line, reader) = rx
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| anyhow!("the SMSC sink did not report its addresses within 10 s"))?;
        process._stdout = Some(reader);
        let line = line.context("reading the SMSC sink's addresses")?;
        let a: Addresses = serde_json::from_str(line.trim())
            .with_context(|| format!("the SMSC sink printed {line:?}, not its addresses"))?;
        if !(a.smpp.ip().is_loopback() && a.stats.ip().is_loopback()) {
            return Err(anyhow!(
                "the SMSC sink bound {} / {}, not loopback",
                a.smpp,
                a.stats
            ));
        }
        process.smpp = a.smpp;
        process.stats = a.stats;
        Ok(process)
    }

    /// The counters of the sink whose stats endpoint is at `addr`.
    pub async fn stats_at(http: &reqwest::Client, addr: SocketAddr) -> anyhow::Result<TallyView> {
        Ok(http
            .get(format!("http://{addr}/stats"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    /// The operating system's process id, to read its CPU time.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for SinkProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
