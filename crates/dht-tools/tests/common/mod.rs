//! Helpers for the process tests: run the built tools with a time limit,
//! deploy a scene with the real deploy script, and always stop it.

#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The built binary of a tool.
pub fn tool(name: &str) -> PathBuf {
    let path = match name {
        "dhtnode" => env!("CARGO_BIN_EXE_dhtnode"),
        "dhtsend" => env!("CARGO_BIN_EXE_dhtsend"),
        "dhtrecv" => env!("CARGO_BIN_EXE_dhtrecv"),
        "dhthash" => env!("CARGO_BIN_EXE_dhthash"),
        "dhtping" => env!("CARGO_BIN_EXE_dhtping"),
        other => panic!("no tool {other}"),
    };
    PathBuf::from(path)
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("dht-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What a finished process did.
#[derive(Debug)]
pub struct Run {
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    pub fn ok(&self) -> bool {
        self.status == Some(0)
    }
}

/// Runs `program` with `args`, killing it after `limit`.
pub fn run_with_limit(program: &Path, args: &[&str], dir: &Path, limit: Duration) -> Run {
    let started = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut stdout);
    }
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut stderr);
    }
    Run { status, stdout, stderr, elapsed: started.elapsed() }
}

/// Runs a tool with a 120 s limit.
pub fn run_tool(name: &str, args: &[&str], dir: &Path) -> Run {
    run_with_limit(&tool(name), args, dir, Duration::from_secs(120))
}

/// A scene deployed with deploy_test_scene.sh; stopped (by PID, through
/// the script) when dropped, also when the test fails.
pub struct Scene {
    pub base: u16,
    pub count: u16,
    pub dir: TempDir,
}

impl Scene {
    fn command(&self) -> Command {
        let mut command = Command::new(repo_root().join("deploy_test_scene.sh"));
        command
            .env("DHT_BIN_DIR", tool("dhtnode").parent().unwrap())
            .env("DHT_SCENE_DIR", self.dir.path())
            .stdin(Stdio::null());
        command
    }

    /// Deploys `count` nodes on ports `base..base+count` with extra dhtnode
    /// arguments.
    pub fn deploy(name: &str, base: u16, count: u16, node_args: &str) -> Scene {
        let scene = Scene { base, count, dir: TempDir::new(name) };
        let output: Output = scene
            .command()
            .env("DHT_NODE_ARGS", node_args)
            .args(["--clean", "-n", &count.to_string(), "-p", &base.to_string()])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "deploy failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        scene
    }

    /// Runs the deploy script with `args` against this scene's directory.
    pub fn script(&self, args: &[&str]) -> Output {
        self.command().args(args).output().unwrap()
    }

    /// The PIDs of the scene's nodes, by port.
    pub fn pids(&self) -> Vec<(u16, u32)> {
        (self.base..self.base + self.count)
            .filter_map(|port| {
                let file = self.dir.path().join(port.to_string()).join("node.pid");
                let pid = std::fs::read_to_string(file).ok()?.trim().parse().ok()?;
                Some((port, pid))
            })
            .collect()
    }

    /// A node's store directory.
    pub fn store(&self, port: u16) -> PathBuf {
        self.dir.path().join(port.to_string())
    }
}

impl Drop for Scene {
    fn drop(&mut self) {
        let _ = self.script(&["stop"]);
    }
}

/// A child process killed when dropped.
pub struct Guarded(pub Child);

impl Drop for Guarded {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Deterministic pseudo-random bytes.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = dht_core::rand::Rng::new(seed);
    let mut data = vec![0u8; len];
    rng.fill_bytes(&mut data);
    data
}
