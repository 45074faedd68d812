//! The mock provider as a child process of a run: started from this same executable, its
//! address read from its first stdout line, killed when the handle drops (at the end of a
//! run, on an error, or on a panic). Its stdin is a pipe we hold: if this process dies
//! without dropping the handle, the pipe closes and the mock exits by itself.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{anyhow, Context};

use crate::mock::callbacks::SECRET_ENV;
use crate::mock::stats::StatsView;
use crate::mock::TOKEN_ENV;
use crate::scenario::{MockSpec, ReceiptSpec};

/// A running mock provider.
pub struct MockProcess {
    child: Child,
    _stdin: Option<ChildStdin>,
    _stdout: Option<BufReader<ChildStdout>>,
    pub addr: SocketAddr,
    /// With `tls`: the `https://` base of the same routes, and the CA file that signs it.
    pub https: Option<(String, String)>,
}

impl MockProcess {
    /// Starts `herald-loadtest mock-provider` on 127.0.0.1 with a free port. Requests must
    /// carry `authorization: <credential>`. With a `callback_secret`, it sends receipts and
    /// clicks back as `receipts` says, once told where herald is ([`MockProcess::set_herald`]).
    pub fn start(
        spec: &MockSpec,
        receipts: &ReceiptSpec,
        timeout_ms: u64,
        seed: u64,
        credential: &str,
        callback_secret: Option<&str>,
        tls: bool,
    ) -> anyhow::Result<MockProcess> {
        let exe = std::env::current_exe().context("locating this executable")?;
        let mut command = Command::new(exe);
        if let Some(secret) = callback_secret {
            command.env(SECRET_ENV, secret);
        }

        let r = receipts;
        let mut child = command
            .arg("mock-provider")
            .args(["--port", "0", "--exit-on-stdin-eof"])
            .args(tls.then_some("--tls"))
            .args(["--latency", shape_name(spec.latency)])
            .args(["--latency-p50-ms", &spec.latency_p50_ms.to_string()])
            .args(["--latency-p99-ms", &spec.latency_p99_ms.to_string()])
            .args(["--throttle-rate", &spec.throttle_rate.to_string()])
            .args(["--retry-after-s", &spec.retry_after_seconds.to_string()])
            .args(["--error-rate", &spec.error_rate.to_string()])
            .args(["--timeout-rate", &spec.timeout_rate.to_string()])
            .args(["--timeout-ms", &timeout_ms.to_string()])
            .args(["--reject-rate", &spec.reject_rate.to_string()])
            .args([
                "--retryable-reject-rate",
                &spec.retryable_reject_rate.to_string(),
            ])
            .args(["--seed", &seed.to_string()])
            .args(["--threads", &spec.threads.max(1).to_string()])
            .args(["--delivered-rate", &r.delivered_rate.to_string()])
            .args(["--receipt-delay", shape_name(r.delay)])
            .args(["--receipt-delay-p50-ms", &r.delay_p50_ms.to_string()])
            .args(["--receipt-delay-p99-ms", &r.delay_p99_ms.to_string()])
            .args(["--receipt-batch", &r.batch_size.max(1).to_string()])
            .args(["--receipt-connections", &r.connections.max(1).to_string()])
            .args(["--click-rate", &r.click_rate.to_string()])
            .env(TOKEN_ENV, credential)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the mock provider")?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let mut process = MockProcess {
            child,
            _stdin: stdin,
            _stdout: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            https: None,
        };
        let stdout = stdout.ok_or_else(|| anyhow!("mock provider has no stdout"))?;
        // Read the first line on a thread, so a mock that never speaks cannot hang us.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let read = reader.read_line(&mut line);
            let _ = tx.send((read.map(|_| line), reader));
        });
        let (line, reader) = rx
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| anyhow!("mock provider did not report its address within 10 s"))?;
        process._stdout = Some(reader);
        let line = line.context("reading the mock provider's address")?;
        let mut words = line.split_whitespace();
        process.addr = words
            .next()
            .unwrap_or_default()
            .parse()
            .with_context(|| format!("mock provider printed {line:?}, not an address"))?;
        if let (Some(url), Some(ca)) = (words.next(), words.next()) {
            process.https = Some((url.to_string(), ca.to_string()));
        }
        if !process.addr.ip().is_loopback() {
            return Err(anyhow!(
                "mock provider bound {}, not loopback",
                process.addr
            ));
        }
        Ok(process)
    }

    /// Tells the mock where herald is, so receipts and clicks can start.
    pub async fn set_herald(
        &self,
        http: &reqwest::Client,
        credential: &str,
        base: &str,
    ) -> anyhow::Result<()> {
        let r = http
            .put(format!("http://{}/control/herald", self.addr))
            .header("authorization", credential)
            .body(base.to_string())
            .send()
            .await?;
        if !r.status().is_success() {
            return Err(anyhow!(
                "mock provider refused herald's address: {} {}",
                r.status(),
                r.text().await.unwrap_or_default()
            ));
        }
        Ok(())
    }

    /// The mock's counters.
    pub async fn stats(&self, http: &reqwest::Client) -> anyhow::Result<StatsView> {
        Ok(http
            .get(format!("http://{}/stats", self.addr))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }
}

fn shape_name(shape: crate::mock::latency::Shape) -> &'static str {
    use crate::mock::latency::Shape;
    match shape {
        Shape::Fixed => "fixed",
        Shape::Uniform => "uniform",
        Shape::Lognormal => "lognormal",
    }
}

impl Drop for MockProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
