//! Real `redis-server` processes for tests and benchmarks.
//!
//! `mcp_test_support::redis_server` (feature `redis`), for the tests, the benches and
//! the load harness.
//!
//! Each [`RedisServer`] runs on its own free loopback port with its own temporary
//! directory and is killed when dropped. `redis-server` and `redis-cli` must be on
//! `PATH`; when they are not, the caller panics with a message saying so, so a CI
//! machine without Redis fails loudly instead of passing without testing anything.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How a server persists its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// Nothing on disk (`--save '' --appendonly no`): a restart starts empty.
    None,
    /// `--appendonly yes --appendfsync always`: every acknowledged write survives a
    /// kill -9.
    AofAlways,
    /// `--appendonly yes --appendfsync everysec`.
    AofEverySec,
}

/// A `redis-server` child process on 127.0.0.1.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    persistence: Persistence,
    extra: Vec<String>,
    child: Option<Child>,
}

static NEXT_DIR: AtomicU64 = AtomicU64::new(0);

fn missing_binary(name: &str, e: &std::io::Error) -> ! {
    panic!(
        "cannot run `{name}` ({e}). The Redis tests need a real Redis server: install it \
         (Debian/Ubuntu: `apt-get install -y redis-server`) so that `redis-server` and \
         `redis-cli` are on PATH."
    )
}

/// A port nothing listens on right now. Another process may take it before the server
/// binds it; callers retry on that.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral loopback port");
    listener.local_addr().expect("local address").port()
}

impl RedisServer {
    /// A server without persistence.
    pub fn start() -> Self {
        Self::start_with(Persistence::None, &[])
    }

    /// A server with the given persistence and extra `redis-server` arguments.
    pub fn start_with(persistence: Persistence, extra: &[&str]) -> Self {
        let n = NEXT_DIR.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("tmcp-redis-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the server's temporary directory");
        let mut server = Self {
            port: 0,
            dir,
            persistence,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            child: None,
        };
        let mut last_error = String::new();
        for _ in 0..20 {
            server.port = free_port();
            match server.spawn() {
                Ok(()) => return server,
                // Most likely the port was taken between our probe and the server's bind.
                Err(e) => last_error = e,
            }
        }
        panic!("redis-server did not start after 20 attempts: {last_error}");
    }

    fn spawn(&mut self) -> Result<(), String> {
        let mut cmd = Command::new("redis-server");
        cmd.arg("--port")
            .arg(self.port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg("redis.log")
            .arg("--daemonize")
            .arg("no")
            .arg("--save")
            .arg("");
        match self.persistence {
            Persistence::None => {
                cmd.args(["--appendonly", "no"]);
            }
            Persistence::AofAlways => {
                cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
            }
            Persistence::AofEverySec => {
                cmd.args(["--appendonly", "yes", "--appendfsync", "everysec"]);
            }
        }
        cmd.args(&self.extra);
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        let child = cmd.spawn().unwrap_or_else(|e| missing_binary("redis-server", &e));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.child = None;
                return Err(format!("redis-server exited with {status}; log:\n{}", self.log_tail()));
            }
            let ours = self.child.as_ref().map(Child::id);
            match server_pid(self.port) {
                Some(pid) if Some(pid) == ours => return Ok(()),
                Some(pid) => {
                    self.kill();
                    return Err(format!(
                        "port {} is served by another redis-server (pid {pid})",
                        self.port
                    ));
                }
                None => {}
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(format!(
                    "redis-server did not answer PING within 10 s; log:\n{}",
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The last lines of the server's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// The port the server listens on (the same across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// A reconnecting connection with the client's defaults, as an application would
    /// open one.
    pub async fn connect(&self) -> tower_mcp_session_redis::RedisConnection {
        let client = redis::Client::open(self.url()).expect("a valid Redis URL");
        client
            .get_connection_manager()
            .await
            .expect("connect to the test redis-server")
            .into()
    }

    /// The server's data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The process id of the running server, for reading its `/proc` entries.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kill the server (SIGKILL, like a crash) and wait for it to exit.
    pub fn stop(&mut self) {
        self.kill();
    }

    /// Start the server again on the same port, with the same directory (so an AOF
    /// brings the data back).
    pub fn restart(&mut self) {
        self.kill();
        let mut last_error = String::new();
        for _ in 0..50 {
            match self.spawn() {
                Ok(()) => return,
                // The old socket may linger briefly, or the port was taken meanwhile.
                Err(e) => last_error = e,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("redis-server did not restart on port {}: {last_error}", self.port);
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Run `redis-cli` against this server and return its output.
    pub fn cli(&self, args: &[&str]) -> String {
        cli(self.port, args)
    }

    /// `INFO commandstats` as command name → calls.
    pub fn command_calls(&self) -> HashMap<String, u64> {
        command_calls(self.port)
    }

    /// `INFO commandstats` as command name → microseconds per call inside the server.
    pub fn command_usec_per_call(&self) -> HashMap<String, f64> {
        command_usec_per_call(self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Run `redis-cli -p <port> <args>` and return its standard output.
pub fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .arg("-h")
        .arg("127.0.0.1")
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| missing_binary("redis-cli", &e));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `INFO commandstats` of the server on `port`, as command name → microseconds per
/// call spent inside the server.
pub fn command_usec_per_call(port: u16) -> HashMap<String, f64> {
    command_field(port, "usec_per_call=")
}

/// `INFO commandstats` of the server on `port`, as command name → calls. Commands run
/// inside scripts are counted too; compare `evalsha` with everything else to count
/// round trips.
pub fn command_calls(port: u16) -> HashMap<String, u64> {
    command_field(port, "calls=")
}

fn command_field<T: std::str::FromStr + Default>(port: u16, field: &str) -> HashMap<String, T> {
    let info = cli(port, &["INFO", "commandstats"]);
    let mut calls = HashMap::new();
    for line in info.lines() {
        // cmdstat_evalsha:calls=3,usec=...
        let Some(rest) = line.trim().strip_prefix("cmdstat_") else {
            continue;
        };
        let Some((name, stats)) = rest.split_once(':') else {
            continue;
        };
        let n = stats
            .split(',')
            .find_map(|kv| kv.strip_prefix(field))
            .and_then(|v| v.parse().ok())
            .unwrap_or_default();
        calls.insert(name.to_owned(), n);
    }
    calls
}

/// The process id of the server answering on `port`, once it serves commands (not while
/// it is still loading its data).
///
/// Comparing it with our child's id matters: while one server is stopped for a fault
/// test, another test may start a server on the freed port, and a plain `PING` would
/// then be answered by the wrong process.
fn server_pid(port: u16) -> Option<u32> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    stream.write_all(b"INFO server\r\n").ok()?;
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    // A bulk string: `$<len>\r\n<body>\r\n`; an error (`-LOADING ...`) means not ready.
    loop {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        reply.extend_from_slice(&buf[..n]);
        if reply.first() != Some(&b'$') {
            return None;
        }
        let text = String::from_utf8_lossy(&reply);
        let Some((len, body)) = text[1..].split_once("\r\n") else {
            continue;
        };
        let len: usize = len.parse().ok()?;
        if body.len() >= len {
            return body
                .lines()
                .find_map(|l| l.strip_prefix("process_id:"))
                .and_then(|pid| pid.trim().parse().ok());
        }
    }
}

/// A Redis Cluster, every node a [`RedisServer`].
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Start `n` (at least 3) primaries without replicas, create the cluster and wait
    /// for `cluster_state:ok`.
    pub fn start(n: usize) -> Self {
        Self::start_with(n, 0, 5000)
    }

    /// Start `primaries` (at least 3) primaries with `replicas` replicas each and a
    /// `cluster-node-timeout` of `node_timeout_ms` (a failover starts about that long
    /// after a primary dies), create the cluster, and wait for `cluster_state:ok` and
    /// for every replica to be in sync with its primary.
    pub fn start_with(primaries: usize, replicas: usize, node_timeout_ms: u64) -> Self {
        assert!(primaries >= 3, "a Redis Cluster needs at least 3 primaries");
        let timeout = node_timeout_ms.to_string();
        let nodes: Vec<RedisServer> = (0..primaries * (1 + replicas))
            .map(|_| {
                let bus = free_port().to_string();
                RedisServer::start_with(
                    Persistence::None,
                    &[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        &timeout,
                        // The bus port would default to port + 10000, which may be taken
                        // or out of range for an ephemeral port.
                        "--cluster-port",
                        &bus,
                    ],
                )
            })
            .collect();
        let addrs: Vec<String> = nodes.iter().map(|s| format!("127.0.0.1:{}", s.port())).collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| missing_binary("redis-cli", &e));
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = Self { nodes };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !cluster.nodes.iter().all(|s| {
            let info = s.cli(&["CLUSTER", "INFO"]);
            info.contains("cluster_state:ok") && info.contains("cluster_slots_ok:16384")
        }) || cluster
            .primaries()
            .iter()
            .any(|&i| cluster.connected_replicas(i) < replicas)
        {
            assert!(
                Instant::now() < deadline,
                "the cluster did not reach cluster_state:ok with its replicas within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        cluster
    }

    /// The indexes (into [`nodes`](Self::nodes)) of the running nodes that are
    /// primaries now, by their own account.
    pub fn primaries(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| {
                self.nodes[i].is_running() && self.nodes[i].cli(&["INFO", "replication"]).contains("role:master")
            })
            .collect()
    }

    /// How many replicas of node `i` are connected and online.
    pub fn connected_replicas(&self, i: usize) -> usize {
        self.nodes[i]
            .cli(&["INFO", "replication"])
            .lines()
            .filter(|l| l.starts_with("slave") && l.contains("state=online"))
            .count()
    }

    /// Whether every replica of node `i` has acknowledged everything node `i` has
    /// written so far (its replication offset equals the primary's).
    pub fn replicas_in_sync(&self, i: usize) -> bool {
        let info = self.nodes[i].cli(&["INFO", "replication"]);
        let Some(master) = info
            .lines()
            .find_map(|l| l.strip_prefix("master_repl_offset:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
        else {
            return false;
        };
        // slave0:ip=127.0.0.1,port=...,state=online,offset=1234,lag=0
        let replicas: Vec<u64> = info
            .lines()
            .filter(|l| l.starts_with("slave") && l.contains("state=online"))
            .filter_map(|l| l.split(',').find_map(|kv| kv.strip_prefix("offset=")))
            .filter_map(|v| v.trim().parse().ok())
            .collect();
        !replicas.is_empty() && replicas.iter().all(|&o| o == master)
    }

    /// Kill node `i` (SIGKILL, like a crash).
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].stop();
    }

    /// Whether every running node reports `cluster_state:ok` with all slots served.
    pub fn is_ok(&self) -> bool {
        self.nodes.iter().filter(|s| s.is_running()).all(|s| {
            let info = s.cli(&["CLUSTER", "INFO"]);
            info.contains("cluster_state:ok") && info.contains("cluster_slots_ok:16384")
        })
    }

    /// `redis://127.0.0.1:<port>/` of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The nodes.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// How many keys each node holds.
    pub fn keys_per_node(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .map(|s| s.cli(&["DBSIZE"]).trim().parse().unwrap_or(0))
            .collect()
    }
}
