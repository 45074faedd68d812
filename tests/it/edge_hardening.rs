//! The edge of the gateway under hostile or careless use: slow and oversized requests, the
//! demo key on a public address, the privacy of the data directory, the metrics address,
//! and a copy of the default configuration started from elsewhere.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use herald::config::{LoadedConfig, DEFAULT_TOML};
use herald_testkit::{Gateway, KEY};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads what the server answers on `stream` until it closes the connection or `limit`
/// passes; `None` when it neither answered nor closed in time.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(String::from_utf8_lossy(&out).into_owned()),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Reads until the status line of an answer has arrived; `None` when none came in time.
async fn read_status(stream: &mut TcpStream, limit: Duration) -> Option<u16> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(end) = out.windows(2).position(|w| w == b"\r\n") {
            let line = String::from_utf8_lossy(&out[..end]).into_owned();
            return line.split(' ').nth(1).and_then(|s| s.parse().ok());
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
            _ => return None,
        }
    }
}

fn addr_of(g: &Gateway) -> std::net::SocketAddr {
    g.running.as_ref().expect("running").addr
}

#[tokio::test]
async fn half_open_connections_are_closed_and_health_still_answers() {
    let g = Gateway::start_with(|c| {
        c.server.header_read_timeout_ms = 1_000;
        c.server.max_connections = 100;
    })
    .await;
    let addr = addr_of(&g);
    let mut held = Vec::with_capacity(1_000);
    for _ in 0..1_000 {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"GET /v1/jobs HTTP/1.1\r\nHost: herald\r\nAuthorization: Bea")
            .await
            .expect("write half a header");
        held.push(s);
    }
    let opened = Instant::now();

    // Health, readiness and metrics answer beyond the cap; other routes are refused there.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .expect("client");
    for path in ["/healthz", "/readyz", "/metrics"] {
        let started = Instant::now();
        let r = http.get(g.url(path)).send().await.expect(path);
        assert!(r.status().as_u16() < 500 || path == "/readyz", "{path}");
        assert!(started.elapsed() < Duration::from_secs(1), "{path}");
    }
    let r = http
        .get(g.url("/v1/jobs"))
        .bearer_auth(KEY)
        .send()
        .await
        .expect("an answer beyond the cap");
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));

    // Before the header timeout they are still open...
    if opened.elapsed() < Duration::from_millis(700) {
        let last = held.last_mut().expect("connections");
        assert!(
            read_until_closed(last, Duration::from_millis(100))
                .await
                .is_none(),
            "closed before the header timeout"
        );
    }
    // ...and every one of them is closed once it has passed.
    for s in &mut held {
        let left = Duration::from_secs(5).saturating_sub(opened.elapsed());
        assert!(
            read_until_closed(s, left).await.is_some(),
            "a half-open connection was still open after {:?}",
            opened.elapsed()
        );
    }
    assert!(opened.elapsed() >= Duration::from_millis(900));
    // With them gone, the API answers again.
    let r = http
        .get(g.url("/v1/jobs"))
        .bearer_auth(KEY)
        .send()
        .await
        .expect("jobs");
    assert_eq!(r.status(), 200);
    g.stop().await;
}

#[tokio::test]
async fn a_declared_length_over_the_cap_is_refused_at_once() {
    let g = Gateway::start_with(|c| c.server.max_upload_bytes = 1 << 20).await;
    let addr = addr_of(&g);
    for (method, path, content_type) in [
        ("POST", "/v1/jobs", "application/json"),
        ("POST", "/v1/jobs", "application/x-ndjson"),
        ("PUT", "/v1/snapshot", "text/csv"),
        ("PUT", "/v1/suppressions", "application/x-ndjson"),
        ("POST", "/v1/ledger/reconcile", "text/csv"),
        (
            "POST",
            "/v1/jobs/job_00000000000000000000000000000000/resume",
            "application/json",
        ),
    ] {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: herald\r\nAuthorization: Bearer {KEY}\r\n\
             Content-Type: {content_type}\r\nContent-Length: 1073741824\r\n\r\n"
        );
        s.write_all(head.as_bytes()).await.expect("write head");
        s.write_all(&[b' '; 4096])
            .await
            .expect("write a little body");
        let started = Instant::now();
        let status = read_status(&mut s, Duration::from_secs(1)).await;
        assert_eq!(
            status,
            Some(413),
            "{method} {path} ({content_type}) after {:?}",
            started.elapsed()
        );
    }
    g.stop().await;
}

#[tokio::test]
async fn a_body_that_stops_arriving_ends_the_request() {
    let g = Gateway::start_with(|c| c.server.body_idle_timeout_ms = 500).await;
    let addr = addr_of(&g);
    for (path, content_type) in [
        ("/v1/jobs", "application/json"),
        ("/v1/snapshot", "text/csv"),
    ] {
        let method = if path == "/v1/snapshot" {
            "PUT"
        } else {
            "POST"
        };
        let mut s = TcpStream::connect(addr).await.expect("connect");
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: herald\r\nAuthorization: Bearer {KEY}\r\n\
             Content-Type: {content_type}\r\nContent-Length: 1000\r\n\r\n"
        );
        s.write_all(head.as_bytes()).await.expect("write head");
        s.write_all(b"{\"campaign_id\"")
            .await
            .expect("write a start");
        let started = Instant::now();
        let status = read_status(&mut s, Duration::from_secs(3)).await;
        assert_eq!(status, Some(408), "{path} after {:?}", started.elapsed());
        assert!(started.elapsed() >= Duration::from_millis(400));
    }
    g.stop().await;
}

#[tokio::test]
async fn metrics_can_move_to_their_own_address() {
    // Unset: /metrics on the API port, as before.
    let g = Gateway::start().await;
    assert!(g.running.as_ref().expect("running").metrics_addr.is_none());
    let r = reqwest::get(g.url("/metrics")).await.expect("metrics");
    assert_eq!(r.status(), 200);
    g.stop().await;

    // Set: /metrics there, and not on the API port.
    let g = Gateway::start_with(|c| {
        c.server.metrics_listen = Some("127.0.0.1:0".parse().expect("addr"));
    })
    .await;
    let metrics_addr = g
        .running
        .as_ref()
        .expect("running")
        .metrics_addr
        .expect("a metrics address");
    assert_ne!(metrics_addr, addr_of(&g));
    let r = reqwest::get(format!("http://{metrics_addr}/metrics"))
        .await
        .expect("metrics");
    assert_eq!(r.status(), 200);
    assert!(r.text().await.expect("text").contains("herald_"));
    let r = reqwest::get(g.url("/metrics")).await.expect("public");
    assert_eq!(r.status(), 404);
    let r = reqwest::get(format!("http://{metrics_addr}/v1/jobs"))
        .await
        .expect("api on the metrics address");
    assert_eq!(r.status(), 404);
    let r = reqwest::get(g.url("/healthz")).await.expect("health");
    assert_eq!(r.status(), 200);
    g.stop().await;
}

#[cfg(unix)]
#[tokio::test]
async fn the_data_directory_is_private() {
    use std::os::unix::fs::PermissionsExt;

    let mut g = Gateway::start().await;
    g.load_csv(&herald_testkit::contacts_csv(3)).await;
    let (status, job) = g
        .submit(&herald_testkit::sms_job(
            "private",
            "Hi",
            serde_json::json!([{"contact_id": "c0"}]),
        ))
        .await;
    assert_eq!(status, 201, "{job}");
    g.wait_completed(&job, Duration::from_secs(10)).await;
    let running = g.running.take().expect("running");
    let dir = std::path::PathBuf::from(&running.state.config.config.server.data_dir);
    running.stop().await;

    let mut stack = vec![dir.clone()];
    let mut files = 0;
    while let Some(d) = stack.pop() {
        let mode = std::fs::metadata(&d).expect("dir").permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{} is {mode:o}", d.display());
        for entry in std::fs::read_dir(&d).expect("read dir") {
            let entry = entry.expect("entry");
            let meta = entry.metadata().expect("metadata");
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                files += 1;
                let mode = meta.permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{} is {mode:o}", entry.path().display());
            }
        }
    }
    assert!(files >= 3, "the database, the log and the snapshot");
    assert!(dir.join("snapshot").exists() || files > 3);
}

/// A copy of the shipped configuration, started from another directory, still finds the
/// demo snapshot; a missing snapshot of one's own is an error that says where it looked.
#[tokio::test]
async fn a_copy_of_the_default_config_starts_elsewhere() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("herald.toml");
    std::fs::write(
        &config,
        DEFAULT_TOML.replace("prepare_log_spares = true", "prepare_log_spares = false"),
    )
    .expect("write config");
    let data = dir.path().join("data").display().to_string();
    let env = |name: &str| match name {
        "HERALD_LISTEN" => Some("127.0.0.1:0".to_string()),
        "HERALD_DATA_DIR" => Some(data.clone()),
        "HERALD_API_KEYS" => Some(KEY.to_string()),
        _ => None,
    };
    let loaded = LoadedConfig::load(Some(&config), &env).expect("config");
    let state = herald::app::build(loaded).await.expect("build");
    let running = herald::app::spawn(state).await.expect("spawn");
    let snapshot: serde_json::Value = reqwest::Client::new()
        .get(format!("http://{}/v1/snapshot", running.addr))
        .bearer_auth(KEY)
        .send()
        .await
        .expect("snapshot")
        .json()
        .await
        .expect("json");
    assert_eq!(snapshot["contacts"], 10, "{snapshot}");
    running.stop().await;

    // A snapshot path of one's own that is not there.
    std::fs::write(
        &config,
        DEFAULT_TOML.replace(
            "load_path = \"demo-contacts.csv\"",
            "load_path = \"exports/crm.csv\"",
        ),
    )
    .expect("write config");
    let data = dir.path().join("data2").display().to_string();
    let env = |name: &str| match name {
        "HERALD_LISTEN" => Some("127.0.0.1:0".to_string()),
        "HERALD_DATA_DIR" => Some(data.clone()),
        _ => None,
    };
    let loaded = LoadedConfig::load(Some(&config), &env).expect("config");
    let err = match herald::app::build(loaded).await {
        Ok(_) => panic!("a missing snapshot file must stop the start"),
        Err(e) => format!("{e:#}"),
    };
    let tried = dir.path().join("exports/crm.csv");
    assert!(err.contains(&tried.display().to_string()), "{err}");
    assert!(err.contains("relative"), "{err}");
    assert!(err.contains(&config.display().to_string()), "{err}");
}

/// Strips terminal colour sequences from a log line.
fn plain(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Starts `herald serve` with the embedded default config; answers whether it exited
/// successfully and its log when it exits within `limit`, or, once it listens, kills it and
/// answers `None` and the log so far.
fn serve(args: &[&str], env: &[(&str, &str)], limit: Duration) -> (Option<bool>, String) {
    use std::io::{BufRead, BufReader};

    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald"));
    cmd.arg("serve")
        .args(args)
        .arg("--data-dir")
        .arg(dir.path().join("data"));
    for var in [
        "HERALD_CONFIG",
        "HERALD_LISTEN",
        "HERALD_DATA_DIR",
        "HERALD_API_KEYS",
        "HERALD_ALLOW_DEMO_KEY",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("NO_COLOR", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start herald");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(plain(&line)).is_err() {
                break;
            }
        }
    });
    let started = Instant::now();
    let mut log = String::new();
    loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(line) => {
                log.push_str(&line);
                log.push('\n');
                if line.contains("herald listening") {
                    let _ = child.kill();
                    let _ = child.wait();
                    return (None, log);
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                let status = child.wait().expect("wait");
                return (Some(status.success()), log);
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("herald neither listened nor exited within {limit:?}:\n{log}");
        }
    }
}

#[test]
fn the_demo_key_is_refused_on_a_public_address() {
    let limit = Duration::from_secs(20);
    let (exit, log) = serve(&["--listen", "0.0.0.0:0"], &[], limit);
    assert_eq!(exit, Some(false), "{log}");
    assert!(log.contains("dev-key-change-me"), "{log}");
    assert!(log.contains("HERALD_API_KEYS"), "{log}");
    assert!(log.contains("--allow-demo-key"), "{log}");

    // A demo on purpose, by flag or by environment.
    let (exit, log) = serve(&["--listen", "0.0.0.0:0", "--allow-demo-key"], &[], limit);
    assert_eq!(exit, None, "{log}");
    let (exit, log) = serve(
        &["--listen", "0.0.0.0:0"],
        &[("HERALD_ALLOW_DEMO_KEY", "1")],
        limit,
    );
    assert_eq!(exit, None, "{log}");
    // A key of one's own replaces the demo key.
    let (exit, log) = serve(
        &["--listen", "0.0.0.0:0"],
        &[("HERALD_API_KEYS", "a-real-key")],
        limit,
    );
    assert_eq!(exit, None, "{log}");
    // Loopback keeps the demo key working out of the box.
    let (exit, log) = serve(&["--listen", "127.0.0.1:0"], &[], limit);
    assert_eq!(exit, None, "{log}");
}

#[tokio::test]
async fn a_key_of_ones_own_drops_the_demo_key() {
    let env = |name: &str| match name {
        "HERALD_API_KEYS" => Some("a-real-key".to_string()),
        _ => None,
    };
    let loaded = LoadedConfig::load(None, &env).expect("config");
    assert_eq!(loaded.config.auth.api_keys, vec!["a-real-key".to_string()]);
}
