//! The index fragment that names a file.
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
//! the last length is `1..=8192`, and the hash slots after the fragment count
//! are all zero. Every byte the encoding does not use must therefore be zero,
//! so a decoded index re-encodes to the same bytes: a file has one address.
//!
//! ```
//! use dht_core::index::{IndexFragment, IndexName};
//! use dht_core::fragment::FRAGMENT_SIZE;
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

use sha2::{Digest, Sha256};

use crate::config::{FRAGMENT_SIZE, HASH_SIZE};
pub use crate::config::{INDEX_MAX_FRAGMENTS, INDEX_NAME_SIZE, MAX_FILE_SIZE};
use crate::fragment::{FragmentBytes, FragmentHash};

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
    /// A hash slot at or after the fragment count (unused) has a non-zero
    /// byte. Accepting it would give one file many addresses.
    UnusedHashNotZero {
        /// The fragment count read.
        count: u8,
        /// The first unused slot that is not all zero (`count..255`).
        slot: u8,
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
            IndexError::UnusedHashNotZero { count, slot } => write!(
                f,
                "index of {count} fragments has a non-zero byte in unused hash slot {slot}"
            ),
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
        let chunks = hash_bytes.chunks_exact(HASH_SIZE);
        for (i, (slot, chunk)) in hashes.iter_mut().zip(chunks).enumerate() {
            if i < usize::from(count) {
                if let Ok(array) = <[u8; HASH_SIZE]>::try_from(chunk) {
                    *slot = FragmentHash(array);
                }
            } else if chunk.iter().any(|b| *b != 0) {
                // `i < 255`: there are 255 slots of 32 bytes.
                return Err(IndexError::UnusedHashNotZero { count, slot: i as u8 });
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

    /// Flipping any byte the encoding does not use (name padding, hash
    /// slots after the count) makes decode fail, while the canonical
    /// encoding round-trips byte for byte: one file, one address.
    #[test]
    fn decode_rejects_non_zero_unused_bytes() {
        let cases = [
            ("", 0),                                          // no fragments at all
            ("a.txt", 1),                                     // one slot used
            ("holiday.jpg", 3 * FRAGMENT_SIZE as u64 + 17),   // four used
            ("x", 254 * FRAGMENT_SIZE as u64 + 1),            // one unused slot
            ("twenty-nine-bytes-long-name.z", MAX_FILE_SIZE), // nothing unused
        ];
        for (name, size) in cases {
            let name = IndexName::from_file_name(name);
            let index = IndexFragment::for_file(name, size, |i| FragmentHash([i as u8 ^ 0x5A; 32]))
                .unwrap();
            let mut canonical = [0u8; FRAGMENT_SIZE];
            index.encode(&mut canonical);
            let back = IndexFragment::decode(&canonical).unwrap();
            assert_eq!(back, index);
            assert_eq!(back.hash(), index.hash());
            let mut again = [0u8; FRAGMENT_SIZE];
            back.encode(&mut again);
            assert_eq!(again, canonical, "{name:?}: re-encoding changes the bytes");
            assert_eq!(FragmentHash::of(&canonical), index.hash());

            let name_len = name.as_str().len();
            let count = index.fragment_count();
            let unused_name = name_len..INDEX_NAME_SIZE;
            let unused_hashes = HASHES_OFFSET + count * HASH_SIZE..FRAGMENT_SIZE;
            let mut flipped = 0;
            for offset in unused_name.chain(unused_hashes) {
                assert_eq!(canonical[offset], 0, "{name:?}: byte {offset} is unused");
                for value in [0x01, 0x80, 0xFF] {
                    let mut bytes = canonical;
                    bytes[offset] = value;
                    let result = IndexFragment::decode(&bytes);
                    let expected = if offset < INDEX_NAME_SIZE {
                        // The first padding byte turns into part of the name
                        // (0x01 is a control character, 0x80 and 0xFF are
                        // not UTF-8 on their own); later ones are padding.
                        result.is_err()
                    } else {
                        result
                            == Err(IndexError::UnusedHashNotZero {
                                count: count as u8,
                                slot: ((offset - HASHES_OFFSET) / HASH_SIZE) as u8,
                            })
                    };
                    assert!(expected, "{name:?}: byte {offset} = {value:#04x} gives {result:?}");
                }
                flipped += 1;
            }
            let expected_unused =
                INDEX_NAME_SIZE - name_len + (INDEX_MAX_FRAGMENTS - count) * HASH_SIZE;
            assert_eq!(flipped, expected_unused);
        }
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
