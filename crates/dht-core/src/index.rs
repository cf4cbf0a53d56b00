//! The index fragment that names a file.
//!
//! The [`IndexFragment`] is an ordinary fragment. A *flat* index (the
//! original layout, and every file of at most [`MAX_FILE_SIZE`] bytes)
//! lists data fragments:
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
//! A larger file has a tree of indexes: its root and every interior index
//! is *nested* and lists index fragments one level lower, each describing
//! exactly [`capacity`]`(height - 1)` bytes but the last; the lowest level
//! is flat indexes without a name. Byte 30 tells the two apart (`0xFF`; a
//! flat index has at most `0x20` there):
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0      | 29   | file name (root), or zero bytes (interior indexes) |
//! | 29     | 1    | number of child indexes, 1..=254 |
//! | 30     | 1    | `0xFF` |
//! | 31     | 1    | height, 2..=6 (children have height - 1; flat is 1) |
//! | 32     | 8    | bytes of file under this index, big-endian |
//! | 40     | 24   | zero |
//! | 64     | 8128 | 254 child hashes of 32 bytes, in file order; unused ones zero |
//!
//! Decoding validates everything a hostile peer could get wrong: the name is
//! UTF-8 without control characters and zero-padded (nothing after the first
//! zero byte), a file of zero fragments has a last length of zero, otherwise
//! the last length is `1..=8192`, a nested index's height is `2..=6`, its
//! size fits its height and child count and its reserved bytes are zero,
//! and the hash slots after the count are all zero. Every byte the encoding does not use must therefore be zero,
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
    /// A nested index's height is outside `2..=MAX_HEIGHT`.
    BadHeight {
        /// The height read.
        height: u8,
    },
    /// A nested index's size does not fit its height and child count.
    BadNestedSize {
        /// Its height.
        height: u8,
        /// Its child count.
        count: u8,
        /// The size read.
        size: u64,
    },
    /// The 24 reserved bytes of a nested index are not zero.
    ReservedNotZero,
    /// A child index is not the one its parent describes (height, size,
    /// or a name where none belongs).
    ChildMismatch,
    /// A nested root taller than its size needs (or a nested index given
    /// as a file whose size one flat index describes).
    NotMinimal,
    /// A coded root names a code this version does not know.
    UnknownCode {
        /// Byte 31.
        code: u8,
    },
    /// A coded root's stripe shape is out of range.
    BadCoding {
        /// Data fragments per stripe.
        k: u16,
        /// Parity fragments per stripe.
        m: u16,
    },
    /// A coded root's size is 0 or larger than a tree can describe.
    BadCodedSize {
        /// The size read.
        size: u64,
    },
    /// A coded root lists other than its two trees.
    BadCodedRoot {
        /// The count read.
        count: u8,
    },
    /// The file is larger than an index tree can describe.
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
            IndexError::BadHeight { height } => {
                write!(f, "nested index of height {height} (2 to {MAX_HEIGHT} are valid)")
            }
            IndexError::BadNestedSize { height, count, size } => {
                write!(f, "nested index of height {height} lists {count} children for {size} bytes")
            }
            IndexError::ReservedNotZero => {
                f.write_str("nested index has a non-zero byte in its reserved field")
            }
            IndexError::ChildMismatch => {
                f.write_str("an index of the file's tree is not what its parent describes")
            }
            IndexError::NotMinimal => {
                f.write_str("the index is not the root of a file (its tree is taller than needed)")
            }
            IndexError::UnknownCode { code } => {
                write!(f, "coded index of an unknown code ({code}); a newer version wrote it")
            }
            IndexError::BadCoding { k, m } => write!(
                f,
                "coded index of {k} data and {m} parity fragments a stripe (1 to \
                 {MAX_STRIPE_DATA} and 1 to {MAX_STRIPE_PARITY} are valid)"
            ),
            IndexError::BadCodedSize { size } => write!(f, "coded index of a {size}-byte file"),
            IndexError::BadCodedRoot { count } => {
                write!(f, "coded index lists {count} trees instead of 2")
            }
            IndexError::FileTooLarge { size } => write!(
                f,
                "a file of {size} bytes is larger than the {MAX_TREE_SIZE} bytes an index tree \
                 can describe"
            ),
        }
    }
}

/// Hash slots of a nested index: one fewer than a flat one, whose first
/// slot holds the subtree size instead.
pub const NESTED_MAX_CHILDREN: usize = INDEX_MAX_FRAGMENTS - 1;

/// The tallest index tree: height 1 is one flat index, each level above
/// multiplies the size by 254. Height 6 describes more than 2^60 bytes.
pub const MAX_HEIGHT: u8 = 6;

/// The byte at offset 30 that marks a nested index (a flat index has the
/// high byte of its last length there, at most `0x20`).
const NESTED_MARKER: u8 = 0xFF;

/// The largest file a tree of height `height` describes:
/// `2,088,960 * 254^(height - 1)` bytes (0 for height 0).
pub const fn capacity(height: u8) -> u64 {
    if height == 0 {
        return 0;
    }
    let mut cap = MAX_FILE_SIZE;
    let mut h = 1;
    while h < height {
        cap = cap.saturating_mul(NESTED_MAX_CHILDREN as u64);
        h += 1;
    }
    cap
}

/// The largest file an index tree can describe ([`MAX_HEIGHT`] levels).
pub const MAX_TREE_SIZE: u64 = capacity(MAX_HEIGHT);

/// The height of the index tree of a file of `size` bytes: 1 (one flat
/// index, today's layout) up to [`MAX_FILE_SIZE`], then the least height
/// whose capacity holds it.
pub fn tree_height(size: u64) -> Result<u8, IndexError> {
    let mut height = 1;
    while capacity(height) < size {
        if height >= MAX_HEIGHT {
            return Err(IndexError::FileTooLarge { size });
        }
        height += 1;
    }
    Ok(height)
}

/// How many index fragments (the root included) the tree of a file of
/// `size` bytes has.
pub fn index_fragments(size: u64) -> Result<u64, IndexError> {
    let height = tree_height(size)?;
    let mut total = 0;
    let mut nodes = size.div_ceil(FRAGMENT_SIZE as u64).div_ceil(INDEX_MAX_FRAGMENTS as u64).max(1);
    for _ in 0..height {
        total += nodes;
        nodes = nodes.div_ceil(NESTED_MAX_CHILDREN as u64);
    }
    Ok(total)
}

/// The data fragments of a file of `size` bytes.
pub fn data_fragments(size: u64) -> u64 {
    size.div_ceil(FRAGMENT_SIZE as u64)
}

/// How many bytes of data fragment `n` of a file of `size` bytes belong to
/// the file: 8192 but for the last (and 0 past the end).
pub fn data_fragment_len(size: u64, n: u64) -> usize {
    let frag = FRAGMENT_SIZE as u64;
    size.saturating_sub(n.saturating_mul(frag)).min(frag) as usize
}

/// What an index fragment lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Data fragments, in file order (the original layout, height 1).
    Flat {
        /// Bytes of the last data fragment that belong to the file.
        last_len: u16,
    },
    /// Index fragments of height `height - 1`, in file order; every child
    /// but the last describes exactly [`capacity`]`(height - 1)` bytes.
    Nested {
        /// The height of this index, `2..=MAX_HEIGHT`.
        height: u8,
        /// Bytes of file under this index.
        size: u64,
    },
    /// The root of an erasure-coded file: two entries, the root of the
    /// file's own tree (named, exactly the address the file has without
    /// coding) and the root of the unnamed tree of its parity fragments.
    Coded(Coding),
}

/// How a coded file's fragments are grouped into stripes and protected
/// by parity: `k` data fragments and `m` parity fragments per full stripe
/// of Reed-Solomon code [`CODE_LEOPARD_GF16`].
///
/// A file of `D` data fragments has `S = ceil(D / k)` stripes of balanced
/// length: stripe `i` has `D / S` data fragments, one more for the first
/// `D mod S` stripes, and `ceil(k_i * m / k)` parity fragments. Stripes
/// follow each other in file order; the parity tree lists the parity
/// fragments stripe by stripe.
///
/// ```
/// use dht_core::index::Coding;
/// let coding = Coding::new(600 * 8192, 128, 72).unwrap();
/// assert_eq!(coding.stripes(), 5);
/// assert_eq!(coding.stripe(0), (0..120, 0..68));
/// assert_eq!(coding.stripe_of(599), Some(4));
/// assert_eq!(coding.parity_fragments(), 5 * 68);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Coding {
    /// Bytes of the file.
    pub size: u64,
    /// Data fragments per full stripe, `1..=MAX_STRIPE_DATA`.
    pub k: u16,
    /// Parity fragments per full stripe, `1..=MAX_STRIPE_PARITY`.
    pub m: u16,
    /// Copies asked for each data and parity fragment (0: the network's
    /// `R`), so that a node rebuilding lost pieces stores them as the
    /// upload did.
    pub data_copies: u8,
    /// Copies asked for each index fragment (0: the network's `R`).
    pub index_copies: u8,
}

/// The code of a coded index: systematic Reed-Solomon over GF(2^16) in the
/// Leopard construction (the encoding of the `reed-solomon-simd` 3 crate),
/// each 8192-byte fragment one shard. Byte 31 of a coded root.
pub const CODE_LEOPARD_GF16: u8 = 1;
/// The most data fragments a stripe may have.
pub const MAX_STRIPE_DATA: u16 = 256;
/// The most parity fragments a stripe may have.
pub const MAX_STRIPE_PARITY: u16 = 256;
/// The byte at offset 30 that marks a coded root.
pub const CODED_MARKER: u8 = 0xFE;

impl Coding {
    /// The coding of a file of `size` bytes (1 to [`MAX_TREE_SIZE`]) with
    /// `k` data and `m` parity fragments per full stripe.
    pub fn new(size: u64, k: u16, m: u16) -> Result<Coding, IndexError> {
        let coding = Coding { size, k, m, data_copies: 0, index_copies: 0 };
        coding.check().map(|()| coding)
    }

    fn check(&self) -> Result<(), IndexError> {
        if !(1..=MAX_STRIPE_DATA).contains(&self.k) || !(1..=MAX_STRIPE_PARITY).contains(&self.m) {
            return Err(IndexError::BadCoding { k: self.k, m: self.m });
        }
        if self.size == 0 || self.size > MAX_TREE_SIZE {
            return Err(IndexError::BadCodedSize { size: self.size });
        }
        Ok(())
    }

    /// Data fragments of the file.
    pub fn data_fragments(&self) -> u64 {
        data_fragments(self.size)
    }

    /// Stripes of the file.
    pub fn stripes(&self) -> u64 {
        self.data_fragments().div_ceil(u64::from(self.k.max(1))).max(1)
    }

    /// The stripe shape: data fragments of a short stripe, how many
    /// stripes are one longer, and the parity fragments of a long and of a
    /// short stripe.
    fn shape(&self) -> (u64, u64, u64, u64) {
        let (data, count) = (self.data_fragments(), self.stripes());
        let (base, extra) = (data / count, data % count);
        let parity = |k: u64| (k * u64::from(self.m)).div_ceil(u64::from(self.k.max(1)));
        (base, extra, parity(base + 1), parity(base))
    }

    /// The data fragments (positions in the file) and parity fragments
    /// (positions in the parity tree) of stripe `i`.
    pub fn stripe(&self, i: u64) -> (core::ops::Range<u64>, core::ops::Range<u64>) {
        let (base, extra, long_m, short_m) = self.shape();
        let longs = i.min(extra);
        let start = i * base + longs;
        let parity_start = longs * long_m + (i - longs) * short_m;
        let (k, m) = if i < extra { (base + 1, long_m) } else { (base, short_m) };
        (start..start + k, parity_start..parity_start + m)
    }

    /// The stripe data fragment `n` belongs to.
    pub fn stripe_of(&self, n: u64) -> Option<u64> {
        if n >= self.data_fragments() {
            return None;
        }
        let (base, extra, _, _) = self.shape();
        let long = extra * (base + 1);
        Some(if n < long { n / (base + 1) } else { extra + (n - long) / base.max(1) })
    }

    /// Parity fragments of the file.
    pub fn parity_fragments(&self) -> u64 {
        let (_, extra, long_m, short_m) = self.shape();
        extra * long_m + (self.stripes() - extra) * short_m
    }

    /// Bytes of the parity tree's "file": every parity fragment whole.
    pub fn parity_size(&self) -> u64 {
        self.parity_fragments() * FRAGMENT_SIZE as u64
    }
}

/// The fields of an index fragment, borrowed: what an upload keeps instead
/// of the 8 KB index (a microcontroller uploading a one-fragment file keeps
/// one hash). Encodes and hashes the index without holding its bytes.
#[derive(Clone, Copy, Debug)]
pub struct IndexParts<'a> {
    /// The file name (empty in the interior indexes of a tree).
    pub name: &'a IndexName,
    /// Entries listed: data fragments, or child indexes.
    pub count: u8,
    /// What the entries are.
    pub layout: Layout,
    /// The entries' hashes (only the first `count` are used; missing ones
    /// encode as zeros).
    pub hashes: &'a [FragmentHash],
}

impl IndexParts<'_> {
    /// Feeds the bytes after the name, up to the first hash slot, to
    /// `out`: the count, then the last length (flat), or the marker,
    /// height, size and 24 zero bytes (nested).
    fn header(&self, mut out: impl FnMut(&[u8])) {
        out(&[self.count]);
        match self.layout {
            Layout::Flat { last_len } => out(&last_len.to_be_bytes()),
            Layout::Nested { height, size } => {
                out(&[NESTED_MARKER, height]);
                out(&size.to_be_bytes());
                out(&[0; 24]);
            }
            Layout::Coded(Coding { size, k, m, data_copies, index_copies }) => {
                out(&[CODED_MARKER, CODE_LEOPARD_GF16]);
                out(&size.to_be_bytes());
                out(&k.to_be_bytes());
                out(&m.to_be_bytes());
                out(&[data_copies, index_copies]);
                out(&[0; 18]);
            }
        }
    }

    /// Hash slots this layout has.
    fn slots(&self) -> usize {
        match self.layout {
            Layout::Flat { .. } => INDEX_MAX_FRAGMENTS,
            Layout::Nested { .. } | Layout::Coded(_) => NESTED_MAX_CHILDREN,
        }
    }

    /// Writes the 8192-byte form.
    pub fn encode(&self, out: &mut FragmentBytes) {
        out.fill(0);
        if let Some(dst) = out.get_mut(..INDEX_NAME_SIZE) {
            dst.copy_from_slice(self.name.field());
        }
        let mut at = INDEX_NAME_SIZE;
        self.header(|bytes| {
            if let Some(dst) = out.get_mut(at..at + bytes.len()) {
                dst.copy_from_slice(bytes);
            }
            at += bytes.len();
        });
        let hash_area = out.get_mut(at..).unwrap_or(&mut []);
        let used = self.hashes.iter().take(usize::from(self.count).min(self.slots()));
        for (chunk, hash) in hash_area.chunks_exact_mut(HASH_SIZE).zip(used) {
            chunk.copy_from_slice(&hash.0);
        }
    }

    /// The SHA-256 of the encoded form, computed field by field (no 8 KB
    /// buffer).
    pub fn hash(&self) -> FragmentHash {
        let mut hasher = Sha256::new();
        hasher.update(self.name.field());
        self.header(|bytes| hasher.update(bytes));
        let used = self.hashes.iter().take(usize::from(self.count).min(self.slots()));
        let mut written = 0;
        for hash in used {
            hasher.update(hash.0);
            written += 1;
        }
        let zeros = [0u8; HASH_SIZE];
        for _ in written..self.slots() {
            hasher.update(zeros);
        }
        FragmentHash(hasher.finalize().into())
    }
}

/// The decoded form of an index fragment: flat (listing data fragments)
/// or nested (listing index fragments); an [`IndexBuf`] with room for
/// every entry an index can list.
pub type IndexFragment = IndexBuf<INDEX_MAX_FRAGMENTS>;

/// Byte offsets of the index fields.
const HASHES_OFFSET: usize = INDEX_NAME_SIZE + 3;
const NESTED_HASHES_OFFSET: usize = HASHES_OFFSET + HASH_SIZE;
const _: () = assert!(HASHES_OFFSET + INDEX_MAX_FRAGMENTS * HASH_SIZE == FRAGMENT_SIZE);
const _: () = assert!(NESTED_HASHES_OFFSET + NESTED_MAX_CHILDREN * HASH_SIZE == FRAGMENT_SIZE);

impl IndexFragment {
    /// The flat index of a file of `size` bytes (at most
    /// [`MAX_FILE_SIZE`]) named `name`, whose `i`-th fragment hashes to
    /// `hash_of(i)`.
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
        Ok(IndexFragment { name, count, layout: Layout::Flat { last_len }, hashes })
    }

    /// Parses and validates an index fragment, flat or nested.
    pub fn decode(bytes: &FragmentBytes) -> Result<IndexFragment, IndexError> {
        let (name_field, rest) = bytes.split_first_chunk::<INDEX_NAME_SIZE>().ok_or(
            // Unreachable: 8192 > 29. Kept total instead of indexing.
            IndexError::NameNotPadded,
        )?;
        let name = IndexName::from_field(name_field)?;
        let (&[count, b30, b31], flat_hashes) =
            rest.split_first_chunk::<3>().ok_or(IndexError::NameNotPadded)?;
        let (layout, hash_bytes, slots) = if b30 == NESTED_MARKER {
            let (head, hash_bytes) =
                flat_hashes.split_first_chunk::<HASH_SIZE>().ok_or(IndexError::NameNotPadded)?;
            let (size_bytes, reserved) =
                head.split_first_chunk::<8>().ok_or(IndexError::NameNotPadded)?;
            if reserved.iter().any(|b| *b != 0) {
                return Err(IndexError::ReservedNotZero);
            }
            let (height, size) = (b31, u64::from_be_bytes(*size_bytes));
            if !(2..=MAX_HEIGHT).contains(&height) {
                return Err(IndexError::BadHeight { height });
            }
            let child = capacity(height - 1);
            let fits =
                size >= 1 && size <= capacity(height) && u64::from(count) == size.div_ceil(child);
            if !fits {
                return Err(IndexError::BadNestedSize { height, count, size });
            }
            (Layout::Nested { height, size }, hash_bytes, NESTED_MAX_CHILDREN)
        } else if b30 == CODED_MARKER {
            let (head, hash_bytes) =
                flat_hashes.split_first_chunk::<HASH_SIZE>().ok_or(IndexError::NameNotPadded)?;
            let (fields, reserved) =
                head.split_first_chunk::<14>().ok_or(IndexError::NameNotPadded)?;
            if b31 != CODE_LEOPARD_GF16 {
                return Err(IndexError::UnknownCode { code: b31 });
            }
            if reserved.iter().any(|b| *b != 0) {
                return Err(IndexError::ReservedNotZero);
            }
            let [s0, s1, s2, s3, s4, s5, s6, s7, k0, k1, m0, m1, data_copies, index_copies] =
                *fields;
            let size = u64::from_be_bytes([s0, s1, s2, s3, s4, s5, s6, s7]);
            let coding = Coding {
                data_copies,
                index_copies,
                ..Coding::new(size, u16::from_be_bytes([k0, k1]), u16::from_be_bytes([m0, m1]))?
            };
            if count != 2 {
                return Err(IndexError::BadCodedRoot { count });
            }
            (Layout::Coded(coding), hash_bytes, NESTED_MAX_CHILDREN)
        } else {
            let last_len = u16::from_be_bytes([b30, b31]);
            let valid = if count == 0 {
                last_len == 0
            } else {
                last_len >= 1 && usize::from(last_len) <= FRAGMENT_SIZE
            };
            if !valid {
                return Err(IndexError::BadLastLength { count, last_len });
            }
            (Layout::Flat { last_len }, flat_hashes, INDEX_MAX_FRAGMENTS)
        };
        let mut hashes = [FragmentHash::default(); INDEX_MAX_FRAGMENTS];
        let chunks = hash_bytes.chunks_exact(HASH_SIZE).take(slots);
        for (i, (slot, chunk)) in hashes.iter_mut().zip(chunks).enumerate() {
            if i < usize::from(count) {
                if let Ok(array) = <[u8; HASH_SIZE]>::try_from(chunk) {
                    *slot = FragmentHash(array);
                }
            } else if chunk.iter().any(|b| *b != 0) {
                // `i < 255`: there are at most 255 slots of 32 bytes.
                return Err(IndexError::UnusedHashNotZero { count, slot: i as u8 });
            }
        }
        Ok(IndexFragment { name, count, layout, hashes })
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

/// An index held as its entries, at most `W` of them: with `W` = 255 the
/// decoded form of any index ([`IndexFragment`]); a smaller `W` bounds the
/// memory of an upload of small files on a microcontroller. What
/// [`TreeBuilder`] fills, encoded and hashed through [`IndexParts`].
#[derive(Clone, PartialEq, Eq)]
pub struct IndexBuf<const W: usize> {
    name: IndexName,
    count: u8,
    layout: Layout,
    hashes: [FragmentHash; W],
}

impl<const W: usize> IndexBuf<W> {
    /// An empty flat index with no name: the index of the empty file.
    pub const EMPTY: Self = Self::empty(Layout::Flat { last_len: 0 });

    /// An index of no entries with this layout and no name.
    const fn empty(layout: Layout) -> Self {
        IndexBuf {
            name: IndexName::EMPTY,
            count: 0,
            layout,
            hashes: [FragmentHash([0; HASH_SIZE]); W],
        }
    }

    /// The fields, borrowed.
    pub fn parts(&self) -> IndexParts<'_> {
        IndexParts {
            name: &self.name,
            count: self.count,
            layout: self.layout,
            hashes: self.hashes(),
        }
    }

    /// The SHA-256 of the encoded index.
    pub fn hash(&self) -> FragmentHash {
        self.parts().hash()
    }

    /// Writes the 8192-byte form.
    pub fn encode(&self, out: &mut FragmentBytes) {
        self.parts().encode(out);
    }

    /// The name (empty but for a root).
    pub fn name(&self) -> &IndexName {
        &self.name
    }

    /// The bytes of file under this index.
    pub fn file_size(&self) -> u64 {
        match (self.layout, self.count) {
            (Layout::Flat { .. }, 0) => 0,
            (Layout::Flat { last_len }, n) => {
                (u64::from(n) - 1) * FRAGMENT_SIZE as u64 + u64::from(last_len)
            }
            (Layout::Nested { size, .. } | Layout::Coded(Coding { size, .. }), _) => size,
        }
    }

    /// 1 for a flat index, 2 or more for a nested one.
    pub fn height(&self) -> u8 {
        match self.layout {
            Layout::Flat { .. } => 1,
            Layout::Nested { height, .. } => height,
            Layout::Coded(_) => 0,
        }
    }

    /// The coding of a coded root, with the roots of its data tree and
    /// its parity tree.
    pub fn coded(&self) -> Option<(Coding, FragmentHash, FragmentHash)> {
        match (self.layout, self.hashes()) {
            (Layout::Coded(coding), [data, parity]) => Some((coding, *data, *parity)),
            _ => None,
        }
    }

    /// The coded root of a file named `name` whose own tree's root hashes
    /// to `data` and whose parity tree's root hashes to `parity`.
    pub fn coded_root(
        name: IndexName,
        coding: Coding,
        data: FragmentHash,
        parity: FragmentHash,
    ) -> Self {
        let mut root = Self::empty(Layout::Coded(coding));
        root.name = name;
        for hash in [data, parity] {
            if let Some(slot) = root.hashes.get_mut(usize::from(root.count)) {
                *slot = hash;
                root.count += 1;
            }
        }
        root
    }

    /// The entries' hashes, in file order.
    pub fn hashes(&self) -> &[FragmentHash] {
        self.hashes.get(..usize::from(self.count)).unwrap_or(&[])
    }

    /// What the entries are.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Whether the entries are index fragments.
    pub fn is_nested(&self) -> bool {
        !matches!(self.layout, Layout::Flat { .. })
    }

    /// The number of entries: data fragments for a flat index, child
    /// indexes for a nested one.
    pub fn fragment_count(&self) -> usize {
        usize::from(self.count)
    }

    /// How many bytes of the last data fragment belong to the file (flat
    /// indexes; 0 for a nested one).
    pub fn last_len(&self) -> usize {
        match self.layout {
            Layout::Flat { last_len } => usize::from(last_len),
            Layout::Nested { .. } | Layout::Coded(_) => 0,
        }
    }

    /// The hash of entry `i`, if there is one.
    pub fn hash_of(&self, i: usize) -> Option<FragmentHash> {
        self.hashes().get(i).copied()
    }

    /// How many bytes of data fragment `i` belong to the file (flat
    /// indexes; 0 past the end and for nested ones).
    pub fn fragment_len(&self, i: usize) -> usize {
        let count = self.fragment_count();
        if self.is_nested() {
            0
        } else if i + 1 < count {
            FRAGMENT_SIZE
        } else if i + 1 == count {
            self.last_len()
        } else {
            0
        }
    }

    /// The size of the part of the file under child `i` of a nested index.
    pub fn child_size(&self, i: usize) -> Option<u64> {
        let Layout::Nested { height, size } = self.layout else { return None };
        let full = capacity(height - 1);
        let count = self.fragment_count();
        if i + 1 < count {
            Some(full)
        } else if i + 1 == count {
            Some(size - (count as u64 - 1) * full)
        } else {
            None
        }
    }

    /// Checks that `child`, fetched by the hash of entry `i`, is what this
    /// nested index says it is: one level lower, no name, and exactly its
    /// share of the file.
    pub fn check_child(&self, i: usize, child: &Self) -> Result<(), IndexError> {
        let expected = self.child_size(i).ok_or(IndexError::ChildMismatch)?;
        let right = child.height() + 1 == self.height()
            && child.name.is_empty()
            && child.file_size() == expected;
        if right {
            Ok(())
        } else {
            Err(IndexError::ChildMismatch)
        }
    }

    /// Checks that this index may be the root of a file: a nested root
    /// has the least height its size needs (else one file would have
    /// several addresses).
    pub fn check_root(&self) -> Result<(), IndexError> {
        if self.coded().is_some() {
            return Ok(());
        }
        match tree_height(self.file_size()) {
            Ok(height) if height == self.height() => Ok(()),
            _ => Err(IndexError::NotMinimal),
        }
    }

    /// The entries a full index of this layout lists (255 data fragments,
    /// or 254 child indexes).
    fn full(&self) -> usize {
        match self.layout {
            Layout::Flat { .. } => INDEX_MAX_FRAGMENTS,
            Layout::Nested { .. } => NESTED_MAX_CHILDREN,
            Layout::Coded(_) => 2,
        }
    }

    /// Appends an entry covering `size` bytes; `false` when it has no room.
    fn append(&mut self, hash: FragmentHash, size: u64) -> bool {
        if usize::from(self.count) >= self.full() {
            return false;
        }
        let Some(slot) = self.hashes.get_mut(usize::from(self.count)) else { return false };
        *slot = hash;
        self.count += 1;
        self.layout = match self.layout {
            Layout::Flat { .. } => Layout::Flat { last_len: size as u16 },
            Layout::Nested { height, size: total } => Layout::Nested { height, size: total + size },
            coded @ Layout::Coded(_) => coded,
        };
        true
    }
}

impl<const W: usize> fmt::Debug for IndexBuf<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IndexBuf")
            .field("name", &self.name)
            .field("count", &self.count)
            .field("layout", &self.layout)
            .finish_non_exhaustive()
    }
}

/// Builds the index tree of a file bottom-up while its data fragments'
/// hashes come in file order, holding one index per level (`DEPTH`
/// levels of at most `W` entries): the length of the file need not be
/// known in advance.
///
/// Each interior index is handed to `emit` with its hash when it is complete (so that an
/// upload can store it); [`TreeBuilder::finish`] completes the rest and
/// gives the root, named. A file of at most [`MAX_FILE_SIZE`] bytes gets
/// one flat index, exactly the original layout. With `DEPTH` 1 only such
/// files can be built, and with `W` < 255 only files of `W` fragments.
///
/// ```
/// use dht_core::index::{IndexName, TreeBuilder};
/// use dht_core::FragmentHash;
/// let mut tree = TreeBuilder::<3>::new();
/// let mut interior = 0;
/// for i in 0..300u32 {
///     let hash = FragmentHash::of(&[i as u8; 8192]);
///     tree.push(hash, 8192, |_, _| interior += 1).unwrap();
/// }
/// let root = tree.finish(IndexName::from_file_name("big.bin"), |_, _| interior += 1).unwrap();
/// assert_eq!((root.height(), root.file_size(), interior), (2, 300 * 8192, 2));
/// ```
pub struct TreeBuilder<const DEPTH: usize, const W: usize = INDEX_MAX_FRAGMENTS> {
    levels: heapless::Vec<IndexBuf<W>, DEPTH>,
    /// Bytes of file pushed.
    size: u64,
    /// The last data fragment was shorter than a fragment: nothing may
    /// follow it.
    ended: bool,
}

impl<const DEPTH: usize, const W: usize> Default for TreeBuilder<DEPTH, W> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const DEPTH: usize, const W: usize> TreeBuilder<DEPTH, W> {
    /// A tree of no data yet.
    pub const fn new() -> Self {
        TreeBuilder { levels: heapless::Vec::new(), size: 0, ended: false }
    }

    /// Bytes of file pushed so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Levels open: the most interior indexes the next push may emit.
    pub fn levels(&self) -> usize {
        self.levels.len()
    }

    /// Adds the next data fragment, `len` bytes of which (`1..=8192`)
    /// belong to the file; only the last one may be shorter than 8192.
    pub fn push(
        &mut self,
        hash: FragmentHash,
        len: usize,
        emit: impl FnMut(&IndexBuf<W>, FragmentHash),
    ) -> Result<(), IndexError> {
        if self.ended || len == 0 || len > FRAGMENT_SIZE {
            return Err(IndexError::BadLastLength { count: 0, last_len: len as u16 });
        }
        self.ended = len < FRAGMENT_SIZE;
        self.size += len as u64;
        self.add(0, hash, len as u64, emit)
    }

    /// Adds an entry to `level`; a full level is first emitted and moved
    /// up as one entry of the level above.
    fn add(
        &mut self,
        mut level: usize,
        mut hash: FragmentHash,
        mut size: u64,
        mut emit: impl FnMut(&IndexBuf<W>, FragmentHash),
    ) -> Result<(), IndexError> {
        let too_large = IndexError::FileTooLarge { size: self.size };
        loop {
            if level >= DEPTH {
                // Known at compile time for `DEPTH` 1: a builder of flat
                // files carries no code for the levels above.
                return Err(too_large);
            }
            if self.levels.len() == level {
                let fresh = match level {
                    0 => IndexBuf::empty(Layout::Flat { last_len: 0 }),
                    _ => IndexBuf::empty(Layout::Nested { height: level as u8 + 1, size: 0 }),
                };
                if level >= usize::from(MAX_HEIGHT) || self.levels.push(fresh).is_err() {
                    return Err(too_large);
                }
            }
            let Some(node) = self.levels.get_mut(level) else { return Err(too_large) };
            if node.append(hash, size) {
                return Ok(());
            }
            if DEPTH <= 1 || node.fragment_count() < node.full() {
                // One level, or out of room below a full index (W < 255):
                // only smaller files fit this builder.
                return Err(too_large);
            }
            let (sealed_hash, sealed_size) = (node.hash(), node.file_size());
            emit(node, sealed_hash);
            let layout = match node.layout {
                Layout::Flat { .. } => Layout::Flat { last_len: 0 },
                Layout::Nested { height, .. } => Layout::Nested { height, size: 0 },
                coded @ Layout::Coded(_) => coded,
            };
            *node = IndexBuf::empty(layout);
            node.append(hash, size);
            (level, hash, size) = (level + 1, sealed_hash, sealed_size);
        }
    }

    /// Completes the tree: emits the interior indexes still open and gives
    /// the root, carrying `name`.
    pub fn finish(
        mut self,
        name: IndexName,
        mut emit: impl FnMut(&IndexBuf<W>, FragmentHash),
    ) -> Result<IndexBuf<W>, IndexError> {
        let mut level = 0;
        while DEPTH > 1 && level + 1 < self.levels.len() {
            let Some(node) = self.levels.get(level) else { break };
            let (hash, size) = (node.hash(), node.file_size());
            emit(node, hash);
            self.add(level + 1, hash, size, &mut emit)?;
            level += 1;
        }
        let mut root = self.levels.pop().unwrap_or(IndexBuf::empty(Layout::Flat { last_len: 0 }));
        root.name = name;
        Ok(root)
    }
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

    /// A fake data fragment hash for fragment `n`.
    fn fake(n: u64) -> FragmentHash {
        let mut h = [0u8; 32];
        h[..8].copy_from_slice(&n.to_be_bytes());
        h[31] = 0xA5;
        FragmentHash(h)
    }

    /// Builds the tree of a file of `size` bytes from fake hashes; returns
    /// the root and every interior index emitted, decoded.
    fn build(size: u64) -> (IndexBuf<255>, std::vec::Vec<IndexFragment>) {
        let mut tree = TreeBuilder::<4>::new();
        let mut emitted = std::vec::Vec::new();
        let mut keep = |index: &IndexBuf<255>, hash: FragmentHash| {
            let mut bytes = [0u8; FRAGMENT_SIZE];
            index.encode(&mut bytes);
            let decoded = IndexFragment::decode(&bytes).unwrap();
            assert_eq!(decoded.hash(), hash);
            emitted.push(decoded);
        };
        let frag = FRAGMENT_SIZE as u64;
        for n in 0..data_fragments(size) {
            let len = (size - n * frag).min(frag) as usize;
            tree.push(fake(n), len, &mut keep).unwrap();
        }
        assert_eq!(tree.size(), size);
        let root = tree.finish(IndexName::from_file_name("f.bin"), &mut keep).unwrap();
        (root, emitted)
    }

    #[test]
    fn files_of_one_index_keep_the_original_layout_and_address() {
        let frag = FRAGMENT_SIZE as u64;
        for size in [0, 1, frag - 1, frag, frag + 1, 100 * frag + 7, MAX_FILE_SIZE] {
            let (root, interior) = build(size);
            assert!(interior.is_empty(), "{size}");
            let flat = IndexFragment::for_file(IndexName::from_file_name("f.bin"), size, |i| {
                fake(i as u64)
            })
            .unwrap();
            assert_eq!(root.hash(), flat.hash(), "{size}: the address changed");
            assert_eq!(root.height(), 1);
            assert_eq!(index_fragments(size), Ok(1));
        }
    }

    #[test]
    fn one_byte_more_makes_a_tree_of_two_levels() {
        let size = MAX_FILE_SIZE + 1;
        let (root, interior) = build(size);
        assert_eq!((root.height(), root.fragment_count(), root.file_size()), (2, 2, size));
        assert_eq!(interior.len(), 2);
        let mut bytes = [0u8; FRAGMENT_SIZE];
        root.encode(&mut bytes);
        // The nested layout, byte by byte.
        assert_eq!(&bytes[..5], b"f.bin");
        assert_eq!(&bytes[29..32], &[2, 0xFF, 2]);
        assert_eq!(&bytes[32..40], &size.to_be_bytes());
        assert!(bytes[40..64].iter().all(|b| *b == 0));
        assert_eq!(&bytes[64..96], &interior[0].hash().0);
        assert_eq!(&bytes[96..128], &interior[1].hash().0);
        assert!(bytes[128..].iter().all(|b| *b == 0));
        let decoded = IndexFragment::decode(&bytes).unwrap();
        assert_eq!(decoded.check_root(), Ok(()));
        assert_eq!(decoded.child_size(0), Some(MAX_FILE_SIZE));
        assert_eq!(decoded.child_size(1), Some(1));
        for (i, child) in interior.iter().enumerate() {
            assert_eq!(decoded.check_child(i, child), Ok(()));
            assert!(child.name().is_empty());
        }
        assert_eq!(decoded.check_child(0, &interior[1]), Err(IndexError::ChildMismatch));
        assert_eq!(interior[1].fragment_count(), 1);
        assert_eq!(interior[1].last_len(), 1);
        assert_eq!(index_fragments(size), Ok(3));
    }

    #[test]
    fn a_three_level_tree_is_checked_level_by_level() {
        let size = capacity(2) + 3 * FRAGMENT_SIZE as u64;
        let (root, interior) = build(size);
        assert_eq!((root.height(), root.fragment_count()), (3, 2));
        assert_eq!(index_fragments(size), Ok(interior.len() as u64 + 1));
        // 255 leaves (254 under the first height-2 index, 1 under the
        // second), then the two height-2 indexes.
        let heights: std::vec::Vec<u8> = interior.iter().map(IndexFragment::height).collect();
        assert_eq!(heights.iter().filter(|h| **h == 1).count(), 255);
        assert_eq!(heights.iter().filter(|h| **h == 2).count(), 2);
        let mut bytes = [0u8; FRAGMENT_SIZE];
        root.encode(&mut bytes);
        let decoded = IndexFragment::decode(&bytes).unwrap();
        assert_eq!(decoded.check_root(), Ok(()));
        let second = interior.last().unwrap();
        assert_eq!(decoded.check_child(1, second), Ok(()));
        assert_eq!(second.file_size(), 3 * FRAGMENT_SIZE as u64);
        assert_eq!(second.fragment_count(), 1);
        // A tree as tall as a flat file needs is not a root.
        let lone = &interior[interior.len() - 2..][0];
        assert_eq!(lone.height(), 2);
        assert_eq!(lone.check_root(), Ok(()));
        assert_eq!(second.check_root(), Err(IndexError::NotMinimal));
    }

    #[test]
    fn nested_decode_rejects_bad_fields_and_unused_bytes() {
        let (root, _) = build(MAX_FILE_SIZE * 3);
        let mut good = [0u8; FRAGMENT_SIZE];
        root.encode(&mut good);
        assert!(IndexFragment::decode(&good).is_ok());
        let mutate = |at: usize, value: u8| {
            let mut bytes = good;
            bytes[at] = value;
            IndexFragment::decode(&bytes)
        };
        assert_eq!(mutate(31, 1), Err(IndexError::BadHeight { height: 1 }));
        assert_eq!(mutate(31, 7), Err(IndexError::BadHeight { height: 7 }));
        assert!(matches!(mutate(29, 2), Err(IndexError::BadNestedSize { .. })));
        assert!(matches!(mutate(39, 1), Err(IndexError::BadNestedSize { .. })));
        for at in 40..64 {
            assert_eq!(mutate(at, 1), Err(IndexError::ReservedNotZero));
        }
        for at in (64 + 3 * 32..FRAGMENT_SIZE).step_by(97) {
            assert!(matches!(mutate(at, 1), Err(IndexError::UnusedHashNotZero { .. })));
        }
        // Total: any bytes decode without panic.
        let mut noise = [0u8; FRAGMENT_SIZE];
        for seed in 0..64u32 {
            for (i, b) in noise.iter_mut().enumerate() {
                *b = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed).to_be_bytes()[0];
            }
            noise[30] = NESTED_MARKER;
            let _ = IndexFragment::decode(&noise);
        }
    }

    #[test]
    fn capacities_reach_past_a_terabyte() {
        assert_eq!(capacity(1), MAX_FILE_SIZE);
        assert_eq!(capacity(2), MAX_FILE_SIZE * 254);
        assert!(capacity(4) > 1 << 40);
        assert_eq!(tree_height(0), Ok(1));
        assert_eq!(tree_height(MAX_FILE_SIZE), Ok(1));
        assert_eq!(tree_height(MAX_FILE_SIZE + 1), Ok(2));
        assert_eq!(tree_height(1 << 40), Ok(4));
        assert!(tree_height(u64::MAX).is_err());
        assert_eq!(index_fragments(100 << 20), Ok(51 + 1));
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

    #[test]
    fn coded_root_round_trips_and_rejects_bad_fields() {
        let coding = Coding::new(3_000_000, 128, 72).unwrap();
        let name = IndexName::from_file_name("album.tar");
        let root = IndexFragment::coded_root(name, coding, fake(1), fake(2));
        let mut good = [0u8; FRAGMENT_SIZE];
        root.encode(&mut good);
        assert_eq!(root.hash(), FragmentHash::of(&good), "hashing field by field agrees");
        assert_eq!(&good[29..44], &[2, 0xFE, 1, 0, 0, 0, 0, 0, 0x2D, 0xC6, 0xC0, 0, 128, 0, 72]);
        let back = IndexFragment::decode(&good).unwrap();
        assert_eq!(back, root);
        assert_eq!(back.coded(), Some((coding, fake(1), fake(2))));
        assert_eq!((back.file_size(), back.name().as_str()), (3_000_000, "album.tar"));
        assert_eq!(back.check_root(), Ok(()));
        let mutate = |at: usize, value: u8| {
            let mut bytes = good;
            bytes[at] = value;
            IndexFragment::decode(&bytes)
        };
        assert_eq!(mutate(31, 2), Err(IndexError::UnknownCode { code: 2 }));
        assert_eq!(mutate(29, 3), Err(IndexError::BadCodedRoot { count: 3 }));
        assert_eq!(mutate(41, 0), Err(IndexError::BadCoding { k: 0, m: 72 }));
        assert_eq!(mutate(42, 2), Err(IndexError::BadCoding { k: 128, m: 584 }));
        assert_eq!(mutate(32, 0xFF), Err(IndexError::BadCodedSize { size: 0xFF00_0000_002D_C6C0 }));
        let counted = |data_copies, index_copies| Coding { data_copies, index_copies, ..coding };
        assert_eq!(mutate(44, 2).map(|r| r.coded()), Ok(Some((counted(2, 0), fake(1), fake(2)))));
        assert_eq!(mutate(45, 16).map(|r| r.coded()), Ok(Some((counted(0, 16), fake(1), fake(2)))));
        for at in 46..64 {
            assert_eq!(mutate(at, 1), Err(IndexError::ReservedNotZero));
        }
        for at in (128..FRAGMENT_SIZE).step_by(101) {
            assert!(matches!(mutate(at, 1), Err(IndexError::UnusedHashNotZero { .. })));
        }
        let mut noise = good;
        for seed in 0..64u32 {
            for (i, b) in noise.iter_mut().enumerate().skip(29) {
                *b = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed).to_be_bytes()[0];
            }
            noise[30] = CODED_MARKER;
            let _ = IndexFragment::decode(&noise);
        }
    }

    #[test]
    fn stripes_cover_the_file_once_and_balanced() {
        for (size, k, m) in [
            (1, 128, 72),
            (8192 * 128, 128, 72),
            (8192 * 129, 128, 72),
            (2 << 20, 128, 72),
            (20 << 20, 64, 136),
            (7 * 8192 + 5, 3, 2),
            (100 * 8192, 256, 256),
        ] {
            let coding = Coding::new(size, k, m).unwrap();
            let (mut next_data, mut next_parity) = (0, 0);
            let (mut shortest, mut longest) = (u64::MAX, 0);
            for i in 0..coding.stripes() {
                let (data, parity) = coding.stripe(i);
                assert_eq!((data.start, parity.start), (next_data, next_parity), "{size} {k}+{m}");
                assert!(data.end - data.start <= u64::from(k));
                let want = ((data.end - data.start) * u64::from(m)).div_ceil(u64::from(k));
                assert_eq!(parity.end - parity.start, want);
                for n in data.clone() {
                    assert_eq!(coding.stripe_of(n), Some(i));
                }
                shortest = shortest.min(data.end - data.start);
                longest = longest.max(data.end - data.start);
                (next_data, next_parity) = (data.end, parity.end);
            }
            assert_eq!(next_data, coding.data_fragments());
            assert_eq!(next_parity, coding.parity_fragments());
            assert!(longest - shortest <= 1, "balanced stripes");
            assert_eq!(coding.stripe_of(next_data), None);
        }
        assert_eq!(Coding::new(0, 1, 1), Err(IndexError::BadCodedSize { size: 0 }));
        assert_eq!(Coding::new(1, 257, 1), Err(IndexError::BadCoding { k: 257, m: 1 }));
    }
}
