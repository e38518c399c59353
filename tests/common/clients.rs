//! Client environments for tests that run real client libraries: a Python
//! venv under the target directory with pinned requirements, and running a
//! child process with a time limit.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Serializes venv set-ups of tests that run in parallel.
static SETUP: Mutex<()> = Mutex::new(());

/// `pip install` on a cold cache.
pub const INSTALL_TIMEOUT: Duration = Duration::from_secs(600);

/// Cargo's target directory (`CARGO_TARGET_TMPDIR` is `<target>/tmp`).
pub fn target_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).to_path_buf()
}

/// Fails the test with `hint` unless `program --version` runs.
pub fn require_tool(program: &str, hint: &str) {
    match Command::new(program).arg("--version").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "`{program} --version` failed ({}): {hint}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => panic!("`{program}` could not be run ({e}): {hint}"),
    }
}

/// The Python of `target/{name}`, with `requirements` installed.
/// The venv is created once; pip runs again only when the requirements
/// differ from the ones recorded in the stamp file after the last install.
pub fn python_env(name: &str, requirements: &Path) -> PathBuf {
    // Tests that use one venv run at once: one sets it up.
    let _setup = SETUP.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    require_tool(
        "python3",
        "this test needs Python 3 with the venv module on PATH \
         (Debian/Ubuntu: apt-get install python3 python3-venv)",
    );
    let venv = target_dir().join(name);
    let python = if cfg!(windows) {
        venv.join("Scripts").join("python.exe")
    } else {
        venv.join("bin").join("python")
    };
    let usable = Command::new(&python)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !usable {
        let _ = std::fs::remove_dir_all(&venv);
        let out = run(
            Command::new("python3").arg("-m").arg("venv").arg(&venv),
            INSTALL_TIMEOUT,
        );
        assert!(
            out.success(),
            "`python3 -m venv {}` failed ({}); on Debian/Ubuntu install python3-venv.\n{}{}",
            venv.display(),
            out.describe_exit(),
            out.stdout,
            out.stderr
        );
    }
    let wanted = std::fs::read_to_string(requirements).expect("read the requirements");
    let stamp = venv.join("herald-requirements.stamp");
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(wanted.as_str()) {
        let out = run(
            Command::new(&python)
                .args(["-m", "pip", "install", "--disable-pip-version-check"])
                .args(["--no-input", "--quiet", "-r"])
                .arg(requirements),
            INSTALL_TIMEOUT,
        );
        assert!(
            out.success(),
            "pip install -r {} failed ({}); it needs access to PyPI.\n{}{}",
            requirements.display(),
            out.describe_exit(),
            out.stdout,
            out.stderr
        );
        std::fs::write(&stamp, &wanted).expect("write the venv stamp");
        println!(
            "python: installed requirements into {} in {:.1} s",
            venv.display(),
            started.elapsed().as_secs_f64()
        );
    }
    python
}

// Running child processes with captured output and a time limit.

/// `npm ci` in `dir`, unless its `node_modules` was installed from the
/// current `package.json` and `package-lock.json` (recorded in a stamp file
/// inside `node_modules`, which `npm ci` wipes).
pub fn node_env(dir: &Path) {
    let _setup = SETUP.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let hint = "this test needs Node.js 18+ and npm on PATH";
    require_tool("node", hint);
    require_tool("npm", hint);
    let mut wanted = String::new();
    for file in ["package.json", "package-lock.json"] {
        let text = std::fs::read_to_string(dir.join(file))
            .unwrap_or_else(|e| panic!("read {}: {e}", dir.join(file).display()));
        wanted.push_str(&text);
    }
    let stamp = dir.join("node_modules").join(".herald.stamp");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return;
    }
    let out = run(
        Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(dir),
        INSTALL_TIMEOUT,
    );
    assert!(
        out.success(),
        "`npm ci` in {} failed ({}); it needs access to the npm registry.\n{}{}",
        dir.display(),
        out.describe_exit(),
        out.stdout,
        out.stderr
    );
    std::fs::write(&stamp, &wanted).expect("write the node_modules stamp");
    println!("node: npm ci in {:.1} s", started.elapsed().as_secs_f64());
}

pub struct Output {
    /// None when the process was killed for running past its time limit.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    pub fn describe_exit(&self) -> String {
        match self.status {
            Some(status) => status.to_string(),
            None => format!("killed after {:.0} s", self.elapsed.as_secs_f64()),
        }
    }
}

/// Runs `cmd` to completion, killing it after `timeout`.
pub fn run(cmd: &mut Command, timeout: Duration) -> Output {
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("could not run {cmd:?}: {e}"));
    let stdout = drain(child.stdout.take().expect("piped stdout"));
    let stderr = drain(child.stderr.take().expect("piped stderr"));
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break Some(status);
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
        elapsed: started.elapsed(),
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}
