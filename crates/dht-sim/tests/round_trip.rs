//! End-to-end in the simulator: a 256-node network stores files and gives
//! them back byte for byte, on a clean network and a lossy one.

use dht_core::config::Replication;
use dht_core::store::FragmentStore;
use dht_core::{Config, Duration, MAX_FILE_SIZE};
use dht_sim::scene::{join_members, random_bytes};
use dht_sim::{Faults, HostId, Sim};

const NODES: usize = 256;
/// Fragments per node: a whole shard of a 2 MB file is about 16 + index.
const CAPACITY: usize = 64;

fn network(seed: u64, faults: Faults) -> (Sim, Vec<HostId>) {
    let mut sim = Sim::new(seed, faults);
    let members =
        join_members(&mut sim, Config::member(), CAPACITY, NODES, Duration::from_millis(2))
            .expect("all 256 nodes join");
    // Let the ADDME randomcasts and shard queries settle.
    sim.run_for(Duration::from_secs(1));
    (sim, members)
}

/// Uploads `data` through a client attached to `entry` and downloads it
/// through another client attached to `exit`; returns the bytes received.
fn round_trip(sim: &mut Sim, entry: HostId, exit: HostId, name: &str, data: &[u8]) -> Vec<u8> {
    let sender = sim.add_client();
    sim.join(sender, entry);
    assert!(sim.run_until(Duration::from_secs(10), |s| s.is_joined(sender)), "sender joins");
    let hash = sim.start_upload(sender, name, data.to_vec()).expect("upload starts");
    assert!(sim.run_until(Duration::from_secs(120), |s| s.app_done(sender)), "upload ends");
    assert_eq!(sim.upload_result(sender), Some(Ok(hash)), "upload succeeds");

    let receiver = sim.add_client();
    sim.join(receiver, exit);
    assert!(sim.run_until(Duration::from_secs(10), |s| s.is_joined(receiver)), "receiver joins");
    sim.start_download(receiver, hash);
    assert!(sim.run_until(Duration::from_secs(120), |s| s.app_done(receiver)), "download ends");
    match sim.download_result(receiver) {
        Some(Ok(bytes)) => bytes.clone(),
        other => panic!("download failed: {other:?}"),
    }
}

#[test]
fn network_of_256_nodes_returns_a_2_mb_file_byte_identical() {
    let (mut sim, members) = network(1, Faults::default());
    // Every shard is populated and every node knows members of every shard.
    for &m in &members {
        let node = sim.node(m).unwrap();
        let counts = node.neighbors().shard_counts();
        let missing = counts
            .iter()
            .enumerate()
            .filter(|(s, c)| **c == 0 && *s != node.shard().index())
            .count();
        assert_eq!(missing, 0, "node {m} misses shards: {counts:?}");
    }
    let data = random_bytes(7, MAX_FILE_SIZE as usize);
    let back = round_trip(&mut sim, members[10], members[200], "big.bin", &data);
    assert_eq!(back.len(), data.len());
    assert!(back == data, "downloaded bytes differ");

    // Bounded replication (R = 3 by default): once announcements settle,
    // every fragment has three holders, all in its shard. A member whose
    // view of the shard was still incomplete when it announced may have
    // made a fourth copy; such extra copies stay rare.
    sim.run_for(Duration::from_secs(5));
    let mut copies = 0;
    for chunk in data.chunks(8192) {
        let hash = dht_core::FragmentHash::of(chunk.try_into().unwrap());
        let holders = sim.holders_of(&hash);
        assert!(holders.len() >= 3, "{hash:?} has {} holders", holders.len());
        assert!(holders.iter().all(|&h| sim.node(h).unwrap().shard() == hash.shard()));
        copies += holders.len();
    }
    assert!(copies <= 255 * 3 + 255 / 20, "{copies} copies of 255 fragments");
    let total = sim.total_counters();
    assert_eq!(total.drops_of(dht_core::counters::DropReason::BadHash), 0);
}

#[test]
fn lossy_network_still_returns_the_file() {
    // 10 % loss, 10 % duplication and 10 % reordering from the first JOIN on.
    let (mut sim, members) = network(2, Faults::lossy(10));
    let data = random_bytes(8, MAX_FILE_SIZE as usize);
    let back = round_trip(&mut sim, members[3], members[77], "lossy.bin", &data);
    assert!(back == data, "downloaded bytes differ");
    let stats = sim.net_stats();
    assert!(stats.lost > 0 && stats.duplicated > 0 && stats.reordered > 0, "{stats:?}");
}

#[test]
fn edge_sizes_round_trip() {
    let (mut sim, members) = network(3, Faults::default());
    for (i, size) in [0usize, 1, 8191, 8192, 8193].into_iter().enumerate() {
        let data = random_bytes(100 + i as u64, size);
        let back = round_trip(&mut sim, members[i], members[255 - i], "edge", &data);
        assert_eq!(back, data, "size {size}");
    }
}

#[test]
fn a_file_one_byte_over_one_index_round_trips_as_a_tree() {
    let (mut sim, members) = network(4, Faults::default());
    let data = random_bytes(9, MAX_FILE_SIZE as usize + 1);
    let back = round_trip(&mut sim, members[5], members[99], "tree.bin", &data);
    assert!(back == data, "downloaded bytes differ");
    // The root, two leaf indexes and 256 data fragments are all held.
    let hashes = dht_sim::scene::file_hashes("tree.bin", &data);
    assert_eq!(hashes.len(), 256 + 3);
    for hash in hashes {
        assert!(!sim.holders_of(&hash).is_empty(), "{hash:?} is held");
    }
}

#[test]
fn a_20_mb_file_round_trips_at_10_percent_loss_and_streams_into_a_small_sink() {
    use sha2::Digest as _;
    // Room for 20 MB three times over, unevenly spread.
    let mut sim = Sim::new(5, Faults::lossy(10));
    let members = join_members(&mut sim, Config::member(), 512, NODES, Duration::from_millis(2))
        .expect("all 256 nodes join");
    sim.run_for(Duration::from_secs(1));
    let data = random_bytes(10, 20 << 20);
    let back = round_trip(&mut sim, members[7], members[150], "twenty.bin", &data);
    assert!(back == data, "downloaded bytes differ");

    // The same file streamed into a digest by a download of 2 slots and a
    // path of 3 indexes: it never holds the file.
    let size = std::mem::size_of::<dht_sim::StreamDownload>();
    assert!(size < 64 * 1024, "a streaming download takes {size} bytes");
    let client = sim.add_client();
    sim.join(client, members[201]);
    assert!(sim.run_until(Duration::from_secs(10), |s| s.is_joined(client)));
    let hash = dht_sim::scene::file_address("twenty.bin", &data);
    sim.start_stream(client, hash);
    assert!(sim.run_until(Duration::from_secs(600), |s| s.app_done(client)), "stream ends");
    let expected: [u8; 32] = sha2::Sha256::digest(&data).into();
    assert_eq!(sim.stream_result(client), Some(&Ok((data.len() as u64, expected))));
}

#[test]
fn same_seed_same_run() {
    fn run(seed: u64) -> (dht_core::counters::Counters, dht_sim::NetStats, u64) {
        let mut sim = Sim::new(seed, Faults::lossy(5));
        let members =
            join_members(&mut sim, Config::member(), 16, 48, Duration::from_millis(2)).unwrap();
        let data = random_bytes(5, 100_000);
        let back = round_trip(&mut sim, members[1], members[40], "det", &data);
        assert_eq!(back, data);
        let held: usize = members.iter().map(|&m| sim.node(m).unwrap().store().len()).sum();
        (sim.total_counters(), sim.net_stats(), held as u64 + sim.now().total_micros())
    }
    let a = run(11);
    let b = run(11);
    assert_eq!(a, b);
    let c = run(12);
    assert_ne!(a.2, c.2);
    let _ = Replication::WholeShard;
}

#[test]
fn a_fast_large_upload_leaves_every_fragment_with_its_copies() {
    // 32 members: about two per shard, so each member announces every
    // fragment it takes to a mate. A 20 MB upload announces faster than
    // the mates answer; none may be left with fewer copies than its shard
    // can give it.
    let mut sim = Sim::new(6, Faults::default());
    let members = join_members(&mut sim, Config::member(), 4096, 32, Duration::from_millis(2))
        .expect("all 32 nodes join");
    sim.run_for(Duration::from_secs(1));
    let data = random_bytes(11, 20 << 20);
    let back = round_trip(&mut sim, members[1], members[20], "fast.bin", &data);
    assert!(back == data, "downloaded bytes differ");
    sim.run_for(Duration::from_secs(10));
    let mut short = 0;
    let hashes = dht_sim::scene::file_hashes("fast.bin", &data);
    for hash in &hashes {
        let mates = members.iter().filter(|&&m| sim.node(m).unwrap().shard() == hash.shard());
        let wanted = mates.count().min(3);
        if sim.holders_of(hash).len() < wanted {
            short += 1;
        }
    }
    assert_eq!(short, 0, "{short} of {} fragments lack copies", hashes.len());
}

#[test]
fn a_coded_file_is_read_through_its_data_tree_and_tells_its_parity() {
    use dht_core::index::{Coding, IndexName};
    let mut sim = Sim::new(12, Faults::default());
    let members = join_members(&mut sim, Config::member(), 256, 64, Duration::from_millis(2))
        .expect("all 64 nodes join");
    sim.run_for(Duration::from_secs(1));
    let data = random_bytes(21, 10 * 8192 + 77);
    let coding = Coding::new(data.len() as u64, 4, 2).unwrap();
    assert_eq!((coding.stripes(), coding.parity_fragments()), (3, 6));
    // The parity fragments' content does not matter to the network: any
    // bytes of the right size stand for them here.
    let parity = random_bytes(22, coding.parity_size() as usize);
    let sender = sim.add_client();
    sim.join(sender, members[3]);
    assert!(sim.run_until(Duration::from_secs(10), |s| s.is_joined(sender)));
    let parity_root = sim.start_upload(sender, "", parity).unwrap();
    assert!(sim.run_until(Duration::from_secs(60), |s| s.app_done(sender)));
    assert_eq!(sim.upload_result(sender), Some(Ok(parity_root)));
    sim.start_coded_upload(sender, "coded.bin", data.clone(), (4, 2, parity_root)).unwrap();
    assert!(sim.run_until(Duration::from_secs(60), |s| s.app_done(sender)));
    let Some(Ok(address)) = sim.upload_result(sender) else { panic!("coded upload failed") };
    let plain = dht_core::upload::hash_file(
        IndexName::from_file_name("coded.bin"),
        &mut dht_core::upload::Bytes(&data[..]),
        |_, _| {},
    )
    .unwrap();
    assert_ne!(address, plain, "the coded root is a fragment of its own");
    assert!(sim.copies(&plain) > 0, "the file's own tree is stored as an interior index");

    let receiver = sim.add_client();
    sim.join(receiver, members[40]);
    assert!(sim.run_until(Duration::from_secs(10), |s| s.is_joined(receiver)));
    let fetch = |sim: &mut Sim, hash| {
        sim.start_download(receiver, hash);
        assert!(sim.run_until(Duration::from_secs(120), |s| s.app_done(receiver)));
        sim.download_result(receiver).cloned()
    };
    assert_eq!(fetch(&mut sim, address), Some(Ok(data.clone())));
    assert_eq!(sim.download_coding(receiver), Some((coding, parity_root)));
    assert_eq!(fetch(&mut sim, plain), Some(Ok(data.clone())), "the data tree is the plain file");
    assert_eq!(sim.download_coding(receiver), None);

    // The cheap path reads no parity: a data fragment nobody holds fails
    // the download at that fragment (the tools then decode its stripe).
    let mut fragment = [0u8; 8192];
    fragment.copy_from_slice(&data[3 * 8192..4 * 8192]);
    let victim = dht_core::FragmentHash::of(&fragment);
    for host in sim.holders_of(&victim) {
        let _ = sim.node_mut(host).unwrap().store_mut().remove(&victim);
    }
    match fetch(&mut sim, address) {
        Some(Err(dht_core::download::DownloadError::FragmentUnavailable {
            fragment: 3, ..
        })) => {}
        other => panic!("expected fragment 3 to be unavailable, got {other:?}"),
    }
    assert_eq!(sim.download_coding(receiver), Some((coding, parity_root)));
}
