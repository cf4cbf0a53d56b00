//! Hosts written every way the tools accept, over IPv6 and IPv4 loopback:
//! two real nodes on ::1, and a client that tries a host's addresses in
//! turn.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{port, run_tool, tool, Guarded, Run, TempDir};

fn assert_fails(run: &Run, expected: &str) {
    assert!(!run.ok(), "should fail: {run:?}");
    assert!(run.status.is_some(), "should exit, not be killed: {run:?}");
    assert!(run.stderr.contains(expected), "stderr should say '{expected}': {:?}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "one line of message: {:?}", run.stderr);
}

/// Starts a dhtnode with `args`, its store in `dir`, killed when dropped.
fn node(dir: &Path, args: &[&str]) -> Guarded {
    let log = std::fs::File::create(dir.join(format!("{}.log", args[0]))).unwrap();
    let child = Command::new(tool("dhtnode"))
        .args(args)
        .arg("--store")
        .arg(dir.join(args[0]))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    Guarded(child)
}

#[test]
fn spellings_that_cannot_work_are_refused_before_any_network() {
    let work = TempDir::new("bad-hosts");
    std::fs::write(work.path().join("a.bin"), b"hello").unwrap();
    let hash = "00".repeat(32);
    let p = port(1500).to_string();
    let other = port(1501).to_string();
    let with_port = format!("[::1]:{p}");

    let run = run_tool("dhtping", &["[::1", &p], work.path());
    assert_fails(&run, "'[::1' has '[' without ']'");
    let run = run_tool("dhtping", &["::1"], work.path());
    assert_fails(&run, "no port for '::1': give HOST PORT or HOST:PORT");
    let run = run_tool("dhtsend", &["a.bin", "a:b:c", &p], work.path());
    assert_fails(&run, "[IPV6]:PORT");
    let run = run_tool("dhtrecv", &[&hash, &with_port, &other], work.path());
    assert_fails(&run, &format!("says port {p} but the port argument is {other}"));
    let run = run_tool("dhtsend", &["a.bin", "[localhost]:1"], work.path());
    assert_fails(&run, "is not an IPv6 address");
    let run = run_tool("dhtping", &["127.0.0.1:0"], work.path());
    assert_fails(&run, "port 0");

    let run = run_tool("dhtnode", &[&other, "--bind", &with_port], work.path());
    assert_fails(&run, &format!("--bind: '{with_port}' says port {p}"));
    let run = run_tool("dhtnode", &[&other, "127.0.0.1", &p, "--bind", "::1"], work.path());
    assert_fails(&run, "its own family");
    let run = run_tool("dhtnode", &[&other, "--advertise", "[::1"], work.path());
    assert_fails(&run, "--advertise: '[::1' has '['");
    let run = run_tool("dhtnode", &[&other, "--advertise", "::1"], work.path());
    assert_fails(&run, "--advertise ::1 has no IPv4 address");
}

#[test]
fn tools_reach_nodes_on_ipv6_loopback_however_it_is_written() {
    if UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback on this machine: skipped");
        return;
    }
    let work = TempDir::new("ipv6");
    let (root, joiner) = (port(1502), port(1503));
    let (root_arg, joiner_arg) = (root.to_string(), joiner.to_string());
    let seed = format!("[::1]:{root}");
    // --bind in brackets with its port, --advertise bare; the second node
    // binds ::1 by itself because its seed has only that address.
    let _root = node(work.path(), &[&root_arg, "--bind", &seed, "--advertise", "::1"]);
    let _joiner = node(work.path(), &[&joiner_arg, &seed]);
    let up = run_tool("dhtping", &[&seed, "--scan", "2", "--wait", "30"], work.path());
    assert!(up.ok(), "both nodes up and joined on ::1: {up:?}");
    assert!(up.stdout.contains("2 of 2 nodes answered, 2 joined"), "{up:?}");

    for args in [
        vec!["::1", root_arg.as_str()],
        vec!["[::1]", root_arg.as_str()],
        vec![seed.as_str()],
        vec![seed.as_str(), root_arg.as_str()],
    ] {
        let mut ping = args.clone();
        ping.extend(["-c", "1", "-W", "5"]);
        let run = run_tool("dhtping", &ping, work.path());
        assert!(run.ok(), "dhtping {args:?}: {run:?}");
        assert!(run.stdout.contains(&format!("at {seed}")), "{run:?}");
    }
    let stats = run_tool("dhtping", &["::1", &joiner_arg, "--stats", "-W", "5"], work.path());
    assert!(stats.ok(), "{stats:?}");
    assert!(stats.stdout.contains(&format!("at [::1]:{joiner}")), "{stats:?}");
    assert!(stats.stdout.contains("joined"), "{stats:?}");

    // localhost is 127.0.0.1, where nobody listens, then ::1: the tools
    // go on to the second address when the first does not answer.
    let nobody: SocketAddr = ([127, 0, 0, 1], root).into();
    let live: SocketAddr = seed.parse().unwrap();
    let run = run_tool("dhtping", &["localhost", &root_arg, "-c", "1", "-W", "1"], work.path());
    assert!(run.ok(), "{run:?}");
    assert!(run.stdout.contains(&format!("no answer from {nobody}")), "{run:?}");
    assert!(run.stdout.contains(&format!("at {seed}")), "{run:?}");
    let entries = dht_tools::node_addrs(&format!("localhost:{root}"), None).unwrap();
    assert_eq!(entries, [nobody, live]);
    let started = std::time::Instant::now();
    let client = dht_tools::join(&entries, 0, 4.0, &open_network()).expect("joins through ::1");
    assert_eq!(client.entry(), live);
    // 2 s for each address at most, with room for a loaded machine.
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
    drop(client);
    // Nobody at either: one message naming both, in about the timeout.
    let dead: SocketAddr = format!("[::1]:{}", port(1504)).parse().unwrap();
    let err =
        dht_tools::join(&[nobody, dead], 0, 1.0, &open_network()).err().expect("nobody answers");
    assert!(
        err.to_string().contains(&format!(
            "no node answered at {nobody} or {dead} (within 0.5 s each, or nothing listens there)"
        )),
        "{err:?}"
    );
    assert_eq!(err.code, dht_tools::exit::UNREACHABLE);
}

/// No key, datagram sizes by link.
fn open_network() -> dht_tools::Network {
    dht_tools::Network { key_file: None, max_datagram: None }
}
