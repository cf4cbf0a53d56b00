//! The tools on a scene of real dhtnode processes on loopback.

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::{
    marks, random_bytes, round_trip, run_shell, run_tool, signal, tool, Scene, TempDir, Trip,
};

#[test]
fn files_of_every_size_round_trip_through_a_32_node_scene() {
    let scene = Scene::deploy("roundtrip", 0, 32, "");
    let work = TempDir::new("roundtrip-files");
    let entry = (scene.base + 1).to_string();
    let exit = (scene.base + 30).to_string();
    for (i, size) in [0usize, 1, 8191, 8192, 8193, 2_088_960].into_iter().enumerate() {
        let data = random_bytes(i as u64 + 1, size);
        let Trip { sent, received, .. } =
            round_trip(work.path(), &format!("file{i}.bin"), &data, &entry, &exit);
        // On a pipe, one mark per data fragment, the same both ways.
        assert_eq!(marks(&sent.stderr), size.div_ceil(8192), "dhtsend: {}", sent.stderr);
        assert_eq!(marks(&received.stderr), size.div_ceil(8192), "dhtrecv: {}", received.stderr);
    }
    // Without -o the file gets the name stored in the index.
    let data = random_bytes(99, 5000);
    std::fs::write(work.path().join("named.txt"), &data).unwrap();
    let sent = run_tool("dhtsend", &["named.txt", "127.0.0.1", &entry], work.path());
    assert!(sent.ok(), "{}", sent.stderr);
    let target = TempDir::new("roundtrip-target");
    let received = run_tool(
        "dhtrecv",
        &[sent.stdout.trim(), "127.0.0.1", &exit, "-o", target.path().to_str().unwrap()],
        work.path(),
    );
    assert!(received.ok(), "{}", received.stderr);
    assert_eq!(std::fs::read(target.path().join("named.txt")).unwrap(), data);
}

#[test]
fn a_node_sent_thousands_of_garbage_datagrams_keeps_serving() {
    let scene = Scene::deploy("garbage", 100, 16, "");
    let work = TempDir::new("garbage-files");
    let data = random_bytes(7, 300_000);
    std::fs::write(work.path().join("a.bin"), &data).unwrap();
    let entry = (scene.base + 2).to_string();
    let sent = run_tool("dhtsend", &["a.bin", "127.0.0.1", &entry], work.path());
    assert!(sent.ok(), "{}", sent.stderr);

    let target = scene.base + 5;
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut rng = dht_core::rand::Rng::new(5);
    let mut datagram = vec![0u8; 9000];
    for i in 0..5000 {
        let len = rng.below(9000);
        rng.fill_bytes(&mut datagram[..len]);
        if i % 2 == 0 && len > 0 {
            datagram[0] = dht_core::config::WIRE_VERSION; // right version, garbage after it
        }
        let _ = socket.send_to(&datagram[..len], ("127.0.0.1", target));
        if i % 500 == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    // The node answers and has counted the garbage (its socket may still
    // hold some: ask until the count shows).
    let counted = scene.wait_for(Duration::from_secs(30), || {
        let stats =
            run_tool("dhtping", &["127.0.0.1", &target.to_string(), "--stats"], work.path());
        stats.ok() && stats.stdout.contains("drop.malformed")
    });
    assert!(counted.is_some(), "the attacked node does not answer STATS or counted nothing");

    let received = run_tool(
        "dhtrecv",
        &[sent.stdout.trim(), "127.0.0.1", &target.to_string(), "-o", "back.bin"],
        work.path(),
    );
    assert!(received.ok(), "download through the attacked node: {}", received.stderr);
    assert!(std::fs::read(work.path().join("back.bin")).unwrap() == data);
}

#[test]
fn deploy_refuses_a_second_scene_and_stops_by_pid() {
    let scene = Scene::deploy("twice", 200, 4, "");
    let pids = scene.pids();
    assert_eq!(pids.len(), 4);
    let last = (scene.base + 3).to_string();
    let again = scene.script(&["-n", "4", "-p", &scene.base.to_string()]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already running"));
    let ping = run_tool("dhtping", &["127.0.0.1", &last, "-c", "1"], scene.dir.path());
    assert!(ping.ok(), "{}", ping.stdout);
    // --stats -c 2 -i 0.2: two reports, apart.
    let stats = run_tool(
        "dhtping",
        &["127.0.0.1", &last, "--stats", "-c", "2", "-i", "0.2"],
        scene.dir.path(),
    );
    assert!(stats.ok(), "{stats:?}");
    assert!(stats.stdout.contains("# report 2 of 2, 0."), "{}", stats.stdout);
    assert_eq!(stats.stdout.matches(" fragments, ").count(), 2, "{}", stats.stdout);
    // status: the nodes running, answering and joined.
    let status = scene.script(&["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{text}");
    assert!(text.contains("4 of 4 nodes running") && text.contains("4 joined"), "{text}");
    // A flag without its value says so.
    let missing = scene.script(&["-n"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("-n needs a number"));
    let stop = scene.script(&["stop"]);
    assert!(stop.status.success());
    for (_, pid) in pids {
        // Gone, or an exited process its new parent has not reaped yet.
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let state = status.lines().find(|l| l.starts_with("State:")).unwrap_or("State: gone");
        assert!(
            !status.contains("dhtnode") || state.contains('Z'),
            "node {pid} still runs: {state}"
        );
    }
    // The nodes left: a ping finds nobody, in bounded time.
    let ping = run_tool("dhtping", &["127.0.0.1", &last, "-c", "1", "-W", "0.3"], scene.dir.path());
    assert!(!ping.ok());
    assert!(ping.elapsed < Duration::from_secs(5));
    let status = scene.script(&["status"]);
    assert!(!status.status.success());
    assert!(String::from_utf8_lossy(&status.stdout).contains("no scene is running"));
}

#[test]
fn a_keyed_scene_answers_only_tools_with_its_key_and_ethernet_sized_datagrams_work() {
    let scene = Scene::deploy_keyed("keyed", 400, 16, "");
    let work = TempDir::new("keyed-files");
    let key = scene.key_file();
    let key = key.to_str().unwrap();
    let entry = (scene.base + 3).to_string();
    // Without the key: no answer at all.
    let silent = run_tool("dhtping", &["127.0.0.1", &entry, "-W", "0.5"], work.path());
    assert!(!silent.ok(), "answered without the key: {}", silent.stdout);
    let pinged = run_tool("dhtping", &["127.0.0.1", &entry, "--key-file", key], work.path());
    assert!(pinged.ok(), "{}", pinged.stderr);
    // A wrong key is as good as none.
    std::fs::write(work.path().join("wrong.key"), "not the key").unwrap();
    let wrong = run_tool(
        "dhtping",
        &["127.0.0.1", &entry, "--key-file", "wrong.key", "-W", "0.5"],
        work.path(),
    );
    assert!(!wrong.ok());
    let refused = run_tool(
        "dhtsend",
        &["--key-file", "wrong.key", "--connect-timeout", "1", "missing.bin", "127.0.0.1", &entry],
        work.path(),
    );
    assert!(!refused.ok());

    // A round trip with the key, the client sending pieces of an Ethernet
    // frame's size while the nodes use whole-fragment datagrams.
    let data = random_bytes(41, 100_000);
    std::fs::write(work.path().join("k.bin"), &data).unwrap();
    let sent = run_tool(
        "dhtsend",
        &["--key-file", key, "--max-datagram", "1452", "k.bin", "127.0.0.1", &entry],
        work.path(),
    );
    assert!(sent.ok(), "{}", sent.stderr);
    let exit = (scene.base + 12).to_string();
    let hash = sent.stdout.trim();
    let received = run_tool(
        "dhtrecv",
        &[hash, "127.0.0.1", &exit, "--key-file", key, "--max-datagram", "700", "-o", "k.out"],
        work.path(),
    );
    assert!(received.ok(), "{}", received.stderr);
    assert!(std::fs::read(work.path().join("k.out")).unwrap() == data);
    let unkeyed = run_tool(
        "dhtrecv",
        &[hash, "127.0.0.1", &exit, "--connect-timeout", "1", "-o", "x.out"],
        work.path(),
    );
    assert!(!unkeyed.ok());
    assert!(unkeyed.stderr.contains("--key-file"), "{}", unkeyed.stderr);
}

#[test]
fn standard_input_and_pipes_are_uploaded_whole_and_an_empty_one_is_refused() {
    let scene = Scene::deploy("stdin", 500, 16, "");
    let work = TempDir::new("stdin-files");
    let data = random_bytes(11, 100_000);
    std::fs::write(work.path().join("piped.bin"), &data).unwrap();
    let entry = (scene.base + 1).to_string();
    let exit = (scene.base + 9).to_string();
    let send = tool("dhtsend");
    // `-` and a pipe given as a path (which used to store an empty file).
    for source in ["-", "/dev/stdin"] {
        let line = format!("cat piped.bin | '{}' {source} 127.0.0.1 {entry}", send.display());
        let out = run_shell(&line, work.path());
        assert!(out.ok(), "dhtsend {source}: {}", out.stderr);
        let hash = out.stdout.trim().to_owned();
        let target = TempDir::new("stdin-target");
        let dir = target.path().to_str().unwrap();
        let received = run_tool("dhtrecv", &[&hash, "127.0.0.1", &exit, "-o", dir], work.path());
        assert!(received.ok(), "{}", received.stderr);
        // Named `stdin` (for `-` by default; /dev/stdin by its name).
        let back = std::fs::read(target.path().join("stdin")).unwrap();
        assert!(back == data, "{source}: {} bytes came back for {}", back.len(), data.len());
    }
    // Nothing on standard input, or an empty pipe: an error, no address.
    for line in [
        format!("'{}' - 127.0.0.1 {entry} < /dev/null", send.display()),
        format!("printf '' | '{}' /dev/stdin 127.0.0.1 {entry}", send.display()),
    ] {
        let out = run_shell(&line, work.path());
        assert!(!out.ok(), "{line} should fail");
        assert!(out.stderr.contains("gave no bytes"), "{line}: {}", out.stderr);
        assert!(out.stdout.is_empty(), "{line} printed an address");
    }
}

#[test]
fn a_killed_node_shows_in_the_others_logs_with_the_time_within_10_s_and_nodes_sum_up() {
    // 24 nodes: some shards have two members, and a node with a mate is
    // watched by it (a node alone in its shard is found out later, by
    // whoever talks to it next).
    let scene = Scene::deploy("logs", 800, 24, "--summary-every 1");
    let ports: Vec<u16> = (scene.base..scene.base + 24).collect();
    let victim = *ports
        .iter()
        .find(|p| {
            let shard = scene.node_shard(**p);
            ports.iter().filter(|q| scene.node_shard(**q) == shard).count() >= 2
        })
        .expect("a shard of two");
    let pid = scene.pids().into_iter().find(|(port, _)| *port == victim).unwrap().1;
    // Settled: every node knows the others.
    std::thread::sleep(Duration::from_secs(2));
    signal(pid, "KILL");
    let killed = std::time::Instant::now();
    let needle = format!("127.0.0.1:{victim} does not answer: declared dead");
    let line = loop {
        let found = (0..24u16)
            .filter(|i| scene.base + i != victim)
            .filter_map(|i| {
                let log = scene.dir.path().join((scene.base + i).to_string()).join("node.log");
                let text = std::fs::read_to_string(log).unwrap_or_default();
                text.lines().find(|l| l.contains(&needle)).map(str::to_owned)
            })
            .next();
        if let Some(line) = found {
            break line;
        }
        assert!(killed.elapsed() < Duration::from_secs(10), "no node logged the death in 10 s");
        std::thread::sleep(Duration::from_millis(100));
    };
    // "2026-11-30T20:18:45.404Z dhtnode[9000] info: neighbor ... declared dead ..."
    let stamp = line.split(' ').next().unwrap();
    assert!(stamp.len() == 24 && stamp.ends_with('Z') && stamp.contains('T'), "{line}");
    assert!(line.contains(" info: neighbor "), "{line}");
    // The one-line summary, every second here (300 s by default).
    let log =
        std::fs::read_to_string(scene.dir.path().join(scene.base.to_string()).join("node.log"))
            .unwrap();
    let summary = log.lines().find(|l| l.contains(" info: summary: shard ")).unwrap_or_else(|| {
        panic!("no summary line in {log}");
    });
    assert!(summary.contains("fragments held") && summary.contains("datagrams in"), "{summary}");
    // The victim's mates repair, and say when they start and end.
    let shard = scene.node_shard(victim);
    let mates: Vec<u16> =
        ports.iter().copied().filter(|p| *p != victim && scene.node_shard(*p) == shard).collect();
    let log_of = |port: u16| {
        std::fs::read_to_string(scene.dir.path().join(port.to_string()).join("node.log"))
            .unwrap_or_default()
    };
    let repaired = scene.wait_for(Duration::from_secs(10), || {
        mates.iter().all(|m| {
            let log = log_of(*m);
            log.contains("repair started: ") && log.contains("repair finished in ")
        })
    });
    assert!(repaired.is_some(), "mates {mates:?} did not log their repair: {}", log_of(mates[0]));
    // Back on its store (same id): its neighbors say so.
    let seed = *ports.iter().find(|p| **p != victim).unwrap();
    scene.start_node(victim, seed, &[]);
    let needle = format!("127.0.0.1:{victim} is back, ");
    let back = scene.wait_for(Duration::from_secs(20), || {
        ports.iter().any(|p| *p != victim && log_of(*p).contains(&needle))
    });
    assert!(back.is_some(), "no node logged the return of {victim}");
}

#[test]
fn dhtping_lists_the_files_whose_root_a_node_holds_and_only_with_the_key() {
    let scene = Scene::deploy_keyed("listing", 1600, 16, "");
    let work = TempDir::new("listing-files");
    let key = scene.key_file();
    let key = key.to_str().unwrap();
    let entry = (scene.base + 1).to_string();
    let ports: Vec<u16> = (scene.base..scene.base + 16).collect();
    // Two files, one with a name that must not reach a terminal raw.
    let mut uploaded = Vec::new();
    for (i, name) in ["photos.tar", "evil\u{202e}gpj.exe"].into_iter().enumerate() {
        let size = 20_000 + 9_000 * i;
        std::fs::write(work.path().join(format!("f{i}")), random_bytes(60 + i as u64, size))
            .unwrap();
        let sent = run_tool(
            "dhtsend",
            &["--key-file", key, "--name", name, &format!("f{i}"), "127.0.0.1", &entry],
            work.path(),
        );
        assert!(sent.ok(), "{}", sent.stderr);
        uploaded.push((sent.stdout.trim().to_string(), size, name));
    }
    for (hash, size, name) in &uploaded {
        let holders = scene.holders(hash, &ports);
        assert!(!holders.is_empty(), "no store holds the root {hash}");
        for port in holders {
            let listed = run_tool(
                "dhtping",
                &["127.0.0.1", &port.to_string(), "--list", "--key-file", key],
                work.path(),
            );
            assert!(listed.ok(), "{}", listed.stderr);
            let line = listed.stdout.lines().find(|l| l.starts_with(hash.as_str()));
            let line = line.unwrap_or_else(|| panic!("{hash} not listed by {port}: {listed:?}"));
            assert!(line.contains(&format!(" {size}  ")), "{line}");
            let shown = name.escape_debug().to_string();
            assert!(line.ends_with(&shown), "{line} does not end with {shown}");
            assert!(!listed.stdout.contains('\u{202e}'), "a raw bidi override: {line}");
            // Every fragment, with the copies its shard keeps.
            let all = run_tool(
                "dhtping",
                &["127.0.0.1", &port.to_string(), "--list", "--fragments", "--key-file", key],
                work.path(),
            );
            assert!(all.ok(), "{}", all.stderr);
            let line = all.stdout.lines().find(|l| l.starts_with(hash.as_str())).unwrap();
            let shard = common::shard_of_hash(hash);
            assert!(line.contains(&format!("shard {shard:>2}  copies   3  file ")), "{line}");
            let held = scene.held(port).len();
            assert!(
                all.stdout.contains(&format!("{held} fragments listed")),
                "{held} held: {}",
                all.stdout
            );
        }
    }
    // A node without the root of either file lists no file.
    let bare = ports
        .iter()
        .find(|p| uploaded.iter().all(|(h, ..)| scene.holders(h, &[**p]).is_empty()))
        .unwrap()
        .to_string();
    let none = run_tool("dhtping", &["127.0.0.1", &bare, "--list", "--key-file", key], work.path());
    assert!(none.ok() && none.stdout.starts_with("0 files listed"), "{none:?}");
    // Without the key the network lists nothing.
    let stranger = run_tool("dhtping", &["127.0.0.1", &entry, "--list", "-W", "0.5"], work.path());
    assert_eq!(stranger.status, Some(4), "{stranger:?}");
    assert!(!stranger.stdout.contains("listed"), "{}", stranger.stdout);
}
