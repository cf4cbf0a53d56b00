//! A fragment store on a directory.
//!
//! Each fragment is a file `fragments/<64 hex digits of its hash>` of
//! exactly 8192 bytes. A fragment is written to `fragments/.tmp.<hash>` and
//! renamed into place, so its final name never shows a partly written or
//! wrong file; leftovers of a crash are removed when the store opens. A
//! fragment arriving in pieces is put together in memory (at most one 8 KB
//! buffer per fetch the node runs, 64) and written once whole and checked
//! against its hash: one file created per fragment, nothing read back. A full disk is reported as a
//! full store ([`StoreError::Full`]), so that the node stops taking
//! fragments instead of retrying them. The node
//! checks every fragment it reads against its hash and removes one that
//! fails, so even a file damaged on disk is never served. Data is not
//! fsync'ed: after a power loss a fragment may be missing or fail its
//! check, and the shard's repair brings it back from another holder.
//!
//! The list of held hashes is kept in memory, sorted, so that `contains` is
//! a binary search and `hash_at` (the walk behind HOLDINGS) is an index.
//!
//! A fragment that should have more copies than the network's `R` (an
//! index fragment stored with a copy count) has a file
//! `copies/<64 hex digits>` holding the count in decimal; the counts are
//! read when the store opens and kept in memory.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use dht_core::fragment::{FragmentBytes, FragmentHash, FRAGMENT_SIZE};
use dht_core::store::{FragmentStore, StoreError};

/// Fragments kept in a directory.
pub struct DirStore {
    dir: PathBuf,
    held: Vec<FragmentHash>,
    /// Copy counts recorded above the network's `R`, and their directory.
    copies: std::collections::HashMap<FragmentHash, u8>,
    copies_dir: PathBuf,
    /// Fragments being received in pieces, put together here.
    partial: Vec<(FragmentHash, Box<FragmentBytes>)>,
    capacity: usize,
    /// Told of every fragment written ([`DirStore::on_written`]).
    written: Option<WrittenHook>,
}

/// What [`DirStore::on_written`] calls.
type WrittenHook = Box<dyn Fn(&FragmentHash, &FragmentBytes) + Send>;

impl std::fmt::Debug for DirStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirStore")
            .field("dir", &self.dir)
            .field("held", &self.held.len())
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl DirStore {
    /// Opens (creating it if needed) the store under `root`, holding at most
    /// `capacity` fragments. Fails with a message a person can act on if the
    /// directory cannot be created, read or written.
    /// A start that fails leaves nothing behind: neither a probe file nor a
    /// directory it created.
    pub fn open(root: &Path, capacity: usize) -> io::Result<DirStore> {
        let dir = root.join("fragments");
        let created = !dir.exists();
        let undo = |e: io::Error, what: &str| {
            if created {
                let _ = fs::remove_dir(&dir);
            }
            io::Error::new(e.kind(), format!("{what} {}: {e}", dir.display()))
        };
        fs::create_dir_all(&dir).map_err(|e| undo(e, "cannot create store directory"))?;
        // Prove the directory is writable now rather than at the first store.
        let probe = dir.join(".write-test");
        let written = fs::write(&probe, b"ok");
        let _ = fs::remove_file(&probe);
        written.map_err(|e| undo(e, "store directory is not writable:"))?;
        let mut held = Vec::new();
        let entries = fs::read_dir(&dir).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot read store directory {}: {e}", dir.display()))
        })?;
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let leftover = name.starts_with(".tmp.") || name.starts_with(".part.");
            if leftover || name == ".write-test" || name == ".room-test" {
                let _ = fs::remove_file(entry.path());
                continue;
            }
            if let Ok(hash) = FragmentHash::from_hex(name) {
                held.push(hash);
            }
        }
        held.sort_unstable();
        let copies_dir = root.join("copies");
        let copies = read_copies(&copies_dir, &held);
        Ok(DirStore { dir, held, copies, copies_dir, partial: Vec::new(), capacity, written: None })
    }

    /// Calls `hook` with every fragment written to the store from now on,
    /// once it is in place (the node's stripe repair looks for coded
    /// roots there without reading the files again).
    pub fn on_written(&mut self, hook: impl Fn(&FragmentHash, &FragmentBytes) + Send + 'static) {
        self.written = Some(Box::new(hook));
    }

    fn path_of(&self, hash: &FragmentHash) -> PathBuf {
        self.dir.join(hash.to_string())
    }

    fn forget_partial(&mut self, hash: &FragmentHash) {
        self.partial.retain(|(h, _)| h != hash);
    }

    /// Writes `data` as the file of `hash`: a temporary file renamed into
    /// place.
    fn write_file(&self, hash: &FragmentHash, data: &FragmentBytes) -> io::Result<()> {
        let tmp = self.dir.join(format!(".tmp.{hash}"));
        let written = fs::File::create(&tmp)
            .and_then(|mut f| f.write_all(data))
            .and_then(|()| fs::rename(&tmp, self.path_of(hash)));
        match (&written, &self.written) {
            (Err(_), _) => {
                let _ = fs::remove_file(&tmp);
            }
            (Ok(()), Some(hook)) => hook(hash, data),
            (Ok(()), None) => {}
        }
        written
    }

    fn forget(&mut self, hash: &FragmentHash) {
        if let Ok(i) = self.held.binary_search(hash) {
            self.held.remove(i);
        }
        if self.copies.remove(hash).is_some() {
            let _ = fs::remove_file(self.copies_dir.join(hash.to_string()));
        }
    }
}

/// The copy counts recorded under `dir` for fragments in `held`; the
/// files of fragments no longer held (a crash between the two removals)
/// and leftovers are removed.
fn read_copies(dir: &Path, held: &[FragmentHash]) -> std::collections::HashMap<FragmentHash, u8> {
    let mut copies = std::collections::HashMap::new();
    let Ok(entries) = fs::read_dir(dir) else { return copies };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let parsed = name.to_str().and_then(|n| FragmentHash::from_hex(n).ok());
        let count = fs::read_to_string(entry.path()).ok().and_then(|t| t.trim().parse::<u8>().ok());
        match (parsed, count) {
            (Some(hash), Some(n)) if n > 0 && held.binary_search(&hash).is_ok() => {
                copies.insert(hash, n);
            }
            _ => {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
    copies
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
        match self.write_file(hash, data) {
            Ok(()) => {
                self.held.insert(position, *hash);
                Ok(())
            }
            Err(e) => {
                log::debug!("cannot store fragment {hash}: {e}");
                Err(store_error(&e))
            }
        }
    }

    fn read(&mut self, hash: &FragmentHash, out: &mut FragmentBytes) -> Result<bool, StoreError> {
        if !self.contains(hash) {
            return Ok(false);
        }
        let path = self.path_of(hash);
        let result = fs::File::open(&path).and_then(|mut f| {
            f.read_exact(out)?;
            // A longer file is damaged too.
            let mut extra = [0u8; 1];
            match f.read(&mut extra)? {
                0 => Ok(()),
                _ => Err(io::Error::new(io::ErrorKind::InvalidData, "fragment file too long")),
            }
        });
        match result {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.forget(hash);
                Ok(false)
            }
            Err(e) => {
                log::warn!("fragment {hash} is unreadable, removing it: {e}");
                let _ = fs::remove_file(&path);
                self.forget(hash);
                Ok(false)
            }
        }
    }

    fn remove(&mut self, hash: &FragmentHash) -> Result<bool, StoreError> {
        if !self.contains(hash) {
            return Ok(false);
        }
        self.forget(hash);
        match fs::remove_file(self.path_of(hash)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
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
        self.copies.get(hash).copied().unwrap_or(0)
    }

    fn set_copies(&mut self, hash: &FragmentHash, copies: u8) -> bool {
        if !self.contains(hash) {
            return false;
        }
        if self.copies.get(hash).copied().unwrap_or(0) == copies {
            return true;
        }
        let file = self.copies_dir.join(hash.to_string());
        let written = if copies == 0 {
            fs::remove_file(&file).or_else(|e| match e.kind() {
                io::ErrorKind::NotFound => Ok(()),
                _ => Err(e),
            })
        } else {
            let tmp = self.copies_dir.join(format!(".tmp.{hash}"));
            fs::create_dir_all(&self.copies_dir)
                .and_then(|()| fs::write(&tmp, format!("{copies}\n")))
                .and_then(|()| fs::rename(&tmp, &file))
        };
        match written {
            Ok(()) => {
                match copies {
                    0 => self.copies.remove(hash),
                    n => self.copies.insert(*hash, n),
                };
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
            Err(position) => match self.write_file(hash, &data) {
                Ok(()) => {
                    self.held.insert(position, *hash);
                    Ok(true)
                }
                Err(e) => {
                    log::debug!("cannot store fragment {hash}: {e}");
                    Err(store_error(&e))
                }
            },
        }
    }

    fn drop_partial(&mut self, hash: &FragmentHash) {
        self.forget_partial(hash);
    }

    /// Under the capacity, and the disk takes a fragment's worth of bytes
    /// (written to a probe file, then removed).
    fn can_store(&mut self) -> bool {
        if self.held.len() + self.partial.len() >= self.capacity {
            return false;
        }
        let probe = self.dir.join(".room-test");
        let written = fs::write(&probe, [0u8; FRAGMENT_SIZE]);
        let _ = fs::remove_file(&probe);
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

/// The size a fragment file must have.
pub const FRAGMENT_FILE_SIZE: u64 = FRAGMENT_SIZE as u64;

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("dht-store-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
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
        // A crash left a temporary file behind.
        fs::write(dir.join("fragments").join(".tmp.junk"), b"partial").unwrap();
        let mut store = DirStore::open(&dir, 10).unwrap();
        assert_eq!(store.len(), 1);
        assert!(!dir.join("fragments").join(".tmp.junk").exists());
        let mut out = [0u8; FRAGMENT_SIZE];
        assert!(store.read(&hash, &mut out).unwrap());
        assert_eq!(out, data);
        assert_eq!(store.hash_at(0), Some(hash));
        assert!(store.remove(&hash).unwrap());
        assert!(!store.read(&hash, &mut out).unwrap());
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
        // A count left by a fragment removed in a crash, and junk.
        let stale = FragmentHash::of(&[6u8; FRAGMENT_SIZE]);
        fs::write(dir.join("copies").join(stale.to_string()), "5\n").unwrap();
        fs::write(dir.join("copies").join("junk"), "x").unwrap();
        let mut store = DirStore::open(&dir, 10).unwrap();
        assert_eq!((store.copies(&ha), store.copies(&hb)), (12, 0));
        assert_eq!(fs::read_dir(dir.join("copies")).unwrap().count(), 1, "stale counts removed");
        assert!(store.remove(&ha).unwrap());
        assert_eq!(store.copies(&ha), 0);
        assert!(!dir.join("copies").join(ha.to_string()).exists());
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
    fn truncated_fragment_file_is_removed_not_served() {
        let dir = temp_dir("truncated");
        let data = [3u8; FRAGMENT_SIZE];
        let hash = FragmentHash::of(&data);
        let mut store = DirStore::open(&dir, 4).unwrap();
        store.store(&hash, &data).unwrap();
        fs::write(dir.join("fragments").join(hash.to_string()), &data[..100]).unwrap();
        let mut out = [0u8; FRAGMENT_SIZE];
        assert!(!store.read(&hash, &mut out).unwrap());
        assert!(!store.contains(&hash));
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
        let names: Vec<String> = fs::read_dir(root.join("fragments"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, [hash.to_string()], "no partial file left behind");
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn leftovers_of_a_crash_are_removed_at_open() {
        let root = temp_dir("leftovers");
        let dir = root.join("fragments");
        fs::create_dir_all(&dir).unwrap();
        for name in [".tmp.x", ".part.y", ".write-test"] {
            fs::write(dir.join(name), b"junk").unwrap();
        }
        let store = DirStore::open(&root, 2).unwrap();
        assert_eq!(store.len(), 0);
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 0);
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
