//! Where an upload's bytes come from: the [`FileSource`] trait, a file in
//! memory ([`Bytes`]), and reading and hashing one fragment of a source.

use sha2::{Digest, Sha256};

use crate::config::FRAGMENT_SIZE;
use crate::fragment::{FragmentBytes, FragmentHash};

use super::UploadError;

/// The bytes of a file being uploaded.
pub trait FileSource {
    /// The file's size in bytes.
    fn size(&self) -> u64;
    /// Fills `buf` with the bytes at `offset`; `offset + buf.len()` is at
    /// most `size()`. Returns `false` if the bytes cannot be read.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> bool;
}

impl FileSource for &[u8] {
    fn size(&self) -> u64 {
        self.len() as u64
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> bool {
        let Ok(start) = usize::try_from(offset) else { return false };
        match self.get(start..start.saturating_add(buf.len())) {
            Some(src) => {
                buf.copy_from_slice(src);
                true
            }
            None => false,
        }
    }
}

/// A file held in memory (a `Vec<u8>`, an array, a slice in flash) as an
/// upload source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bytes<B>(pub B);

impl<B: AsRef<[u8]>> FileSource for Bytes<B> {
    fn size(&self) -> u64 {
        self.0.as_ref().len() as u64
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> bool {
        let mut bytes = self.0.as_ref();
        bytes.read_at(offset, buf)
    }
}

/// Reads fragment `i` of a file of `size` bytes into `buf`, zero-padded.
pub fn read_fragment(
    source: &mut impl FileSource,
    size: u64,
    i: u64,
    buf: &mut FragmentBytes,
) -> bool {
    let offset = i.saturating_mul(FRAGMENT_SIZE as u64);
    let len = crate::index::data_fragment_len(size, i);
    let (data, padding) = buf.split_at_mut(len);
    padding.fill(0);
    source.read_at(offset, data)
}

/// Hashes fragment `i` of a file of `size` bytes, 512 bytes at a time.
pub(super) fn hash_fragment(
    source: &mut impl FileSource,
    size: u64,
    i: u64,
) -> Result<FragmentHash, UploadError> {
    let mut hasher = Sha256::new();
    let mut chunk = [0u8; 512];
    let start = i.saturating_mul(FRAGMENT_SIZE as u64);
    let mut offset = start;
    let end = start + FRAGMENT_SIZE as u64;
    while offset < end {
        let take = (end - offset).min(chunk.len() as u64) as usize;
        let available = size.saturating_sub(offset).min(take as u64) as usize;
        let (data, padding) = chunk.split_at_mut(available);
        padding.fill(0);
        if !data.is_empty() && !source.read_at(offset, data) {
            return Err(UploadError::SourceFailed { offset });
        }
        hasher.update(chunk.get(..take).unwrap_or(&[]));
        offset += take as u64;
    }
    Ok(FragmentHash(hasher.finalize().into()))
}
