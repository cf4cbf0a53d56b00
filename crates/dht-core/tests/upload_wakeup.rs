//! An upload whose request window is full must not ask to be woken in the
//! past: after `handle_timeout(t)` with `t >= poll_timeout()`, either
//! something was sent or the next wake-up is later than `t`.
//!
//! The scenario: a client with a window of two uploads a three-fragment
//! file; one fragment's offer is refused (store full) until its retry waits
//! 25 ms, and meanwhile two other offers fill the window. When the 25 ms are
//! over, the window is still full: the upload cannot send, so it must not
//! report the past instant again (a runtime loop that trusts it spins and
//! never reads its socket).

use dht_core::config::Config;
use dht_core::driver::App;
use dht_core::fragment::FragmentHash;
use dht_core::id::{NodeId, PeerAddr, PeerInfo, Shard};
use dht_core::node::{Reply, SendError, Transmit};
use dht_core::store::NoStore;
use dht_core::upload::{Bytes, Upload};
use dht_core::wire::{
    Cookies, HolderList, Message, Packet, PeerList, Source, StoreOutcome, Transmission,
};
use dht_core::{Duration, IndexName, Instant, Node};

#[derive(Default)]
struct Sent(Vec<(PeerAddr, Vec<u8>)>);

impl Transmit for Sent {
    fn send(&mut self, to: PeerAddr, datagram: &[u8]) -> Result<(), SendError> {
        self.0.push((to, datagram.to_vec()));
        Ok(())
    }
}

fn member(shard: u8, port: u16) -> PeerInfo {
    let id = NodeId::in_shard(0x5555_0000 + u64::from(port) * 16, Shard::new(shard).unwrap());
    PeerInfo { id, addr: PeerAddr::v4([127, 0, 0, 1], port) }
}

/// The hashes of the offers (NEWFILE) in `sent`, with their targets.
fn store_requests(sent: &Sent) -> Vec<(PeerAddr, FragmentHash)> {
    sent.0
        .iter()
        .filter_map(|(to, bytes)| match Packet::decode(bytes).ok()?.message {
            Message::NewFile { hash, .. } => Some((*to, hash)),
            _ => None,
        })
        .collect()
}

/// `peer`'s answer `message` to what the node last sent it, echoing the
/// cookie the node gave it (as a real peer would).
fn answer(sent: &Sent, peer: PeerInfo, message: Message<'_>) -> Vec<u8> {
    let grant = sent
        .0
        .iter()
        .rev()
        .filter(|(to, _)| *to == peer.addr)
        .find_map(|(_, bytes)| Packet::decode(bytes).ok()?.cookies.grant);
    let packet = Packet {
        transmission: Transmission::Singlecast,
        source: Source { id: peer.id, addr: peer.addr, member: true, window: 0, full: false },
        cookies: Cookies { echo: grant, grant: None },
        message,
    };
    let mut buf = vec![0u8; 2048];
    let len = packet.encode(&mut buf).unwrap();
    buf.truncate(len);
    buf
}

#[test]
fn upload_with_a_full_window_never_asks_to_be_woken_in_the_past() {
    let me = PeerAddr::v4([127, 0, 0, 1], 7000);
    let mut node: Node<NoStore> = Node::new(Config::client(), NodeId(7), me, 1, NoStore).unwrap();
    let mut sink = Sent::default();
    // One member in every shard, listed by the seed; each answers the
    // PING that asks it to prove its address.
    let seed = member(0, 8000);
    let mut peers = PeerList::new();
    let mut members = Vec::new();
    for shard in 1..16 {
        let m = member(shard, 8000 + u16::from(shard));
        peers.push(m).unwrap();
        members.push(m);
    }
    let mut now = Instant::from_millis(1);
    node.join(now, seed.addr, &mut sink);
    let listed = answer(&sink, seed, Message::Peers { peers });
    assert!(node.handle_datagram(now, seed.addr, &listed, &mut sink).is_none());
    for m in &members {
        let nonce = sink
            .0
            .iter()
            .filter(|(to, _)| *to == m.addr)
            .find_map(|(_, bytes)| match Packet::decode(bytes).ok()?.message {
                Message::Ping { nonce } => Some(nonce),
                _ => None,
            })
            .expect("the listed member is asked to prove itself");
        let pong = answer(&sink, *m, Message::Pong { nonce, dead: None });
        node.handle_datagram(now, m.addr, &pong, &mut sink);
    }
    assert_eq!(node.neighbors().len(), 16);
    sink.0.clear();

    let data: Vec<u8> = (0..3 * 8192u32).map(|i| (i % 251) as u8).collect();
    let mut upload = Upload::<_, 2>::new(IndexName::from_file_name("three.bin"), Bytes(data))
        .map_err(|(e, _)| e)
        .unwrap();
    upload.start(now, &mut node, &mut sink);
    let first = store_requests(&sink);
    assert_eq!(first.len(), 2, "the window holds two requests");
    let (refuser, refused) = first[0];

    // Refuse the first fragment until its retry has to wait.
    let mut waited = false;
    for _ in 0..8 {
        sink.0.clear();
        let reply = Reply::Stored {
            from: PeerInfo { id: NodeId(0), addr: refuser },
            hash: refused,
            outcome: StoreOutcome::Full,
            holders: HolderList::new(),
        };
        upload.handle_reply(now, &mut node, &reply, &mut sink);
        let resent = store_requests(&sink).iter().any(|(_, h)| *h == refused);
        if !resent {
            waited = true;
            break;
        }
    }
    assert!(waited, "after a few refusals the fragment waits before it is asked again");
    assert_eq!(upload.poll_timeout().map(|t| t > now), Some(true));

    // Drive the upload's timers, answering nothing, for a second of
    // virtual time: every wake-up must do something or move the next one
    // forward.
    for _ in 0..10_000 {
        let Some(at) = upload.poll_timeout() else { break };
        if at > now + Duration::from_secs(1) {
            break;
        }
        now = now.max(at);
        sink.0.clear();
        upload.handle_timeout(now, &mut node, &mut sink);
        let progressed = !sink.0.is_empty() || upload.is_done();
        let next = upload.poll_timeout();
        assert!(
            progressed || next.is_none_or(|next| next > now),
            "now {now}, upload asks to be woken at {} and sent nothing",
            next.unwrap()
        );
    }
}
