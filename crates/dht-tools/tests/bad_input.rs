//! Every kind of bad input gives a one-line message and a non-zero exit,
//! in bounded time.

mod common;

use std::net::UdpSocket;
use std::path::Path;
use std::time::Duration;

use common::{port, port_arg, random_bytes, run_tool, Run, Scene, TempDir};

fn assert_fails(run: &Run, expected: &str) {
    assert!(!run.ok(), "should fail: {run:?}");
    assert!(run.status.is_some(), "should exit, not be killed: {run:?}");
    assert!(
        run.stderr.to_lowercase().contains(&expected.to_lowercase()),
        "stderr should mention '{expected}': {:?}",
        run.stderr
    );
    let lines = run.stderr.lines().filter(|l| !l.chars().all(|c| c == '#')).count();
    assert!(lines <= 2, "one line of message: {:?}", run.stderr);
}

#[test]
fn file_problems_are_reported_without_any_network() {
    let work = TempDir::new("bad-files");
    std::fs::write(work.path().join("big.bin"), random_bytes(1, 2_088_961)).unwrap();
    std::fs::create_dir(work.path().join("adir")).unwrap();
    // No node listens on this port; file errors come first.
    for tool in ["dhtsend", "dhthash"] {
        let mut args = vec!["missing.bin"];
        if tool == "dhtsend" {
            args.extend(["127.0.0.1", "1"]);
        }
        assert_fails(&run_tool(tool, &args, work.path()), "cannot open missing.bin");
        args[0] = "adir";
        assert_fails(&run_tool(tool, &args, work.path()), "is a directory");
    }
    // A file over one index is no problem any more: it gets a tree.
    let big = run_tool("dhthash", &["big.bin"], work.path());
    assert!(big.ok() && big.stdout.trim().len() == 64, "{big:?}");
}

#[test]
fn network_problems_are_reported_in_bounded_time() {
    let work = TempDir::new("bad-network");
    std::fs::write(work.path().join("a.bin"), b"hello").unwrap();
    let hash = "00".repeat(32);

    let bad_hash = run_tool("dhtrecv", &["xyz", "127.0.0.1", &port_arg(390)], work.path());
    assert_fails(&bad_hash, "not an index hash");
    let short = run_tool("dhtrecv", &[&hash[..63], "127.0.0.1", &port_arg(390)], work.path());
    assert_fails(&short, "64 hexadecimal digits");

    let host = run_tool("dhtsend", &["a.bin", "no such host.invalid", &port_arg(390)], work.path());
    assert_fails(&host, "cannot resolve host");
    let host = run_tool("dhtping", &["no such host.invalid", &port_arg(390)], work.path());
    assert_fails(&host, "cannot resolve host");

    // Nothing listens on port 390 of the block.
    for (tool, args) in [
        ("dhtsend", vec!["a.bin", "127.0.0.1", &port_arg(390), "--connect-timeout", "1"]),
        ("dhtrecv", vec![hash.as_str(), "127.0.0.1", &port_arg(390), "--connect-timeout", "1"]),
    ] {
        let run = run_tool(tool, &args, work.path());
        // The kernel's refusal comes at once on loopback.
        assert_fails(&run, &format!("nothing listens at 127.0.0.1:{}", port(390)));
        assert!(run.elapsed < Duration::from_secs(1), "{tool} took {:?}", run.elapsed);
    }
    let ping =
        run_tool("dhtping", &["127.0.0.1", &port_arg(390), "-c", "2", "-W", "0.2"], work.path());
    assert!(!ping.ok());
    assert!(ping.stdout.contains("no answer"), "{ping:?}");
    assert!(ping.elapsed < Duration::from_secs(5));
}

#[test]
fn node_problems_are_reported() {
    let work = TempDir::new("bad-node");
    let socket = std::net::UdpSocket::bind(("127.0.0.1", port(391))).unwrap();
    let busy = run_tool("dhtnode", &[&port_arg(391), "--store", "s"], work.path());
    assert_fails(&busy, "already in use");
    drop(socket);

    let unwritable =
        run_tool("dhtnode", &[&port_arg(392), "--store", "/proc/dht-store"], work.path());
    assert_fails(&unwritable, "/proc/dht-store");

    let copies = run_tool("dhtnode", &[&port_arg(393), "--copies", "zero"], work.path());
    assert_fails(&copies, "--copies");

    let rate = run_tool("dhtnode", &[&port_arg(393), "--repair-rate=-1"], work.path());
    assert_fails(&rate, "--repair-rate");

    std::fs::create_dir_all(work.path().join("s2")).unwrap();
    std::fs::write(work.path().join("s2").join("node.id"), "garbage").unwrap();
    let identity = run_tool("dhtnode", &[&port_arg(394), "--store", "s2"], work.path());
    assert_fails(&identity, "does not hold a node id");

    // Its own address as seed: it would wait for ever. No store is left.
    let port = port_arg(395);
    let itself = run_tool("dhtnode", &[&port, "127.0.0.1", &port, "--store", "s3"], work.path());
    assert_fails(&itself, "is this node itself");
    assert!(!work.path().join("s3").exists());
}

#[test]
fn download_problems_are_reported() {
    let scene = Scene::deploy("bad-download", 300, 32, "");
    let work = TempDir::new("bad-download-files");
    let port = (scene.base + 3).to_string();

    // A hash nobody holds: not found, within bounded time.
    let unknown = "ab".repeat(32);
    let run = run_tool("dhtrecv", &[&unknown, "127.0.0.1", &port], work.path());
    assert_fails(&run, "no node holds a file with this hash");
    assert!(run.elapsed < Duration::from_secs(20), "took {:?}", run.elapsed);
    assert!(std::fs::read_dir(work.path()).unwrap().next().is_none(), "no partial file left");

    // An existing file is not overwritten without --force.
    std::fs::write(work.path().join("doc.txt"), b"first version").unwrap();
    let sent = run_tool("dhtsend", &["doc.txt", "127.0.0.1", &port], work.path());
    assert!(sent.ok(), "{}", sent.stderr);
    let hash = sent.stdout.trim().to_owned();
    let run = run_tool("dhtrecv", &[&hash, "127.0.0.1", &port], work.path());
    assert_fails(&run, "exists; use --force");
    let run = run_tool("dhtrecv", &[&hash, "127.0.0.1", &port, "-o", "doc.txt"], work.path());
    assert_fails(&run, "exists; use --force");
    let run = run_tool("dhtrecv", &[&hash, "127.0.0.1", &port, "--force"], work.path());
    assert!(run.ok(), "{}", run.stderr);
    assert_eq!(std::fs::read(work.path().join("doc.txt")).unwrap(), b"first version");
    let run = run_tool("dhtrecv", &[&hash, "127.0.0.1", &port, "-o", "nodir/x"], work.path());
    assert_fails(&run, "does not exist");

    // A name from the network cannot leave the target directory.
    let inner = work.path().join("inner");
    std::fs::create_dir(&inner).unwrap();
    std::fs::write(work.path().join("evil.txt"), b"payload").unwrap();
    let sent = run_tool(
        "dhtsend",
        &["evil.txt", "127.0.0.1", &port, "--name", "../../escaped"],
        work.path(),
    );
    assert!(sent.ok(), "{}", sent.stderr);
    let run = run_tool("dhtrecv", &[sent.stdout.trim(), "127.0.0.1", &port], &inner);
    assert!(run.ok(), "{}", run.stderr);
    assert!(!work.path().join("escaped").exists());
    let saved: Vec<String> = std::fs::read_dir(&inner)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(saved, vec!["_.._escaped".to_owned()]);
    assert_eq!(std::fs::read(inner.join("_.._escaped")).unwrap(), b"payload");

    // Nor plant a login script: spaces before the dot are no way around.
    let home = work.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let sent = run_tool(
        "dhtsend",
        &["evil.txt", "127.0.0.1", &port, "--name", "\u{3000} .bash_login"],
        work.path(),
    );
    assert!(sent.ok(), "{}", sent.stderr);
    let login = sent.stdout.trim().to_owned();
    let run = run_tool("dhtrecv", &[&login, "127.0.0.1", &port], &home);
    assert!(run.ok(), "{}", run.stderr);
    assert!(run.stderr.contains("is saved as \"bash_login\""), "{}", run.stderr);
    assert_eq!(std::fs::read(home.join("bash_login")).unwrap(), b"payload");

    // A link is never replaced, even with --force: -o - is the way to
    // standard output, and leaves nothing on disk.
    std::os::unix::fs::symlink("bash_login", home.join("out")).unwrap();
    let run = run_tool("dhtrecv", &[&login, "127.0.0.1", &port, "-o", "out", "--force"], &home);
    assert_fails(&run, "is a symbolic link; it is never replaced, even with --force");
    assert_eq!(std::fs::read_link(home.join("out")).unwrap(), Path::new("bash_login"));
    let run = run_tool("dhtrecv", &[&login, "127.0.0.1", &port, "-o", "-", "-q"], &home);
    assert!(run.ok(), "{}", run.stderr);
    assert_eq!(run.stdout, "payload");
    let mut left: Vec<String> = std::fs::read_dir(&home)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["bash_login", "out"], "no partial file left");
}

#[test]
fn each_tool_says_its_own_name_and_version() {
    let work = TempDir::new("versions");
    for tool in ["dhtnode", "dhtsend", "dhtrecv", "dhthash", "dhtping"] {
        let run = run_tool(tool, &["--version"], work.path());
        assert!(run.ok(), "{tool} --version: {}", run.stderr);
        let expected = format!("{tool} {}", env!("CARGO_PKG_VERSION"));
        assert_eq!(run.stdout.trim(), expected, "it said dht-tools for every tool");
    }
}

#[test]
fn rough_edges_say_what_they_do() {
    let work = TempDir::new("rough-edges");
    std::fs::write(work.path().join("a.bin"), b"hello").unwrap();
    let hash = "00".repeat(32);
    let nobody = port_arg(396);

    // -c 0 is no count of pings.
    let zero = run_tool("dhtping", &["127.0.0.1", &nobody, "-c", "0"], work.path());
    assert_eq!(zero.status, Some(2), "{zero:?}");

    // -o newdir/ names a directory; it is never made into a file.
    let dir = run_tool("dhtrecv", &[&hash, "127.0.0.1", &nobody, "-o", "newdir/"], work.path());
    assert_fails(&dir, "directory newdir/ does not exist");
    assert_eq!(dir.status, Some(7));
    assert!(!work.path().join("newdir").exists());

    // A name longer than an index holds is shortened, and said so.
    let long = "a-name-much-longer-than-twenty-nine-bytes.txt";
    let named = run_tool("dhtsend", &["a.bin", "127.0.0.1", &nobody, "--name", long], work.path());
    assert!(named.stderr.contains("is stored as \"a-name-much-longer-than-t.txt\""), "{named:?}");

    // A node that cannot have its port leaves no store behind.
    let taken = UdpSocket::bind(("127.0.0.1", port(397))).unwrap();
    let node = run_tool("dhtnode", &[&port_arg(397), "--store", "never"], work.path());
    assert_fails(&node, "already in use");
    assert!(!work.path().join("never").exists(), "a store was created");
    drop(taken);
}
