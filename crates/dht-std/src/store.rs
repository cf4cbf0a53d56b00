//! A fragment store on a directory: two files of fixed-size slots.
//!
//! Slot `i` of the store is the 8192 bytes of `fragments.pack` from byte
//! `i * 8192`, the fragment, and the 40 bytes of `fragments.idx` from byte
//! `i * 40`, its entry:
//!
//! | entry bytes | what |
//! |-------------|------|
//! | 0-3 | `DHFR` for a fragment held; anything else is a free slot |
//! | 4 | the copy count recorded with it (`0`: the network's R) |
//! | 5-7 | zero |
//! | 8-39 | its SHA-256 |
//!
//! Why slots and not a file per fragment: on this project's test machine
//! (ext4), creating a file cost more than all the rest of storing a
//! fragment; while a 256-node scene took a 256 MiB upload, a third of the
//! nodes' time went to allocating inodes and a tenth to renaming. Slots of
//! whole pages keep the kernel from zeroing or reading back the pages a
//! fragment shares with its neighbors.
//!
//! A fragment is written with two positioned writes, the bytes and then
//! the entry, into a free slot or at the end; it is removed by zeroing its
//! entry's first 4 bytes, and its slot is reused. When the store opens it
//! reads the index: an entry naming a fragment held in an earlier slot, or
//! whose bytes the pack does not reach (a crash), is dropped; an entry cut
//! short at the end is cut off. Bytes are not checked at open: the node
//! checks every fragment it reads against its hash and removes one that
//! fails, so a slot torn by a crash or damaged on disk is never served.
//! Data is not fsync'ed: after a power loss a fragment may be missing or
//! fail its check, and the shard's repair brings it back from another
//! holder. A full disk is reported as a full store
//! ([`StoreError::Full`]), so that the node stops taking fragments instead
//! of retrying them.
//!
//! A fragment arriving in pieces is put together in memory (at most one
//! 8 KB buffer per fetch the node runs, 64) and written once whole and
//! checked against its hash: nothing is read back.
//!
//! The list of held hashes is kept in memory, sorted, so that `contains` is
//! a binary search and `hash_at` (the walk behind HOLDINGS) is an index;
//! beside it a map from each hash to its slot and copy count.
//!
//! A store of earlier versions (a file `fragments/<hash>` per fragment and
//! `copies/<hash>` per count) is moved into the slots when it opens.
//!
//! [`held_in`], [`for_each_held`] and [`lose`] read (or damage) the store
//! of a node from another thread or process: the stripe repair, tests,
//! benchmarks.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use dht_core::fragment::{FragmentBytes, FragmentHash, FRAGMENT_SIZE};
use dht_core::store::{FragmentStore, StoreError};

/// The fragments' file in the store directory.
pub const PACK_FILE: &str = "fragments.pack";
/// The entries' file in the store directory.
pub const INDEX_FILE: &str = "fragments.idx";
/// Bytes 0-3 of the entry of a slot that holds a fragment.
pub const MAGIC: [u8; 4] = *b"DHFR";
/// Bytes of an entry.
pub const ENTRY_SIZE: usize = 40;

/// Fragments kept in slots of two files in a directory.
pub struct DirStore {
    root: PathBuf,
    pack: File,
    index: File,
    /// Held hashes, sorted.
    held: Vec<FragmentHash>,
    /// The slot of each held fragment, and its recorded copy count.
    slots: HashMap<FragmentHash, Slot>,
    /// Free slots, reused before the files grow.
    free: Vec<u32>,
    /// Slots in the files.
    end: u32,
    /// Fragments being received in pieces, put together here.
    partial: Vec<(FragmentHash, Box<FragmentBytes>)>,
    capacity: usize,
    /// Told of every fragment written ([`DirStore::on_written`]).
    written: Option<WrittenHook>,
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    index: u32,
    copies: u8,
}

/// What [`DirStore::on_written`] calls.
type WrittenHook = Box<dyn Fn(&FragmentHash, &FragmentBytes) + Send>;

impl std::fmt::Debug for DirStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirStore")
            .field("root", &self.root)
            .field("held", &self.held.len())
            .field("free", &self.free.len())
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

/// Byte offset of slot `index`'s fragment in the pack.
fn data_at(index: u32) -> u64 {
    u64::from(index) * FRAGMENT_SIZE as u64
}

/// Byte offset of slot `index`'s entry in the index.
fn entry_at(index: u32) -> u64 {
    u64::from(index) * ENTRY_SIZE as u64
}

/// The entry of a slot holding `hash`.
fn entry(hash: &FragmentHash, copies: u8) -> [u8; ENTRY_SIZE] {
    let mut entry = [0u8; ENTRY_SIZE];
    entry[..4].copy_from_slice(&MAGIC);
    entry[4] = copies;
    entry[8..].copy_from_slice(&hash.0);
    entry
}

/// The fragment and copy count an entry names, if its slot holds one.
fn parse_entry(entry: &[u8]) -> Option<(FragmentHash, u8)> {
    if entry.get(..4)? != MAGIC {
        return None;
    }
    let hash: [u8; 32] = entry.get(8..ENTRY_SIZE)?.try_into().ok()?;
    Some((FragmentHash(hash), *entry.get(4)?))
}

impl DirStore {
    /// Opens (creating it if needed) the store under `root`, holding at most
    /// `capacity` fragments. Fails with a message a person can act on if the
    /// directory cannot be created, read or written.
    /// A start that fails leaves nothing behind: neither a file nor a
    /// directory it created.
    pub fn open(root: &Path, capacity: usize) -> io::Result<DirStore> {
        let created_root = !root.exists();
        fs::create_dir_all(root).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot create store directory {}: {e}", root.display()),
            )
        })?;
        let (pack_path, index_path) = (root.join(PACK_FILE), root.join(INDEX_FILE));
        let created = [!pack_path.exists(), !index_path.exists()];
        let undo = |e: io::Error, what: &str| {
            for (path, created) in [&pack_path, &index_path].into_iter().zip(created) {
                if created {
                    let _ = fs::remove_file(path);
                }
            }
            if created_root {
                let _ = fs::remove_dir(root);
            }
            io::Error::new(e.kind(), format!("{what} {}: {e}", root.display()))
        };
        let open = |path: &Path| {
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)
        };
        let (pack, index) = match (open(&pack_path), open(&index_path)) {
            (Ok(pack), Ok(index)) => (pack, index),
            (Err(e), _) | (_, Err(e)) => return Err(undo(e, "store directory is not writable:")),
        };
        let mut store = DirStore {
            root: root.to_owned(),
            pack,
            index,
            held: Vec::new(),
            slots: HashMap::new(),
            free: Vec::new(),
            end: 0,
            partial: Vec::new(),
            capacity,
            written: None,
        };
        store.load().map_err(|e| undo(e, "cannot read the store in"))?;
        store.move_old_files();
        Ok(store)
    }

    /// Reads the index.
    fn load(&mut self) -> io::Result<()> {
        let bytes = fs::read(self.root.join(INDEX_FILE))?;
        let slots = u32::try_from(bytes.len() / ENTRY_SIZE)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "index file too large"))?;
        if bytes.len() % ENTRY_SIZE != 0 {
            // An entry cut short by a crash.
            self.index.set_len(entry_at(slots))?;
        }
        let reached = self.pack.metadata()?.len() / FRAGMENT_SIZE as u64;
        for (index, bytes) in (0..slots).zip(bytes.chunks_exact(ENTRY_SIZE)) {
            match parse_entry(bytes) {
                Some((hash, copies))
                    if u64::from(index) < reached && !self.slots.contains_key(&hash) =>
                {
                    self.slots.insert(hash, Slot { index, copies });
                    self.held.push(hash);
                }
                Some(_) => {
                    self.index.write_all_at(&[0u8; 4], entry_at(index))?;
                    self.free.push(index);
                }
                None => self.free.push(index),
            }
        }
        self.end = slots;
        // Bytes written for a slot whose entry was not, or a pack a crash
        // left short.
        if self.pack.metadata()?.len() != data_at(slots) {
            self.pack.set_len(data_at(slots))?;
        }
        self.held.sort_unstable();
        // Lowest slots first.
        self.free.reverse();
        Ok(())
    }

    /// Moves the fragments of an earlier version's store (a file
    /// `fragments/<hash>` each, counts in `copies/<hash>`) into the pack.
    /// A file that is not a whole fragment matching its name is removed;
    /// one the pack cannot take (a full disk) stays for the next start.
    fn move_old_files(&mut self) {
        let dir = self.root.join("fragments");
        let Ok(entries) = fs::read_dir(&dir) else { return };
        let counts_dir = self.root.join("copies");
        let mut moved = 0usize;
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if let Some(hash) = name.to_str().and_then(|n| FragmentHash::from_hex(n).ok()) {
                let data: Option<Box<FragmentBytes>> =
                    fs::read(&path).ok().and_then(|b| b.into_boxed_slice().try_into().ok());
                if let Some(data) = data.filter(|d| hash.verifies(d)) {
                    if self.store(&hash, &data).is_err() {
                        continue;
                    }
                    let count = fs::read_to_string(counts_dir.join(hash.to_string()))
                        .ok()
                        .and_then(|t| t.trim().parse::<u8>().ok());
                    if let Some(count) = count {
                        self.set_copies(&hash, count);
                    }
                    moved += 1;
                }
            }
            let _ = fs::remove_file(&path);
        }
        if fs::remove_dir(&dir).is_ok() {
            let _ = fs::remove_dir_all(&counts_dir);
        }
        if moved > 0 {
            log::info!("moved {moved} fragments from {} into {PACK_FILE}", dir.display());
        }
    }

    /// Calls `hook` with every fragment written to the store from now on,
    /// once it is in place (the node's stripe repair looks for coded
    /// roots there without reading the pack again).
    pub fn on_written(&mut self, hook: impl Fn(&FragmentHash, &FragmentBytes) + Send + 'static) {
        self.written = Some(Box::new(hook));
    }

    /// Writes `hash` into a free slot or at the end: the bytes, then the
    /// entry.
    fn write_slot(&mut self, hash: &FragmentHash, data: &FragmentBytes) -> io::Result<u32> {
        let (index, fresh) = match self.free.pop() {
            Some(index) => (index, false),
            None if self.end < u32::MAX => (self.end, true),
            None => return Err(io::Error::new(io::ErrorKind::StorageFull, "index file full")),
        };
        let written = self
            .pack
            .write_all_at(data, data_at(index))
            .and_then(|()| self.index.write_all_at(&entry(hash, 0), entry_at(index)));
        match written {
            Ok(()) => {
                if fresh {
                    self.end += 1;
                }
                Ok(index)
            }
            Err(e) => {
                if fresh {
                    let _ = self.pack.set_len(data_at(self.end));
                    let _ = self.index.set_len(entry_at(self.end));
                } else if self.index.write_all_at(&[0u8; 4], entry_at(index)).is_ok() {
                    self.free.push(index);
                }
                Err(e)
            }
        }
    }

    /// Writes `data` as the fragment `hash`, not held, whose place in
    /// `held` is `position`.
    fn keep(
        &mut self,
        position: usize,
        hash: &FragmentHash,
        data: &FragmentBytes,
    ) -> Result<(), StoreError> {
        match self.write_slot(hash, data) {
            Ok(index) => {
                self.held.insert(position, *hash);
                self.slots.insert(*hash, Slot { index, copies: 0 });
                if let Some(hook) = &self.written {
                    hook(hash, data);
                }
                Ok(())
            }
            Err(e) => {
                log::debug!("cannot store fragment {hash}: {e}");
                Err(store_error(&e))
            }
        }
    }

    /// Forgets `hash`; returns its record.
    fn forget(&mut self, hash: &FragmentHash) -> Option<Slot> {
        if let Ok(i) = self.held.binary_search(hash) {
            self.held.remove(i);
        }
        self.slots.remove(hash)
    }

    fn forget_partial(&mut self, hash: &FragmentHash) {
        self.partial.retain(|(h, _)| h != hash);
    }
}

impl FragmentStore for DirStore {
    fn contains(&self, hash: &FragmentHash) -> bool {
        self.held.binary_search(hash).is_ok()
    }

    fn store(&mut self, hash: &FragmentHash, data: &FragmentBytes) -> Result<(), StoreError> {
        let Err(position) = self.held.binary_search(hash) else { return Ok(()) };
        if self.held.len() >= self.capacity {
            return Err(StoreError::Full);
        }
        self.keep(position, hash, data)
    }

    /// The bytes of the slot; the node checks them against the hash and
    /// removes a fragment that fails.
    fn read(&mut self, hash: &FragmentHash, out: &mut FragmentBytes) -> Result<bool, StoreError> {
        let Some(slot) = self.slots.get(hash).copied() else { return Ok(false) };
        match self.pack.read_exact_at(out, data_at(slot.index)) {
            Ok(()) => Ok(true),
            Err(e) => {
                log::warn!("fragment {hash} is unreadable, forgetting it: {e}");
                self.forget(hash);
                Ok(false)
            }
        }
    }

    fn remove(&mut self, hash: &FragmentHash) -> Result<bool, StoreError> {
        let Some(slot) = self.forget(hash) else { return Ok(false) };
        match self.index.write_all_at(&[0u8; 4], entry_at(slot.index)) {
            Ok(()) => {
                self.free.push(slot.index);
                Ok(true)
            }
            Err(_) => Err(StoreError::Failed),
        }
    }

    fn len(&self) -> usize {
        self.held.len()
    }

    fn capacity(&self) -> usize {
        self.capacity
    }

    fn hash_at(&self, i: usize) -> Option<FragmentHash> {
        self.held.get(i).copied()
    }

    fn copies(&self, hash: &FragmentHash) -> u8 {
        self.slots.get(hash).map_or(0, |s| s.copies)
    }

    fn set_copies(&mut self, hash: &FragmentHash, copies: u8) -> bool {
        let Some(slot) = self.slots.get_mut(hash) else { return false };
        if slot.copies == copies {
            return true;
        }
        match self.index.write_all_at(&[copies], entry_at(slot.index) + 4) {
            Ok(()) => {
                slot.copies = copies;
                true
            }
            Err(e) => {
                log::warn!("cannot record the copy count of {hash}: {e}");
                false
            }
        }
    }

    fn write_partial(
        &mut self,
        hash: &FragmentHash,
        offset: usize,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        let at = match self.partial.iter().position(|(h, _)| h == hash) {
            Some(at) => at,
            None => {
                if self.held.len() + self.partial.len() >= self.capacity {
                    return Err(StoreError::Full);
                }
                self.partial.push((*hash, Box::new([0u8; FRAGMENT_SIZE])));
                self.partial.len() - 1
            }
        };
        let Some((_, buf)) = self.partial.get_mut(at) else { return Err(StoreError::Failed) };
        let Some(dst) = buf.get_mut(offset..offset + bytes.len()) else {
            return Err(StoreError::Failed);
        };
        dst.copy_from_slice(bytes);
        Ok(())
    }

    fn finish_partial(&mut self, hash: &FragmentHash) -> Result<bool, StoreError> {
        let Some(at) = self.partial.iter().position(|(h, _)| h == hash) else {
            return Err(StoreError::Failed);
        };
        let (_, data) = self.partial.swap_remove(at);
        if !hash.verifies(&data) {
            return Ok(false);
        }
        match self.held.binary_search(hash) {
            Ok(_) => Ok(true),
            Err(position) => self.keep(position, hash, &data).map(|()| true),
        }
    }

    fn drop_partial(&mut self, hash: &FragmentHash) {
        self.forget_partial(hash);
    }

    /// Under the capacity, and a free slot, or the disk takes one more
    /// fragment (written past the end of the pack, then cut off again).
    fn can_store(&mut self) -> bool {
        if self.held.len() + self.partial.len() >= self.capacity {
            return false;
        }
        if !self.free.is_empty() {
            return true;
        }
        let at = data_at(self.end);
        let written = self.pack.write_all_at(&[0u8; FRAGMENT_SIZE], at);
        let _ = self.pack.set_len(at);
        written.is_ok()
    }
}

/// A full disk is a full store: the node stops taking fragments rather
/// than retrying them; any other error is a failure.
fn store_error(e: &io::Error) -> StoreError {
    match e.kind() {
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => StoreError::Full,
        _ => StoreError::Failed,
    }
}

/// The live entries of the store under `root`: slot, hash and copy count.
fn entries_in(root: &Path) -> io::Result<Vec<(u32, FragmentHash, u8)>> {
    let bytes = match fs::read(root.join(INDEX_FILE)) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok((0..u32::MAX)
        .zip(bytes.chunks_exact(ENTRY_SIZE))
        .filter_map(|(slot, entry)| parse_entry(entry).map(|(hash, n)| (slot, hash, n)))
        .collect())
}

/// The fragments held in the store under `root`, with their recorded copy
/// counts, in the order of their slots; none if it has no index. Reads
/// only the index; the store may be in use by a node.
pub fn held_in(root: &Path) -> io::Result<Vec<(FragmentHash, u8)>> {
    Ok(entries_in(root)?.into_iter().map(|(_, hash, n)| (hash, n)).collect())
}

/// Bytes of a fragment's beginning that [`for_each_held`] reads.
pub const HEAD_SIZE: usize = 32;

/// A fragment held in a store, as [`for_each_held`] finds it.
#[derive(Debug)]
pub struct HeldRecord<'a> {
    pack: &'a File,
    at: u64,
    /// The fragment's hash, from its entry.
    pub hash: FragmentHash,
    /// Its first [`HEAD_SIZE`] bytes.
    pub head: [u8; HEAD_SIZE],
}

impl HeldRecord<'_> {
    /// Reads the whole fragment (not checked against its hash).
    pub fn read(&self, out: &mut FragmentBytes) -> io::Result<()> {
        self.pack.read_exact_at(out, self.at)
    }
}

/// Calls `f` with each fragment held in the store under `root`, reading
/// its entry and the fragment's first [`HEAD_SIZE`] bytes (the rest if
/// `f` asks). The store may be in use by a node.
pub fn for_each_held(root: &Path, mut f: impl FnMut(&HeldRecord<'_>)) -> io::Result<()> {
    let entries = entries_in(root)?;
    if entries.is_empty() {
        return Ok(());
    }
    let pack = File::open(root.join(PACK_FILE))?;
    let mut head = [0u8; HEAD_SIZE];
    for (slot, hash, _) in entries {
        let at = data_at(slot);
        if pack.read_exact_at(&mut head, at).is_ok() {
            f(&HeldRecord { pack: &pack, at, hash, head });
        }
    }
    Ok(())
}

/// Loses `hash` from the store under `root`, as a disk would: its bytes
/// are zeroed and its slot freed; whether it was held. For tests of loss:
/// a node running on the store finds the bytes wrong when it next reads
/// them, and removes the fragment.
pub fn lose(root: &Path, hash: &FragmentHash) -> io::Result<bool> {
    let Some((slot, _, _)) = entries_in(root)?.into_iter().find(|(_, h, _)| h == hash) else {
        return Ok(false);
    };
    let open = |name: &str| OpenOptions::new().write(true).open(root.join(name));
    open(PACK_FILE)?.write_all_at(&[0u8; FRAGMENT_SIZE], data_at(slot))?;
    open(INDEX_FILE)?.write_all_at(&[0u8; 4], entry_at(slot))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("dht-store-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn pack_len(root: &Path) -> u64 {
        fs::metadata(root.join(PACK_FILE)).unwrap().len()
    }

    #[test]
    fn stores_reads_and_survives_reopening() {
        let dir = temp_dir("reopen");
        let data = [7u8; FRAGMENT_SIZE];
        let hash = FragmentHash::of(&data);
        {
            let mut store = DirStore::open(&dir, 10).unwrap();
            store.store(&hash, &data).unwrap();
            assert!(store.contains(&hash));
        }
        let mut store = DirStore::open(&dir, 10).unwrap();
        assert_eq!(store.len(), 1);
        let mut out = [0u8; FRAGMENT_SIZE];
        assert!(store.read(&hash, &mut out).unwrap());
        assert_eq!(out, data);
        assert_eq!(store.hash_at(0), Some(hash));
        assert!(store.remove(&hash).unwrap());
        assert!(!store.read(&hash, &mut out).unwrap());
        drop(store);
        assert_eq!(DirStore::open(&dir, 10).unwrap().len(), 0, "a removal survives reopening");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn removed_records_are_reused_before_the_pack_grows() {
        let dir = temp_dir("reuse");
        let (a, b, c) = ([1u8; FRAGMENT_SIZE], [2u8; FRAGMENT_SIZE], [3u8; FRAGMENT_SIZE]);
        let mut store = DirStore::open(&dir, 10).unwrap();
        store.store(&FragmentHash::of(&a), &a).unwrap();
        store.store(&FragmentHash::of(&b), &b).unwrap();
        assert_eq!(pack_len(&dir), 2 * FRAGMENT_SIZE as u64);
        assert!(store.remove(&FragmentHash::of(&a)).unwrap());
        store.store(&FragmentHash::of(&c), &c).unwrap();
        assert_eq!(pack_len(&dir), 2 * FRAGMENT_SIZE as u64);
        let mut out = [0u8; FRAGMENT_SIZE];
        assert!(store.read(&FragmentHash::of(&c), &mut out).unwrap());
        assert_eq!(out, c);
        assert!(store.read(&FragmentHash::of(&b), &mut out).unwrap());
        assert_eq!(out, b);
        let mut seen = Vec::new();
        for_each_held(&dir, |r| {
            let mut bytes = [0u8; FRAGMENT_SIZE];
            r.read(&mut bytes).unwrap();
            assert_eq!(bytes[..HEAD_SIZE], r.head);
            seen.push((r.hash, bytes[FRAGMENT_SIZE - 1]));
        })
        .unwrap();
        seen.sort();
        let mut want = vec![(FragmentHash::of(&b), 2), (FragmentHash::of(&c), 3)];
        want.sort();
        assert_eq!(seen, want);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn copy_counts_survive_reopening_and_go_with_their_fragment() {
        let dir = temp_dir("copies");
        let (a, b) = ([4u8; FRAGMENT_SIZE], [5u8; FRAGMENT_SIZE]);
        let (ha, hb) = (FragmentHash::of(&a), FragmentHash::of(&b));
        {
            let mut store = DirStore::open(&dir, 10).unwrap();
            assert!(!store.set_copies(&ha, 12), "not held");
            store.store(&ha, &a).unwrap();
            store.store(&hb, &b).unwrap();
            assert!(store.set_copies(&ha, 12));
            assert!(store.set_copies(&hb, 9));
            assert!(store.set_copies(&hb, 0));
            assert_eq!((store.copies(&ha), store.copies(&hb)), (12, 0));
        }
        let mut store = DirStore::open(&dir, 10).unwrap();
        assert_eq!((store.copies(&ha), store.copies(&hb)), (12, 0));
        let mut listed = held_in(&dir).unwrap();
        listed.sort();
        let mut want = vec![(ha, 12), (hb, 0)];
        want.sort();
        assert_eq!(listed, want);
        assert!(store.remove(&ha).unwrap());
        assert_eq!(store.copies(&ha), 0);
        store.store(&ha, &a).unwrap();
        assert_eq!(store.copies(&ha), 0, "a count goes with its fragment");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn full_store_refuses() {
        let dir = temp_dir("full");
        let mut store = DirStore::open(&dir, 1).unwrap();
        let a = [1u8; FRAGMENT_SIZE];
        let b = [2u8; FRAGMENT_SIZE];
        store.store(&FragmentHash::of(&a), &a).unwrap();
        assert_eq!(store.store(&FragmentHash::of(&b), &b), Err(StoreError::Full));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_lost_fragment_fails_its_check_and_its_slot_is_reused_once_removed() {
        let dir = temp_dir("lost");
        let (a, b) = ([3u8; FRAGMENT_SIZE], [4u8; FRAGMENT_SIZE]);
        let hash = FragmentHash::of(&a);
        let mut store = DirStore::open(&dir, 4).unwrap();
        store.store(&hash, &a).unwrap();
        assert!(lose(&dir, &hash).unwrap());
        assert!(!lose(&dir, &hash).unwrap(), "lost already");
        assert!(held_in(&dir).unwrap().is_empty());
        // The node reads it, finds it wrong and removes it.
        let mut out = [0u8; FRAGMENT_SIZE];
        assert!(store.read(&hash, &mut out).unwrap());
        assert!(!hash.verifies(&out));
        assert!(store.remove(&hash).unwrap());
        assert!(!store.contains(&hash));
        store.store(&FragmentHash::of(&b), &b).unwrap();
        assert_eq!(pack_len(&dir), FRAGMENT_SIZE as u64);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn pieces_in_any_order_make_a_fragment_only_if_it_hashes_right() {
        let root = temp_dir("pieces");
        let mut store = DirStore::open(&root, 2).unwrap();
        let mut data = [0u8; FRAGMENT_SIZE];
        for (i, b) in data.iter_mut().enumerate() {
            *b = (i % 253) as u8;
        }
        let hash = FragmentHash::of(&data);
        for (i, piece) in data.chunks(1024).enumerate().rev() {
            store.write_partial(&hash, i * 1024, piece).unwrap();
        }
        assert!(!store.contains(&hash), "not held before it is finished");
        assert_eq!(store.finish_partial(&hash), Ok(true));
        assert!(store.contains(&hash));
        let mut out = [0u8; FRAGMENT_SIZE];
        assert_eq!(store.read(&hash, &mut out), Ok(true));
        assert_eq!(out, data);

        let wrong = FragmentHash([9; 32]);
        store.write_partial(&wrong, 0, &data[..512]).unwrap();
        // A partial counts against the capacity.
        assert_eq!(
            store.write_partial(&FragmentHash([8; 32]), 0, &data[..512]),
            Err(StoreError::Full)
        );
        store.write_partial(&wrong, 512, &data[512..]).unwrap();
        assert_eq!(store.finish_partial(&wrong), Ok(false));
        assert!(!store.contains(&wrong));
        assert_eq!(held_in(&root).unwrap(), [(hash, 0)], "nothing partial written");
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn an_entry_cut_short_repeated_or_beyond_the_pack_is_dropped_at_open() {
        let root = temp_dir("crash");
        let (a, b) = ([1u8; FRAGMENT_SIZE], [2u8; FRAGMENT_SIZE]);
        let (ha, hb) = (FragmentHash::of(&a), FragmentHash::of(&b));
        {
            let mut store = DirStore::open(&root, 4).unwrap();
            store.store(&ha, &a).unwrap();
            store.store(&hb, &b).unwrap();
        }
        // The crash came after b's entry was written, before its bytes.
        let pack = OpenOptions::new().write(true).open(root.join(PACK_FILE)).unwrap();
        pack.set_len(FRAGMENT_SIZE as u64 + 100).unwrap();
        let store = DirStore::open(&root, 4).unwrap();
        assert_eq!(store.len(), 1);
        assert!(store.contains(&ha));
        assert!(!store.contains(&hb), "a slot the pack does not reach is not held");
        assert_eq!(pack_len(&root), 2 * FRAGMENT_SIZE as u64, "the pack covers every slot");
        drop(store);
        // A copy of a's entry over b's freed slot, then an entry cut short.
        let index = OpenOptions::new().write(true).open(root.join(INDEX_FILE)).unwrap();
        index.write_all_at(&entry(&ha, 0), ENTRY_SIZE as u64).unwrap();
        index.write_all_at(&entry(&hb, 0)[..10], 2 * ENTRY_SIZE as u64).unwrap();
        drop(index);
        let mut store = DirStore::open(&root, 4).unwrap();
        assert_eq!(store.len(), 1);
        assert_eq!(held_in(&root).unwrap(), [(ha, 0)], "the repeated entry is freed");
        assert_eq!(fs::metadata(root.join(INDEX_FILE)).unwrap().len(), 2 * ENTRY_SIZE as u64);
        let mut out = [0u8; FRAGMENT_SIZE];
        assert!(store.read(&ha, &mut out).unwrap());
        assert_eq!(out, a);
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn an_earlier_versions_files_are_moved_into_the_pack() {
        let root = temp_dir("old");
        let (a, b) = ([1u8; FRAGMENT_SIZE], [2u8; FRAGMENT_SIZE]);
        let (ha, hb) = (FragmentHash::of(&a), FragmentHash::of(&b));
        let (dir, counts) = (root.join("fragments"), root.join("copies"));
        fs::create_dir_all(&dir).unwrap();
        fs::create_dir_all(&counts).unwrap();
        fs::write(dir.join(ha.to_string()), a).unwrap();
        fs::write(counts.join(ha.to_string()), "12\n").unwrap();
        fs::write(dir.join(hb.to_string()), &b[..100]).unwrap();
        fs::write(dir.join(".tmp.x"), b"junk").unwrap();
        let mut store = DirStore::open(&root, 4).unwrap();
        assert_eq!(store.len(), 1);
        assert_eq!(store.copies(&ha), 12);
        let mut out = [0u8; FRAGMENT_SIZE];
        assert!(store.read(&ha, &mut out).unwrap());
        assert_eq!(out, a);
        assert!(!dir.exists() && !counts.exists(), "the old layout is gone");
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn a_full_disk_is_a_full_store() {
        assert_eq!(store_error(&io::Error::from(io::ErrorKind::StorageFull)), StoreError::Full);
        assert_eq!(
            store_error(&io::Error::from(io::ErrorKind::PermissionDenied)),
            StoreError::Failed
        );
    }

    #[test]
    fn unwritable_directory_is_reported() {
        let result = DirStore::open(Path::new("/proc/dht-cannot-exist"), 4);
        let message = result.unwrap_err().to_string();
        assert!(message.contains("/proc/dht-cannot-exist"), "{message}");
    }
}
