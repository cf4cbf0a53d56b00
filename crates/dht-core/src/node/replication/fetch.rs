//! Replication fetches: getting a fragment this node should hold from a
//! node that has it.
//!
//! A fetch starts after the configured replication delay plus a random
//! jitter of up to as much again, so that replication yields to the upload
//! that caused it; at most `parallel_fetches` are in flight. A fetch that
//! times out (or is answered NOTFOUND) is retried, alternately at the
//! announcer and at another member that should hold the fragment (which
//! may have fetched it meanwhile), and given up after `fetch_attempts`
//! (the HOLDINGS exchange finds the fragment again later).

use super::View;
use crate::config::{Config, Role};
use crate::counters::DropReason;
use crate::fragment::FragmentHash;
use crate::id::{PeerAddr, PeerInfo};
use crate::node::{Ctx, Event, Transmit};
use crate::requests::{Request, RequestTable};
use crate::store::FragmentStore;
use crate::time::{Duration, Instant};
use crate::wire::Message;

/// A fragment to fetch: from whom it was announced, and whom the next
/// attempt asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Fetch {
    hash: FragmentHash,
    /// The node that announced the fragment (it has it).
    origin: PeerInfo,
    /// The node the next (or current) attempt asks.
    from: PeerInfo,
}

/// The fetches in progress.
pub(crate) struct Fetches<const F: usize> {
    table: RequestTable<Fetch, F>,
}

impl<const F: usize> Fetches<F> {
    pub(crate) const fn new() -> Self {
        Fetches { table: RequestTable::new() }
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

    pub(crate) fn clear(&mut self) {
        self.table.retain(|_| false);
    }

    fn room(&self, config: &Config) -> bool {
        self.table.in_flight() < usize::from(config.parallel_fetches.max(1))
    }

    /// In-flight fetches wake the node at their deadline; queued ones when
    /// they may start, if there is room for another in flight (otherwise an
    /// answer or a deadline frees the room first).
    pub(crate) fn poll_timeout(&self, config: &Config) -> Option<Instant> {
        self.table.poll_timeout(self.room(config))
    }

    /// Queues a fetch of `hash` from `from` if this node should hold it (or
    /// was `asked` to by a mate), lacks it, and is not already fetching it.
    pub(crate) fn want<S: FragmentStore, const N: usize>(
        &mut self,
        ctx: &mut Ctx<'_, impl Transmit>,
        store: &S,
        view: &View<'_, N>,
        from: PeerInfo,
        hash: FragmentHash,
        asked: bool,
    ) {
        let ours = hash.shard() == view.me.shard() && ctx.config.role == Role::Member;
        if !(view.should_hold(&hash) || (asked && ours)) {
            return;
        }
        if store.contains(&hash) || self.table.contains(|f| f.hash == hash) {
            return;
        }
        if store.len() + self.table.len() >= store.capacity() {
            ctx.out.drop(DropReason::StoreFull);
            return;
        }
        let delay = ctx.config.replication_delay;
        let jitter = ctx.rng.below(delay.total_micros() as usize + 1) as u64;
        let ready_at = ctx.now + delay + Duration::from_micros(jitter);
        let fetch = Fetch { hash, origin: from, from };
        if self.table.push(Request::new(fetch, ready_at)).is_err() {
            ctx.out.drop(DropReason::FetchTableFull);
        }
    }

    /// Starts queued fetches while fewer than `parallel_fetches` are in
    /// flight.
    pub(crate) fn pump(&mut self, ctx: &mut Ctx<'_, impl Transmit>) {
        while self.room(ctx.config) {
            let Some(i) = self.table.next_ready(ctx.now) else { return };
            let Some(request) = self.table.get_mut(i) else { return };
            let (to, hash) = (request.item.from.addr, request.item.hash);
            request.sent(to, ctx.now, ctx.config.fetch_timeout);
            ctx.send(to, &Message::FileGet { hash });
        }
    }

    /// Retries or abandons fetches whose answer is overdue: odd attempts ask
    /// the announcer again, even ones another member that should hold the
    /// fragment.
    pub(crate) fn expire<const N: usize>(
        &mut self,
        ctx: &mut Ctx<'_, impl Transmit>,
        view: &View<'_, N>,
    ) {
        while let Some(i) = self.table.next_overdue(ctx.now) {
            let Some(request) = self.table.get(i).copied() else { return };
            if request.attempts >= ctx.config.fetch_attempts {
                self.table.remove(i);
                ctx.out.counters.fetches_abandoned =
                    ctx.out.counters.fetches_abandoned.saturating_add(1);
                ctx.out.event(Event::FetchAbandoned(request.item.hash));
                continue;
            }
            let fetch = request.item;
            let next = if request.attempts % 2 == 0 {
                fetch.origin
            } else {
                other_holder(ctx, view, &fetch.hash, fetch.origin).unwrap_or(fetch.origin)
            };
            if let Some(r) = self.table.get_mut(i) {
                r.item.from = next;
                // Requeued as ready now: `pump` resends it.
                r.wait_until(ctx.now);
            }
        }
    }

    /// `from` answered NOTFOUND for `hash`: if a fetch asked it, the fetch
    /// expires now, to be retried elsewhere or given up.
    pub(crate) fn refused(&mut self, now: Instant, from: PeerAddr, hash: &FragmentHash) -> bool {
        let asked = self
            .table
            .iter_mut()
            .find(|r| r.item.hash == *hash && r.item.from.addr == from && r.is_in_flight());
        match asked {
            Some(request) => {
                let to = request.in_flight_to().unwrap_or(from);
                let sent_at = request.sent_at().unwrap_or(now);
                request.phase = crate::requests::Phase::InFlight { to, sent_at, deadline: now };
                true
            }
            None => false,
        }
    }

    /// The answer to a fetch of `hash` arrived: it is done. Returns whether
    /// there was such a fetch.
    pub(crate) fn completed(&mut self, hash: &FragmentHash) -> bool {
        match self.table.position(|r| r.item.hash == *hash) {
            Some(i) => {
                self.table.remove(i);
                true
            }
            None => false,
        }
    }

    /// `addr` left or died: fetches in flight to it will not be answered.
    pub(crate) fn peer_gone(&mut self, addr: PeerAddr) {
        self.table.retain(|r| r.in_flight_to() != Some(addr));
    }
}

/// A random member other than this node and `except` that should hold
/// `hash` by this node's view.
fn other_holder<const N: usize>(
    ctx: &mut Ctx<'_, impl Transmit>,
    view: &View<'_, N>,
    hash: &FragmentHash,
    except: PeerInfo,
) -> Option<PeerInfo> {
    let copies = view.config.copies().unwrap_or(N).min(crate::holders::MAX_COPIES);
    let top = view.top(hash, copies, true);
    let other = |p: &PeerInfo| p.id != view.me.id && p.addr != except.addr;
    let pick = ctx.rng.below(top.iter().filter(other).count());
    let chosen = top.iter().filter(other).nth(pick);
    chosen
}
