//! What `dhtnode` tells its operator beyond the core's events: neighbors
//! that come back after being declared dead, and the repair that follows
//! a change among the shard's members, with its counts.
//!
//! The core says when a neighbor is declared dead ([`Event::NeighborDead`])
//! but not when it returns, nor when a repair scan starts or ends (the
//! microcontroller build has no flash for more events). What the node
//! shows tells it instead: its neighbor table, whether its repair scan
//! runs ([`Node::is_repairing`]), its fetch table and its counters. The
//! watch looks at them when an event comes, every [`CHECK_EVERY`] while a
//! repair runs and every 2 s while a dead neighbor may return (for an
//! hour); a node with nothing to watch is not woken.

use std::collections::HashMap;

use dht_core::counters::Counters;
use dht_core::node::Event;
use dht_core::store::FragmentStore;
use dht_core::time::{Duration, Instant};
use dht_core::wire::MessageKind;
use dht_core::{Node, PeerAddr, PeerInfo};

/// How often the watch looks while a repair runs.
pub const CHECK_EVERY: Duration = Duration::from_millis(500);

/// How often it looks for dead neighbors' return otherwise.
const RETURN_CHECK_EVERY: Duration = Duration::from_secs(2);

/// Dead neighbors remembered, waiting for their return (the oldest is
/// forgotten beyond this).
const DEAD_REMEMBERED: usize = 256;

/// How long a dead neighbor is waited for.
const DEAD_FORGOTTEN: Duration = Duration::from_secs(3600);

/// Counters at the start of a repair.
#[derive(Clone, Copy, Debug)]
struct RepairStart {
    at: Instant,
    offers: u64,
    fetched: u64,
    abandoned: u64,
}

impl RepairStart {
    fn of(at: Instant, counters: &Counters) -> Self {
        RepairStart {
            at,
            offers: counters.sent_of(MessageKind::NewFile).datagrams,
            fetched: counters.fetches_completed,
            abandoned: counters.fetches_abandoned,
        }
    }
}

/// The watch: dead neighbors waited for, and the repair running.
#[derive(Debug, Default)]
pub struct Watch {
    dead: HashMap<PeerAddr, (PeerInfo, Instant)>,
    repair: Option<RepairStart>,
    /// Why the repair started, for its first line.
    cause: Option<String>,
}

impl Watch {
    /// A watch with nothing watched.
    pub fn new() -> Self {
        Watch::default()
    }

    /// When the watch wants to look next, if anything is watched.
    pub fn poll_timeout(&self, last: Instant) -> Option<Instant> {
        if self.repair.is_some() {
            Some(last + CHECK_EVERY)
        } else {
            (!self.dead.is_empty()).then(|| last + RETURN_CHECK_EVERY)
        }
    }

    /// A node event: a dead neighbor is waited for, and a dead mate starts
    /// a repair.
    pub fn on_event<S: FragmentStore>(&mut self, now: Instant, node: &Node<S>, event: &Event) {
        if let Event::NeighborDead(peer) = event {
            if self.dead.len() >= DEAD_REMEMBERED {
                let oldest = self.dead.iter().min_by_key(|(_, (_, at))| *at).map(|(a, _)| *a);
                if let Some(oldest) = oldest {
                    self.dead.remove(&oldest);
                }
            }
            self.dead.insert(peer.addr, (*peer, now));
            if peer.id.shard() == node.shard() && self.repair.is_none() {
                self.cause = Some(format!("{peer} of this shard is dead"));
            }
        }
        // Only the repair's state: an upload brings an event per fragment
        // stored, and the dead neighbors are looked up on the timer.
        self.look_at_repair(now, node);
    }

    /// Looks at the node: logs the neighbors that are back and the start
    /// and end of a repair.
    pub fn look<S: FragmentStore>(&mut self, now: Instant, node: &Node<S>) {
        self.look_for_returns(now, node);
        self.look_at_repair(now, node);
    }

    /// Logs the dead neighbors that are back in the table.
    fn look_for_returns<S: FragmentStore>(&mut self, now: Instant, node: &Node<S>) {
        let table = node.neighbors();
        self.dead.retain(|addr, (peer, since)| {
            let back = table.get_addr(*addr).is_some_and(|n| n.peer.id == peer.id);
            if back {
                log::info!(
                    "neighbor {peer} is back, {} s after it was declared dead",
                    (now - *since).total_millis() / 1000
                );
            }
            !back && now - *since < DEAD_FORGOTTEN
        });
    }

    /// Logs the start and the end of a repair.
    fn look_at_repair<S: FragmentStore>(&mut self, now: Instant, node: &Node<S>) {
        let scanning = node.is_repairing();
        let busy = scanning || node.pending_fetches() > 0;
        match self.repair {
            None if scanning || self.cause.is_some() => {
                let held = node.store().len();
                let cause =
                    self.cause.take().unwrap_or_else(|| "the shard's members changed".into());
                log::info!("repair started: {cause}; checking the {held} fragments held");
                self.repair = Some(RepairStart::of(now, node.counters()));
            }
            Some(start) if !busy => {
                let counters = node.counters();
                let offers = counters.sent_of(MessageKind::NewFile).datagrams - start.offers;
                let fetched = counters.fetches_completed - start.fetched;
                let abandoned = counters.fetches_abandoned - start.abandoned;
                log::info!(
                    "repair finished in {:.1} s: {offers} fragments offered to mates, {fetched} \
                     copies fetched here, {abandoned} fetches given up; {} fragments held",
                    (now - start.at).total_millis() as f64 / 1000.0,
                    node.store().len()
                );
                self.repair = None;
            }
            _ => {}
        }
    }
}
