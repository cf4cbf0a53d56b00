//! A fragment store on a directory.
//!
//! Each fragment is a file `fragments/<64 hex digits of its hash>` of
//! exactly 8192 bytes. A fragment is written to `fragments/.tmp.<hash>` and
//! renamed into place, so its final name never shows a partly written
//! file; leftovers of a crash are removed when the store opens. The node
//! checks every fragment it reads against its hash and removes one that
//! fails, so even a file damaged on disk is never served. Data is not
//! fsync'ed: after a power loss a fragment may be missing or fail its
//! check, and the shard's repair brings it back from another holder.
//!
//! The list of held hashes is kept in memory, sorted, so that `contains` is
//! a binary search and `hash_at` (the walk behind HOLDINGS) is an index.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use dht_core::fragment::{FragmentBytes, FragmentHash, FRAGMENT_SIZE};
use dht_core::store::{FragmentStore, StoreError};

/// Fragments kept in a directory.
#[derive(Debug)]
pub struct DirStore {
    dir: PathBuf,
    held: Vec<FragmentHash>,
    capacity: usize,
}

impl DirStore {
    /// Opens (creating it if needed) the store under `root`, holding at most
    /// `capacity` fragments. Fails with a message a person can act on if the
    /// directory cannot be created, read or written.
    pub fn open(root: &Path, capacity: usize) -> io::Result<DirStore> {
        let dir = root.join("fragments");
        fs::create_dir_all(&dir).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot create store directory {}: {e}", dir.display()),
            )
        })?;
        // Prove the directory is writable now rather than at the first store.
        let probe = dir.join(".write-test");
        fs::write(&probe, b"ok").and_then(|()| fs::remove_file(&probe)).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("store directory {} is not writable: {e}", dir.display()),
            )
        })?;
        let mut held = Vec::new();
        let entries = fs::read_dir(&dir).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot read store directory {}: {e}", dir.display()))
        })?;
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with(".tmp.") {
                let _ = fs::remove_file(entry.path());
                continue;
            }
            if let Ok(hash) = FragmentHash::from_hex(name) {
                held.push(hash);
            }
        }
        held.sort_unstable();
        Ok(DirStore { dir, held, capacity })
    }

    fn path_of(&self, hash: &FragmentHash) -> PathBuf {
        self.dir.join(hash.to_string())
    }

    fn forget(&mut self, hash: &FragmentHash) {
        if let Ok(i) = self.held.binary_search(hash) {
            self.held.remove(i);
        }
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
        let path = self.path_of(hash);
        let tmp = self.dir.join(format!(".tmp.{hash}"));
        let written = fs::File::create(&tmp)
            .and_then(|mut f| f.write_all(data))
            .and_then(|()| fs::rename(&tmp, &path));
        match written {
            Ok(()) => {
                self.held.insert(position, *hash);
                Ok(())
            }
            Err(e) => {
                log::warn!("cannot store fragment {hash}: {e}");
                let _ = fs::remove_file(&tmp);
                Err(StoreError::Failed)
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
    fn unwritable_directory_is_reported() {
        let result = DirStore::open(Path::new("/proc/dht-cannot-exist"), 4);
        let message = result.unwrap_err().to_string();
        assert!(message.contains("/proc/dht-cannot-exist"), "{message}");
    }
}
