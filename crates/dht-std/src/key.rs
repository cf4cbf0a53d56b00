//! Network key files.
//!
//! A network may have a key, a file every node and tool of the network is
//! given (as IPFS's `swarm.key`): any bytes, of which trailing white space
//! is ignored (so that an editor's final newline does not change the key).
//! `deploy_test_scene.sh` writes 32 random bytes in hex. With a key, every
//! datagram carries a tag only holders of the key can make; see
//! [`dht_core::auth`].

use std::io;
use std::path::Path;

use dht_core::auth::NetworkKey;

/// Reads the key in the file at `path`. Fails with a message naming the
/// file if it cannot be read or holds nothing.
pub fn read_key_file(path: &Path) -> io::Result<NetworkKey> {
    let bytes = std::fs::read(path).map_err(|e| {
        io::Error::new(e.kind(), format!("cannot read the network key {}: {e}", path.display()))
    })?;
    let end = bytes.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(0, |i| i + 1);
    match bytes.get(..end) {
        Some(key) if !key.is_empty() => Ok(NetworkKey::new(key)),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the network key file {} is empty", path.display()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_final_newline_does_not_change_the_key_and_an_empty_file_is_refused() {
        let dir = std::env::temp_dir().join(format!("dht-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = dir.join("a");
        let b = dir.join("b");
        std::fs::write(&a, b"0123456789abcdef").unwrap();
        std::fs::write(&b, b"0123456789abcdef\n").unwrap();
        let mut datagram = [0u8; 64];
        let len = read_key_file(&a).unwrap().seal(&mut datagram, 10).unwrap();
        assert!(read_key_file(&b).unwrap().open(&datagram[..len]).is_some());
        std::fs::write(&a, b" \n").unwrap();
        let error = read_key_file(&a).unwrap_err().to_string();
        assert!(error.contains("is empty"), "{error}");
        let error = read_key_file(&dir.join("missing")).unwrap_err().to_string();
        assert!(error.contains("cannot read the network key"), "{error}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
