//! Fragments and their hashes.
//!
//! A file is cut into fragments of exactly [`FRAGMENT_SIZE`] (8192) bytes;
//! the last one is padded with zeros. A fragment is addressed by the SHA-256
//! of its 8192 bytes, and held by the nodes of the shard
//! `u64::from_be_bytes(hash[0..8]) % 16`. The index fragment that names a
//! file is in [`crate::index`].

use core::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use crate::config::{FRAGMENT_SIZE, HASH_SIZE, SHARD_COUNT};
use crate::id::Shard;

/// The bytes of one fragment.
pub type FragmentBytes = [u8; FRAGMENT_SIZE];

/// The SHA-256 of a fragment's 8192 bytes: its address in the network.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct FragmentHash(pub [u8; HASH_SIZE]);

impl FragmentHash {
    /// The hash of `data`.
    pub fn of(data: &FragmentBytes) -> FragmentHash {
        FragmentHash(Sha256::digest(data).into())
    }

    /// Whether `data` hashes to this hash.
    pub fn verifies(&self, data: &FragmentBytes) -> bool {
        FragmentHash::of(data) == *self
    }

    /// The first 8 bytes as a big-endian integer: the key of the shard, the
    /// original's broadcast UID of a NEWFILE, and a cheap identity for logs.
    pub fn prefix_u64(&self) -> u64 {
        let [a, b, c, d, e, f, g, h, ..] = self.0;
        u64::from_be_bytes([a, b, c, d, e, f, g, h])
    }

    /// The shard that holds this fragment: `u64_be(hash[0..8]) % 16`.
    pub fn shard(&self) -> Shard {
        Shard::of(self.prefix_u64())
    }

    /// Parses 64 hexadecimal digits (either case).
    pub fn from_hex(text: &str) -> Result<FragmentHash, HexError> {
        let bytes = text.as_bytes();
        if bytes.len() != HASH_SIZE * 2 {
            return Err(HexError::Length(bytes.len()));
        }
        let mut out = [0u8; HASH_SIZE];
        for (i, (slot, pair)) in out.iter_mut().zip(bytes.chunks_exact(2)).enumerate() {
            let (hi, lo) = match pair {
                [hi, lo] => (*hi, *lo),
                _ => return Err(HexError::Length(bytes.len())),
            };
            let hi = hex_value(hi).ok_or(HexError::Digit(i * 2))?;
            let lo = hex_value(lo).ok_or(HexError::Digit(i * 2 + 1))?;
            *slot = (hi << 4) | lo;
        }
        Ok(FragmentHash(out))
    }
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Why a text is not a fragment hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HexError {
    /// The text has this many characters instead of 64.
    Length(usize),
    /// The character at this position is not a hexadecimal digit.
    Digit(usize),
}

impl fmt::Display for HexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HexError::Length(n) => {
                write!(f, "a hash is 64 hexadecimal digits, this one has {n} characters")
            }
            HexError::Digit(i) => write!(f, "character {} is not a hexadecimal digit", i + 1),
        }
    }
}

impl fmt::Display for FragmentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for FragmentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Eight hex digits identify a fragment well enough in logs.
        write!(f, "#{:016x}", self.prefix_u64())
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::format;
    use std::string::String;

    #[test]
    fn sha256_of_zero_fragment_matches_reference() {
        // `head -c 8192 /dev/zero | sha256sum`
        let hash = FragmentHash::of(&[0u8; FRAGMENT_SIZE]);
        assert_eq!(
            format!("{hash}"),
            "9f1dcbc35c350d6027f98be0f5c8b43b42ca52b7604459c0c42be3aa88913d47"
        );
    }

    #[test]
    fn shard_uses_first_eight_bytes_big_endian() {
        let mut bytes = [0u8; 32];
        bytes[7] = 0x23; // 0x23 % 16 = 3
        assert_eq!(FragmentHash(bytes).shard().get(), 3);
        bytes[0] = 0xFF; // high bytes do not change the low nibble
        assert_eq!(FragmentHash(bytes).shard().get(), 3);
        bytes[8] = 0x0F; // bytes past the eighth are ignored
        assert_eq!(FragmentHash(bytes).shard().get(), 3);
    }

    #[test]
    fn hex_round_trip_and_errors() {
        let hash = FragmentHash([0xAB; 32]);
        let text = format!("{hash}");
        assert_eq!(FragmentHash::from_hex(&text), Ok(hash));
        assert_eq!(FragmentHash::from_hex(&text.to_uppercase()), Ok(hash));
        assert_eq!(FragmentHash::from_hex("abc"), Err(HexError::Length(3)));
        let mut bad = String::from(&text[..63]);
        bad.push('g');
        assert_eq!(FragmentHash::from_hex(&bad), Err(HexError::Digit(63)));
    }
}
