//! The node's identity, kept in its store directory.
//!
//! `node.id` holds the node id as 16 hexadecimal digits and a newline. A
//! node that finds it keeps its id (and so its shard) across restarts and
//! serves what its store holds; a node that does not is new and lets the
//! core pick an id in a shard that needs members, then saves it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use dht_core::NodeId;

/// The identity file of a store directory.
pub fn path(root: &Path) -> PathBuf {
    root.join("node.id")
}

/// The saved id, if any. A file that exists but does not hold an id is an
/// error (better to stop than to silently become another node).
pub fn load(root: &Path) -> io::Result<Option<NodeId>> {
    let file = path(root);
    match fs::read_to_string(&file) {
        Ok(text) => u64::from_str_radix(text.trim(), 16).map(|id| Some(NodeId(id))).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} does not hold a node id; remove it to start as a new node",
                    file.display()
                ),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io::Error::new(e.kind(), format!("cannot read {}: {e}", file.display()))),
    }
}

/// Saves `id` (written to a temporary file and renamed).
pub fn save(root: &Path, id: NodeId) -> io::Result<()> {
    let file = path(root);
    let tmp = root.join(".node.id.tmp");
    fs::write(&tmp, format!("{id}\n"))
        .and_then(|()| fs::rename(&tmp, &file))
        .map_err(|e| io::Error::new(e.kind(), format!("cannot write {}: {e}", file.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let dir = std::env::temp_dir().join(format!("dht-identity-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        assert_eq!(load(&dir).unwrap(), None);
        save(&dir, NodeId(0xDEAD_BEEF_0000_0005)).unwrap();
        assert_eq!(load(&dir).unwrap(), Some(NodeId(0xDEAD_BEEF_0000_0005)));
        fs::write(path(&dir), "not hex").unwrap();
        assert!(load(&dir).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
