//! Where fragments are kept: the [`FragmentStore`] trait and a RAM store.
//!
//! The node verifies a fragment against its hash before it calls
//! [`FragmentStore::store`] and again after [`FragmentStore::read`], so a
//! store needs no hashing of its own; a fragment that fails the check after
//! a read is removed and counted (`corrupt_stored`). The host runtime
//! implements the trait on a directory; the core ships [`RamStore`], a fixed
//! number of 8 KB slots in memory the caller provides (an array, a static,
//! or a boxed slice), for firmware and the simulator.
//!
//! ```
//! use dht_core::fragment::{FragmentHash, FRAGMENT_SIZE};
//! use dht_core::store::{FragmentStore, RamSlot, RamStore};
//! let mut store = RamStore::new([RamSlot::EMPTY; 2]);
//! let data = [1u8; FRAGMENT_SIZE];
//! let hash = FragmentHash::of(&data);
//! store.store(&hash, &data).unwrap();
//! let mut out = [0u8; FRAGMENT_SIZE];
//! assert!(store.read(&hash, &mut out).unwrap());
//! assert_eq!(out, data);
//! ```

use core::fmt;

use crate::fragment::{FragmentBytes, FragmentHash, FRAGMENT_SIZE};

/// Why a store operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreError {
    /// No room for another fragment.
    Full,
    /// The medium failed (I/O error); the fragment may or may not be there.
    Failed,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Full => f.write_str("fragment store is full"),
            StoreError::Failed => f.write_str("fragment store failed"),
        }
    }
}

/// Storage for fragments, keyed by hash.
pub trait FragmentStore {
    /// Whether the fragment is held.
    fn contains(&self, hash: &FragmentHash) -> bool;

    /// Keeps `data` under `hash`. Storing a fragment that is already held
    /// succeeds and changes nothing. The caller has verified the hash.
    fn store(&mut self, hash: &FragmentHash, data: &FragmentBytes) -> Result<(), StoreError>;

    /// Copies the fragment into `out`; `Ok(false)` if it is not held.
    fn read(&mut self, hash: &FragmentHash, out: &mut FragmentBytes) -> Result<bool, StoreError>;

    /// Forgets the fragment; `Ok(false)` if it was not held.
    fn remove(&mut self, hash: &FragmentHash) -> Result<bool, StoreError>;

    /// Fragments held.
    fn len(&self) -> usize;

    /// Whether no fragment is held.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fragments the store can hold.
    fn capacity(&self) -> usize;

    /// The `i`-th held fragment in an order that stays stable while the
    /// store is not modified, for walking the holdings in fixed memory.
    fn hash_at(&self, i: usize) -> Option<FragmentHash>;
}

/// One slot of a [`RamStore`].
#[derive(Clone)]
pub struct RamSlot {
    hash: FragmentHash,
    used: bool,
    data: FragmentBytes,
}

impl RamSlot {
    /// An empty slot, usable to initialise arrays and statics.
    pub const EMPTY: RamSlot =
        RamSlot { hash: FragmentHash([0; 32]), used: false, data: [0; FRAGMENT_SIZE] };
}

impl fmt::Debug for RamSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RamSlot").field("hash", &self.hash).field("used", &self.used).finish()
    }
}

/// A store in caller-provided RAM: `slots.len()` fragments of 8 KB.
#[derive(Debug)]
pub struct RamStore<B> {
    slots: B,
    len: usize,
}

impl<B: AsRef<[RamSlot]> + AsMut<[RamSlot]>> RamStore<B> {
    /// A store over `slots`; slots marked used are kept (a store moved from
    /// a crashed node keeps its contents).
    pub fn new(slots: B) -> Self {
        let len = slots.as_ref().iter().filter(|s| s.used).count();
        RamStore { slots, len }
    }

    /// Gives the slots back.
    pub fn into_inner(self) -> B {
        self.slots
    }

    /// The bytes stored for `hash`, if held (to check what a node stored
    /// without moving it).
    pub fn get(&self, hash: &FragmentHash) -> Option<&FragmentBytes> {
        self.slots.as_ref().iter().find(|s| s.used && s.hash == *hash).map(|s| &s.data)
    }

    fn find(&self, hash: &FragmentHash) -> Option<usize> {
        self.slots.as_ref().iter().position(|s| s.used && s.hash == *hash)
    }
}

impl<B: AsRef<[RamSlot]> + AsMut<[RamSlot]>> FragmentStore for RamStore<B> {
    fn contains(&self, hash: &FragmentHash) -> bool {
        self.find(hash).is_some()
    }

    fn store(&mut self, hash: &FragmentHash, data: &FragmentBytes) -> Result<(), StoreError> {
        if self.contains(hash) {
            return Ok(());
        }
        let slot = self.slots.as_mut().iter_mut().find(|s| !s.used).ok_or(StoreError::Full)?;
        slot.hash = *hash;
        slot.data.copy_from_slice(data);
        slot.used = true;
        self.len += 1;
        Ok(())
    }

    fn read(&mut self, hash: &FragmentHash, out: &mut FragmentBytes) -> Result<bool, StoreError> {
        match self.slots.as_ref().iter().find(|s| s.used && s.hash == *hash) {
            Some(slot) => {
                out.copy_from_slice(&slot.data);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn remove(&mut self, hash: &FragmentHash) -> Result<bool, StoreError> {
        match self.slots.as_mut().iter_mut().find(|s| s.used && s.hash == *hash) {
            Some(slot) => {
                slot.used = false;
                self.len -= 1;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    fn capacity(&self) -> usize {
        self.slots.as_ref().len()
    }

    fn hash_at(&self, i: usize) -> Option<FragmentHash> {
        self.slots.as_ref().iter().filter(|s| s.used).nth(i).map(|s| s.hash)
    }
}

/// A store that holds nothing, for clients.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoStore;

impl FragmentStore for NoStore {
    fn contains(&self, _: &FragmentHash) -> bool {
        false
    }
    fn store(&mut self, _: &FragmentHash, _: &FragmentBytes) -> Result<(), StoreError> {
        Err(StoreError::Full)
    }
    fn read(&mut self, _: &FragmentHash, _: &mut FragmentBytes) -> Result<bool, StoreError> {
        Ok(false)
    }
    fn remove(&mut self, _: &FragmentHash) -> Result<bool, StoreError> {
        Ok(false)
    }
    fn len(&self) -> usize {
        0
    }
    fn capacity(&self) -> usize {
        0
    }
    fn hash_at(&self, _: usize) -> Option<FragmentHash> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fragment(byte: u8) -> (FragmentHash, FragmentBytes) {
        let data = [byte; FRAGMENT_SIZE];
        (FragmentHash::of(&data), data)
    }

    #[test]
    fn store_read_remove_round_trip() {
        let mut store = RamStore::new([RamSlot::EMPTY, RamSlot::EMPTY]);
        let (h1, d1) = fragment(1);
        let (h2, d2) = fragment(2);
        let (h3, d3) = fragment(3);
        assert_eq!(store.capacity(), 2);
        store.store(&h1, &d1).unwrap();
        store.store(&h1, &d1).unwrap(); // idempotent
        assert_eq!(store.len(), 1);
        store.store(&h2, &d2).unwrap();
        assert_eq!(store.store(&h3, &d3), Err(StoreError::Full));
        let mut out = [0u8; FRAGMENT_SIZE];
        assert!(store.read(&h2, &mut out).unwrap());
        assert_eq!(out, d2);
        assert!(!store.read(&h3, &mut out).unwrap());
        assert!(store.remove(&h1).unwrap());
        assert!(!store.remove(&h1).unwrap());
        store.store(&h3, &d3).unwrap();
        let mut held = [store.hash_at(0).unwrap(), store.hash_at(1).unwrap()];
        held.sort();
        let mut expected = [h2, h3];
        expected.sort();
        assert_eq!(held, expected);
        assert_eq!(store.hash_at(2), None);
    }

    #[test]
    fn contents_survive_a_move() {
        let mut store = RamStore::new([RamSlot::EMPTY]);
        let (h, d) = fragment(9);
        store.store(&h, &d).unwrap();
        let again = RamStore::new(store.into_inner());
        assert_eq!(again.len(), 1);
        assert!(again.contains(&h));
    }
}
