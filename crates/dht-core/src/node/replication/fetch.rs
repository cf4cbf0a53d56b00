//! Fetches: pulling a fragment this node should hold from a node that has
//! it, in pieces, with selective repeat.
//!
//! A fetch asks for the units it lacks (FILEGET with a 16-bit map) in
//! pieces that fit this node's datagrams, and writes each piece that comes
//! straight into the store's slot for the fragment
//! ([`FragmentStore::write_partial`]); once every unit is there the store
//! checks the whole fragment against its hash. A fetch whose pieces stop
//! coming asks the same peer again for the missing units only, as long as
//! pieces came since its last request; one that got nothing is retried,
//! alternately at the node that offered the fragment and at another member
//! that should hold it, and given up after `fetch_attempts`.
//!
//! A fetch of an offer from an uploader or a leaving mate (`urgent`) starts
//! at once, at most `parallel_offers` at a time; one of a replica (an
//! announcement, a repair, a HOLDINGS page) after the configured
//! replication delay plus a random jitter of up to as much again, so that
//! replication yields to the uploads that caused it, at most
//! `parallel_fetches` at a time.

use super::View;
use crate::config::Config;
use crate::counters::DropReason;
use crate::flow::RttEstimator;
use crate::fragment::FragmentHash;
use crate::id::{PeerAddr, PeerInfo};
use crate::node::{Ctx, Event, Transmit};
use crate::requests::{Request, RequestTable};
use crate::store::{FragmentStore, StoreError};
use crate::time::{Duration, Instant};
use crate::wire::{piece_mask, HolderList, Message, StoreOutcome, ALL_UNITS, UNIT};

/// A fragment to fetch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Fetch {
    pub(crate) hash: FragmentHash,
    /// The node that offered or listed the fragment (it has it).
    pub(crate) origin: PeerInfo,
    /// The node the current attempt asks.
    from: PeerInfo,
    /// Units received, bit `i` for unit `i`.
    have: u16,
    /// Whom to tell with STORED once the fragment is stored (the node
    /// that offered it).
    pub(crate) ack: Option<PeerAddr>,
    /// An upload's or a hand-off's: started at once.
    urgent: bool,
    /// The copy count the offer carried (0: `R`), recorded with the
    /// fragment once stored.
    pub(crate) copies: u8,
    /// Pieces came since the last FILEGET.
    progress: bool,
}

/// The fetches in progress.
#[derive(Clone)]
pub(crate) struct Fetches<const F: usize> {
    table: RequestTable<Fetch, F>,
    rtt: RttEstimator,
    /// The store refused a fragment for want of room since the last
    /// [`Fetches::take_full`].
    full: bool,
}

impl<const F: usize> Fetches<F> {
    pub(crate) const fn new() -> Self {
        Fetches {
            table: RequestTable::new(),
            rtt: RttEstimator::new(
                Duration::from_millis(250),
                Duration::from_millis(40),
                Duration::from_secs(2),
            ),
            full: false,
        }
    }

    /// Whether the store was found full since the last call.
    pub(crate) fn take_full(&mut self) -> bool {
        core::mem::replace(&mut self.full, false)
    }

    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    pub(crate) fn is_full(&self) -> bool {
        self.table.is_full()
    }

    /// Gives every fetch up (the node left), forgetting what came of them.
    pub(crate) fn clear<S: FragmentStore>(&mut self, store: &mut S) {
        for request in self.table.iter() {
            store.drop_partial(&request.item.hash);
        }
        self.table.retain(|_| false);
    }

    /// Whether a fetch of this kind may be put in flight now.
    fn room(&self, config: &Config, urgent: bool) -> bool {
        let limit = if urgent { config.parallel_offers } else { config.parallel_fetches };
        let busy = self.table.iter().filter(|r| r.is_in_flight() && r.item.urgent == urgent);
        busy.count() < usize::from(limit.max(1))
    }

    /// In-flight fetches wake the node at their deadline; queued ones when
    /// they may start, if there is room for another of their kind in flight
    /// (otherwise an answer or a deadline frees the room first).
    pub(crate) fn poll_timeout(&self, config: &Config) -> Option<Instant> {
        let urgent_room = self.room(config, true);
        let replica_room = self.room(config, false);
        let room = |f: &Fetch| if f.urgent { urgent_room } else { replica_room };
        self.table.iter().filter_map(|r| r.wake_at(room(&r.item))).min()
    }

    /// Queues a fetch of `hash` from `origin` (to be acknowledged to `ack`
    /// once stored); the caller has decided this node should hold it. Fails
    /// with the STORED outcome to give if it cannot be taken.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn want<S: FragmentStore>(
        &mut self,
        ctx: &mut Ctx<'_, impl Transmit>,
        store: &S,
        origin: PeerInfo,
        hash: FragmentHash,
        ack: Option<PeerAddr>,
        urgent: bool,
        copies: u8,
    ) -> Result<(), StoreOutcome> {
        if let Some(i) = self.table.position(|r| r.item.hash == hash) {
            if let Some(request) = self.table.get_mut(i) {
                request.item.ack = request.item.ack.or(ack);
                request.item.copies = request.item.copies.max(copies);
            }
            return Ok(());
        }
        if store.len() + self.table.len() >= store.capacity() {
            ctx.out.drop(DropReason::StoreFull);
            self.full = store.len() >= store.capacity();
            return Err(StoreOutcome::Full);
        }
        let ready_at = if urgent {
            ctx.now
        } else {
            let delay = ctx.config.replication_delay;
            let jitter = ctx.rng.below(delay.total_micros() as usize + 1) as u64;
            ctx.now + delay + Duration::from_micros(jitter)
        };
        let fetch =
            Fetch { hash, origin, from: origin, have: 0, ack, urgent, copies, progress: false };
        if self.table.push(Request::new(fetch, ready_at)).is_err() {
            ctx.out.drop(DropReason::FetchTableFull);
            return Err(StoreOutcome::Busy);
        }
        Ok(())
    }

    /// Starts queued fetches while there is room for their kind.
    pub(crate) fn pump(&mut self, ctx: &mut Ctx<'_, impl Transmit>) {
        loop {
            let urgent_room = self.room(ctx.config, true);
            let replica_room = self.room(ctx.config, false);
            let next = self.table.position(|r| {
                r.is_ready(ctx.now) && if r.item.urgent { urgent_room } else { replica_room }
            });
            let Some(i) = next else { return };
            let timeout = self.rtt.rto(self.table.get(i).map_or(0, |r| r.attempts));
            let Some(request) = self.table.get_mut(i) else { return };
            let to = request.item.from.addr;
            request.item.progress = false;
            request.sent(to, ctx.now, timeout);
            ask(ctx, to, &request.item);
        }
    }

    /// A duplicate offer of `hash` from `addr` while fetching it from
    /// there: ask again for the missing units now. Returns whether there
    /// is such a fetch.
    pub(crate) fn nudge(
        &mut self,
        ctx: &mut Ctx<'_, impl Transmit>,
        addr: PeerAddr,
        hash: &FragmentHash,
    ) -> bool {
        let timeout = self.rtt.rto(0);
        let Some(request) = self.table.iter_mut().find(|r| r.item.hash == *hash) else {
            return false;
        };
        if request.in_flight_to() == Some(addr) {
            request.extend(ctx.now + timeout);
            ask(ctx, addr, &request.item);
        }
        true
    }

    /// Retries or abandons fetches whose answer is overdue: one that made
    /// progress asks the same peer again for what is missing; one that did
    /// not goes, on odd attempts, to the node that offered the fragment,
    /// on even ones to another member that should hold it.
    pub(crate) fn expire<S: FragmentStore, const N: usize>(
        &mut self,
        ctx: &mut Ctx<'_, impl Transmit>,
        store: &mut S,
        view: &View<'_, N>,
    ) {
        let timeout = self.rtt.rto(0);
        while let Some(i) = self.table.next_overdue(ctx.now) {
            let Some(request) = self.table.get(i).copied() else { return };
            let fetch = request.item;
            if fetch.progress {
                if let Some(r) = self.table.get_mut(i) {
                    r.item.progress = false;
                    r.extend(ctx.now + timeout);
                    ask(ctx, fetch.from.addr, &r.item);
                }
                continue;
            }
            if request.attempts >= ctx.config.fetch_attempts {
                self.abandon(ctx, store, i);
                continue;
            }
            let next = if request.attempts % 2 == 0 {
                fetch.origin
            } else {
                other_holder(ctx, view, &fetch.hash, fetch.copies, fetch.from)
                    .unwrap_or(fetch.origin)
            };
            if let Some(r) = self.table.get_mut(i) {
                r.item.from = next;
                // Requeued as ready now: `pump` resends it.
                r.wait_until(ctx.now);
            }
        }
    }

    /// Gives up the fetch at `i`: its partial copy is forgotten and the
    /// node that offered it told.
    fn abandon<S: FragmentStore>(
        &mut self,
        ctx: &mut Ctx<'_, impl Transmit>,
        store: &mut S,
        i: usize,
    ) {
        let Some(request) = self.table.remove(i) else { return };
        let fetch = request.item;
        store.drop_partial(&fetch.hash);
        ctx.out.counters.fetches_abandoned = ctx.out.counters.fetches_abandoned.saturating_add(1);
        ctx.out.event(Event::FetchAbandoned(fetch.hash));
        if let Some(ack) = fetch.ack {
            let message = Message::Stored {
                hash: fetch.hash,
                outcome: StoreOutcome::Failed,
                holders: HolderList::new(),
            };
            ctx.send(ack, &message);
        }
    }

    /// `from` answered NOTFOUND for `hash`: if a fetch asked it, the fetch
    /// is overdue now, to be retried elsewhere or given up.
    pub(crate) fn refused(&mut self, now: Instant, from: PeerAddr, hash: &FragmentHash) -> bool {
        let asked =
            self.table.iter_mut().find(|r| r.item.hash == *hash && r.in_flight_to() == Some(from));
        match asked {
            Some(request) => {
                request.item.progress = false;
                request.extend(now);
                true
            }
            None => false,
        }
    }

    /// Handles the fetches a NOTFOUND made overdue.
    pub(crate) fn retry_refused<S: FragmentStore, const N: usize>(
        &mut self,
        ctx: &mut Ctx<'_, impl Transmit>,
        store: &mut S,
        view: &View<'_, N>,
    ) {
        self.expire(ctx, store, view);
    }

    /// A piece of `hash` from `from`. `None` if no fetch of ours wants it;
    /// otherwise `Some` of the fetch if this piece completed it and the
    /// fragment is now stored (acknowledged to whoever offered it).
    pub(crate) fn on_piece<S: FragmentStore>(
        &mut self,
        ctx: &mut Ctx<'_, impl Transmit>,
        store: &mut S,
        from: PeerAddr,
        hash: &FragmentHash,
        first_unit: u8,
        data: &[u8],
    ) -> Option<Option<Fetch>> {
        let i = self.table.position(|r| {
            r.item.hash == *hash && (r.item.from.addr == from || r.item.origin.addr == from)
        })?;
        let request = self.table.get(i).copied()?;
        let mask = piece_mask(usize::from(first_unit), data.len() / UNIT);
        if request.item.have & mask == mask {
            return Some(None);
        }
        match store.write_partial(hash, usize::from(first_unit) * UNIT, data) {
            Ok(()) => {}
            Err(error) => {
                self.refuse(ctx, store, i, error);
                return Some(None);
            }
        }
        if request.item.have == 0 && request.attempts == 1 {
            if let Some(sent_at) = request.sent_at() {
                self.rtt.sample(ctx.now.saturating_since(sent_at));
            }
        }
        let timeout = self.rtt.rto(0);
        let entry = self.table.get_mut(i)?;
        entry.item.have |= mask;
        entry.item.progress = true;
        entry.extend(ctx.now + timeout);
        if entry.item.have != ALL_UNITS {
            return Some(None);
        }
        let fetch = entry.item;
        match store.finish_partial(hash) {
            Ok(true) => {
                self.table.remove(i);
                let counters = &mut ctx.out.counters;
                counters.fetches_completed = counters.fetches_completed.saturating_add(1);
                counters.fragments_stored = counters.fragments_stored.saturating_add(1);
                ctx.out.event(Event::FragmentStored(*hash));
                if let Some(ack) = fetch.ack {
                    let outcome = StoreOutcome::Stored;
                    ctx.send(
                        ack,
                        &Message::Stored { hash: *hash, outcome, holders: HolderList::new() },
                    );
                }
                Some(Some(fetch))
            }
            Ok(false) => {
                // Some piece was wrong: start over from another holder.
                ctx.out.drop(DropReason::BadHash);
                let entry = self.table.get_mut(i)?;
                entry.item.have = 0;
                entry.item.progress = false;
                entry.extend(ctx.now);
                Some(None)
            }
            Err(error) => {
                self.refuse(ctx, store, i, error);
                Some(None)
            }
        }
    }

    /// The store cannot take the fetch at `i`: it is dropped and the node
    /// that offered it told why.
    fn refuse<S: FragmentStore>(
        &mut self,
        ctx: &mut Ctx<'_, impl Transmit>,
        store: &mut S,
        i: usize,
        error: StoreError,
    ) {
        let Some(request) = self.table.remove(i) else { return };
        let fetch = request.item;
        store.drop_partial(&fetch.hash);
        let outcome = match error {
            StoreError::Full => {
                ctx.out.drop(DropReason::StoreFull);
                self.full = true;
                StoreOutcome::Full
            }
            StoreError::Failed => {
                ctx.out.drop(DropReason::StoreError);
                StoreOutcome::Failed
            }
        };
        if let Some(ack) = fetch.ack {
            ctx.send(
                ack,
                &Message::Stored { hash: fetch.hash, outcome, holders: HolderList::new() },
            );
        }
    }

    /// `addr` left or died: fetches in flight to it are overdue now.
    pub(crate) fn peer_gone(&mut self, now: Instant, addr: PeerAddr) {
        for request in self.table.iter_mut().filter(|r| r.in_flight_to() == Some(addr)) {
            request.item.progress = false;
            request.extend(now);
        }
    }
}

/// Sends the FILEGET of `fetch` (the units it lacks) to `to`.
fn ask(ctx: &mut Ctx<'_, impl Transmit>, to: PeerAddr, fetch: &Fetch) {
    let piece_units = super::max_piece_units(ctx.config);
    let want = ALL_UNITS & !fetch.have;
    ctx.send(to, &Message::FileGet { hash: fetch.hash, want, piece_units });
}

/// A random member other than this node and `except` that should hold
/// `hash` by this node's view.
fn other_holder<const N: usize>(
    ctx: &mut Ctx<'_, impl Transmit>,
    view: &View<'_, N>,
    hash: &FragmentHash,
    extra: u8,
    except: PeerInfo,
) -> Option<PeerInfo> {
    let copies = view.copies_with(extra).unwrap_or(N).min(crate::holders::MAX_COPIES);
    let top = view.top(hash, copies, true);
    let other = |p: &PeerInfo| p.id != view.me.id && p.addr != except.addr;
    let pick = ctx.rng.below(top.iter().filter(other).count());
    let chosen = top.iter().filter(other).nth(pick);
    chosen
}
