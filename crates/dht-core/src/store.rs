//! Where fragments are kept: the [`FragmentStore`] trait and a RAM store.
//!
//! The node verifies a fragment against its hash before it calls
//! [`FragmentStore::store`] and again after [`FragmentStore::read`]; a
//! fragment that fails the check after a read is removed and counted
//! (`corrupt_stored`). A fragment that arrives in pieces is written in
//! place as it comes ([`FragmentStore::write_partial`]) and checked
//! against its hash once whole ([`FragmentStore::finish_partial`]), so a
//! node needs no reassembly buffer of its own: a RAM store reassembles in
//! the slot the fragment will occupy. The host runtime
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

    /// Writes `bytes` at `offset` of the fragment `hash` being received in
    /// pieces, making room for it on the first piece (`Err(Full)` if there
    /// is none). A fragment received in part is neither held nor counted
    /// until [`FragmentStore::finish_partial`].
    fn write_partial(
        &mut self,
        hash: &FragmentHash,
        offset: usize,
        bytes: &[u8],
    ) -> Result<(), StoreError>;

    /// The fragment `hash` has arrived whole: keeps it if its bytes hash to
    /// `hash` (`Ok(true)`), forgets it otherwise (`Ok(false)`).
    fn finish_partial(&mut self, hash: &FragmentHash) -> Result<bool, StoreError>;

    /// Forgets a fragment received in part (its fetch was given up).
    fn drop_partial(&mut self, hash: &FragmentHash);

    /// Whether another fragment would fit now: the count is under the
    /// capacity (a store on a disk also checks that the disk takes a
    /// fragment). Asked when a full store looks for room again.
    fn can_store(&mut self) -> bool {
        self.len() < self.capacity()
    }

    /// The copy count recorded with the fragment `hash` (see
    /// [`FragmentStore::set_copies`]); 0 if none (the network's `R`).
    fn copies(&self, hash: &FragmentHash) -> u8 {
        let _ = hash;
        0
    }

    /// Records with the fragment `hash`, held, how many members of its
    /// shard should hold it (a count above the network's `R`, given by
    /// the NEWFILE that brought it). Returns `false` if it is not held or
    /// the count cannot be kept (the store default keeps none: `R`).
    fn set_copies(&mut self, hash: &FragmentHash, copies: u8) -> bool {
        let _ = (hash, copies);
        false
    }
}

/// What a [`RamSlot`] holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlotState {
    Free,
    /// A fragment being received in pieces.
    Partial,
    Used,
}

/// One slot of a [`RamStore`].
#[derive(Clone)]
pub struct RamSlot {
    hash: FragmentHash,
    state: SlotState,
    /// The copy count recorded with the fragment (0: `R`).
    copies: u8,
    data: FragmentBytes,
}

impl RamSlot {
    /// An empty slot, usable to initialise arrays and statics.
    pub const EMPTY: RamSlot = RamSlot {
        hash: FragmentHash([0; 32]),
        state: SlotState::Free,
        copies: 0,
        data: [0; FRAGMENT_SIZE],
    };
}

impl fmt::Debug for RamSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RamSlot").field("hash", &self.hash).field("state", &self.state).finish()
    }
}

/// A store in caller-provided RAM: `slots.len()` fragments of 8 KB.
#[derive(Clone, Debug)]
pub struct RamStore<B> {
    slots: B,
    len: usize,
}

impl<B: AsRef<[RamSlot]> + AsMut<[RamSlot]>> RamStore<B> {
    /// A store over `slots`; slots marked used are kept (a store moved from
    /// a crashed node keeps its contents), fragments received in part are
    /// forgotten.
    pub fn new(mut slots: B) -> Self {
        for slot in slots.as_mut().iter_mut().filter(|s| s.state == SlotState::Partial) {
            slot.state = SlotState::Free;
        }
        let len = slots.as_ref().iter().filter(|s| s.state == SlotState::Used).count();
        RamStore { slots, len }
    }

    /// Gives the slots back.
    pub fn into_inner(self) -> B {
        self.slots
    }

    /// The bytes stored for `hash`, if held (to check what a node stored
    /// without moving it).
    pub fn get(&self, hash: &FragmentHash) -> Option<&FragmentBytes> {
        self.slots
            .as_ref()
            .iter()
            .find(|s| s.state == SlotState::Used && s.hash == *hash)
            .map(|s| &s.data)
    }

    fn find(&self, hash: &FragmentHash) -> Option<usize> {
        self.find_in(hash, SlotState::Used)
    }

    fn find_in(&self, hash: &FragmentHash, state: SlotState) -> Option<usize> {
        self.slots.as_ref().iter().position(|s| s.state == state && s.hash == *hash)
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
        let slot = self
            .slots
            .as_mut()
            .iter_mut()
            .find(|s| s.state == SlotState::Free)
            .ok_or(StoreError::Full)?;
        slot.hash = *hash;
        slot.data.copy_from_slice(data);
        slot.state = SlotState::Used;
        slot.copies = 0;
        self.len += 1;
        Ok(())
    }

    fn read(&mut self, hash: &FragmentHash, out: &mut FragmentBytes) -> Result<bool, StoreError> {
        match self.get(hash) {
            Some(data) => {
                out.copy_from_slice(data);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn remove(&mut self, hash: &FragmentHash) -> Result<bool, StoreError> {
        match self.find(hash).and_then(|i| self.slots.as_mut().get_mut(i)) {
            Some(slot) => {
                slot.state = SlotState::Free;
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
        self.slots.as_ref().iter().filter(|s| s.state == SlotState::Used).nth(i).map(|s| s.hash)
    }

    fn write_partial(
        &mut self,
        hash: &FragmentHash,
        offset: usize,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        let index = match self.find_in(hash, SlotState::Partial) {
            Some(i) => i,
            None => {
                let free = self.find_in_state(SlotState::Free).ok_or(StoreError::Full)?;
                if let Some(slot) = self.slots.as_mut().get_mut(free) {
                    slot.hash = *hash;
                    slot.state = SlotState::Partial;
                    slot.copies = 0;
                }
                free
            }
        };
        let slot = self.slots.as_mut().get_mut(index).ok_or(StoreError::Failed)?;
        let target = slot.data.get_mut(offset..offset + bytes.len()).ok_or(StoreError::Failed)?;
        target.copy_from_slice(bytes);
        Ok(())
    }

    fn finish_partial(&mut self, hash: &FragmentHash) -> Result<bool, StoreError> {
        let index = self.find_in(hash, SlotState::Partial).ok_or(StoreError::Failed)?;
        let slot = self.slots.as_mut().get_mut(index).ok_or(StoreError::Failed)?;
        if hash.verifies(&slot.data) {
            slot.state = SlotState::Used;
            self.len += 1;
            Ok(true)
        } else {
            slot.state = SlotState::Free;
            Ok(false)
        }
    }

    fn drop_partial(&mut self, hash: &FragmentHash) {
        if let Some(i) = self.find_in(hash, SlotState::Partial) {
            if let Some(slot) = self.slots.as_mut().get_mut(i) {
                slot.state = SlotState::Free;
            }
        }
    }

    fn copies(&self, hash: &FragmentHash) -> u8 {
        self.find(hash).and_then(|i| self.slots.as_ref().get(i)).map_or(0, |s| s.copies)
    }

    fn set_copies(&mut self, hash: &FragmentHash, copies: u8) -> bool {
        match self.find(hash).and_then(|i| self.slots.as_mut().get_mut(i)) {
            Some(slot) => {
                slot.copies = copies;
                true
            }
            None => false,
        }
    }
}

impl<B: AsRef<[RamSlot]> + AsMut<[RamSlot]>> RamStore<B> {
    fn find_in_state(&self, state: SlotState) -> Option<usize> {
        self.slots.as_ref().iter().position(|s| s.state == state)
    }
}

/// A store that keeps no copy counts ([`FragmentStore::set_copies`]
/// refuses): its node keeps R copies of what it holds and leaves larger
/// counts to the members that record them. For a microcontroller whose
/// flash has no room for the bookkeeping.
#[derive(Clone, Debug)]
pub struct Uncounted<S>(pub S);

impl<S: FragmentStore> FragmentStore for Uncounted<S> {
    fn contains(&self, hash: &FragmentHash) -> bool {
        self.0.contains(hash)
    }
    fn store(&mut self, hash: &FragmentHash, data: &FragmentBytes) -> Result<(), StoreError> {
        self.0.store(hash, data)
    }
    fn read(&mut self, hash: &FragmentHash, out: &mut FragmentBytes) -> Result<bool, StoreError> {
        self.0.read(hash, out)
    }
    fn remove(&mut self, hash: &FragmentHash) -> Result<bool, StoreError> {
        self.0.remove(hash)
    }
    fn len(&self) -> usize {
        self.0.len()
    }
    fn capacity(&self) -> usize {
        self.0.capacity()
    }
    fn hash_at(&self, i: usize) -> Option<FragmentHash> {
        self.0.hash_at(i)
    }
    fn write_partial(
        &mut self,
        hash: &FragmentHash,
        offset: usize,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        self.0.write_partial(hash, offset, bytes)
    }
    fn finish_partial(&mut self, hash: &FragmentHash) -> Result<bool, StoreError> {
        self.0.finish_partial(hash)
    }
    fn drop_partial(&mut self, hash: &FragmentHash) {
        self.0.drop_partial(hash)
    }
    fn can_store(&mut self) -> bool {
        self.0.can_store()
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
    fn write_partial(&mut self, _: &FragmentHash, _: usize, _: &[u8]) -> Result<(), StoreError> {
        Err(StoreError::Full)
    }
    fn finish_partial(&mut self, _: &FragmentHash) -> Result<bool, StoreError> {
        Err(StoreError::Full)
    }
    fn drop_partial(&mut self, _: &FragmentHash) {}
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
    fn a_fragment_in_pieces_is_kept_only_if_it_hashes_right() {
        let mut store = RamStore::new([RamSlot::EMPTY, RamSlot::EMPTY]);
        let (h, d) = fragment(4);
        for (i, chunk) in d.chunks(1024).enumerate().rev() {
            store.write_partial(&h, i * 1024, chunk).unwrap();
        }
        assert!(!store.contains(&h), "not held before it is finished");
        assert_eq!(store.len(), 0);
        assert_eq!(store.finish_partial(&h), Ok(true));
        assert!(store.contains(&h));
        let (h2, d2) = fragment(5);
        store.write_partial(&h2, 0, &d2[..512]).unwrap();
        store.write_partial(&h2, 512, &[0u8; 8192 - 512]).unwrap(); // wrong bytes
        assert_eq!(store.finish_partial(&h2), Ok(false));
        assert_eq!(store.len(), 1);
        // A partial takes a slot: with both slots busy there is no room.
        store.write_partial(&h2, 0, &d2[..512]).unwrap();
        let (h3, d3) = fragment(6);
        assert_eq!(store.write_partial(&h3, 0, &d3[..512]), Err(StoreError::Full));
        store.drop_partial(&h2);
        assert!(store.write_partial(&h3, 0, &d3[..512]).is_ok());
        assert_eq!(store.write_partial(&h3, 8000, &d3[..512]), Err(StoreError::Failed));
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
