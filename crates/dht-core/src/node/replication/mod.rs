//! Replication: taking offered fragments, serving them, announcing them,
//! repairing copies after membership changes, and handing off on leave.
//!
//! Fragments move only by pull. A node that has a fragment *offers* it
//! (NEWFILE); a member that should hold it *fetches* it (FILEGET naming
//! the units it lacks, answered by FILEFRAG pieces that fit a datagram) and
//! answers STORED once the whole fragment hashes right. The FILEGET is the
//! acknowledgement of selective repeat: a fetch that stalls asks again for
//! the missing units only ([`fetch`]). The member that takes an upload
//! offers it to the other holders (remembered until acknowledged:
//! [`announce`]); when a mate joins or dies, each member walks its store and
//! offers the fragments whose top `R` changed ([`repair`]); a member leaving
//! offers what would fall below `R` copies without it to the member that
//! replaces it ([`handoff`]). A HOLDINGS page to a random mate every
//! maintenance round is the slow backstop for anything these miss.
//!
//! A stranger cannot fill a store: an offer is taken only by a member that
//! should hold the fragment (or told so by a mate among its holders), and
//! offers cost their sender a token of its store budget.

mod announce;
mod fetch;
mod gc;
mod handoff;
mod repair;

use heapless::Vec;

use super::membership::Lifecycle;
use super::Ctx;
use crate::config::{Config, Role};
use crate::counters::DropReason;
use crate::flow::AdvertisedWindows;
use crate::fragment::FragmentHash;
#[cfg(doc)]
use crate::holders::SHARD_COPIES;
use crate::holders::{Holders, Placement, MAX_COPIES};
use crate::id::{PeerAddr, PeerInfo};
use crate::neighbors::NeighborTable;
use crate::node::{Event, Transmit};
use crate::store::FragmentStore;
use crate::time::Instant;
use crate::wire::{HashList, HolderList, Message, StoreOutcome};

pub(crate) use announce::Announcements;
pub(crate) use fetch::Fetches;
pub(crate) use handoff::Handoff;
pub(crate) use repair::RepairScan;

/// How this node sees the holders of its shard's fragments.
#[derive(Clone, Copy)]
pub(crate) struct View<'a, const N: usize> {
    pub(crate) config: &'a Config,
    pub(crate) table: &'a NeighborTable<N>,
    pub(crate) me: PeerInfo,
    /// Whether the node takes new fragments (not while it leaves).
    pub(crate) accepting: bool,
    /// Whether this node's store is full (it then ranks as no holder).
    pub(crate) full: bool,
}

impl<'a, const N: usize> View<'a, N> {
    /// The view of a node with this table, in this stage of its life.
    pub(crate) fn of<T>(ctx: &Ctx<'a, T>, table: &'a NeighborTable<N>, life: Lifecycle) -> Self {
        View {
            config: ctx.config,
            table,
            me: ctx.out.me(),
            accepting: !matches!(life, Lifecycle::Leaving | Lifecycle::Left),
            full: ctx.out.source.full,
        }
    }
}

impl<const N: usize> View<'_, N> {
    /// The top `copies` holders of `hash` among the known members of this
    /// node's shard, with this node if `with_me`, best first. Callers ask
    /// only of fragments this node's shard keeps ([`View::covers`]).
    pub(crate) fn top(
        &self,
        hash: &FragmentHash,
        copies: usize,
        with_me: bool,
    ) -> Holders<MAX_COPIES> {
        let me = (with_me && !self.full).then_some(self.me);
        Holders::of_shard_in(hash, self.me.shard(), self.table, me, copies)
    }

    /// Where the copies of a fragment whose recorded count is `extra`
    /// (NEWFILE's `copies`) go: the network's `R` in its own shard for 0,
    /// else that count ([`Placement::counted`]); `None` under whole-shard
    /// replication.
    pub(crate) fn placement(&self, extra: u8) -> Option<Placement> {
        let placement =
            |r: usize| if extra == 0 { Placement::home(r) } else { Placement::counted(extra) };
        self.config.copies().map(placement)
    }

    /// The copies this node's shard keeps of a fragment whose recorded
    /// count is `extra`, clamped to what the ranking computes.
    pub(crate) fn copies_with(&self, extra: u8) -> Option<usize> {
        self.placement(extra).map(|p| p.per_shard)
    }

    /// Whether this node's shard keeps copies of `hash` (of count
    /// `extra`): its own shard, or one its copies are spread to.
    pub(crate) fn covers(&self, hash: &FragmentHash, extra: u8) -> bool {
        match self.placement(extra) {
            Some(placement) => placement.covers(hash, self.me.shard()),
            None => hash.shard() == self.me.shard(),
        }
    }

    /// Whether this node should hold `hash`, whose recorded copy count is
    /// `extra`: a member of a shard that keeps it, and under bounded
    /// replication among that shard's top copies.
    pub(crate) fn should_hold(&self, hash: &FragmentHash, extra: u8) -> bool {
        if self.config.role != Role::Member || !self.covers(hash, extra) {
            return false;
        }
        match self.copies_with(extra) {
            None => true,
            Some(copies) => self.top(hash, copies, true).contains(self.me.id),
        }
    }

    /// Whether `peer`, a mate, is among the holders of `hash` as this
    /// node sees its shard (under whole-shard replication: any member).
    fn ranks_as_holder(&self, hash: &FragmentHash, peer: &PeerInfo, extra: u8) -> bool {
        let mate = peer.shard() == self.me.shard() && self.table.contains_addr(peer.addr);
        if !mate || !self.covers(hash, extra) {
            return false;
        }
        match self.copies_with(extra) {
            None => true,
            Some(copies) => self.top(hash, copies, true).contains(peer.id),
        }
    }

    /// Whether `peer` is a known member of `hash`'s own shard offering a
    /// fragment whose copies are spread to this node's shard: a holder
    /// there passing it on ([`View::replica_targets`]). Its view of this
    /// shard is a sample, so it may not name the top: the copy is taken,
    /// passed to the top here, and dropped later if extra.
    fn spread_from_home(&self, hash: &FragmentHash, peer: &PeerInfo, extra: u8) -> bool {
        self.me.shard() != hash.shard()
            && peer.shard() == hash.shard()
            && self.table.contains_addr(peer.addr)
            && self.covers(hash, extra)
    }

    /// The members other than this node that should hold `hash` (of copy
    /// count `extra`, 0 for `R`), as this node sees its shard, to point a
    /// client or a node passing it on at them.
    pub(crate) fn suggested_holders(&self, hash: &FragmentHash, extra: u8) -> HolderList {
        let mut holders = HolderList::new();
        if !self.covers(hash, extra) {
            return holders;
        }
        let copies = self.copies_with(extra).unwrap_or(crate::wire::MAX_SUGGESTED_HOLDERS);
        for peer in self.top(hash, copies, false).iter() {
            if holders.push(peer).is_err() {
                break;
            }
        }
        holders
    }

    /// The known members that should hold `hash` (of copy count `extra`)
    /// besides this node; from a member of its own shard also the best
    /// known member of every other shard its copies are spread to, which
    /// passes it to the top of its shard.
    pub(crate) fn replica_targets(&self, hash: &FragmentHash, extra: u8) -> Vec<PeerInfo, N> {
        let mut out: Vec<PeerInfo, N> = Vec::new();
        let Some(placement) = self.placement(extra) else {
            for n in self.table.members_of(hash.shard()) {
                let _ = out.push(n.peer);
            }
            return out;
        };
        let copies = placement.per_shard;
        for peer in self.top(hash, copies, true).iter().filter(|p| p.id != self.me.id) {
            let _ = out.push(peer);
        }
        if self.me.shard() == hash.shard() {
            for shard in placement.shards(hash).skip(1) {
                let best = Holders::<1>::of_shard_in(hash, shard, self.table, None, 1);
                for peer in best.iter() {
                    let _ = out.push(peer);
                }
            }
        }
        out
    }
}

/// An offer received (a NEWFILE that proved its address).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Offer {
    /// The originator as it says it is.
    pub(crate) from: PeerInfo,
    /// The address it came from (answers and the fetch go there).
    pub(crate) addr: PeerAddr,
    pub(crate) hash: FragmentHash,
    /// Fetch at once (an upload, a hand-off) rather than after the
    /// replication delay.
    pub(crate) urgent: bool,
    /// The copy count it carries (0: `R`).
    pub(crate) copies: u8,
    /// Whether the sender had a token of its store budget left.
    pub(crate) budget: bool,
}

/// Replication's state: fetches, announcements, the repair scan, the
/// hand-off of a leave, and where the next HOLDINGS page starts.
#[derive(Clone)]
pub(crate) struct Replication<const F: usize> {
    pub(crate) fetches: Fetches<F>,
    announcements: Announcements<F>,
    repair: RepairScan,
    pub(crate) handoff: Handoff,
    holdings_cursor: usize,
    gc: gc::Collector,
}

impl<const F: usize> Replication<F> {
    pub(crate) const fn new() -> Self {
        Replication {
            fetches: Fetches::new(),
            announcements: Announcements::new(),
            repair: RepairScan::new(),
            handoff: Handoff::new(),
            holdings_cursor: 0,
            gc: gc::Collector::new(),
        }
    }

    /// The maintenance round's share: a full store looks for room again,
    /// and extra copies are collected.
    pub(crate) fn maintain<S: FragmentStore, const N: usize>(
        &mut self,
        ctx: &mut Ctx<'_, impl Transmit>,
        store: &mut S,
        view: &View<'_, N>,
    ) {
        if ctx.out.source.full && store.can_store() {
            ctx.out.source.full = false;
            log::info!("{}: the store has room again", view.me.addr);
            ctx.out.event(Event::StoreAvailable { held: store.len() as u32 });
            tell_mates(ctx, view);
        }
        if ctx.config.role == Role::Member && view.accepting {
            self.gc.round(ctx, store, view);
        }
    }

    /// The store could not take a fragment: this node stops taking any,
    /// its mates are told (the flag rides in every datagram's source) and
    /// rank the next member in its place, until the store has room again
    /// (see [`Replication::maintain`]). Reported once per condition.
    fn store_full<const N: usize>(&mut self, ctx: &mut Ctx<'_, impl Transmit>, view: &View<'_, N>) {
        if ctx.out.source.full {
            return;
        }
        ctx.out.source.full = true;
        ctx.out.counters.store_full = ctx.out.counters.store_full.saturating_add(1);
        ctx.out.event(Event::StoreFull);
        tell_mates(ctx, view);
    }

    /// Whether the last fetch work found the store full, or filled it;
    /// handles it.
    fn check_full<S: FragmentStore, const N: usize>(
        &mut self,
        ctx: &mut Ctx<'_, impl Transmit>,
        store: &S,
        view: &View<'_, N>,
    ) {
        let found_full = self.fetches.take_full();
        if found_full || (store.len() >= store.capacity() && ctx.config.role == Role::Member) {
            self.store_full(ctx, view);
        }
    }

    pub(crate) fn poll_timeout(&self, config: &Config) -> Option<Instant> {
        self.timeouts(config).into_iter().flatten().min()
    }

    /// Whether a repair scan of the store runs (after a change among the
    /// shard's members, or a lost announcement).
    pub(crate) fn repairing(&self) -> bool {
        self.repair.poll_timeout().is_some()
    }

    /// The wake-ups of fetches, announcements, repair and hand-off.
    pub(crate) fn timeouts(&self, config: &Config) -> [Option<Instant>; 4] {
        [
            self.fetches.poll_timeout(config),
            self.announcements.poll_timeout(),
            self.repair.poll_timeout(),
            self.handoff.poll_timeout(),
        ]
    }

    /// Fetch retries, announcement retries, a repair batch, the hand-off.
    pub(crate) fn handle_timeout<S: FragmentStore, const N: usize>(
        &mut self,
        ctx: &mut Ctx<'_, impl Transmit>,
        store: &mut S,
        view: &View<'_, N>,
        windows: &AdvertisedWindows<16>,
    ) {
        self.fetches.expire(ctx, store, view);
        self.fetches.pump(ctx);
        self.check_full(ctx, store, view);
        self.announcements.retry(ctx, store);
        self.repair.run(ctx, store, view, &mut self.announcements);
        self.handoff.run(ctx, store, view, windows);
    }

    /// Stops everything (the node left).
    pub(crate) fn stop<S: FragmentStore>(&mut self, store: &mut S) {
        self.fetches.clear(store);
        self.announcements.clear();
        self.gc.clear();
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
    pub(crate) fn peer_gone(&mut self, now: Instant, addr: PeerAddr) {
        self.handoff.peer_gone(now, addr);
        self.fetches.peer_gone(now, addr);
    }

    /// STORED from `from` for `hash`: an announcement or a hand-off is
    /// acknowledged. Returns whether it was one of ours.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_stored<S: FragmentStore, const N: usize>(
        &mut self,
        ctx: &mut Ctx<'_, impl Transmit>,
        store: &mut S,
        view: &View<'_, N>,
        windows: &AdvertisedWindows<16>,
        from: PeerAddr,
        hash: &FragmentHash,
        outcome: StoreOutcome,
    ) -> bool {
        if self.gc.answered(from, hash, outcome.is_held()) {
            return true;
        }
        if self.handoff.answered(ctx.now, from, hash, outcome.is_held()) {
            // The hand-off moves on at once rather than at its next timer.
            self.handoff.run(ctx, store, view, windows);
            return true;
        }
        let settled = !matches!(outcome, StoreOutcome::Busy | StoreOutcome::Failed);
        self.announcements.answered(from, hash, settled)
    }

    /// NOTFOUND from `from` for `hash`: a fetch from it failed. Returns
    /// whether it was one of ours.
    pub(crate) fn on_notfound<S: FragmentStore, const N: usize>(
        &mut self,
        ctx: &mut Ctx<'_, impl Transmit>,
        store: &mut S,
        view: &View<'_, N>,
        from: PeerAddr,
        hash: &FragmentHash,
    ) -> bool {
        if !self.fetches.refused(ctx.now, from, hash) {
            return false;
        }
        self.fetches.retry_refused(ctx, store, view);
        self.fetches.pump(ctx);
        true
    }

    /// A piece from `from`: if it is for one of our fetches it is written
    /// to the store, and a fragment complete and right is kept, acknowledged
    /// to whoever offered it and announced to its other holders. Returns
    /// whether it was for one of our fetches (if not, it is the
    /// application's).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_piece<S: FragmentStore, const N: usize>(
        &mut self,
        ctx: &mut Ctx<'_, impl Transmit>,
        store: &mut S,
        view: &View<'_, N>,
        from: PeerAddr,
        hash: &FragmentHash,
        first_unit: u8,
        data: &[u8],
    ) -> bool {
        let Some(done) = self.fetches.on_piece(ctx, store, from, hash, first_unit, data) else {
            return false;
        };
        self.check_full(ctx, store, view);
        if let Some(fetch) = done {
            // An upload is announced to the other holders; a copy fetched
            // from a mate was announced by that mate already.
            let from_mate = fetch.origin.shard() == view.me.shard()
                && view.table.contains_addr(fetch.origin.addr);
            if fetch.copies != 0 {
                store.set_copies(hash, fetch.copies);
            }
            if !from_mate {
                let except = [from, fetch.ack.unwrap_or(from)];
                self.announce_to_holders(ctx, view, *hash, fetch.copies, &except);
            }
        }
        self.fetches.pump(ctx);
        true
    }

    /// Answers a FILEGET from `to` (proven): the units wanted of a fragment
    /// held, read from the store and checked; NOTFOUND naming the holders if
    /// a member does not hold it. Returns `false` if it is for the
    /// application (a client serving what it offered).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn serve<S: FragmentStore, const N: usize>(
        &mut self,
        ctx: &mut Ctx<'_, impl Transmit>,
        store: &mut S,
        view: &View<'_, N>,
        to: PeerAddr,
        hash: FragmentHash,
        want: u16,
        piece_units: u8,
    ) -> bool {
        if ctx.config.role != Role::Member {
            return false;
        }
        // A holder fetching what we announced is on it; a hand-off's
        // replacement fetching is making progress.
        self.announcements.fetching(ctx.now, to, &hash);
        self.handoff.progress(ctx.now, ctx.config, to, &hash);
        if store.contains(&hash) {
            let units = usize::from(piece_units).min(usize::from(max_piece_units(ctx.config)));
            let mut failed = false;
            let sent =
                ctx.out.send_pieces(ctx.sink, ctx.jar, ctx.now, to, &hash, want, units, |buf| {
                    match store.read(&hash, buf) {
                        Ok(found) => found,
                        Err(_) => {
                            failed = true;
                            false
                        }
                    }
                });
            if sent {
                ctx.out.counters.fragments_served =
                    ctx.out.counters.fragments_served.saturating_add(1);
                return true;
            }
            if failed {
                ctx.out.drop(DropReason::StoreError);
            } else if store.contains(&hash) {
                // Read back wrong: the copy is corrupt.
                let _ = store.remove(&hash);
                ctx.out.drop(DropReason::CorruptStored);
                ctx.out.event(Event::CorruptFragmentRemoved(hash));
            }
        }
        // Holders of the fragment's own shard only: a client keeps no
        // others ([`crate::client`]'s hints), and outside that shard the
        // count that says who holds it is not known here.
        let holders = view.suggested_holders(&hash, 0);
        ctx.send(to, &Message::NotFound { hash, holders });
        true
    }

    /// An offer: fetch it if this node should hold it, and acknowledge with
    /// STORED (now if it holds it already or will not take it, once stored
    /// otherwise).
    pub(crate) fn on_offer<S: FragmentStore, const N: usize>(
        &mut self,
        ctx: &mut Ctx<'_, impl Transmit>,
        store: &mut S,
        view: &View<'_, N>,
        offer: Offer,
    ) {
        let Offer { from, addr, hash, urgent, copies, budget } = offer;
        let answer = |ctx: &mut Ctx<'_, _>, outcome, holders| {
            ctx.send(addr, &Message::Stored { hash, outcome, holders });
        };
        if ctx.config.role != Role::Member {
            ctx.out.drop(DropReason::NotServed);
            return;
        }
        if store.contains(&hash) {
            answer(ctx, StoreOutcome::AlreadyHeld, HolderList::new());
            // A higher copy count (a file stored plain, then coded, shares
            // its indexes): kept, and told to the holders it adds.
            let total = |extra| view.placement(extra).map(|p| p.total());
            let more = total(copies) > total(store.copies(&hash));
            if more && budget && store.set_copies(&hash, copies) {
                self.announce_to_holders(ctx, view, hash, copies, &[addr]);
            }
            return;
        }
        if !view.covers(&hash, copies) {
            ctx.out.drop(DropReason::WrongShard);
            answer(ctx, StoreOutcome::WrongShard, HolderList::new());
            return;
        }
        if !view.accepting {
            answer(ctx, StoreOutcome::Busy, HolderList::new());
            return;
        }
        if view.full {
            ctx.out.drop(DropReason::StoreFull);
            answer(ctx, StoreOutcome::Full, HolderList::new());
            return;
        }
        // A mate among the holders may say we are one of them: views of the
        // shard differ while its membership settles.
        let sender = PeerInfo { id: from.id, addr };
        let told_by_holder = view.ranks_as_holder(&hash, &sender, copies)
            || view.spread_from_home(&hash, &sender, copies);
        if !view.should_hold(&hash, copies) && !told_by_holder {
            answer(ctx, StoreOutcome::NotHolder, view.suggested_holders(&hash, copies));
            return;
        }
        if self.fetches.nudge(ctx, addr, &hash) {
            // Already fetching it from there: the missing units were asked
            // again.
            return;
        }
        if !budget {
            ctx.out.drop(DropReason::RateLimited);
            answer(ctx, StoreOutcome::Busy, HolderList::new());
            return;
        }
        let origin = PeerInfo { id: from.id, addr };
        match self.fetches.want(ctx, store, origin, hash, Some(addr), urgent, copies) {
            Ok(()) => self.fetches.pump(ctx),
            Err(outcome) => answer(ctx, outcome, HolderList::new()),
        }
        self.check_full(ctx, store, view);
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
            if view.should_hold(hash, 0) && !store.contains(hash) {
                let _ = self.fetches.want(ctx, store, from, *hash, None, false, 0);
            }
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
            // A page carries no copy counts: a fragment stored with one
            // is left to the offers that carry it (announcements, repair,
            // hand-off), else a mate would restore it to R copies.
            if let Some(hash) = store.hash_at(self.holdings_cursor) {
                if store.copies(&hash) == 0 {
                    let _ = hashes.push(hash);
                }
            }
            self.holdings_cursor += 1;
        }
        if hashes.is_empty() {
            return;
        }
        ctx.send(to, &Message::Holdings { hashes });
    }

    /// Offers `hash` (of copy count `copies`) to its other holders (not
    /// those in `except`).
    pub(crate) fn announce_to_holders<const N: usize>(
        &mut self,
        ctx: &mut Ctx<'_, impl Transmit>,
        view: &View<'_, N>,
        hash: FragmentHash,
        copies: u8,
        except: &[PeerAddr],
    ) {
        let targets = view.replica_targets(&hash, copies);
        for peer in targets.iter().filter(|p| !except.contains(&p.addr)) {
            ctx.send(peer.addr, &Message::NewFile { hash, urgent: false, copies });
            if !self.announcements.expect_ack(ctx.now, hash, peer.addr) {
                // Not remembered: a scan of the store makes up for it.
                self.repair.lost(ctx.now);
            }
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

/// Tells the members of this node's shard about it (an ADDME: its source
/// carries whether the store is full).
fn tell_mates<const N: usize>(ctx: &mut Ctx<'_, impl Transmit>, view: &View<'_, N>) {
    for mate in view.table.members_of(view.me.shard()) {
        ctx.send(mate.peer.addr, &Message::AddMe);
    }
}

/// The largest piece, in units, a node with this configuration sends.
pub(crate) fn max_piece_units(config: &Config) -> u8 {
    super::out::piece_units_for(usize::from(config.max_datagram)) as u8
}
