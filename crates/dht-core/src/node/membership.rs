//! Joining, the neighbor table, and moving to an empty shard.

use heapless::Vec;

use super::*;

impl<S: FragmentStore, const NEIGHBORS: usize, const DEDUP: usize, const FETCHES: usize>
    Node<S, NEIGHBORS, DEDUP, FETCHES>
{
    /// Keeps the neighbor table full: asks a random mate for its list of
    /// the shard (JOIN restricted to the shard); asks a random other
    /// neighbor which members of our shard it knows (FIND sent
    /// singlecast), which finds mates the shard does not know yet, or the
    /// first mate of a node that knows none; and, if some shard is below
    /// its quota, asks a random neighbor for a sample of every shard (JOIN).
    /// Peers learned from the answers get an ADDME, so tables become
    /// symmetric. Finally it sends one HOLDINGS page to a random mate.
    pub(super) fn maintain_table(&mut self, now: Instant, sink: &mut impl Transmit) {
        if self.neighbors.is_empty() {
            // Everyone we knew is gone (or we never met anyone): ask the seed
            // again.
            if let Some(seed) = self.seed {
                self.send_join(seed, None, sink);
            }
        }
        self.move_to_empty_shard(sink);
        let own = self.shard();
        if let Some(mate) = self.neighbors.random_in(&mut self.rng, own) {
            self.send_join(mate.addr, Some(own), sink);
        }
        self.ask_for_shard(own, true, sink);
        let counts = self.neighbors.shard_counts();
        let short = Shard::all().any(|s| {
            let known = usize::from(counts.get(s.index()).copied().unwrap_or(0));
            s != own && known < self.neighbors.quota(s)
        });
        if short {
            if let Some(peer) = self.neighbors.random_except(&mut self.rng, None) {
                self.send_join(peer.addr, None, sink);
            }
        }
        if let Some(mate) = self.neighbors.random_in(&mut self.rng, own) {
            self.send_holdings(mate.addr, sink);
        }
        self.call_the_dead(now, sink);
    }

    /// A node that holds nothing, whose shard has other members, moves to a
    /// shard in which nobody can be found: it takes a new id there, saves
    /// it (reported as [`Event::IdentityChosen`]) and tells its neighbors.
    ///
    /// Nodes that join at the same moment choose their shards from the same
    /// stale view and may leave a shard empty, which makes every fragment of
    /// that shard unstorable. A shard in which the node knows nobody is
    /// first only suspected: the node asks three random neighbors for its
    /// members. If a round later it still knows nobody there, the shard is
    /// taken to be empty, and the node moves with probability one half (so
    /// that several candidates do not all move into the same shard).
    pub(super) fn move_to_empty_shard(&mut self, sink: &mut impl Transmit) {
        let counts = self.neighbors.shard_counts();
        let own = self.shard();
        let known = |s: Shard| counts.get(s.index()).copied().unwrap_or(0);
        let suspect = self.suspect_empty.take();
        let eligible = self.config.role == Role::Member
            && self.store.is_empty()
            && self.fetches.is_empty()
            && known(own) > 0
            && matches!(self.join, JoinState::Joined | JoinState::Alone);
        if !eligible {
            return;
        }
        if let Some(shard) = suspect.filter(|s| *s != own && known(*s) == 0) {
            if self.rng.below(2) == 0 {
                return;
            }
            let id = NodeId::in_shard(self.rng.next_u64(), shard);
            log::info!("{}: moving from shard {own} to empty shard {shard}", self.me.addr);
            self.me.id = id;
            self.neighbors.set_own_shard(shard);
            self.push_event(Event::IdentityChosen(id));
            for to in self.neighbor_addrs() {
                self.send(to, Transmission::Singlecast, &Message::AddMe, sink);
            }
            return;
        }
        let empty = |s: &Shard| *s != own && known(*s) == 0;
        let pick = self.rng.below(Shard::all().filter(empty).count());
        if let Some(shard) = Shard::all().filter(empty).nth(pick) {
            for _ in 0..3 {
                self.ask_for_shard(shard, false, sink);
            }
            self.suspect_empty = Some(shard);
        }
    }

    /// Sends FIND for `shard` singlecast to a random neighbor (outside
    /// `shard` if `outside`), which answers with the members it knows.
    pub(super) fn ask_for_shard(&mut self, shard: Shard, outside: bool, sink: &mut impl Transmit) {
        let eligible = |n: &&crate::neighbors::Neighbor| !outside || n.peer.shard() != shard;
        let count = self.neighbors.iter().filter(eligible).count();
        let pick = self.rng.below(count);
        let target = self.neighbors.iter().filter(eligible).nth(pick).map(|n| n.peer.addr);
        if let Some(to) = target {
            let nonce = self.rng.next_u64();
            self.send(to, Transmission::Singlecast, &Message::Find { shard, nonce }, sink);
        }
    }

    /// The time to the next table maintenance: short while the table has
    /// gaps (no shard mate, or a shard with nobody), the full interval
    /// otherwise.
    pub(super) fn maintenance_delay(&self) -> Duration {
        let counts = self.neighbors.shard_counts();
        let gaps = counts.iter().enumerate().any(|(s, c)| *c == 0 && s != self.shard().index());
        let no_mate = counts.get(self.shard().index()) == Some(&0);
        if gaps || no_mate {
            self.config.maintenance_interval.div(8)
        } else {
            self.config.maintenance_interval
        }
    }

    /// Ends the join: a new member picks its shard, then every member
    /// makes itself known (ADDME to the peers it knows, randomcast ADDMEs
    /// as in the original) and asks a shard mate for the whole shard.
    pub(super) fn finish_join(
        &mut self,
        now: Instant,
        sizes: [u16; SHARD_COUNT as usize],
        sink: &mut impl Transmit,
    ) {
        self.join = JoinState::Joined;
        if self.config.role == Role::Member {
            if self.may_choose_shard {
                self.choose_shard(&sizes);
            }
            for to in self.neighbor_addrs() {
                self.send(to, Transmission::Singlecast, &Message::AddMe, sink);
            }
            let hops = self.config.addme_hops;
            for _ in 0..self.config.addme_randomcasts {
                if let Some(first) = self.neighbors.random_except(&mut self.rng, None) {
                    self.send(first.addr, Transmission::Randomcast { hops }, &Message::AddMe, sink);
                }
            }
            self.maintain_table(now, sink);
            self.next_maintenance = Some(now + self.config.maintenance_interval.div(8));
        }
        let neighbors = self.neighbors.len();
        self.push_event(Event::Joined { neighbors });
    }

    pub(super) fn learn(&mut self, peer: PeerInfo, now: Instant, verified: bool) -> Insert {
        if peer.id == self.me.id || peer.addr == self.me.addr {
            return Insert::Full;
        }
        if self.recently_dead(peer.addr, now) {
            // Only the node itself, heard directly, brings it back (see
            // `handle_datagram`); lists from others may be stale.
            return Insert::Full;
        }
        let outcome = self.neighbors.insert(peer, now, verified);
        if outcome == Insert::Added {
            self.membership_changed(now, peer, true);
        }
        outcome
    }

    pub(super) fn on_peers(
        &mut self,
        now: Instant,
        source: Source,
        peers: &PeerList,
        direct: bool,
        sink: &mut impl Transmit,
    ) {
        let visible = self.source().member;
        let mut new_peers: Vec<PeerInfo, { MAX_PEERS_PER_MESSAGE + 1 }> = Vec::new();
        let candidates = peers.iter().copied().chain(source.member.then_some(source.peer()));
        for peer in candidates {
            if self.learn(peer, now, direct) == Insert::Added {
                let _ = new_peers.push(peer);
            }
        }
        match self.join {
            JoinState::Joining { .. } => {
                // The seed answered: ask one member of every shard for its
                // shard's members.
                let mut asked = [false; SHARD_COUNT as usize];
                for shard in Shard::all() {
                    if let Some(member) = self.neighbors.random_in(&mut self.rng, shard) {
                        self.send_join(member.addr, Some(shard), sink);
                        if let Some(a) = asked.get_mut(shard.index()) {
                            *a = true;
                        }
                    }
                }
                let until = now + self.config.survey_timeout;
                // What the seed told us is a lower bound of each shard's
                // size; the survey answers refine it.
                let sizes = self.neighbors.shard_counts();
                self.join = JoinState::Surveying { until, asked, sizes };
                if !asked.contains(&true) {
                    self.finish_join(now, sizes, sink);
                }
            }
            JoinState::Surveying { until, mut asked, mut sizes } => {
                // The answer of a member of shard s about shard s.
                let shard = source.id.shard();
                let listed = peers.iter().filter(|p| p.shard() == shard).count() as u16;
                if let (Some(a), Some(size)) =
                    (asked.get_mut(shard.index()), sizes.get_mut(shard.index()))
                {
                    *a = false;
                    *size = (*size).max(listed.saturating_add(1));
                }
                self.join = JoinState::Surveying { until, asked, sizes };
                if !asked.contains(&true) {
                    self.finish_join(now, sizes, sink);
                }
            }
            JoinState::Alone | JoinState::Joined => {
                // Tell the peers just learned about us, so that tables are
                // symmetric and the shard's members know each other.
                if visible {
                    for peer in new_peers.iter() {
                        self.send(peer.addr, Transmission::Singlecast, &Message::AddMe, sink);
                    }
                }
            }
        }
    }

    /// Takes a fresh id in a shard that the survey found small.
    ///
    /// If some shards look empty, it fills one of them with probability
    /// `e / (e + 1)` for `e` empty shards; otherwise (or if the coin says
    /// no) it takes the smallest of [`SHARD_CHOICES`] random shards. Always
    /// taking the smallest shard balances best when nodes join one at a
    /// time, but nodes that join at the same moment share a stale view and
    /// would all crowd into the one shard that looks smallest; looking at a
    /// few random shards keeps most of the balance without that herding.
    pub(super) fn choose_shard(&mut self, sizes: &[u16; SHARD_COUNT as usize]) {
        self.may_choose_shard = false;
        let size = |n: u8| sizes.get(usize::from(n)).copied().unwrap_or(0);
        let mut order = [0u8; SHARD_COUNT as usize];
        for (i, slot) in order.iter_mut().enumerate() {
            *slot = i as u8;
        }
        self.rng.shuffle(&mut order);
        let empty = order.iter().filter(|n| size(**n) == 0).count();
        let best = if empty > 0 && self.rng.below(empty + 1) < empty {
            order.iter().copied().find(|n| size(*n) == 0)
        } else {
            order.iter().take(SHARD_CHOICES).copied().min_by_key(|n| size(*n))
        };
        let Some(shard) = best.and_then(Shard::new) else { return };
        let id = NodeId::in_shard(self.rng.next_u64(), shard);
        self.me.id = id;
        self.neighbors.set_own_shard(shard);
        self.push_event(Event::IdentityChosen(id));
    }

    pub(super) fn send_join(
        &mut self,
        to: PeerAddr,
        shard: Option<Shard>,
        sink: &mut impl Transmit,
    ) {
        let want = self.config.join_want.min(MAX_PEERS_PER_MESSAGE as u8);
        self.send(to, Transmission::Singlecast, &Message::Join { want, shard }, sink);
    }
}
