//! A real `redis-server` child process for tests of the Redis backend: a
//! free port on 127.0.0.1, a temp directory, stopped by its own PID when
//! dropped.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running redis-server; killed (SIGKILL) when dropped.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    args: Vec<String>,
}

/// Whether this test binary runs the suite over Redis: its name starts
/// with `redis_` (e.g. `tests/redis_semantics.rs`, which includes the
/// semantics test files).
pub fn redis_suite() -> bool {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .is_some_and(|n| n.starts_with("redis_"))
}

/// A port nobody listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A free port whose cluster bus port (+10000) is free too.
pub fn free_cluster_port() -> u16 {
    loop {
        let p = free_port();
        if p < 55_000 && std::net::TcpListener::bind(("127.0.0.1", p + 10_000)).is_ok() {
            return p;
        }
    }
}

impl RedisServer {
    /// Starts `redis-server` with `appendonly yes, appendfsync everysec`
    /// plus `extra` arguments (e.g. `["--appendfsync", "always"]`).
    pub fn start(extra: &[&str]) -> RedisServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut args: Vec<String> = ["--appendonly", "yes", "--save", ""]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let clustered = extra.contains(&"--cluster-enabled");
        let mut s = RedisServer {
            child: None,
            port: if clustered {
                free_cluster_port()
            } else {
                free_port()
            },
            dir,
            args,
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--daemonize", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server ({e}): install it (apt-get install redis-server)")
            });
        self.child = Some(child);
        wait_port(self.port, true);
    }

    /// The URL Herald connects to.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Its data directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        wait_port(self.port, false);
    }

    /// Starts it again on the same port and directory (reloading the AOF).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
        // Loading the AOF answers LOADING until done.
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(10) {
            if let Ok(out) = Command::new("redis-cli")
                .args(["-p", &self.port.to_string(), "PING"])
                .output()
                && String::from_utf8_lossy(&out.stdout).contains("PONG")
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `redis-cli` against it and returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Calls of a command in its command stats (`CONFIG RESETSTAT` clears them).
    pub fn calls(&self, command: &str) -> u64 {
        let stats = self.cli(&["INFO", "commandstats"]);
        stats
            .lines()
            .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
            .and_then(|rest| rest.split(',').next())
            .map_or(0, |n| n.parse().expect("calls"))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Waits until the port accepts connections (`up`) or refuses them.
pub fn wait_port(port: u16, up: bool) {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(10) {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() == up {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!(
        "port {port} did not become {}",
        if up { "open" } else { "closed" }
    );
}

/// A Redis Cluster of `masters` masters with `replicas` replicas each, made
/// with `redis-cli --cluster create` on loopback ports.
pub struct RedisCluster {
    pub servers: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start(masters: usize, replicas: usize) -> RedisCluster {
        let servers: Vec<RedisServer> = (0..masters * (1 + replicas))
            .map(|_| {
                RedisServer::start(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "1000",
                    "--cluster-replica-validity-factor",
                    "0",
                    "--appendfsync",
                    "always",
                ])
            })
            .collect();
        let addrs: Vec<String> = servers
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            out.status.success(),
            "cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = RedisCluster { servers };
        cluster.wait_ok();
        cluster
    }

    /// Waits until every live node reports `cluster_state:ok` and every
    /// live replica is in sync with its master.
    pub fn wait_ok(&self) {
        let t0 = Instant::now();
        loop {
            let ok = self.servers.iter().filter(|s| s.child.is_some()).all(|s| {
                let replication = s.cli(&["info", "replication"]);
                s.cli(&["cluster", "info"]).contains("cluster_state:ok")
                    && (replication.contains("role:master")
                        || replication.contains("master_link_status:up"))
            });
            if ok {
                return;
            }
            assert!(t0.elapsed() < Duration::from_secs(30), "cluster not ok");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Seed URLs for Herald.
    pub fn url(&self) -> String {
        self.servers
            .iter()
            .map(|s| s.url())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The index of the master serving `key`'s slot.
    pub fn master_of(&self, key: &str) -> usize {
        self.serving(key).expect("a master serves the slot")
    }

    /// The index of the live master serving `key`'s slot, if any.
    pub fn serving(&self, key: &str) -> Option<usize> {
        let live = self
            .servers
            .iter()
            .find(|s| s.child.is_some())
            .expect("a live node");
        let slot: u16 = live
            .cli(&["cluster", "keyslot", key])
            .trim()
            .parse()
            .expect("slot");
        let nodes = live.cli(&["cluster", "nodes"]);
        let line = nodes.lines().find(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 8
                && f[2].contains("master")
                && !f[2].contains("fail?")
                && !f[2].contains("fail")
                && f[8..].iter().any(|r| {
                    let (a, b) = r.split_once('-').unwrap_or((r, r));
                    matches!((a.parse::<u16>(), b.parse::<u16>()),
                            (Ok(a), Ok(b)) if (a..=b).contains(&slot))
                })
        })?;
        let addr = line.split_whitespace().nth(1).expect("address");
        let port: u16 = addr
            .split('@')
            .next()
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .expect("port");
        self.servers.iter().position(|s| s.port == port)
    }
}

/// A Herald node's configuration over the Redis at `url`: loopback port 0,
/// console off, heartbeats every 200 ms, dead after 1 s.
pub fn node_config(url: &str, dir: &Path) -> herald::config::Config {
    let mut c = herald::config::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.to_path_buf(),
        ..herald::config::Config::default()
    };
    c.http.enabled = false;
    c.storage.backend = herald::config::BackendKind::Redis;
    c.redis.url = url.to_string();
    c.redis.node_heartbeat = Duration::from_millis(200);
    c.redis.node_timeout = Duration::from_secs(1);
    c
}
