//! The checks of the fuzz targets ([`check_decode`], [`check_index`],
//! [`run_node`], [`run_client`]: each target is one call), and what the
//! corpus generator (`examples/corpus.rs`) shares with them: the fragments
//! the harness knows, the harness itself, and a builder for its input
//! format. Keeping the checks here lets `cargo test` replay the committed
//! corpus (`tests/corpus.rs`) without libFuzzer.
//!
//! # The scripted network
//!
//! The node under test talks to scripted peers ([`harness::Harness`]) at
//! fixed addresses (peer 0 and 1 mates, 2 to 4 in the following shards, 5
//! an IPv6 mate, 6 an unspecified IP, 7 the node's own address) and at
//! `10.s.n.0:10000` (made-up members of shard `s` named in their lists).
//! A peer answers what the node sent it as a cooperating node would: it
//! echoes the cookie the node granted it (so the node acts on the answer,
//! as from an address that proved itself), grants its own, and on a keyed
//! network seals with the network's key. Records can spoil any of these
//! (no echo, another port, another network's key) to reach the paths of
//! unproven and foreign datagrams.
//!
//! # The `node` input format
//!
//! A header of 4 bytes (missing bytes read as zero), then records until the
//! input ends. A record cut short by the end of the input reads the missing
//! bytes as zero (a datagram is cut to what is left).
//!
//! | byte | meaning |
//! |-----:|---------|
//! | 0 | bits 0-1: 0 member, 1 client, 2 small member, 3 member that may choose its shard on join; bit 2: join through peer 0 first; bit 3: the sink refuses every 4th datagram; bits 4-6: store slots (0..=7); bit 7: whole-shard replication (every mate holds every fragment) |
//! | 1 | bits 0-3: the node's shard; bit 4: a network key (the node's and its peers'); bit 5: `max_datagram` 632 (pieces of one unit); bit 6 (without bit 5): `max_datagram` 8320 (a fragment a datagram); bit 7: the store starts full of known fragments (of the node's shard, from the fifth on of the next shard) |
//! | 2, 3 | the rest of the node's id |
//!
//! # The `client` input format
//!
//! A header of 4 bytes; for a download, the index fragment's first bytes;
//! then records as for `node`. The client node has joined the scripted
//! network before the records start (members of every shard known).
//!
//! | byte | meaning |
//! |-----:|---------|
//! | 0 | bit 0: download (else upload); bit 1: a network key; bit 2: `max_datagram` 632; bit 3: the sink refuses every 4th datagram and the download's file takes one write; bits 4-5: the uploaded file's name |
//! | 1, 2 | (u16 LE) upload: the file's size in bytes; download: how many bytes of the index fragment follow (the rest is zeros; the peers serve it, and the known fragments) |
//! | 3 | the client's id (and shard) |
//!
//! # Records
//!
//! `op` is the first byte; `step` advances the clock (see
//! [`harness::step_duration`]), and the timers due meanwhile fire first.
//!
//! | op | bytes after op | what |
//! |---:|----------------|------|
//! | `0x00..=0xBF` | step, len (u16 LE), len bytes | a datagram from peer `op & 7`; `(op >> 3) & 3`: 0 as given, 1 its cookies replaced by the node's latest grant to that peer (proven) and the peer's grant, 2 the same with the node's grant to another address, 3 sealed with another network's key (open network: a tag appended); re-encoded datagrams keep their length (zero padding) |
//! | `0xC0..=0xDF` | step, pick | the answer the addressee of a datagram the node sent gives (`pick & 0x1F`: which of the last 32, newest first; `op & 0x1F`: the variant, see [`harness::Harness::answer`]; `pick` bits 5-7: see [`harness::Wrinkle`]) |
//! | `0xE0..=0xEF` | step, pick | a sent datagram handed back as if from its addressee (odd `op`: with the addressee as its source, echoing the node's cookie) |
//! | `0xF0..=0xFF` | step, pick | a command, `op & 0x0F` (below) |
//!
//! `node` commands: 0 leave, 1 join, 2 discover a shard, 3 ping or find, 4
//! ask for stats, 5 FILEGET, 6 offer a fragment (the application serves
//! it, corrupted if `pick` bit 7), 7 broadcast, 8 allow choosing the shard,
//! 9 send pieces unasked, 10 change `max_datagram`, 11 answer every
//! datagram sent since the last time (`pick` as for an answer's variant
//! and wrinkle), anything else nothing (a pure wait). `client` commands: 0
//! leave, 1 join, 2 discover a shard, 3 ping or find, 4 change
//! `max_datagram`, 5 answer every datagram sent since the last time,
//! anything else nothing.
//!
//! # Checks
//!
//! After every input: no panic; the wake-up invariant of `dht_core::node`
//! (and of the application beside it, the upload or download of
//! `client`): after `on_timeout(t)`, the next wake-up is later than `t`
//! or `None`. Every datagram the node sends carries its tag on a keyed
//! network, decodes, grants its addressee a cookie and is at most the
//! node's `max_datagram` long. A datagram that proves nothing (no echoed
//! cookie, a bad tag, undecodable; a RETRY excepted) makes the node send
//! at most one datagram, no larger than itself, to any one address (its
//! sender, or the source it names), and none if it is shorter than
//! `UNPROVEN_MIN`. The store holds only fragments that hash right. A
//! finished download wrote exactly the file its index describes.

use dht_core::index::{fragment_layout, IndexFragment};
use dht_core::wire::{encode_filefrag_header, Message, Packet};
use dht_core::{FragmentHash, FRAGMENT_SIZE, MAX_DATAGRAM_SIZE};

pub mod client;
pub mod harness;
pub mod node;

pub use client::{client_after, run_client};
pub use harness::{known_fragment, known_fragments, network_key, Harness, Script};
pub use node::{node_after, run_node};

/// The `decode` target: a datagram that opens with the fuzz network's key
/// is checked without its tag, and so is any datagram as it is.
/// `Packet::decode` must not panic, and a packet it accepts must encode
/// and decode again to the same value. Values are compared, not bytes: the
/// wire accepts some non-canonical forms (postcard takes over-long varints,
/// such as `0x8d 0x00` for 13) and zero padding, so the re-encoding may
/// differ from the input. The padded encoding decodes the same, and a
/// FILEFRAG encodes the same through `encode_filefrag_header`.
pub fn check_decode(data: &[u8]) {
    if let Some(body) = network_key().open(data) {
        check_packet(body);
    }
    check_packet(data);
}

fn check_packet(data: &[u8]) {
    let Ok(packet) = Packet::decode(data) else { return };
    let mut buf = vec![0u8; data.len().max(MAX_DATAGRAM_SIZE) + 16];
    let len = match packet.encode(&mut buf) {
        Ok(len) => len,
        Err(e) => panic!("a decoded packet does not encode ({e}): {packet:?}"),
    };
    let again = match Packet::decode(&buf[..len]) {
        Ok(again) => again,
        Err(e) => panic!("a re-encoded packet does not decode ({e}): {packet:?}"),
    };
    assert_eq!(again, packet, "the round trip changes the packet");
    let mut padded = vec![0u8; data.len().max(MAX_DATAGRAM_SIZE) + 16];
    let padded_len = packet.encode_padded(&mut padded, data.len()).expect("room for padding");
    assert_eq!(padded_len, len.max(data.len()), "padding to the input's length");
    assert_eq!(Packet::decode(&padded[..padded_len]).as_ref(), Ok(&packet), "padded");
    // A node writes a FILEFRAG as encode_filefrag_header plus the piece
    // read straight from its store, promised byte-identical to encode.
    if let Message::FileFrag { hash, first_unit, data } = &packet.message {
        let mut direct = vec![0u8; 2 * MAX_DATAGRAM_SIZE];
        let head = encode_filefrag_header(
            packet.transmission,
            packet.source,
            packet.cookies,
            hash,
            *first_unit,
            data.units(),
            &mut direct,
        )
        .expect("a FILEFRAG header fits a datagram buffer");
        direct[head..head + data.0.len()].copy_from_slice(data.0);
        assert!(
            direct[..head + data.0.len()] == buf[..len],
            "encode_filefrag_header and Packet::encode disagree on {packet:?}"
        );
    }
}

/// The `index` target: `data` cut or zero-padded to 8192 bytes;
/// `IndexFragment::decode` must not panic, and an index it accepts must
/// re-encode to exactly the same bytes (one file, one address).
pub fn check_index(data: &[u8]) {
    let mut bytes = [0u8; FRAGMENT_SIZE];
    let n = data.len().min(FRAGMENT_SIZE);
    bytes[..n].copy_from_slice(&data[..n]);
    let Ok(index) = IndexFragment::decode(&bytes) else { return };
    let mut again = [0u8; FRAGMENT_SIZE];
    index.encode(&mut again);
    if let Some(at) = (0..FRAGMENT_SIZE).find(|&i| again[i] != bytes[i]) {
        panic!(
            "re-encoding {index:?} differs at byte {at}: {:#04x} decoded, {:#04x} encoded",
            bytes[at], again[at]
        );
    }
    assert_eq!(index.hash(), FragmentHash::of(&bytes), "the address is not the bytes' hash");
    if let Some((coding, _, _)) = index.coded() {
        // The stripes cover the data once and the parity count adds up.
        assert_eq!(index.file_size(), coding.size);
        let last = coding.stripes() - 1;
        assert_eq!(coding.stripe(last).0.end, coding.data_fragments());
        assert_eq!(coding.stripe(last).1.end, coding.parity_fragments());
    } else if index.is_nested() {
        // Every child's share adds up to the size, and only the last may
        // be smaller than a full child.
        let shares: u64 = (0..index.fragment_count()).filter_map(|i| index.child_size(i)).sum();
        assert_eq!(shares, index.file_size(), "the children's sizes do not add up");
        assert!(index.fragment_count() >= 1 && index.child_size(index.fragment_count()).is_none());
    } else {
        assert_eq!(
            fragment_layout(index.file_size()),
            Ok((index.fragment_count() as u8, index.last_len() as u16)),
            "the file size does not give back the fragment count and last length"
        );
    }
    assert_eq!(IndexFragment::decode(&again).as_ref(), Ok(&index));
}
