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
//! The ring also keeps the largest breadth a UID came with. Copies of a
//! broadcast race along paths of different lengths: when the first to
//! arrive had come the long way (breadth 0, not relayed) and a copy with
//! breadth left comes after it, the later copy is [`Seen::Wider`] and is
//! relayed (not processed again): relaying only the first copy left nodes
//! that only this node could reach without the news. A node relays one
//! broadcast at most once per breadth, so at most `max_breadth` times.
//!
//! ```
//! use dht_core::dedup::{BroadcastDedup, Seen};
//! use dht_core::time::Instant;
//! let mut seen = BroadcastDedup::<4>::new();
//! let now = Instant::from_millis(1);
//! assert_eq!(seen.first_time(10, 0, now), Seen::New);
//! assert_eq!(seen.first_time(10, 0, now), Seen::Duplicate);
//! assert_eq!(seen.first_time(10, 2, now), Seen::Wider);
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
    /// Seen recently, with as much breadth left or more.
    Duplicate,
    /// Seen recently, but this copy has more breadth left than any before
    /// it (now remembered): to be relayed, not processed again.
    Wider,
    /// Not seen, but the ring is full of UIDs younger than
    /// [`DEDUP_WINDOW`]: refused, not remembered.
    Full,
}

/// A ring of the last `N` broadcast UIDs and when they were seen.
#[derive(Clone, Debug)]
pub struct BroadcastDedup<const N: usize> {
    uids: [u64; N],
    /// When each UID was seen (13 bytes an entry with the UID and the
    /// breadth, not the 16 of a struct of the three).
    seen: [Stamp; N],
    /// The largest breadth each UID came with.
    breadth: [u8; N],
    len: usize,
    next: usize,
}

impl<const N: usize> BroadcastDedup<N> {
    /// An empty ring.
    pub const fn new() -> Self {
        BroadcastDedup { uids: [0; N], seen: [Stamp::ZERO; N], breadth: [0; N], len: 0, next: 0 }
    }

    /// Whether `uid` is in the ring.
    pub fn contains(&self, uid: u64) -> bool {
        self.position(uid).is_some()
    }

    /// Where `uid` is in the ring.
    fn position(&self, uid: u64) -> Option<usize> {
        self.uids.get(..self.len)?.iter().position(|u| *u == uid)
    }

    /// Records `uid` seen at `now`, forgetting the oldest UID if the ring is
    /// full (for this node's own broadcasts, which it always sends: no copy
    /// of one is ever wider).
    pub fn insert(&mut self, uid: u64, now: Instant) {
        self.insert_with(uid, u8::MAX, now);
    }

    fn insert_with(&mut self, uid: u64, breadth: u8, now: Instant) {
        if let (Some(slot), Some(seen), Some(b)) = (
            self.uids.get_mut(self.next),
            self.seen.get_mut(self.next),
            self.breadth.get_mut(self.next),
        ) {
            *slot = uid;
            *seen = Stamp::of(now);
            *b = breadth;
            self.next = (self.next + 1) % N;
            self.len = (self.len + 1).min(N);
        }
    }

    /// Whether `uid`, come with `breadth` left, is new (then remembered),
    /// a duplicate, a wider copy of one seen, or refused because the ring
    /// would turn over too fast.
    pub fn first_time(&mut self, uid: u64, breadth: u8, now: Instant) -> Seen {
        if let Some(i) = self.position(uid) {
            return match self.breadth.get_mut(i) {
                Some(widest) if *widest < breadth => {
                    *widest = breadth;
                    Seen::Wider
                }
                _ => Seen::Duplicate,
            };
        }
        if self.len == N {
            // An age that wrapped (49.7 days) can only look young: a
            // refusal, never a UID forgotten too soon.
            let young = self.seen.get(self.next).is_some_and(|t| t.age(now) < DEDUP_WINDOW);
            if young || N == 0 {
                return Seen::Full;
            }
        }
        self.insert_with(uid, breadth, now);
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
        assert_eq!(ring.first_time(1, 0, t), Seen::New);
        assert_eq!(ring.first_time(2, 0, t), Seen::New);
        assert_eq!(ring.first_time(3, 0, t), Seen::New);
        assert_eq!(ring.first_time(1, 0, t), Seen::Duplicate);
        // Full of young UIDs: a fourth is refused, nothing forgotten.
        assert_eq!(ring.first_time(4, 0, t), Seen::Full);
        assert_eq!(ring.first_time(1, 0, t), Seen::Duplicate);
        // After the window the oldest makes room.
        let later = t + DEDUP_WINDOW;
        assert_eq!(ring.first_time(4, 0, later), Seen::New);
        assert_eq!(
            ring.first_time(1, 0, later),
            Seen::New,
            "4 took the place of 1, now 1 takes 2's"
        );
        assert_eq!(ring.len(), 3);
    }

    #[test]
    fn zero_is_a_valid_uid() {
        let mut ring = BroadcastDedup::<2>::new();
        let t = Instant::ZERO;
        assert!(!ring.contains(0));
        assert_eq!(ring.first_time(0, 0, t), Seen::New);
        assert_eq!(ring.first_time(0, 0, t), Seen::Duplicate);
    }

    #[test]
    fn zero_capacity_refuses_everything_and_never_panics() {
        let mut ring = BroadcastDedup::<0>::new();
        assert_eq!(ring.first_time(5, 0, Instant::ZERO), Seen::Full);
        ring.insert(5, Instant::ZERO);
        assert!(ring.is_empty());
    }

    #[test]
    fn a_copy_with_more_breadth_left_is_wider_once_per_breadth() {
        let mut ring = BroadcastDedup::<4>::new();
        let t = Instant::from_millis(1);
        assert_eq!(ring.first_time(7, 0, t), Seen::New, "came the long way");
        assert_eq!(ring.first_time(7, 0, t), Seen::Duplicate);
        assert_eq!(ring.first_time(7, 2, t), Seen::Wider, "a shorter path came later");
        assert_eq!(ring.first_time(7, 1, t), Seen::Duplicate);
        assert_eq!(ring.first_time(7, 2, t), Seen::Duplicate);
        assert_eq!(ring.first_time(7, 3, t), Seen::Wider);
        // This node's own broadcasts are never relayed again.
        ring.insert(8, t);
        assert_eq!(ring.first_time(8, u8::MAX, t), Seen::Duplicate);
    }
}
