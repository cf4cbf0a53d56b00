//! Replication: storing, serving, announcing and fetching fragments,
//! repairing copies after membership changes, and handing off on leave.
//!
//! Under bounded replication a fragment belongs to the `R` members of its
//! shard ranked first by [`Holders`]. The member that receives an upload
//! stores it and announces it (a NEWFILE to each other holder, remembered
//! until acknowledged: [`announce`]); a member told of a fragment it should
//! hold fetches it (FILEGET, with retries to the announcer and to other
//! holders: [`fetch`]). When a mate joins or dies, each member walks its
//! store and announces the fragments whose top `R` changed ([`repair`]). A
//! member leaving hands off what would fall below `R` copies without it
//! ([`handoff`]). A HOLDINGS page to a random mate every maintenance round
//! is the slow backstop for anything these miss.

mod announce;
mod fetch;
mod handoff;
mod repair;

use heapless::Vec;

use super::Ctx;
use crate::config::{Config, Role};
use crate::counters::DropReason;
use crate::flow::AdvertisedWindows;
use crate::fragment::{FragmentBytes, FragmentHash};
use crate::holders::{Holders, Rank, MAX_COPIES};
use crate::id::{PeerAddr, PeerInfo};
use crate::neighbors::NeighborTable;
use crate::node::{Event, Transmit};
use crate::store::{FragmentStore, StoreError};
use crate::time::Instant;
use crate::wire::{FragMode, HashList, HolderList, Message, Source, StoreOutcome};

pub(crate) use announce::Announcements;
pub(crate) use fetch::Fetches;
pub(crate) use handoff::Handoff;
pub(crate) use repair::RepairScan;

/// How this node sees the holders of its shard's fragments.
pub(crate) struct View<'a, const N: usize> {
    pub(crate) config: &'a Config,
    pub(crate) table: &'a NeighborTable<N>,
    pub(crate) me: PeerInfo,
    /// Whether the node takes new fragments (not while it leaves).
    pub(crate) accepting: bool,
}

impl<const N: usize> View<'_, N> {
    /// The top `copies` holders of `hash` among the known members of its
    /// shard, with this node unless `without_me`, best first.
    pub(crate) fn top(
        &self,
        hash: &FragmentHash,
        copies: usize,
        with_me: bool,
    ) -> Holders<MAX_COPIES> {
        let me = with_me.then_some(self.me);
        Holders::of_shard(hash, self.table, me, copies, Rank::ByScore)
    }

    /// The replication factor, clamped to what the ranking computes.
    fn copies(&self) -> Option<usize> {
        self.config.copies().map(|r| r.clamp(1, MAX_COPIES))
    }

    /// Whether this node should hold `hash`: a member of its shard, and
    /// under bounded replication among its top copies.
    pub(crate) fn should_hold(&self, hash: &FragmentHash) -> bool {
        if self.config.role != Role::Member || hash.shard() != self.me.shard() {
            return false;
        }
        match self.copies() {
            None => true,
            Some(copies) => self.top(hash, copies, true).contains(self.me.id),
        }
    }

    /// The members other than this node that should hold `hash`, as this
    /// node sees its shard, to point a client at them.
    pub(crate) fn suggested_holders(&self, hash: &FragmentHash) -> HolderList {
        let mut holders = HolderList::new();
        if hash.shard() != self.me.shard() {
            return holders;
        }
        let copies = self.copies().unwrap_or(crate::wire::MAX_SUGGESTED_HOLDERS);
        for peer in self.top(hash, copies, false).iter() {
            if holders.push(peer).is_err() {
                break;
            }
        }
        holders
    }

    /// The known members that should hold `hash` besides this node.
    pub(crate) fn replica_targets(&self, hash: &FragmentHash) -> Vec<PeerInfo, N> {
        let mut out: Vec<PeerInfo, N> = Vec::new();
        match self.copies() {
            None => {
                for n in self.table.members_of(hash.shard()) {
                    let _ = out.push(n.peer);
                }
            }
            Some(copies) => {
                for peer in self.top(hash, copies, true).iter().filter(|p| p.id != self.me.id) {
                    let _ = out.push(peer);
                }
            }
        }
        out
    }
}

/// Replication's state: fetches, announcements, the repair scan, the
/// hand-off of a leave, and where the next HOLDINGS page starts.
pub(crate) struct Replication<const F: usize> {
    pub(crate) fetches: Fetches<F>,
    announcements: Announcements<F>,
    repair: RepairScan,
    pub(crate) handoff: Handoff,
    holdings_cursor: usize,
}

impl<const F: usize> Replication<F> {
    pub(crate) const fn new() -> Self {
        Replication {
            fetches: Fetches::new(),
            announcements: Announcements::new(),
            repair: RepairScan::new(),
            handoff: Handoff::new(),
            holdings_cursor: 0,
        }
    }

    pub(crate) fn poll_timeout(&self, config: &Config) -> Option<Instant> {
        [
            self.fetches.poll_timeout(config),
            self.announcements.poll_timeout(),
            self.repair.poll_timeout(),
            self.handoff.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Fetch retries, announcement retries, a repair batch, the hand-off.
    pub(crate) fn handle_timeout<S: FragmentStore, const N: usize>(
        &mut self,
        ctx: &mut Ctx<'_, impl Transmit>,
        store: &mut S,
        view: &View<'_, N>,
        windows: &AdvertisedWindows<16>,
    ) {
        self.fetches.expire(ctx, view);
        self.fetches.pump(ctx);
        self.announcements.retry(ctx, store);
        self.repair.run(ctx, store, view, &mut self.announcements);
        self.handoff.run(ctx, store, view, windows);
    }

    /// Stops everything (the node left).
    pub(crate) fn stop(&mut self) {
        self.fetches.clear();
        self.announcements.clear();
        self.repair = RepairScan::new();
        self.handoff = Handoff::new();
    }

    /// A member of this node's shard joined (`added`) or left.
    pub(crate) fn membership_changed<S: FragmentStore>(
        &mut self,
        config: &Config,
        now: Instant,
        store: &S,
        peer: PeerInfo,
        added: bool,
    ) {
        if config.role == Role::Member && !store.is_empty() {
            self.repair.changed(now, peer, added);
        }
    }

    /// Changes were lost: repair announces every fragment whose holders
    /// may have changed.
    pub(crate) fn membership_overflowed<S: FragmentStore>(
        &mut self,
        config: &Config,
        now: Instant,
        store: &S,
    ) {
        if config.role == Role::Member && !store.is_empty() {
            self.repair.overflowed(now);
        }
    }

    /// `addr` left or died: nothing it was asked will be answered.
    pub(crate) fn peer_gone(&mut self, addr: PeerAddr) {
        self.handoff.peer_gone(addr);
        self.fetches.peer_gone(addr);
    }

    /// STORED from `from`: an announcement or a hand-off is acknowledged.
    /// Returns whether it was one of ours.
    pub(crate) fn on_stored<S: FragmentStore, const N: usize>(
        &mut self,
        ctx: &mut Ctx<'_, impl Transmit>,
        store: &mut S,
        view: &View<'_, N>,
        windows: &AdvertisedWindows<16>,
        from: PeerAddr,
        hash: &FragmentHash,
    ) -> bool {
        if self.handoff.answered(from, hash) {
            // The hand-off moves on at once rather than at its next timer.
            self.handoff.run(ctx, store, view, windows);
            return true;
        }
        self.announcements.acked(from, hash)
    }

    /// NOTFOUND from `from` for `hash`: a fetch from it failed. Returns
    /// whether it was one of ours.
    pub(crate) fn on_notfound<const N: usize>(
        &mut self,
        ctx: &mut Ctx<'_, impl Transmit>,
        view: &View<'_, N>,
        from: PeerAddr,
        hash: &FragmentHash,
    ) -> bool {
        if !self.fetches.refused(ctx.now, from, hash) {
            return false;
        }
        self.fetches.expire(ctx, view);
        self.fetches.pump(ctx);
        true
    }

    /// A store request whose bytes hash right: an upload (from a client,
    /// or a node of another shard) is stored only by a member that should
    /// hold the fragment; a mate's store request (a hand-off) is always
    /// taken. Returns the fragment if it was newly stored (to be announced
    /// to its other holders).
    pub(crate) fn on_store_request<S: FragmentStore, const N: usize>(
        &mut self,
        ctx: &mut Ctx<'_, impl Transmit>,
        store: &mut S,
        view: &View<'_, N>,
        source: Source,
        hash: FragmentHash,
        data: &FragmentBytes,
    ) -> Option<FragmentHash> {
        let from_mate = source.member && source.id.shard() == view.me.shard();
        let redirect = !from_mate
            && ctx.config.role == Role::Member
            && hash.shard() == view.me.shard()
            && !store.contains(&hash)
            && !view.should_hold(&hash);
        let (outcome, holders) = if redirect {
            (StoreOutcome::NotHolder, view.suggested_holders(&hash))
        } else {
            (accept_store(ctx, store, view, &hash, data), HolderList::new())
        };
        ctx.send(source.addr, &Message::Stored { hash, outcome, holders });
        (outcome == StoreOutcome::Stored).then_some(hash)
    }

    /// A fragment whose bytes hash right, answering a FILEGET. If it answers
    /// one of our fetches it is stored, and returned if newly stored;
    /// otherwise it is the application's (`Err`).
    pub(crate) fn on_fetched<S: FragmentStore, const N: usize>(
        &mut self,
        ctx: &mut Ctx<'_, impl Transmit>,
        store: &mut S,
        view: &View<'_, N>,
        hash: FragmentHash,
        data: &FragmentBytes,
    ) -> Result<Option<FragmentHash>, ()> {
        if !self.fetches.completed(&hash) {
            return Err(());
        }
        ctx.out.counters.fetches_completed = ctx.out.counters.fetches_completed.saturating_add(1);
        let stored = accept_store(ctx, store, view, &hash, data) == StoreOutcome::Stored;
        self.fetches.pump(ctx);
        Ok(stored.then_some(hash))
    }

    /// Answers a FILEGET: the fragment read straight into the datagram and
    /// checked, or NOTFOUND naming the holders.
    pub(crate) fn serve<S: FragmentStore, const N: usize>(
        &mut self,
        ctx: &mut Ctx<'_, impl Transmit>,
        store: &mut S,
        view: &View<'_, N>,
        to: PeerAddr,
        hash: FragmentHash,
    ) {
        // A holder fetching what we announced acknowledges the announcement.
        self.announcements.acked(to, &hash);
        let held = ctx.config.role == Role::Member && store.contains(&hash);
        if held && send_stored(ctx, store, to, hash, FragMode::Answer) {
            ctx.out.counters.fragments_served = ctx.out.counters.fragments_served.saturating_add(1);
            return;
        }
        let holders = view.suggested_holders(&hash);
        ctx.send(to, &Message::NotFound { hash, holders });
    }

    /// A NEWFILE: `from` holds `hash`. `targeted` if it was sent to this
    /// node alone (a mate telling its view of the holders).
    pub(crate) fn on_newfile<S: FragmentStore, const N: usize>(
        &mut self,
        ctx: &mut Ctx<'_, impl Transmit>,
        store: &S,
        view: &View<'_, N>,
        from: PeerInfo,
        hash: FragmentHash,
        targeted: bool,
    ) {
        // A mate's announcement to us alone says its view of the shard puts
        // us among the holders; views can differ while the shard's
        // membership settles, and the announcer's word is what keeps the
        // copies at R then. A flooded announcement asks nobody in
        // particular.
        let mine = view.me.shard();
        let asked = targeted && from.shard() == mine && hash.shard() == mine;
        if targeted && store.contains(&hash) {
            // Acknowledge, so the announcer stops asking.
            let outcome = StoreOutcome::AlreadyHeld;
            ctx.send(from.addr, &Message::Stored { hash, outcome, holders: HolderList::new() });
            return;
        }
        self.fetches.want(ctx, store, view, from, hash, asked);
        self.fetches.pump(ctx);
    }

    /// A mate's HOLDINGS page: fetch those we should hold and lack.
    pub(crate) fn on_holdings<S: FragmentStore, const N: usize>(
        &mut self,
        ctx: &mut Ctx<'_, impl Transmit>,
        store: &S,
        view: &View<'_, N>,
        from: PeerInfo,
        hashes: &HashList,
    ) {
        for hash in hashes.iter() {
            if self.fetches.is_full() {
                break;
            }
            self.fetches.want(ctx, store, view, from, *hash, false);
        }
        self.fetches.pump(ctx);
    }

    /// Sends the next page of this node's holdings to `to`, a member of its
    /// shard. Successive pages walk the whole store and wrap around.
    pub(crate) fn send_holdings<S: FragmentStore>(
        &mut self,
        ctx: &mut Ctx<'_, impl Transmit>,
        store: &S,
        to: PeerAddr,
    ) {
        let held = store.len();
        if held == 0 {
            return;
        }
        if self.holdings_cursor >= held {
            self.holdings_cursor = 0;
        }
        let mut hashes = HashList::new();
        while !hashes.is_full() && self.holdings_cursor < held {
            if let Some(hash) = store.hash_at(self.holdings_cursor) {
                let _ = hashes.push(hash);
            }
            self.holdings_cursor += 1;
        }
        ctx.send(to, &Message::Holdings { hashes });
    }

    /// Announces `hash` to its other holders (not `except`).
    pub(crate) fn announce_to_holders<const N: usize>(
        &mut self,
        ctx: &mut Ctx<'_, impl Transmit>,
        view: &View<'_, N>,
        hash: FragmentHash,
        except: Option<PeerAddr>,
    ) {
        for peer in view.replica_targets(&hash).iter().filter(|p| Some(p.addr) != except) {
            ctx.send(peer.addr, &Message::NewFile { hash });
            self.announcements.expect_ack(ctx.now, hash, peer.addr);
        }
    }

    /// Starts the hand-off of a leave; `false` if there is nothing to hand
    /// off (the node may leave at once).
    pub(crate) fn start_handoff<S: FragmentStore, const N: usize>(
        &mut self,
        ctx: &mut Ctx<'_, impl Transmit>,
        store: &mut S,
        view: &View<'_, N>,
        windows: &AdvertisedWindows<16>,
    ) -> bool {
        let hands_off =
            ctx.config.role == Role::Member && ctx.config.copies().is_some() && !store.is_empty();
        if hands_off {
            self.handoff.start(ctx.now + ctx.config.leave_timeout);
            self.handoff.run(ctx, store, view, windows);
        }
        hands_off
    }
}

/// Decides on and performs a store of a verified fragment.
fn accept_store<S: FragmentStore, const N: usize>(
    ctx: &mut Ctx<'_, impl Transmit>,
    store: &mut S,
    view: &View<'_, N>,
    hash: &FragmentHash,
    data: &FragmentBytes,
) -> StoreOutcome {
    if ctx.config.role != Role::Member || !view.accepting {
        ctx.out.drop(DropReason::NotServed);
        return StoreOutcome::Failed;
    }
    if hash.shard() != view.me.shard() {
        ctx.out.drop(DropReason::WrongShard);
        return StoreOutcome::WrongShard;
    }
    if store.contains(hash) {
        return StoreOutcome::AlreadyHeld;
    }
    match store.store(hash, data) {
        Ok(()) => {
            ctx.out.counters.fragments_stored = ctx.out.counters.fragments_stored.saturating_add(1);
            ctx.out.event(Event::FragmentStored(*hash));
            StoreOutcome::Stored
        }
        Err(StoreError::Full) => {
            ctx.out.drop(DropReason::StoreFull);
            StoreOutcome::Full
        }
        Err(StoreError::Failed) => {
            ctx.out.drop(DropReason::StoreError);
            StoreOutcome::Failed
        }
    }
}

/// Sends the stored fragment `hash` to `to` in `mode`, read from the store
/// straight into the datagram and checked against its hash; a fragment that
/// fails the check is removed. Returns whether it was sent.
pub(crate) fn send_stored<S: FragmentStore>(
    ctx: &mut Ctx<'_, impl Transmit>,
    store: &mut S,
    to: PeerAddr,
    hash: FragmentHash,
    mode: FragMode,
) -> bool {
    let Some((len, body)) = ctx.out.fragment_body(mode, &hash) else { return false };
    match store.read(&hash, body) {
        Ok(true) if hash.verifies(body) => ctx.out.send_fragment(ctx.sink, to, len),
        Ok(true) => {
            let _ = store.remove(&hash);
            ctx.out.drop(DropReason::CorruptStored);
            ctx.out.event(Event::CorruptFragmentRemoved(hash));
            false
        }
        Ok(false) => false,
        Err(_) => {
            ctx.out.drop(DropReason::StoreError);
            false
        }
    }
}
