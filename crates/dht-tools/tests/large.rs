//! Files over one index (a tree of indexes) and streams, through a scene
//! of real dhtnode processes on loopback.

mod common;

use std::time::{Duration, Instant};

use common::{
    marks, random_bytes, round_trip, run_shell, run_tool, signal, spawn_quiet, tool, Scene,
    TempDir, Trip,
};

/// The SHA-256 of `path` as `sha256sum` prints it.
fn sha256sum(path: &std::path::Path) -> String {
    let run = run_shell(&format!("sha256sum '{}'", path.display()), path.parent().unwrap());
    assert!(run.ok(), "{}", run.stderr);
    run.stdout.split_whitespace().next().unwrap().to_owned()
}

#[test]
fn files_over_one_index_and_a_100_mb_stream_round_trip_through_a_32_node_scene() {
    let scene = Scene::deploy("large", 600, 32, "");
    let work = TempDir::new("large-files");
    let entry = (scene.base + 3).to_string();
    let exit = (scene.base + 28).to_string();
    let mb = 1 << 20;
    let mut hashes = Vec::new();
    for (i, size) in [2_088_961usize, 10 * mb, 100 * mb].into_iter().enumerate() {
        let name = format!("large{i}.bin");
        let data = random_bytes(i as u64 + 40, size);
        let Trip { sent, received, hash } = round_trip(work.path(), &name, &data, &entry, &exit);
        // On a pipe, a file over one index gets one mark per percent.
        assert_eq!(marks(&sent.stderr), 100, "dhtsend: {}", sent.stderr);
        assert_eq!(marks(&received.stderr), 100, "dhtrecv: {}", received.stderr);
        if i == 1 {
            // Sent again (as after an interrupted upload): only offers go,
            // the network holds the bytes.
            let again = run_tool("dhtsend", &[&name, "127.0.0.1", &entry], work.path());
            assert!(again.ok() && again.stdout.trim() == hash, "{}", again.stderr);
            let held: u64 = again
                .stderr
                .split("dhtsend: ")
                .nth(1)
                .and_then(|t| t.split(' ').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no count of fragments held: {}", again.stderr));
            assert!(held >= 1286 * 95 / 100, "{held} of 1286 were held: {}", again.stderr);
        }
        hashes.push(hash);
    }

    // 100 MB from a pipe, named by --name, back through standard output
    // into sha256sum.
    let source = work.path().join("large2.bin");
    let digest = sha256sum(&source);
    let (send, recv) = (tool("dhtsend"), tool("dhtrecv"));
    let piped = run_shell(
        &format!("cat large2.bin | '{}' - 127.0.0.1 {entry} --name video.bin", send.display()),
        work.path(),
    );
    assert!(piped.ok(), "{}", piped.stderr);
    let hash = piped.stdout.trim().to_owned();
    let named = run_tool("dhthash", &["--name", "video.bin", "large2.bin"], work.path());
    assert_eq!(hash, named.stdout.trim(), "a stream has the address of the same file");
    let streamed = run_shell(
        &format!("'{}' {hash} 127.0.0.1 {exit} -o - | sha256sum", recv.display()),
        work.path(),
    );
    assert!(streamed.ok(), "{}", streamed.stderr);
    assert_eq!(streamed.stdout.split_whitespace().next(), Some(digest.as_str()));

    // SIGKILL half way through the 100 MB download, then the same command
    // again: it continues from what the first left.
    let hash = &hashes[2];
    let part = work.path().join(format!(".dhtrecv-{}.part", &hash[..16]));
    let args = [hash.as_str(), "127.0.0.1", &exit, "-o", "resumed.bin"];
    let mut child = spawn_quiet("dhtrecv", &args, work.path());
    let half = 50 * mb as u64;
    let started = Instant::now();
    while std::fs::metadata(&part).map_or(0, |m| m.len()) < half {
        assert!(child.0.try_wait().unwrap().is_none(), "dhtrecv ended before half way");
        assert!(started.elapsed() < Duration::from_secs(60), "no progress");
        std::thread::sleep(Duration::from_millis(1));
    }
    signal(child.0.id(), "KILL");
    let _ = child.0.wait();
    let left = std::fs::metadata(&part).unwrap().len();
    assert!(left >= half, "the partial file stays after SIGKILL: {left} bytes");
    let again = run_tool("dhtrecv", &args, work.path());
    assert!(again.ok(), "{}", again.stderr);
    assert!(again.stderr.contains("continuing the download left in"), "{}", again.stderr);
    assert_eq!(sha256sum(&work.path().join("resumed.bin")), digest);
    assert!(!part.exists(), "the partial file became resumed.bin");
    // "<path> (104.9 MB (N bytes); K of M fragments were already there)"
    let reused: u64 = again
        .stderr
        .split(" of 12800 fragments were already there")
        .next()
        .and_then(|head| head.rsplit(' ').next())
        .and_then(|k| k.parse().ok())
        .unwrap_or_else(|| panic!("no count of fragments kept: {}", again.stderr));
    let fetched = 12_800 - reused;
    eprintln!("resumed after {left} bytes: {reused} fragments kept, {fetched} fetched again");
    assert!(reused as f64 >= 0.95 * (left / 8192) as f64, "{reused} kept of {left} bytes");
}
