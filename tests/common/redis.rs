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
        let mut s = RedisServer {
            child: None,
            port: free_port(),
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
