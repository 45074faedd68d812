//! Redis for tests: stores on the shared Redis under a prefix of their own (whose keys are
//! deleted afterwards), private `redis-server` processes on free ports, and a 3-node Redis
//! Cluster. Every process started here is killed when its guard drops, panics included. The
//! shared Redis is never flushed, reconfigured or shut down.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald::store::{RedisOptions, RedisStore};

/// The Redis every developer machine and CI run (see `.ci/run`).
pub const SHARED_URL: &str = "redis://127.0.0.1:6379";

/// A prefix no other test uses.
pub fn unique_prefix() -> String {
    format!("herald-test-{}", uuid::Uuid::now_v7().simple())
}

/// Options for a store under `prefix`, with a short timeout so failures show quickly.
pub fn options(urls: Vec<String>, cluster: bool, prefix: &str) -> RedisOptions {
    RedisOptions {
        urls,
        cluster,
        pool_size: 4,
        key_prefix: prefix.to_string(),
        timeout: Duration::from_secs(5),
    }
}

/// Deletes every key under a prefix when dropped (SCAN + DEL on each node given).
pub struct Cleanup {
    pub prefix: String,
    pub node_urls: Vec<String>,
}

impl Cleanup {
    /// Keys start with "{prefix}" (directory) or "{prefix:" (caps); see src/store/redis/keys.rs.
    fn pattern(&self) -> String {
        format!("{{{}[:}}]*", self.prefix)
    }

    /// The prefix's keys on each node, with a connection to that node; a node that cannot
    /// be reached or scanned is left out.
    fn keys_per_node(&self) -> Vec<(redis::Connection, Vec<Vec<u8>>)> {
        let pattern = self.pattern();
        let mut out = Vec::new();
        for url in &self.node_urls {
            let Ok(client) = redis::Client::open(url.as_str()) else {
                continue;
            };
            let Ok(mut con) = client.get_connection_with_timeout(Duration::from_secs(2)) else {
                continue;
            };
            let mut found = Vec::new();
            let mut cursor: u64 = 0;
            loop {
                let Ok((next, keys)): redis::RedisResult<(u64, Vec<Vec<u8>>)> = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query(&mut con)
                else {
                    break;
                };
                found.extend(keys);
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
            out.push((con, found));
        }
        out
    }

    /// Deletes the prefix's keys now; answers how many there were.
    pub fn run(&self) -> usize {
        let mut deleted = 0;
        for (mut con, keys) in self.keys_per_node() {
            // One key per DEL: on a cluster node keys of different slots cannot share one.
            for k in keys {
                if redis::cmd("DEL").arg(k).query::<i64>(&mut con).is_ok() {
                    deleted += 1;
                }
            }
        }
        deleted
    }

    /// How many keys the prefix has right now, per reachable node.
    pub fn count_per_node(&self) -> Vec<usize> {
        self.keys_per_node()
            .into_iter()
            .map(|(_, keys)| keys.len())
            .collect()
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        self.run();
    }
}

/// A store on the shared Redis under a fresh prefix, and the guard that deletes its keys.
pub async fn shared_store() -> (Cleanup, Arc<RedisStore>) {
    let prefix = unique_prefix();
    let cleanup = Cleanup {
        prefix: prefix.clone(),
        node_urls: vec![SHARED_URL.to_string()],
    };
    let store = RedisStore::connect(options(vec![SHARED_URL.to_string()], false, &prefix))
        .await
        .expect("the shared Redis at 127.0.0.1:6379 answers (see .ci/run)");
    (cleanup, Arc::new(store))
}

/// A TCP port that is free now, whose cluster bus port (+10000) is free too.
pub fn free_port() -> u16 {
    for _ in 0..100 {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
    panic!("no free port pair found");
}

/// A private `redis-server`, killed on drop.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    /// What it was started with, so [`RedisServer::restart`] starts the same server again.
    dir: PathBuf,
    extra: Vec<String>,
}

impl RedisServer {
    /// Starts one on a free port in `dir` and waits until it answers. `extra` arguments come
    /// last, so they win (`--appendonly yes` turns persistence on).
    pub fn start(dir: &Path, extra: &[&str]) -> RedisServer {
        let mut server = RedisServer {
            port: free_port(),
            child: None,
            dir: dir.to_path_buf(),
            extra: extra.iter().map(|a| a.to_string()).collect(),
        };
        server.spawn();
        server
    }

    /// Starts the server again on the same port and directory after [`RedisServer::kill`]
    /// (a Redis coming back after an outage), and waits until it answers.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (see .ci/run)");
        self.child = Some(child);
        // Answering is not enough: a server replaying its append-only file answers LOADING.
        self.wait_until(|info| info.contains("loading:0"), "INFO", "persistence");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Runs a command on this node and answers its text reply, or "" when it cannot.
    pub fn text(&self, args: &[&str]) -> String {
        let Ok(client) = redis::Client::open(self.url()) else {
            return String::new();
        };
        let Ok(mut con) = client.get_connection_with_timeout(Duration::from_millis(500)) else {
            return String::new();
        };
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query::<String>(&mut con).unwrap_or_default()
    }

    fn wait_until(&self, ok: impl Fn(&str) -> bool, cmd: &str, section: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if ok(&self.text(&[cmd, section])) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server on port {} did not get ready", self.port);
    }

    /// Stops the process without killing it (SIGSTOP): connections stay open and nothing
    /// answers, like a stalled server or a network partition. See [`RedisServer::resume`].
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused process run again (SIGCONT), with its data and connections.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, which: &str) {
        let Some(child) = &self.child else {
            return;
        };
        let status = Command::new("kill")
            .arg(which)
            .arg(child.id().to_string())
            .status()
            .expect("kill is installed");
        assert!(status.success(), "kill {which} failed");
    }

    /// Kills the process now (a Redis going down under a running store).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A 3-master Redis Cluster of private processes, stopped on drop.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    /// Starts three nodes, joins them with `redis-cli --cluster create` and waits until
    /// every node reports `cluster_state:ok`.
    pub fn start() -> RedisCluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut nodes = Vec::new();
        for i in 0..3 {
            let node_dir = dir.path().join(format!("node{i}"));
            std::fs::create_dir_all(&node_dir).expect("node dir");
            nodes.push(RedisServer::start(
                &node_dir,
                &[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                ],
            ));
        }
        // The guard exists before anything else can fail, so the nodes never outlive a panic.
        let cluster = RedisCluster { nodes, _dir: dir };
        let addrs: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let status = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli is installed (see .ci/run)");
        assert!(status.success(), "redis-cli --cluster create failed");
        for n in &cluster.nodes {
            n.wait_until(
                |info| info.contains("cluster_state:ok") && info.contains("cluster_known_nodes:3"),
                "CLUSTER",
                "INFO",
            );
        }
        cluster
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// A store on this cluster under a fresh prefix, and the guard that deletes its keys.
    pub async fn store(&self) -> (Cleanup, Arc<RedisStore>) {
        let prefix = unique_prefix();
        let cleanup = Cleanup {
            prefix: prefix.clone(),
            node_urls: self.urls(),
        };
        (cleanup, self.store_at(&prefix).await)
    }

    /// Another store on this cluster under `prefix` (a second instance sharing state).
    pub async fn store_at(&self, prefix: &str) -> Arc<RedisStore> {
        Arc::new(
            RedisStore::connect(options(self.urls(), true, prefix))
                .await
                .expect("cluster store"),
        )
    }
}
