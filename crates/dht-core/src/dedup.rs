//! Remembering recent broadcast UIDs.
//!
//! A broadcast is relayed to every neighbor, so a node hears it many times.
//! [`BroadcastDedup`] is the original's circular list: a fixed ring of the
//! last `N` UIDs; a UID still in the ring is a duplicate. When the ring
//! wraps, the oldest UID is forgotten and a very late copy of that broadcast
//! would be processed again, so `N` must exceed the broadcasts a node sees
//! while one broadcast is still circulating.
//!
//! ```
//! use dht_core::dedup::BroadcastDedup;
//! let mut seen = BroadcastDedup::<4>::new();
//! assert!(seen.first_time(10));
//! assert!(!seen.first_time(10));
//! ```

/// A ring of the last `N` broadcast UIDs.
#[derive(Clone, Debug)]
pub struct BroadcastDedup<const N: usize> {
    uids: [u64; N],
    len: usize,
    next: usize,
}

impl<const N: usize> BroadcastDedup<N> {
    /// An empty ring.
    pub const fn new() -> Self {
        BroadcastDedup { uids: [0; N], len: 0, next: 0 }
    }

    /// Whether `uid` is in the ring.
    pub fn contains(&self, uid: u64) -> bool {
        self.uids.get(..self.len).is_some_and(|seen| seen.contains(&uid))
    }

    /// Records `uid`, forgetting the oldest UID if the ring is full.
    pub fn insert(&mut self, uid: u64) {
        if let Some(slot) = self.uids.get_mut(self.next) {
            *slot = uid;
            self.next = (self.next + 1) % N;
            self.len = (self.len + 1).min(N);
        }
    }

    /// `true` if `uid` was not in the ring (and records it), `false` for a
    /// duplicate.
    pub fn first_time(&mut self, uid: u64) -> bool {
        if self.contains(uid) {
            false
        } else {
            self.insert(uid);
            true
        }
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
    fn duplicates_are_detected_until_forgotten() {
        let mut ring = BroadcastDedup::<3>::new();
        assert!(ring.first_time(1));
        assert!(ring.first_time(2));
        assert!(ring.first_time(3));
        assert!(!ring.first_time(1));
        assert!(ring.first_time(4)); // forgets 1
        assert!(ring.first_time(1)); // forgets 2
        assert!(!ring.first_time(3));
        assert!(!ring.first_time(4));
        assert!(ring.first_time(2));
        assert_eq!(ring.len(), 3);
    }

    #[test]
    fn zero_is_a_valid_uid() {
        let mut ring = BroadcastDedup::<2>::new();
        assert!(!ring.contains(0));
        assert!(ring.first_time(0));
        assert!(!ring.first_time(0));
    }

    #[test]
    fn zero_capacity_never_panics() {
        let mut ring = BroadcastDedup::<0>::new();
        assert!(ring.first_time(5));
        assert!(ring.first_time(5));
        assert!(ring.is_empty());
    }
}
