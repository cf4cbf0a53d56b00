//! Fragments, their hashes, and the index fragment that names a file.
//!
//! A file is cut into fragments of exactly [`FRAGMENT_SIZE`] (8192) bytes;
//! the last one is padded with zeros. A fragment is addressed by the SHA-256
//! of its 8192 bytes, and held by the nodes of the shard
//! `u64::from_be_bytes(hash[0..8]) % 16`.
//!
//! The [`IndexFragment`] is an ordinary fragment with this layout:
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0      | 29   | file name, UTF-8, padded with zero bytes |
//! | 29     | 1    | number of data fragments, 0..=255 |
//! | 30     | 2    | bytes of the last fragment that belong to the file, big-endian |
//! | 32     | 8160 | 255 fragment hashes of 32 bytes, in file order; unused ones zero |
//!
//! 29 + 1 + 2 + 255 * 32 = 8192, and one index covers up to
//! 255 * 8192 = 2,088,960 bytes ([`MAX_FILE_SIZE`]).
//!
//! Decoding validates everything a hostile peer could get wrong: the name is
//! UTF-8 without control characters and zero-padded (nothing after the first
//! zero byte), a file of zero fragments has a last length of zero, otherwise
//! the last length is `1..=8192`.
//!
//! ```
//! use dht_core::fragment::{IndexFragment, IndexName, FRAGMENT_SIZE};
//! let name = IndexName::from_file_name("holiday.jpg");
//! let index = IndexFragment::for_file(name, 10_000, |i| {
//!     dht_core::fragment::FragmentHash([i as u8; 32])
//! }).unwrap();
//! let mut bytes = [0u8; FRAGMENT_SIZE];
//! index.encode(&mut bytes);
//! let back = IndexFragment::decode(&bytes).unwrap();
//! assert_eq!(back.name().as_str(), "holiday.jpg");
//! assert_eq!(back.file_size(), 10_000);
//! assert_eq!(back.fragment_count(), 2);
//! ```

use core::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use crate::config::{
    FRAGMENT_SIZE, HASH_SIZE, INDEX_MAX_FRAGMENTS, INDEX_NAME_SIZE, MAX_FILE_SIZE, SHARD_COUNT,
};
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

/// The file name stored in an index fragment: at most 29 bytes of UTF-8
/// without control characters.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct IndexName {
    bytes: [u8; INDEX_NAME_SIZE],
    len: u8,
}

impl IndexName {
    /// The empty name.
    pub const EMPTY: IndexName = IndexName { bytes: [0; INDEX_NAME_SIZE], len: 0 };

    /// Makes a name from a file name, dropping control characters and
    /// shortening it to 29 bytes at a character boundary. A long name keeps
    /// its extension (up to 8 bytes) so that `a-very-long-photo-name.jpeg`
    /// stays a `.jpeg`.
    pub fn from_file_name(name: &str) -> IndexName {
        let mut out = IndexName::EMPTY;
        let clean_len: usize = name.chars().filter(|c| !c.is_control()).map(char::len_utf8).sum();
        let extension = name
            .rfind('.')
            .map(|dot| name.get(dot..).unwrap_or(""))
            .filter(|ext| ext.len() <= 8 && ext.len() > 1 && !ext.chars().any(char::is_control))
            .unwrap_or("");
        if clean_len <= INDEX_NAME_SIZE || extension.is_empty() {
            out.push_str_lossy(name, INDEX_NAME_SIZE);
        } else {
            let stem = name.get(..name.len() - extension.len()).unwrap_or("");
            out.push_str_lossy(stem, INDEX_NAME_SIZE - extension.len());
            out.push_str_lossy(extension, INDEX_NAME_SIZE);
        }
        out
    }

    /// Appends the characters of `text` that are not control characters
    /// while the name stays within `limit` bytes.
    fn push_str_lossy(&mut self, text: &str, limit: usize) {
        for c in text.chars().filter(|c| !c.is_control()) {
            let mut utf8 = [0u8; 4];
            let encoded = c.encode_utf8(&mut utf8).as_bytes();
            let start = usize::from(self.len);
            let end = start + encoded.len();
            if end > limit {
                return;
            }
            if let Some(dst) = self.bytes.get_mut(start..end) {
                dst.copy_from_slice(encoded);
                self.len = end as u8;
            }
        }
    }

    /// Parses the 29-byte field of an index fragment.
    pub fn from_field(field: &[u8; INDEX_NAME_SIZE]) -> Result<IndexName, IndexError> {
        let len = field.iter().position(|b| *b == 0).unwrap_or(INDEX_NAME_SIZE);
        let (text, padding) = field.split_at(len);
        if padding.iter().any(|b| *b != 0) {
            return Err(IndexError::NameNotPadded);
        }
        let text = core::str::from_utf8(text).map_err(|_| IndexError::NameNotUtf8)?;
        if text.chars().any(char::is_control) {
            return Err(IndexError::NameHasControlCharacter);
        }
        Ok(IndexName { bytes: *field, len: len as u8 })
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        let bytes = self.bytes.get(..usize::from(self.len)).unwrap_or(&[]);
        core::str::from_utf8(bytes).unwrap_or("")
    }

    /// Whether the name is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The 29-byte field, zero-padded.
    pub fn field(&self) -> &[u8; INDEX_NAME_SIZE] {
        &self.bytes
    }
}

impl fmt::Debug for IndexName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for IndexName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is wrong with an index fragment (or a file that would need one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexError {
    /// The name field has non-zero bytes after its first zero byte.
    NameNotPadded,
    /// The name is not UTF-8.
    NameNotUtf8,
    /// The name contains a control character.
    NameHasControlCharacter,
    /// The last-fragment length does not fit the fragment count.
    BadLastLength {
        /// The fragment count read.
        count: u8,
        /// The last-fragment length read.
        last_len: u16,
    },
    /// The file is larger than one index can describe.
    FileTooLarge {
        /// The size asked for.
        size: u64,
    },
}

impl fmt::Display for IndexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IndexError::NameNotPadded => f.write_str("index name is not zero-padded"),
            IndexError::NameNotUtf8 => f.write_str("index name is not UTF-8"),
            IndexError::NameHasControlCharacter => {
                f.write_str("index name contains a control character")
            }
            IndexError::BadLastLength { count, last_len } => {
                write!(f, "index says {count} fragments with a last fragment of {last_len} bytes")
            }
            IndexError::FileTooLarge { size } => write!(
                f,
                "a file of {size} bytes is larger than the {MAX_FILE_SIZE} bytes one index \
                 fragment can describe (nested indexes are not implemented)"
            ),
        }
    }
}

/// The fields of an index fragment, borrowed: what an upload keeps instead
/// of the 8 KB index (a microcontroller uploading a one-fragment file keeps
/// one hash). Encodes and hashes the index without holding its bytes.
#[derive(Clone, Copy, Debug)]
pub struct IndexParts<'a> {
    /// The file name.
    pub name: &'a IndexName,
    /// Data fragments.
    pub count: u8,
    /// Bytes of the last fragment that belong to the file.
    pub last_len: u16,
    /// The data fragments' hashes (only the first `count` are used; missing
    /// ones encode as zeros).
    pub hashes: &'a [FragmentHash],
}

impl IndexParts<'_> {
    /// Writes the 8192-byte form.
    pub fn encode(&self, out: &mut FragmentBytes) {
        out.fill(0);
        if let Some(dst) = out.get_mut(..INDEX_NAME_SIZE) {
            dst.copy_from_slice(self.name.field());
        }
        if let Some(dst) = out.get_mut(COUNT_OFFSET) {
            *dst = self.count;
        }
        if let Some(dst) = out.get_mut(LAST_LEN_OFFSET..HASHES_OFFSET) {
            dst.copy_from_slice(&self.last_len.to_be_bytes());
        }
        let hash_area = out.get_mut(HASHES_OFFSET..).unwrap_or(&mut []);
        let used = self.hashes.iter().take(usize::from(self.count));
        for (chunk, hash) in hash_area.chunks_exact_mut(HASH_SIZE).zip(used) {
            chunk.copy_from_slice(&hash.0);
        }
    }

    /// The SHA-256 of the encoded form, computed field by field (no 8 KB
    /// buffer).
    pub fn hash(&self) -> FragmentHash {
        let mut hasher = Sha256::new();
        hasher.update(self.name.field());
        hasher.update([self.count]);
        hasher.update(self.last_len.to_be_bytes());
        let used = self.hashes.iter().take(usize::from(self.count));
        let mut written = 0;
        for hash in used {
            hasher.update(hash.0);
            written += 1;
        }
        let zeros = [0u8; HASH_SIZE];
        for _ in written..INDEX_MAX_FRAGMENTS {
            hasher.update(zeros);
        }
        FragmentHash(hasher.finalize().into())
    }
}

/// The decoded form of an index fragment.
#[derive(Clone, PartialEq, Eq)]
pub struct IndexFragment {
    name: IndexName,
    count: u8,
    last_len: u16,
    hashes: [FragmentHash; INDEX_MAX_FRAGMENTS],
}

/// Byte offsets of the index fields.
const COUNT_OFFSET: usize = INDEX_NAME_SIZE;
const LAST_LEN_OFFSET: usize = INDEX_NAME_SIZE + 1;
const HASHES_OFFSET: usize = INDEX_NAME_SIZE + 3;
const _: () = assert!(HASHES_OFFSET + INDEX_MAX_FRAGMENTS * HASH_SIZE == FRAGMENT_SIZE);

impl IndexFragment {
    /// The index of a file of `size` bytes named `name`, whose `i`-th
    /// fragment hashes to `hash_of(i)`.
    pub fn for_file(
        name: IndexName,
        size: u64,
        mut hash_of: impl FnMut(usize) -> FragmentHash,
    ) -> Result<IndexFragment, IndexError> {
        let (count, last_len) = fragment_layout(size)?;
        let mut hashes = [FragmentHash::default(); INDEX_MAX_FRAGMENTS];
        for (i, slot) in hashes.iter_mut().enumerate().take(usize::from(count)) {
            *slot = hash_of(i);
        }
        Ok(IndexFragment { name, count, last_len, hashes })
    }

    /// Parses and validates an index fragment.
    pub fn decode(bytes: &FragmentBytes) -> Result<IndexFragment, IndexError> {
        let (name_field, rest) = bytes.split_first_chunk::<INDEX_NAME_SIZE>().ok_or(
            // Unreachable: 8192 > 29. Kept total instead of indexing.
            IndexError::NameNotPadded,
        )?;
        let name = IndexName::from_field(name_field)?;
        let (&[count, len_hi, len_lo], hash_bytes) =
            rest.split_first_chunk::<3>().ok_or(IndexError::NameNotPadded)?;
        let last_len = u16::from_be_bytes([len_hi, len_lo]);
        let valid = if count == 0 {
            last_len == 0
        } else {
            last_len >= 1 && usize::from(last_len) <= FRAGMENT_SIZE
        };
        if !valid {
            return Err(IndexError::BadLastLength { count, last_len });
        }
        let mut hashes = [FragmentHash::default(); INDEX_MAX_FRAGMENTS];
        for (slot, chunk) in hashes.iter_mut().zip(hash_bytes.chunks_exact(HASH_SIZE)) {
            if let Ok(array) = <[u8; HASH_SIZE]>::try_from(chunk) {
                *slot = FragmentHash(array);
            }
        }
        Ok(IndexFragment { name, count, last_len, hashes })
    }

    /// Writes the 8192-byte form.
    pub fn encode(&self, out: &mut FragmentBytes) {
        IndexParts {
            name: &self.name,
            count: self.count,
            last_len: self.last_len,
            hashes: self.hashes(),
        }
        .encode(out);
    }

    /// The hash of the encoded index: the file's address.
    pub fn hash(&self) -> FragmentHash {
        IndexParts {
            name: &self.name,
            count: self.count,
            last_len: self.last_len,
            hashes: self.hashes(),
        }
        .hash()
    }

    /// The file name.
    pub fn name(&self) -> &IndexName {
        &self.name
    }

    /// The number of data fragments.
    pub fn fragment_count(&self) -> usize {
        usize::from(self.count)
    }

    /// How many bytes of the last fragment belong to the file.
    pub fn last_len(&self) -> usize {
        usize::from(self.last_len)
    }

    /// The file size in bytes.
    pub fn file_size(&self) -> u64 {
        match self.count {
            0 => 0,
            n => (u64::from(n) - 1) * FRAGMENT_SIZE as u64 + u64::from(self.last_len),
        }
    }

    /// The hashes of the data fragments, in file order.
    pub fn hashes(&self) -> &[FragmentHash] {
        self.hashes.get(..usize::from(self.count)).unwrap_or(&[])
    }

    /// The hash of fragment `i`, if the file has one.
    pub fn hash_of(&self, i: usize) -> Option<FragmentHash> {
        self.hashes().get(i).copied()
    }

    /// How many bytes of fragment `i` belong to the file.
    pub fn fragment_len(&self, i: usize) -> usize {
        let count = self.fragment_count();
        if i + 1 < count {
            FRAGMENT_SIZE
        } else if i + 1 == count {
            self.last_len()
        } else {
            0
        }
    }
}

impl fmt::Debug for IndexFragment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IndexFragment")
            .field("name", &self.name)
            .field("count", &self.count)
            .field("last_len", &self.last_len)
            .finish_non_exhaustive()
    }
}

/// The fragment count and last-fragment length of a file of `size` bytes,
/// or [`IndexError::FileTooLarge`] beyond [`MAX_FILE_SIZE`].
pub fn fragment_layout(size: u64) -> Result<(u8, u16), IndexError> {
    if size > MAX_FILE_SIZE {
        return Err(IndexError::FileTooLarge { size });
    }
    if size == 0 {
        return Ok((0, 0));
    }
    let frag = FRAGMENT_SIZE as u64;
    let count = size.div_ceil(frag);
    let last = size - (count - 1) * frag;
    Ok((count as u8, last as u16))
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

    #[test]
    fn layout_of_edge_sizes() {
        assert_eq!(fragment_layout(0), Ok((0, 0)));
        assert_eq!(fragment_layout(1), Ok((1, 1)));
        assert_eq!(fragment_layout(8191), Ok((1, 8191)));
        assert_eq!(fragment_layout(8192), Ok((1, 8192)));
        assert_eq!(fragment_layout(8193), Ok((2, 1)));
        assert_eq!(fragment_layout(MAX_FILE_SIZE), Ok((255, 8192)));
        assert_eq!(
            fragment_layout(MAX_FILE_SIZE + 1),
            Err(IndexError::FileTooLarge { size: 2_088_961 })
        );
    }

    #[test]
    fn index_layout_is_exact() {
        let name = IndexName::from_file_name("a.txt");
        let index =
            IndexFragment::for_file(name, 8193, |i| FragmentHash([i as u8 + 1; 32])).unwrap();
        let mut bytes = [0u8; FRAGMENT_SIZE];
        index.encode(&mut bytes);
        assert_eq!(&bytes[..5], b"a.txt");
        assert!(bytes[5..29].iter().all(|b| *b == 0));
        assert_eq!(bytes[29], 2);
        assert_eq!(&bytes[30..32], &[0, 1]);
        assert_eq!(&bytes[32..64], &[1u8; 32]);
        assert_eq!(&bytes[64..96], &[2u8; 32]);
        assert!(bytes[96..].iter().all(|b| *b == 0));
        assert_eq!(IndexFragment::decode(&bytes).unwrap(), index);
    }

    #[test]
    fn decode_rejects_bad_fields() {
        let mut bytes = [0u8; FRAGMENT_SIZE];
        assert!(IndexFragment::decode(&bytes).is_ok()); // empty file, empty name

        bytes[29] = 0;
        bytes[31] = 1; // zero fragments but a last length
        assert_eq!(
            IndexFragment::decode(&bytes),
            Err(IndexError::BadLastLength { count: 0, last_len: 1 })
        );
        bytes[29] = 1;
        bytes[30] = 0x20;
        bytes[31] = 0x01; // 8193 > 8192
        assert!(matches!(IndexFragment::decode(&bytes), Err(IndexError::BadLastLength { .. })));
        bytes[30] = 0;
        bytes[31] = 0; // one fragment of zero bytes
        assert!(matches!(IndexFragment::decode(&bytes), Err(IndexError::BadLastLength { .. })));

        let mut bytes = [0u8; FRAGMENT_SIZE];
        bytes[0] = b'a';
        bytes[2] = b'b'; // byte after the terminating zero
        assert_eq!(IndexFragment::decode(&bytes), Err(IndexError::NameNotPadded));
        bytes[2] = 0;
        bytes[1] = 0xFF;
        assert_eq!(IndexFragment::decode(&bytes), Err(IndexError::NameNotUtf8));
        bytes[1] = b'\n';
        assert_eq!(IndexFragment::decode(&bytes), Err(IndexError::NameHasControlCharacter));
    }

    #[test]
    fn long_names_are_shortened_keeping_the_extension() {
        let name = IndexName::from_file_name("a-very-long-name-for-a-holiday-photo.jpeg");
        assert!(name.as_str().len() <= INDEX_NAME_SIZE);
        assert!(name.as_str().ends_with(".jpeg"), "{name}");
        assert!(name.as_str().starts_with("a-very-long"));
        let unicode = IndexName::from_file_name("ééééééééééééééééééééééééé");
        assert!(unicode.as_str().len() <= INDEX_NAME_SIZE);
        assert!(unicode.as_str().chars().all(|c| c == 'é'));
        let control = IndexName::from_file_name("bad\nname\u{7f}.txt");
        assert_eq!(control.as_str(), "badname.txt");
        let field = *control.field();
        assert_eq!(IndexName::from_field(&field).unwrap(), control);
    }
}
