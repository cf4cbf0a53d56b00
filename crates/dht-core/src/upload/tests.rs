//! The upload's behaviours, on the test harness.

extern crate std;
use super::*;
use std::vec;

#[test]
fn streamed_hash_equals_hash_of_padded_fragment() {
    let data: std::vec::Vec<u8> = (0..20_000u32).map(|i| (i * 7 + 3) as u8).collect();
    let mut source: &[u8] = &data;
    for i in 0..3 {
        let streamed = hash_fragment(&mut source, data.len() as u64, i).unwrap();
        let mut buf = [0u8; FRAGMENT_SIZE];
        assert!(read_fragment(&mut source, data.len() as u64, i, &mut buf));
        assert_eq!(streamed, FragmentHash::of(&buf), "fragment {i}");
    }
}

#[test]
fn a_file_taller_than_the_upload_can_build_is_refused_with_a_typed_error() {
    let data = vec![0u8; crate::MAX_FILE_SIZE as usize + 1];
    let result = Upload::<_, 4, 1>::new(IndexName::from_file_name("big"), &data[..]);
    assert_eq!(result.err().map(|(e, _)| e), Some(UploadError::FileTooLarge { size: 2_088_961 }));
    // The default takes it: a tree of two levels, three indexes.
    let upload = Upload::<_, 4>::new(IndexName::from_file_name("big"), &data[..]).unwrap();
    assert_eq!(upload.total(), 256 + 3);
}

#[test]
fn the_address_is_that_of_the_index_the_download_reads() {
    let data = vec![1u8; 8193];
    let name = IndexName::from_file_name("x");
    let mut seen = std::vec::Vec::new();
    let hash = hash_file(name, &mut &data[..], |item, hash| seen.push((item, hash))).unwrap();
    let mut first = [1u8; FRAGMENT_SIZE];
    let one = FragmentHash::of(&first);
    first.fill(0);
    first[0] = 1;
    let two = FragmentHash::of(&first);
    assert_eq!(seen, [(Item::Data(0), one), (Item::Data(1), two), (Item::Root, hash)]);
    // The index hash is that of the full index the download will read.
    let index = crate::index::IndexFragment::for_file(name, 8193, |i| [one, two][i]).unwrap();
    assert_eq!(hash, index.hash());
    let mut bytes = [0u8; FRAGMENT_SIZE];
    index.encode(&mut bytes);
    assert_eq!(hash, FragmentHash::of(&bytes));
    let upload = Upload::<_, 4>::new(name, &data[..]).unwrap();
    assert_eq!((upload.total(), upload.file_size(), upload.index_hash()), (3, 8193, None));
}

#[test]
fn an_upload_sized_for_small_files_refuses_larger_ones() {
    let data = vec![7u8; 3 * FRAGMENT_SIZE];
    let result = Upload::<_, 2, 1, 1>::new(IndexName::from_file_name("s"), &data[..]);
    assert_eq!(
        result.err().map(|(e, _)| e),
        Some(UploadError::FileTooLarge { size: 3 * FRAGMENT_SIZE as u64 })
    );
    let upload = Upload::<_, 2, 1, 1>::new(IndexName::from_file_name("s"), &data[..100]).unwrap();
    assert_eq!(upload.total(), 2);
    let size = core::mem::size_of::<Upload<&[u8], 2, 1, 1>>();
    assert!(size < 8192, "{size}");
}

use crate::testing::{bytes, Net};
use crate::time::Duration;

#[test]
fn an_upload_is_acknowledged_by_a_holder_of_every_fragment() {
    let mut net = Net::joined(1, 16, 64);
    let client = net.add_joined_client(3, Duration::from_secs(5));
    let data = bytes(7, 5 * FRAGMENT_SIZE + 100);
    let hash = net.upload(client, "five.bin", data.clone());
    assert!(net.run_until(Duration::from_secs(10), |n| n.upload_done(client).is_some()));
    assert_eq!(net.upload_done(client), Some(Ok(hash)));
    // Every fragment and the index are held by a member of their shard.
    let mut hashes: std::vec::Vec<FragmentHash> = data
        .chunks(FRAGMENT_SIZE)
        .map(|c| {
            let mut f = [0u8; FRAGMENT_SIZE];
            f[..c.len()].copy_from_slice(c);
            FragmentHash::of(&f)
        })
        .collect();
    hashes.push(hash);
    for h in hashes {
        let holders = net.hosts.iter().filter(|x| x.node.store().contains(&h)).count();
        assert!(holders >= 1, "{h:?} is held");
    }
}

#[test]
fn a_member_uploads_a_file_of_its_own_and_its_mates_fetch_the_pieces_from_it() {
    // A member (not a client) offers fragments of which its store holds
    // none: the holders' FILEGETs must reach the upload, not a NOTFOUND.
    let mut net = Net::joined(4, 32, 64);
    let member = 5;
    let data = bytes(11, 4 * FRAGMENT_SIZE + 3);
    let hash = net.upload(member, "mine.bin", data);
    assert!(net.run_until(Duration::from_secs(10), |n| n.upload_done(member).is_some()));
    assert_eq!(net.upload_done(member), Some(Ok(hash)));
    let holders = net.hosts.iter().filter(|x| x.node.store().contains(&hash)).count();
    assert!(holders >= 1, "the index is held by {holders} members");
}

#[test]
fn an_upload_whose_holders_are_all_full_fails_with_no_holder_not_a_spin() {
    // One member per shard, each with room for nothing: each says its
    // store is full, the client finds no holder for any shard and the
    // upload ends with an error, waking the client only when it can act.
    let mut net = Net::joined(2, 16, 0);
    let client = net.add_joined_client(0, Duration::from_secs(5));
    net.upload(client, "refused.bin", bytes(3, 3 * FRAGMENT_SIZE));
    assert!(net.run_until(Duration::from_secs(60), |n| n.upload_done(client).is_some()));
    assert!(
        matches!(net.upload_done(client), Some(Err(UploadError::NoHolder { .. }))),
        "{:?}",
        net.upload_done(client)
    );
}

/// The NEWFILEs in `out`: (to, hash).
fn offers(out: &crate::testing::Outbox) -> std::vec::Vec<(PeerAddr, FragmentHash)> {
    out.sent()
        .iter()
        .filter_map(|(to, bytes)| match crate::wire::Packet::decode(bytes) {
            Ok(p) => match p.message {
                crate::wire::Message::NewFile { hash, .. } => Some((*to, hash)),
                _ => None,
            },
            Err(_) => None,
        })
        .collect()
}

#[test]
fn a_late_stored_from_a_member_whose_offer_timed_out_is_believed() {
    // Three members a shard: an offer that times out goes to another.
    let mut net = Net::joined(3, 48, 64);
    let client = net.add_joined_client(2, Duration::from_secs(5));
    // One data fragment and the root; the network is not run: the test
    // plays the members.
    let data = bytes(5, 100);
    let name = IndexName::from_file_name("late.bin");
    let mut upload = Upload::<_, 4>::new(name, crate::upload::Bytes(data)).unwrap();
    let node = &mut net.hosts[client].node;
    let mut now = net.now;
    let mut out = crate::testing::Outbox::default();
    upload.start(now, node, &mut out);
    let first = offers(&out);
    assert_eq!(first.len(), 1, "only the data fragment is offered before it is stored");
    let (slow, hash) = first[0];
    // No FILEGET, no STORED: the offer times out and goes to another member.
    now += Duration::from_secs(3);
    let mut out = crate::testing::Outbox::default();
    App::handle_timeout(&mut upload, now, node, &mut out);
    let second = offers(&out);
    assert!(second.iter().any(|(to, h)| *h == hash && *to != slow), "{second:?}");
    // The slow member's STORED comes after all, from its address.
    let from = PeerInfo { id: crate::id::NodeId(0), addr: slow };
    let stored = Reply::Stored {
        from,
        hash,
        outcome: StoreOutcome::Stored,
        holders: crate::wire::HolderList::new(),
    };
    let mut out = crate::testing::Outbox::default();
    App::handle_reply(&mut upload, now, node, &stored, &mut out);
    // The fragment counts as stored: the root is offered next.
    let root = upload.index_hash().unwrap();
    assert!(offers(&out).iter().any(|(_, h)| *h == root), "the root is not offered");
    // A STORED from a member never offered the fragment is not believed.
    let mut other = Upload::<_, 4>::new(name, crate::upload::Bytes(bytes(6, 100))).unwrap();
    let mut out = crate::testing::Outbox::default();
    other.start(now, node, &mut out);
    let (asked, hash) = offers(&out)[0];
    let stranger = PeerInfo { id: crate::id::NodeId(1), addr: Net::addr(15) };
    assert_ne!(stranger.addr, asked);
    let forged = Reply::Stored {
        from: stranger,
        hash,
        outcome: StoreOutcome::Stored,
        holders: crate::wire::HolderList::new(),
    };
    let mut out = crate::testing::Outbox::default();
    App::handle_reply(&mut other, now, node, &forged, &mut out);
    assert!(offers(&out).is_empty(), "a stranger's STORED moved the upload on");
}
