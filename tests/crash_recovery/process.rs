//! The `herald serve` child process: started, killed with SIGKILL or stopped with SIGTERM.

use super::*;

/// The `herald serve` child process. Dropping it kills the child, so a failing test never
/// leaves a gateway running; after a panic it prints the end of herald's log.
pub(crate) struct Herald {
    pub(crate) child: Option<Child>,
    pub(crate) config: PathBuf,
    pub(crate) log: PathBuf,
    pub(crate) base: String,
    pub(crate) http: reqwest::Client,
    /// Extra environment for the child.
    pub(crate) env: Vec<(String, String)>,
}

impl Herald {
    pub(crate) fn new(config: PathBuf, log: PathBuf, port: u16) -> Herald {
        Herald {
            child: None,
            config,
            log,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("http client"),
            env: Vec::new(),
        }
    }

    /// Starts `herald serve --config <file> --log-format json`, its output appended to the log; waits until
    /// `/readyz` answers 200 and answers how long that took.
    pub(crate) async fn start(&mut self) -> Duration {
        assert!(self.child.is_none(), "herald is already running");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open the herald log");
        let child = Command::new(env!("CARGO_BIN_EXE_herald"))
            .arg("serve")
            .arg("--config")
            .arg(&self.config)
            .arg("--log-format")
            .arg("json")
            .env_remove("HERALD_CONFIG")
            .env_remove("HERALD_LISTEN")
            .env_remove("HERALD_DATA_DIR")
            .env_remove("HERALD_API_KEYS")
            .env("NO_COLOR", "1")
            .env(CALLBACK_SECRET_ENV, CALLBACK_SECRET)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("start herald");
        self.child = Some(child);
        let started = Instant::now();
        loop {
            if let Some(status) = self.running().try_wait().expect("poll herald") {
                self.child = None;
                panic!("herald exited before it was ready: {status}");
            }
            let ready = self
                .http
                .get(self.url("/readyz"))
                .timeout(Duration::from_secs(1))
                .send()
                .await;
            if ready.is_ok_and(|r| r.status() == 200) {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < READY_TIMEOUT,
                "herald not ready after {READY_TIMEOUT:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub(crate) fn running(&mut self) -> &mut Child {
        self.child.as_mut().expect("herald is not running")
    }

    /// SIGKILL: no shutdown code runs, in-flight requests and unflushed state are cut off.
    pub(crate) fn sigkill(&mut self) {
        let mut child = self.child.take().expect("herald is not running");
        if let Some(status) = child.try_wait().expect("poll herald") {
            panic!("herald died on its own before the kill: {status}");
        }
        child.kill().expect("SIGKILL herald");
        let status = child.wait().expect("reap herald");
        assert_eq!(
            status.signal(),
            Some(9),
            "herald ended by SIGKILL: {status}"
        );
    }

    /// SIGTERM, then waits for the graceful exit.
    pub(crate) async fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("herald is not running");
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM failed: {sent}");
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("poll herald") {
                return status;
            }
            if started.elapsed() > STOP_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                panic!("herald did not stop within {STOP_TIMEOUT:?} of SIGTERM");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// An authorised GET: the status and the body (JSON, or the text as a JSON string).
    pub(crate) async fn get(&self, path: &str) -> Result<(u16, Value), reqwest::Error> {
        let r = self
            .http
            .get(self.url(path))
            .bearer_auth(KEY)
            .send()
            .await?;
        let status = r.status().as_u16();
        let text = r.text().await?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, body))
    }

    /// The last `n` lines of herald's log (every run, appended).
    pub(crate) fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for Herald {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- end of the herald log ({}) ---\n{}",
                self.log.display(),
                self.log_tail(40)
            );
        }
    }
}
