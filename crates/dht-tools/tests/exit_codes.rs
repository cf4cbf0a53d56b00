//! Each class of failure has its own exit status (see `dht_tools::exit`),
//! checked one by one on a scene of real processes.

mod common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::{fragment_hashes, random_bytes, run_tool, signal, spawn_quiet, Scene, TempDir};
use dht_tools::exit;

/// A UDP port on 127.0.0.1 that nothing listens on (bound, then freed).
fn free_port() -> String {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.local_addr().unwrap().port().to_string()
}

#[test]
fn every_failure_class_has_its_exit_status() {
    let scene = Scene::deploy("exit-codes", 700, 16, "");
    let work = TempDir::new("exit-codes-files");
    let port = (scene.base + 2).to_string();
    let data = random_bytes(70, 3 * 8192 + 5);
    std::fs::write(work.path().join("a.bin"), &data).unwrap();
    let sent = run_tool("dhtsend", &["a.bin", "127.0.0.1", &port], work.path());
    assert!(sent.ok(), "{}", sent.stderr);
    let unknown = "ab".repeat(32);
    let first_fragment = fragment_hashes(&work.path().join("a.bin"))[0].clone();
    let nobody = free_port();
    std::fs::write(work.path().join("big.bin"), random_bytes(71, 10 << 20)).unwrap();

    let table: Vec<(&str, Vec<&str>, u8)> = vec![
        ("no arguments", vec!["dhtrecv"], exit::USAGE),
        ("a hash that is not hex", vec!["dhtrecv", "xyz", "127.0.0.1", &port], exit::USAGE),
        ("an unknown flag", vec!["dhtsend", "a.bin", "127.0.0.1", &port, "--nope"], exit::USAGE),
        ("nothing listens", vec!["dhtrecv", &unknown, "127.0.0.1", &nobody], exit::UNREACHABLE),
        ("no one answers a ping", vec!["dhtping", "127.0.0.1", &nobody], exit::UNREACHABLE),
        ("an unknown hash", vec!["dhtrecv", &unknown, "127.0.0.1", &port], exit::NOT_FOUND),
        (
            "a data fragment's hash",
            vec!["dhtrecv", &first_fragment, "127.0.0.1", &port, "-o", "x.bin"],
            exit::INTEGRITY,
        ),
        (
            "a missing file to send",
            vec!["dhtsend", "missing.bin", "127.0.0.1", &port],
            exit::LOCAL_IO,
        ),
        ("a missing file to hash", vec!["dhthash", "missing.bin"], exit::LOCAL_IO),
        (
            "a directory that does not exist",
            vec!["dhtrecv", &unknown, "127.0.0.1", &port, "-o", "no/such/dir/x"],
            exit::LOCAL_IO,
        ),
        (
            "no time to upload",
            vec!["dhtsend", "big.bin", "127.0.0.1", &port, "--timeout", "0.02"],
            exit::NETWORK,
        ),
    ];
    for (what, command, expected) in table {
        let run = run_tool(command[0], &command[1..], work.path());
        assert_eq!(run.status, Some(i32::from(expected)), "{what}: {command:?}: {}", run.stderr);
        if expected == exit::UNREACHABLE {
            assert!(run.elapsed < Duration::from_secs(1), "{what} took {:?}", run.elapsed);
        }
        // What the tool was doing, then why it failed, and what to do.
        if expected == exit::INTEGRITY {
            let chain = format!("dhtrecv: cannot get {first_fragment} from 127.0.0.1:{port}: ");
            assert!(run.stderr.contains(&chain), "{what}: {}", run.stderr);
            assert!(run.stderr.contains("is not a file's index"), "{what}: {}", run.stderr);
        }
    }

    // Interrupted while joining a socket that never answers: 130.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port().to_string();
    let args = [unknown.as_str(), "127.0.0.1", &silent_port, "--connect-timeout", "30"];
    let mut child = spawn_quiet("dhtrecv", &args, work.path());
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    signal(child.0.id(), "INT");
    let status = child.0.wait().unwrap();
    assert_eq!(status.code(), Some(i32::from(exit::INTERRUPTED)));
    assert!(started.elapsed() < Duration::from_secs(2));
}
