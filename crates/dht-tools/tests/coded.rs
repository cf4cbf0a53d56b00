//! Erasure-coded files through a scene of real dhtnode processes: data
//! fragments that no node holds any more are rebuilt from parity.

mod common;

use common::{random_bytes, run_shell, run_tool, shard_of_hash, signal, tool, Scene, TempDir};

#[test]
fn a_coded_file_comes_back_whole_after_losing_every_copy_of_some_data_fragments() {
    let scene = Scene::deploy("coded", 1400, 32, "");
    let work = TempDir::new("coded-files");
    let entry = (scene.base + 3).to_string();
    let exit = (scene.base + 20).to_string();
    // 306 data fragments under a tree of two levels; 10 stripes of 30 or
    // 31 data fragments with 15 or 16 parity fragments each.
    let data = random_bytes(77, 2_500_000);
    std::fs::write(work.path().join("coded.bin"), &data).unwrap();
    let sent =
        run_tool("dhtsend", &["coded.bin", "127.0.0.1", &entry, "--redundancy=32+16"], work.path());
    assert!(sent.ok(), "{}", sent.stderr);
    assert!(
        sent.stderr.contains("156 parity fragments stored (32+16 a stripe)"),
        "{}",
        sent.stderr
    );
    let address = sent.stdout.trim().to_owned();
    let plain = run_tool("dhthash", &["coded.bin"], work.path());
    assert_ne!(address, plain.stdout.trim(), "the coded root is not the plain address");
    let offline = run_tool("dhthash", &["--redundancy=32+16", "coded.bin"], work.path());
    assert_eq!(offline.stdout.trim(), address, "dhthash knows the address: {}", offline.stderr);

    // Every copy of 12 data fragments of the first stripe, one of the
    // sixth and the last fragment of the file is removed from the stores.
    let listing = run_tool("dhthash", &["-v", "coded.bin"], work.path());
    let victims: Vec<String> = listing
        .stderr
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let n: u64 = words.next()?.parse().ok()?;
            (n < 12 || n == 160 || n == 305).then(|| words.next().unwrap().to_owned())
        })
        .collect();
    assert_eq!(victims.len(), 14, "{}", listing.stderr);
    let ports: Vec<u16> = (0..32).map(|i| scene.base + i).collect();
    for hash in &victims {
        let holders = scene.holders(hash, &ports);
        assert!(!holders.is_empty(), "{hash} was stored");
        for port in holders {
            scene.lose(port, hash);
        }
    }

    let received =
        run_tool("dhtrecv", &[&address, "127.0.0.1", &exit, "-o", "back.bin", "-v"], work.path());
    assert!(received.ok(), "{}", received.stderr);
    assert_eq!(std::fs::read(work.path().join("back.bin")).unwrap(), data);
    for stripe in ["stripe 0 (12 data fragments missing)", "stripe 5 (1 data", "stripe 9 (1 data"] {
        assert!(received.stderr.contains(stripe), "no rebuild of {stripe}: {}", received.stderr);
    }

    // The same, streamed in order to standard output.
    let piped = run_shell(
        &format!(
            "'{}' {address} 127.0.0.1 {exit} -o - -q | sha256sum; sha256sum < coded.bin",
            tool("dhtrecv").display()
        ),
        work.path(),
    );
    assert!(piped.ok(), "{}", piped.stderr);
    let sums: Vec<&str> =
        piped.stdout.lines().map(|l| l.split_whitespace().next().unwrap()).collect();
    assert_eq!(sums.len(), 2, "{}", piped.stdout);
    assert_eq!(sums[0], sums[1], "streamed bytes differ: {}", piped.stderr);

    // One stripe losing more than its parity cannot be rebuilt: a clear
    // failure, not wrong bytes.
    let more: Vec<String> = listing
        .stderr
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let n: u64 = words.next()?.parse().ok()?;
            (12..30).contains(&n).then(|| words.next().unwrap().to_owned())
        })
        .collect();
    for hash in &more {
        for port in scene.holders(hash, &ports) {
            scene.lose(port, hash);
        }
    }
    let failed =
        run_tool("dhtrecv", &[&address, "127.0.0.1", &exit, "-o", "lost.bin"], work.path());
    // As for a plain file missing a fragment: a network failure (8).
    assert_eq!(failed.status, Some(8), "{}", failed.stderr);
    assert!(failed.stderr.contains("stripe 0 of the file cannot be rebuilt"), "{}", failed.stderr);
    assert!(!work.path().join("lost.bin").exists());
}

#[test]
fn a_coded_file_comes_back_when_every_member_of_a_shard_is_killed() {
    let scene = Scene::deploy("coded-shard", 1500, 32, "");
    let work = TempDir::new("coded-shard-files");
    let entry = (scene.base + 3).to_string();
    let data = random_bytes(78, 2_500_000);
    std::fs::write(work.path().join("shard.bin"), &data).unwrap();
    let sent =
        run_tool("dhtsend", &["shard.bin", "127.0.0.1", &entry, "--redundancy=32+16"], work.path());
    assert!(sent.ok(), "{}", sent.stderr);
    let address = sent.stdout.trim().to_owned();
    // A shard that holds data fragments and no index fragment (a file is
    // lost with an index; parity does not cover them).
    let listing = run_tool("dhthash", &["-v", "--redundancy=32+16", "shard.bin"], work.path());
    let mut data_shards = [0usize; 16];
    let mut index_shards = [false; 16];
    for line in listing.stderr.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let [tag, hash, "shard", _] = words[..] else { continue };
        let shard = usize::from(shard_of_hash(hash));
        match tag.parse::<u64>() {
            Ok(_) => data_shards[shard] += 1,
            Err(_) if tag != "par" => index_shards[shard] = true,
            Err(_) => {}
        }
    }
    let ports: Vec<u16> = (0..32).map(|i| scene.base + i).collect();
    let victim_shard = (0..16)
        .filter(|&s| !index_shards[s] && data_shards[s] > 0)
        .find(|&s| {
            let members = ports.iter().filter(|&&p| scene.node_shard(p) == Some(s as u8)).count();
            // Not the entry node's shard: the tools join through it.
            members > 0 && scene.node_shard(scene.base + 3) != Some(s as u8)
        })
        .expect("a shard with data fragments only");
    let victims: Vec<(u16, u32)> = scene
        .pids()
        .into_iter()
        .filter(|(p, _)| scene.node_shard(*p) == Some(victim_shard as u8))
        .collect();
    for (_, pid) in &victims {
        signal(*pid, "KILL");
    }
    let received =
        run_tool("dhtrecv", &[&address, "127.0.0.1", &entry, "-o", "back.bin", "-v"], work.path());
    assert!(received.ok(), "{}", received.stderr);
    assert_eq!(std::fs::read(work.path().join("back.bin")).unwrap(), data);
    assert!(received.stderr.contains("rebuilding stripe"), "{}", received.stderr);
    println!(
        "shard {victim_shard} ({} members, {} data fragments) killed; the file came back in {:?}",
        victims.len(),
        data_shards[victim_shard],
        received.elapsed
    );
}
