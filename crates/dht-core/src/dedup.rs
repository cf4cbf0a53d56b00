//! Remembering recent broadcast UIDs.
//!
//! A broadcast is relayed to every neighbor, so a node hears it many times.
//! [`BroadcastDedup`] is the original's circular list: a fixed ring of the
//! last `N` UIDs; a UID still in the ring is a duplicate. The original
//! forgot the oldest UID when the ring wrapped, so a flood of new UIDs made
//! a node forget the broadcasts still circulating and process them again
//! (a storm). This ring refuses instead: a new UID that would push out one
//! younger than [`DEDUP_WINDOW`] is turned away ([`Seen::Full`]), and the
//! broadcast is dropped rather than processed twice.
//!
//! ```
//! use dht_core::dedup::{BroadcastDedup, Seen};
//! use dht_core::time::Instant;
//! let mut seen = BroadcastDedup::<4>::new();
//! let now = Instant::from_millis(1);
//! assert_eq!(seen.first_time(10, now), Seen::New);
//! assert_eq!(seen.first_time(10, now), Seen::Duplicate);
//! ```

use crate::time::{Duration, Instant, Stamp};

/// How long a UID is kept at least before the ring may forget it: longer
/// than a broadcast circulates.
pub const DEDUP_WINDOW: Duration = Duration::from_secs(30);

/// What the ring says of a UID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// Not seen recently; now remembered.
    New,
    /// Seen recently.
    Duplicate,
    /// Not seen, but the ring is full of UIDs younger than
    /// [`DEDUP_WINDOW`]: refused, not remembered.
    Full,
}

/// A ring of the last `N` broadcast UIDs and when they were seen.
#[derive(Clone, Debug)]
pub struct BroadcastDedup<const N: usize> {
    uids: [u64; N],
    /// When each UID was seen (12 bytes an entry with the UID, not 16).
    seen: [Stamp; N],
    len: usize,
    next: usize,
}

impl<const N: usize> BroadcastDedup<N> {
    /// An empty ring.
    pub const fn new() -> Self {
        BroadcastDedup { uids: [0; N], seen: [Stamp::ZERO; N], len: 0, next: 0 }
    }

    /// Whether `uid` is in the ring.
    pub fn contains(&self, uid: u64) -> bool {
        self.uids.get(..self.len).is_some_and(|seen| seen.contains(&uid))
    }

    /// Records `uid` seen at `now`, forgetting the oldest UID if the ring is
    /// full (for this node's own broadcasts, which it always sends).
    pub fn insert(&mut self, uid: u64, now: Instant) {
        if let (Some(slot), Some(seen)) =
            (self.uids.get_mut(self.next), self.seen.get_mut(self.next))
        {
            *slot = uid;
            *seen = Stamp::of(now);
            self.next = (self.next + 1) % N;
            self.len = (self.len + 1).min(N);
        }
    }

    /// Whether `uid` is new (then remembered), a duplicate, or refused
    /// because the ring would turn over too fast.
    pub fn first_time(&mut self, uid: u64, now: Instant) -> Seen {
        if self.contains(uid) {
            return Seen::Duplicate;
        }
        if self.len == N {
            // An age that wrapped (49.7 days) can only look young: a
            // refusal, never a UID forgotten too soon.
            let young = self.seen.get(self.next).is_some_and(|t| t.age(now) < DEDUP_WINDOW);
            if young || N == 0 {
                return Seen::Full;
            }
        }
        self.insert(uid, now);
        Seen::New
    }

    /// UIDs remembered.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<const N: usize> Default for BroadcastDedup<N> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_detected_and_old_uids_make_room() {
        let mut ring = BroadcastDedup::<3>::new();
        let t = Instant::from_millis(1);
        assert_eq!(ring.first_time(1, t), Seen::New);
        assert_eq!(ring.first_time(2, t), Seen::New);
        assert_eq!(ring.first_time(3, t), Seen::New);
        assert_eq!(ring.first_time(1, t), Seen::Duplicate);
        // Full of young UIDs: a fourth is refused, nothing forgotten.
        assert_eq!(ring.first_time(4, t), Seen::Full);
        assert_eq!(ring.first_time(1, t), Seen::Duplicate);
        // After the window the oldest makes room.
        let later = t + DEDUP_WINDOW;
        assert_eq!(ring.first_time(4, later), Seen::New);
        assert_eq!(ring.first_time(1, later), Seen::New, "4 took the place of 1, now 1 takes 2's");
        assert_eq!(ring.len(), 3);
    }

    #[test]
    fn zero_is_a_valid_uid() {
        let mut ring = BroadcastDedup::<2>::new();
        let t = Instant::ZERO;
        assert!(!ring.contains(0));
        assert_eq!(ring.first_time(0, t), Seen::New);
        assert_eq!(ring.first_time(0, t), Seen::Duplicate);
    }

    #[test]
    fn zero_capacity_refuses_everything_and_never_panics() {
        let mut ring = BroadcastDedup::<0>::new();
        assert_eq!(ring.first_time(5, Instant::ZERO), Seen::Full);
        ring.insert(5, Instant::ZERO);
        assert!(ring.is_empty());
    }
}
