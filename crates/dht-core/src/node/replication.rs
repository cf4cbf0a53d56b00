//! Storing, serving, announcing and fetching fragments.

use heapless::Vec;

use super::*;

impl<S: FragmentStore, const NEIGHBORS: usize, const DEDUP: usize, const FETCHES: usize>
    Node<S, NEIGHBORS, DEDUP, FETCHES>
{
    /// Sends the next page of this node's holdings to `to`, a member of its
    /// shard. Successive pages walk the whole store and wrap around.
    pub(super) fn send_holdings(&mut self, to: PeerAddr, sink: &mut impl Transmit) {
        let held = self.store.len();
        if held == 0 {
            return;
        }
        if self.holdings_cursor >= held {
            self.holdings_cursor = 0;
        }
        let mut hashes = HashList::new();
        while !hashes.is_full() && self.holdings_cursor < held {
            if let Some(hash) = self.store.hash_at(self.holdings_cursor) {
                let _ = hashes.push(hash);
            }
            self.holdings_cursor += 1;
        }
        self.send(to, Transmission::Singlecast, &Message::Holdings { hashes }, sink);
    }

    /// Fetches the fragments of a mate's HOLDINGS page that this node
    /// should hold and lacks, as far as the fetch table has room.
    pub(super) fn on_holdings(
        &mut self,
        now: Instant,
        from: PeerInfo,
        hashes: &HashList,
        sink: &mut impl Transmit,
    ) {
        for hash in hashes.iter() {
            if self.fetches.is_full() {
                break;
            }
            self.want_fragment(now, from, *hash, false);
        }
        self.pump_fetches(now, sink);
    }

    pub(super) fn on_filefrag<'a>(
        &mut self,
        now: Instant,
        source: Source,
        mode: FragMode,
        hash: FragmentHash,
        data: FragmentRef<'a>,
        sink: &mut impl Transmit,
    ) -> Option<Reply<'a>> {
        if !hash.verifies(data.0) {
            self.counters.count_drop(DropReason::BadHash);
            return None;
        }
        let from = source.peer();
        match mode {
            FragMode::Store => {
                // An upload (from a client, or a node of another shard) is
                // stored only by a member that should hold the fragment; a
                // mate's store request (a hand-off) is always taken.
                let from_mate = source.member && source.id.shard() == self.shard();
                let redirect = !from_mate
                    && self.config.role == Role::Member
                    && hash.shard() == self.shard()
                    && !self.store.contains(&hash)
                    && !self.should_hold(&hash);
                let (outcome, holders) = if redirect {
                    (StoreOutcome::NotHolder, self.suggested_holders(&hash))
                } else {
                    (self.accept_store(&hash, data.0), crate::wire::HolderList::new())
                };
                let stored = Message::Stored { hash, outcome, holders };
                self.send(source.addr, Transmission::Singlecast, &stored, sink);
                if outcome == StoreOutcome::Stored {
                    self.announce(now, hash, Some(source.addr), sink);
                }
                None
            }
            FragMode::Answer => {
                let fetch = self.fetches.iter().position(|f| f.hash == hash);
                match fetch {
                    Some(i) => {
                        self.fetches.swap_remove(i);
                        self.counters.fetches_completed =
                            self.counters.fetches_completed.saturating_add(1);
                        if self.accept_store(&hash, data.0) == StoreOutcome::Stored {
                            self.announce(now, hash, Some(source.addr), sink);
                        }
                        self.pump_fetches(now, sink);
                        None
                    }
                    None => Some(Reply::Fragment { from, hash, data: data.0 }),
                }
            }
        }
    }

    /// Decides on and performs a store of a verified fragment.
    pub(super) fn accept_store(
        &mut self,
        hash: &FragmentHash,
        data: &FragmentBytes,
    ) -> StoreOutcome {
        if self.config.role != Role::Member || self.leaving.is_some() {
            self.counters.count_drop(DropReason::NotServed);
            return StoreOutcome::Failed;
        }
        if hash.shard() != self.shard() {
            self.counters.count_drop(DropReason::WrongShard);
            return StoreOutcome::WrongShard;
        }
        if self.store.contains(hash) {
            return StoreOutcome::AlreadyHeld;
        }
        match self.store.store(hash, data) {
            Ok(()) => {
                self.counters.fragments_stored = self.counters.fragments_stored.saturating_add(1);
                self.push_event(Event::FragmentStored(*hash));
                StoreOutcome::Stored
            }
            Err(StoreError::Full) => {
                self.counters.count_drop(DropReason::StoreFull);
                StoreOutcome::Full
            }
            Err(StoreError::Failed) => {
                self.counters.count_drop(DropReason::StoreError);
                StoreOutcome::Failed
            }
        }
    }

    /// Answers a FILEGET: the fragment read straight into the datagram and
    /// checked, or NOTFOUND.
    pub(super) fn serve(&mut self, to: PeerAddr, hash: FragmentHash, sink: &mut impl Transmit) {
        self.announcement_acked(to, &hash);
        let held = self.config.role == Role::Member && self.store.contains(&hash);
        if held && self.send_stored(to, hash, FragMode::Answer, sink) {
            self.counters.fragments_served = self.counters.fragments_served.saturating_add(1);
            return;
        }
        // Point the asker at the members that should hold it.
        let holders = self.suggested_holders(&hash);
        self.send(to, Transmission::Singlecast, &Message::NotFound { hash, holders }, sink);
    }

    /// The members other than this node that should hold `hash`, as this
    /// node sees its shard (at most four), to point a client at them.
    pub(super) fn suggested_holders(&self, hash: &FragmentHash) -> crate::wire::HolderList {
        let mut holders = crate::wire::HolderList::new();
        if hash.shard() != self.shard() {
            return holders;
        }
        let copies = match self.config.replication {
            Replication::WholeShard => crate::wire::MAX_SUGGESTED_HOLDERS,
            Replication::Copies(r) => usize::from(r),
        };
        let top = self.top_holders(hash, copies.min(repair::MAX_COPIES), true);
        for peer in top.iter().take(crate::wire::MAX_SUGGESTED_HOLDERS) {
            let _ = holders.push(*peer);
        }
        holders
    }

    /// Sends the stored fragment `hash` to `to` in `mode`, read from the
    /// store straight into the datagram and checked against its hash; a
    /// fragment that fails the check is removed. Returns whether it was
    /// sent.
    pub(super) fn send_stored(
        &mut self,
        to: PeerAddr,
        hash: FragmentHash,
        mode: FragMode,
        sink: &mut impl Transmit,
    ) -> bool {
        let source = self.source();
        let Ok(head) =
            encode_filefrag_header(Transmission::Singlecast, source, mode, &hash, &mut self.tx)
        else {
            return false;
        };
        let end = head + FRAGMENT_SIZE;
        let Some(body) =
            self.tx.get_mut(head..end).and_then(|s| <&mut FragmentBytes>::try_from(s).ok())
        else {
            return false;
        };
        match self.store.read(&hash, body) {
            Ok(true) if hash.verifies(body) => {
                self.transmit_tx(to, MessageKind::FileFrag, end, sink)
            }
            Ok(true) => {
                let _ = self.store.remove(&hash);
                self.counters.count_drop(DropReason::CorruptStored);
                self.push_event(Event::CorruptFragmentRemoved(hash));
                false
            }
            Ok(false) => false,
            Err(_) => {
                self.counters.count_drop(DropReason::StoreError);
                false
            }
        }
    }

    /// Tells the other holders of `hash` that this node has it.
    pub(super) fn announce(
        &mut self,
        now: Instant,
        hash: FragmentHash,
        except: Option<PeerAddr>,
        sink: &mut impl Transmit,
    ) {
        match self.config.announce {
            Announce::Flood { breadth } => {
                // The original: a broadcast whose UID is the hash prefix.
                let uid = hash.prefix_u64();
                self.dedup.insert(uid);
                let packet = Packet {
                    transmission: Transmission::Broadcast { breadth, uid },
                    source: self.source(),
                    message: Message::NewFile { hash },
                };
                self.relay_to_all(&packet, &[], sink);
            }
            Announce::Shard => self.announce_to_holders(now, hash, except, sink),
        }
    }

    /// A NEWFILE to each member that should hold `hash` (but `except`),
    /// remembered until acknowledged.
    pub(super) fn announce_to_holders(
        &mut self,
        now: Instant,
        hash: FragmentHash,
        except: Option<PeerAddr>,
        sink: &mut impl Transmit,
    ) {
        let targets = self.replica_targets(&hash);
        for peer in targets.iter().filter(|p| Some(p.addr) != except) {
            self.send(peer.addr, Transmission::Singlecast, &Message::NewFile { hash }, sink);
            self.expect_ack(now, hash, peer.addr);
        }
    }

    /// Remembers an announcement of `hash` to `to` until it is acknowledged.
    pub(super) fn expect_ack(&mut self, now: Instant, hash: FragmentHash, to: PeerAddr) {
        if self.announced.iter().any(|a| a.hash == hash && a.to == to) {
            return;
        }
        let entry = Announced { hash, to, next: now + ANNOUNCE_RETRY, tries: 1 };
        if self.announced.push(entry).is_err() {
            // Full: the oldest waiting one makes room (HOLDINGS will do).
            if let Some(oldest) = self.announced.iter().enumerate().min_by_key(|(_, a)| a.next) {
                let i = oldest.0;
                if let Some(slot) = self.announced.get_mut(i) {
                    *slot = entry;
                }
            }
        }
    }

    /// `from` acknowledged our announcement of `hash` (it fetched it, or it
    /// has it, or it will not hold it).
    pub(super) fn announcement_acked(&mut self, from: PeerAddr, hash: &FragmentHash) -> bool {
        let before = self.announced.len();
        self.announced.retain(|a| !(a.to == from && a.hash == *hash));
        self.announced.len() != before
    }

    /// Sends again the announcements whose acknowledgement is overdue.
    pub(super) fn retry_announcements(&mut self, now: Instant, sink: &mut impl Transmit) {
        let mut i = 0;
        while let Some(a) = self.announced.get(i).copied() {
            if a.next > now {
                i += 1;
                continue;
            }
            if a.tries >= ANNOUNCE_TRIES || !self.store.contains(&a.hash) {
                self.announced.swap_remove(i);
                continue;
            }
            if let Some(entry) = self.announced.get_mut(i) {
                entry.tries += 1;
                entry.next = now + ANNOUNCE_RETRY.saturating_mul(1 << a.tries.min(4));
            }
            self.send(a.to, Transmission::Singlecast, &Message::NewFile { hash: a.hash }, sink);
            i += 1;
        }
    }

    /// The known members of this node's shard that should hold `hash`
    /// besides this node.
    pub(super) fn replica_targets(&self, hash: &FragmentHash) -> Vec<PeerInfo, NEIGHBORS> {
        let mut out: Vec<PeerInfo, NEIGHBORS> = Vec::new();
        let shard = hash.shard();
        match self.config.replication {
            Replication::WholeShard => {
                for n in self.neighbors.members_of(shard) {
                    let _ = out.push(n.peer);
                }
            }
            Replication::Copies(copies) => {
                let mut ranked: Vec<PeerInfo, NEIGHBORS> = Vec::new();
                for n in self.neighbors.members_of(shard) {
                    let _ = ranked.push(n.peer);
                }
                let _ = ranked.push(self.me);
                crate::order::sort_by_key_descending(&mut ranked, |p| rendezvous_score(hash, p.id));
                for p in ranked.iter().take(usize::from(copies)) {
                    if p.id != self.me.id {
                        let _ = out.push(*p);
                    }
                }
            }
        }
        out
    }

    pub(super) fn on_newfile(
        &mut self,
        now: Instant,
        from: PeerInfo,
        hash: FragmentHash,
        targeted: bool,
        sink: &mut impl Transmit,
    ) {
        // A mate's announcement to us alone says its view of the shard puts
        // us among the holders; views can differ while the shard's
        // membership settles, and the announcer's word is what keeps the
        // copies at R then. A flooded announcement asks nobody in
        // particular.
        let asked = targeted && from.shard() == self.shard() && hash.shard() == self.shard();
        if targeted && self.store.contains(&hash) {
            // Acknowledge, so the announcer stops asking.
            let ack = Message::Stored {
                hash,
                outcome: StoreOutcome::AlreadyHeld,
                holders: crate::wire::HolderList::new(),
            };
            self.send(from.addr, Transmission::Singlecast, &ack, sink);
            return;
        }
        self.want_fragment(now, from, hash, asked);
        self.pump_fetches(now, sink);
    }

    /// A random member other than this node and `except` that should hold
    /// `hash` by this node's view.
    fn other_holder(&mut self, hash: &FragmentHash, except: PeerInfo) -> Option<PeerInfo> {
        let copies = match self.config.replication {
            Replication::WholeShard => NEIGHBORS,
            Replication::Copies(r) => usize::from(r),
        };
        let top = self.top_holders(hash, copies.min(repair::MAX_COPIES), false);
        let others = top.iter().filter(|p| p.id != self.me.id && p.addr != except.addr);
        let pick = self.rng.below(others.clone().count());
        others.clone().nth(pick).copied()
    }

    /// Whether this node should hold `hash`: its shard's, and under bounded
    /// replication among the top copies by rendezvous score over the
    /// members it knows.
    pub(super) fn should_hold(&self, hash: &FragmentHash) -> bool {
        if self.config.role != Role::Member || hash.shard() != self.shard() {
            return false;
        }
        match self.config.replication {
            Replication::WholeShard => true,
            Replication::Copies(copies) => {
                let mine = rendezvous_score(hash, self.me.id);
                let better = self
                    .neighbors
                    .members_of(hash.shard())
                    .filter(|n| rendezvous_score(hash, n.peer.id) > mine)
                    .count();
                better < usize::from(copies)
            }
        }
    }

    /// Queues a fetch of `hash` from `from` if this node should hold it (or
    /// was `asked` to by a mate), lacks it, and is not already fetching it.
    /// The fetch starts after the configured replication delay plus a
    /// random jitter of as much again, so that replication does not compete
    /// with the upload it follows.
    pub(super) fn want_fragment(
        &mut self,
        now: Instant,
        from: PeerInfo,
        hash: FragmentHash,
        asked: bool,
    ) {
        let ours = hash.shard() == self.shard() && self.config.role == Role::Member;
        if !(self.should_hold(&hash) || (asked && ours)) {
            return;
        }
        if self.store.contains(&hash) || self.fetches.iter().any(|f| f.hash == hash) {
            return;
        }
        if self.store.len() + self.fetches.len() >= self.store.capacity() {
            self.counters.count_drop(DropReason::StoreFull);
            return;
        }
        let delay = self.config.replication_delay;
        let jitter = self.rng.below(delay.total_micros() as usize + 1) as u64;
        let not_before = now + delay + Duration::from_micros(jitter);
        let fetch = Fetch { hash, origin: from, from, attempts: 0, deadline: None, not_before };
        if self.fetches.push(fetch).is_err() {
            self.counters.count_drop(DropReason::FetchTableFull);
        }
    }

    /// Starts queued fetches while fewer than `parallel_fetches` are in flight.
    pub(super) fn pump_fetches(&mut self, now: Instant, sink: &mut impl Transmit) {
        let limit = usize::from(self.config.parallel_fetches.max(1));
        loop {
            let in_flight = self.fetches.iter().filter(|f| f.deadline.is_some()).count();
            if in_flight >= limit {
                return;
            }
            let due = |f: &Fetch| f.deadline.is_none() && f.not_before <= now;
            let Some(i) = self.fetches.iter().position(due) else { return };
            let deadline = now + self.config.fetch_timeout;
            let Some(fetch) = self.fetches.get_mut(i) else { return };
            fetch.deadline = Some(deadline);
            fetch.attempts = fetch.attempts.saturating_add(1);
            let (to, hash) = (fetch.from.addr, fetch.hash);
            self.send_fileget(to, hash, sink);
        }
    }

    /// Retries or abandons fetches whose answer is overdue. A retry goes to
    /// the announcer on odd attempts and to another member of the shard
    /// (which may have fetched it meanwhile) on even ones.
    pub(super) fn expire_fetches(&mut self, now: Instant, _sink: &mut impl Transmit) {
        let mut i = 0;
        while let Some(fetch) = self.fetches.get(i).copied() {
            match fetch.deadline {
                Some(deadline) if deadline <= now => {
                    if fetch.attempts >= self.config.fetch_attempts {
                        self.fetches.swap_remove(i);
                        self.counters.fetches_abandoned =
                            self.counters.fetches_abandoned.saturating_add(1);
                        self.push_event(Event::FetchAbandoned(fetch.hash));
                        continue;
                    }
                    // Odd attempts ask the announcer again, even ones another
                    // member that should hold the fragment (it may have
                    // fetched it meanwhile).
                    let next = if fetch.attempts % 2 == 0 {
                        fetch.origin
                    } else {
                        self.other_holder(&fetch.hash, fetch.origin).unwrap_or(fetch.origin)
                    };
                    if let Some(f) = self.fetches.get_mut(i) {
                        f.deadline = None; // requeue; pump_fetches resends
                        f.from = next;
                    }
                }
                _ => {}
            }
            i += 1;
        }
    }
}
