//! Helpers for the process tests: run the built tools with a time limit,
//! deploy a scene with the real deploy script, and always stop it.

#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Ports a checkout's process tests use: a block of [`PORT_BLOCK`] ports
/// between 20000 and 31999, chosen from the checkout's path, so that two checkouts running the suite
/// at once do not collide, and moved on to the next block while some port
/// of it is taken.
pub const PORT_BLOCK: u16 = 2000;

/// The port `offset` into this checkout's block (see [`PORT_BLOCK`]).
pub fn port(offset: u16) -> u16 {
    static BASE: std::sync::OnceLock<u16> = std::sync::OnceLock::new();
    *BASE.get_or_init(|| {
        let path = env!("CARGO_MANIFEST_DIR");
        let hash = path.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        // Below the kernel's ephemeral range (32768 and up on Linux), where
        // any client socket of a test running meanwhile may take a port of
        // the block: a scene node that cannot bind never answers.
        let blocks = 6u64;
        let first = hash % blocks;
        let free = |base: u16| {
            (base..base + PORT_BLOCK)
                .step_by(7)
                .all(|p| std::net::UdpSocket::bind(("127.0.0.1", p)).is_ok())
        };
        (0..blocks)
            .map(|k| 20_000 + ((first + k) % blocks) as u16 * PORT_BLOCK)
            .find(|base| free(*base))
            .unwrap_or(20_000)
    }) + offset
}

/// [`port`] as text, for command lines.
pub fn port_arg(offset: u16) -> String {
    port(offset).to_string()
}

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

/// Runs a shell command line (for pipes and redirections) in `dir`, with
/// the same 120 s limit as a tool.
pub fn run_shell(line: &str, dir: &Path) -> Run {
    run_with_limit(Path::new("sh"), &["-c", line], dir, Duration::from_secs(120))
}

/// Runs a tool with a 120 s limit.
pub fn run_tool(name: &str, args: &[&str], dir: &Path) -> Run {
    run_with_limit(&tool(name), args, dir, Duration::from_secs(120))
}

/// Scenes of one test binary run one at a time: two machines' worth of
/// processes on two cores would make every timing in them meaningless.
static SCENE_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A scene deployed with deploy_test_scene.sh; stopped (by PID, through
/// the script) when dropped, also when the test fails.
pub struct Scene {
    pub base: u16,
    pub count: u16,
    pub dir: TempDir,
    _turn: std::sync::MutexGuard<'static, ()>,
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

    /// Deploys `count` nodes on the ports from `offset` into this
    /// checkout's block (see [`port`]) with extra dhtnode arguments, as an
    /// open network (no key: the tools of the tests need none).
    pub fn deploy(name: &str, offset: u16, count: u16, node_args: &str) -> Scene {
        Scene::deploy_with(name, offset, count, node_args, &["--no-key"])
    }

    /// [`Scene::deploy`] as a network with a key (the script's default):
    /// tools then need `--key-file` [`Scene::key_file`].
    pub fn deploy_keyed(name: &str, offset: u16, count: u16, node_args: &str) -> Scene {
        Scene::deploy_with(name, offset, count, node_args, &[])
    }

    /// The scene's network key file (made by a keyed deploy).
    pub fn key_file(&self) -> PathBuf {
        self.dir.path().join("network.key")
    }

    fn deploy_with(
        name: &str,
        offset: u16,
        count: u16,
        node_args: &str,
        script_args: &[&str],
    ) -> Scene {
        // A test that failed while holding the lock poisons it; the next
        // scene may still run.
        let turn = SCENE_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let base = port(offset);
        let scene = Scene { base, count, dir: TempDir::new(name), _turn: turn };
        let output: Output = scene
            .command()
            .env("DHT_NODE_ARGS", node_args)
            .args(["--clean", "-n", &count.to_string(), "-p", &base.to_string()])
            .args(script_args)
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

/// Sends `signal` (a name such as "KILL", "STOP", "CONT") to `pid`.
pub fn signal(pid: u32, signal: &str) {
    let status =
        Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status().unwrap();
    assert!(status.success(), "kill -{signal} {pid}");
}

/// Whether `pid` is a live (not zombie) process.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/status")) {
        Ok(status) => !status.lines().any(|l| l.starts_with("State:") && l.contains('Z')),
        Err(_) => false,
    }
}

/// The fragment hashes (hex) of a file, from `dhthash -v`: data fragments
/// and the index.
pub fn fragment_hashes(file: &Path) -> Vec<String> {
    let run = run_tool("dhthash", &["-v", file.to_str().unwrap()], file.parent().unwrap());
    assert!(run.ok(), "{}", run.stderr);
    // The listing is on standard error (the hash alone on standard out).
    let hashes: Vec<String> = run
        .stderr
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace().skip(1);
            let hash = words.next()?;
            (hash.len() == 64 && words.next() == Some("shard")).then(|| hash.to_owned())
        })
        .collect();
    // An empty list made the tests that use it fail far from the cause.
    assert!(!hashes.is_empty(), "no fragment listed by dhthash -v: {:?}", run.stderr);
    hashes
}

impl Scene {
    /// Ports whose store holds `hash`, among `ports`.
    pub fn holders(&self, hash: &str, ports: &[u16]) -> Vec<u16> {
        ports.iter().copied().filter(|p| self.held(*p).iter().any(|h| h == hash)).collect()
    }

    /// The fragments (hex hashes) the store of the node on `port` holds.
    pub fn held(&self, port: u16) -> Vec<String> {
        dht_std::store::held_in(&self.store(port))
            .unwrap()
            .iter()
            .map(|(hash, _)| hash.to_string())
            .collect()
    }

    /// Loses `hash` from the store of the node on `port`, as a disk would.
    pub fn lose(&self, port: u16, hash: &str) {
        let hash = dht_core::FragmentHash::from_hex(hash).unwrap();
        assert!(dht_std::store::lose(&self.store(port), &hash).unwrap(), "{hash} held on {port}");
    }

    /// Polls until `done` holds or `limit` passes; returns the time it took.
    pub fn wait_for(&self, limit: Duration, mut done: impl FnMut() -> bool) -> Option<Duration> {
        let start = Instant::now();
        loop {
            if done() {
                return Some(start.elapsed());
            }
            if start.elapsed() > limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts a dhtnode on `port` with its store in the scene, joining
    /// `seed`, recording its PID where the deploy script looks for it (so
    /// that the scene's stop stops it too).
    pub fn start_node(&self, port: u16, seed: u16, extra: &[&str]) -> u32 {
        self.start_node_from(port, Some(seed), extra)
    }

    /// [`Scene::start_node`], or without a seed (the node resumes on its
    /// store and others join through it).
    pub fn start_node_from(&self, port: u16, seed: Option<u16>, extra: &[&str]) -> u32 {
        let store = self.store(port);
        std::fs::create_dir_all(&store).unwrap();
        let log = std::fs::File::create(store.join("node.log")).unwrap();
        let mut args = vec![port.to_string()];
        if let Some(seed) = seed {
            args.push("127.0.0.1".into());
            args.push(seed.to_string());
        }
        args.push("--store".into());
        args.push(store.to_str().unwrap().into());
        args.extend(extra.iter().map(|s| s.to_string()));
        let child = Command::new(tool("dhtnode"))
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let pid = child.id();
        std::fs::write(store.join("node.pid"), format!("{pid}\n")).unwrap();
        // The scene's stop ends it by PID; dropping the handle neither
        // waits for nor kills the process.
        drop(child);
        pid
    }
}

/// The shard of a fragment hash given in hex.
pub fn shard_of_hash(hex: &str) -> u8 {
    dht_core::FragmentHash::from_hex(hex).unwrap().shard().get()
}

impl Scene {
    /// The shard of the node on `port`, from its saved identity.
    pub fn node_shard(&self, port: u16) -> Option<u8> {
        let text = std::fs::read_to_string(self.store(port).join("node.id")).ok()?;
        let id = u64::from_str_radix(text.trim(), 16).ok()?;
        Some((id % 16) as u8)
    }

    /// How many copies of `hash` repair can keep among `live`: R, or all
    /// the live members of its shard if there are fewer.
    pub fn attainable(&self, hash: &str, live: &[u16], r: usize) -> usize {
        let shard = shard_of_hash(hash);
        let members = live.iter().filter(|p| self.node_shard(**p) == Some(shard)).count();
        r.min(members)
    }
}

/// A tool started in `dir` with `args`, its output thrown away, killed
/// when dropped.
pub fn spawn_quiet(name: &str, args: &[&str], dir: &Path) -> Guarded {
    let child = Command::new(tool(name))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {name}: {e}"));
    Guarded(child)
}

/// What a file's round trip printed: dhtsend's and dhtrecv's runs, and the
/// file's address.
pub struct Trip {
    pub sent: Run,
    pub received: Run,
    pub hash: String,
}

/// Writes `data` as `dir/name`, uploads it through 127.0.0.1:`entry`
/// (dhthash giving the same address) and downloads it through `exit` into
/// `copy-name`, checking each step and the bytes that came back.
pub fn round_trip(dir: &Path, name: &str, data: &[u8], entry: &str, exit: &str) -> Trip {
    let size = data.len();
    std::fs::write(dir.join(name), data).unwrap();
    let hashed = run_tool("dhthash", &[name], dir);
    assert!(hashed.ok(), "dhthash {size}: {}", hashed.stderr);
    let sent = run_tool("dhtsend", &[name, "127.0.0.1", entry], dir);
    assert!(sent.ok(), "dhtsend {size}: {}", sent.stderr);
    let hash = sent.stdout.trim().to_owned();
    assert_eq!(hash.len(), 64, "stdout is the hash alone: {:?}", sent.stdout);
    assert_eq!(hash, hashed.stdout.trim(), "dhthash agrees with dhtsend for {size} bytes");
    let out = format!("copy-{name}");
    let received = run_tool("dhtrecv", &[&hash, "127.0.0.1", exit, "-o", &out], dir);
    assert!(received.ok(), "dhtrecv {size}: {}", received.stderr);
    let back = std::fs::read(dir.join(&out)).unwrap();
    assert_eq!(back.len(), size);
    assert!(back == data, "file of {size} bytes differs after the round trip");
    Trip { sent, received, hash }
}

/// The `#` marks in a tool's stderr (its progress on a pipe).
pub fn marks(text: &str) -> usize {
    text.chars().filter(|c| *c == '#').count()
}
