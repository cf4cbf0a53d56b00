//! Files over one index (a tree of indexes) and streams, through a scene
//! of real dhtnode processes on loopback.

mod common;

use common::{random_bytes, run_shell, run_tool, tool, Scene, TempDir};

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
    for (i, size) in [2_088_961usize, 10 * mb, 100 * mb].into_iter().enumerate() {
        let name = format!("large{i}.bin");
        let data = random_bytes(i as u64 + 40, size);
        std::fs::write(work.path().join(&name), &data).unwrap();
        let hashed = run_tool("dhthash", &[&name], work.path());
        assert!(hashed.ok(), "dhthash {size}: {}", hashed.stderr);
        let sent = run_tool("dhtsend", &[&name, "127.0.0.1", &entry], work.path());
        assert!(sent.ok(), "dhtsend {size}: {}", sent.stderr);
        let hash = sent.stdout.trim();
        assert_eq!(hash, hashed.stdout.trim(), "dhthash agrees with dhtsend for {size} bytes");
        let out = format!("copy{i}.bin");
        let received = run_tool("dhtrecv", &[hash, "127.0.0.1", &exit, "-o", &out], work.path());
        assert!(received.ok(), "dhtrecv {size}: {}", received.stderr);
        let back = std::fs::read(work.path().join(&out)).unwrap();
        assert_eq!(back.len(), size);
        assert!(back == data, "file of {size} bytes differs after the round trip");
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
}
