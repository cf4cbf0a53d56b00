//! Erasure coding of files: the parity `dhtsend --redundancy` stores and
//! the stripe decoding `dhtrecv` falls back to when a data fragment has
//! no holder left.
//!
//! The shape of the stripes is the core's ([`Coding`]); the code is
//! Reed-Solomon in the Leopard construction over GF(2^16), through the
//! `reed-solomon-simd` crate, each 8192-byte fragment (the last one
//! zero-padded, as it is stored) one shard. Memory: one stripe, at most
//! 512 fragments (4 MB).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::{self, Write};
use std::str::FromStr;
use std::time::Duration;

use dht_core::config::FRAGMENT_SIZE;
use dht_core::download::FileSink;
use dht_core::index::{Coding, MAX_STRIPE_DATA, MAX_STRIPE_PARITY};
use dht_core::upload::{read_fragment, FileSource};
use dht_core::FragmentHash;
use dht_std::client::{Client, ClientError};

/// Data and parity fragments a stripe, as `--redundancy K+M` gives them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Redundancy {
    /// Data fragments a full stripe.
    pub k: u16,
    /// Parity fragments a full stripe.
    pub m: u16,
}

impl fmt::Display for Redundancy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}+{}", self.k, self.m)
    }
}

impl FromStr for Redundancy {
    type Err = String;

    fn from_str(text: &str) -> Result<Redundancy, String> {
        let (k, m) = text
            .split_once('+')
            .ok_or_else(|| format!("\"{text}\" is not K+M (for example 128+72)"))?;
        let k: u16 =
            k.trim().parse().map_err(|_| format!("\"{k}\" is not a number of fragments"))?;
        let m: u16 =
            m.trim().parse().map_err(|_| format!("\"{m}\" is not a number of fragments"))?;
        if !(1..=MAX_STRIPE_DATA).contains(&k) || !(1..=MAX_STRIPE_PARITY).contains(&m) {
            return Err(format!(
                "{k}+{m}: K must be 1 to {MAX_STRIPE_DATA} and M 1 to {MAX_STRIPE_PARITY}"
            ));
        }
        Ok(Redundancy { k, m })
    }
}

/// The `--redundancy` option of dhtsend and dhthash.
#[derive(clap::Args, Debug)]
pub struct RedundancyArg {
    /// Erasure-code the file: every stripe of K data fragments gets M
    /// Reed-Solomon parity fragments, any K of the K+M giving back the
    /// rest, and the address is the file's coded root. Give the value with
    /// `=` (--redundancy=128+64); alone it means 128+72, which with 2
    /// copies of data and parity and 16 of each index fragment (dhtsend's
    /// defaults) stores about 3.3 times the file.
    #[arg(
        long,
        value_name = "K+M",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "128+72"
    )]
    pub redundancy: Option<Redundancy>,
}

/// Copies of each index fragment of a coded file by default: every member
/// of a shard of up to 16 (the most a node ranks).
pub const CODED_INDEX_COPIES: u8 = 16;
/// Copies of each data and parity fragment of a coded file by default.
pub const CODED_DATA_COPIES: u8 = 2;

/// The copy counts of dhtsend and dhthash. A coded root records them (so
/// they are part of a coded file's address); a plain file's are not.
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct CopiesArg {
    /// Copies kept of each index fragment (the root and the interior
    /// indexes) instead of the network's R: a file is lost with any of
    /// them. Above 4 they are spread, 4 a shard, over consecutive shards.
    /// [default: 16 with --redundancy (4 in each of 4 shards), else the
    /// network's R]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=16))]
    pub index_copies: Option<u8>,
    /// Copies kept of each data and parity fragment instead of the
    /// network's R. [default: 2 with --redundancy (a stripe survives the
    /// loss of some pieces), else the network's R] With 1, only the index
    /// is read back (no other holder has the data).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=16))]
    pub data_copies: Option<u8>,
}

impl CopiesArg {
    /// The counts asked for, index then data (0: the network's R), for a
    /// coded file or a plain one.
    pub fn resolve(&self, coded: bool) -> (u8, u8) {
        let (index, data) = if coded { (CODED_INDEX_COPIES, CODED_DATA_COPIES) } else { (0, 0) };
        (self.index_copies.unwrap_or(index), self.data_copies.unwrap_or(data))
    }
}

/// Reads data fragment `n` of `source` zero-padded to 8192 bytes, as it
/// is stored (the core's [`read_fragment`]).
fn read_padded(source: &mut impl FileSource, size: u64, n: u64) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; FRAGMENT_SIZE];
    let whole = <&mut dht_core::fragment::FragmentBytes>::try_from(buf.as_mut_slice());
    if !whole.is_ok_and(|whole| read_fragment(source, size, n, whole)) {
        let offset = n * FRAGMENT_SIZE as u64;
        return Err(io::Error::other(format!("cannot read the file at byte {offset}")));
    }
    Ok(buf)
}

fn rs_error(e: reed_solomon_simd::Error) -> io::Error {
    io::Error::other(format!("Reed-Solomon coding failed: {e}"))
}

/// Computes the parity fragments of `source` stripe by stripe and writes
/// them, in the parity tree's order, to `out`. Returns their count.
pub fn write_parity(
    source: &mut impl FileSource,
    coding: &Coding,
    out: &mut impl Write,
) -> io::Result<u64> {
    let mut written = 0;
    for s in 0..coding.stripes() {
        let (data, parity) = coding.stripe(s);
        let originals =
            data.map(|n| read_padded(source, coding.size, n)).collect::<io::Result<Vec<_>>>()?;
        let count = (parity.end - parity.start) as usize;
        let recovery =
            reed_solomon_simd::encode(originals.len(), count, &originals).map_err(rs_error)?;
        for shard in &recovery {
            out.write_all(shard)?;
            written += 1;
        }
    }
    Ok(written)
}

/// Computes the parity of `source` into an anonymous temporary file (on
/// disk, not in memory) and gives it as an upload source of
/// [`Coding::parity_size`] bytes, with the number of parity fragments.
pub fn parity_file(
    source: &mut impl FileSource,
    coding: &Coding,
) -> io::Result<(dht_std::client::FileReader, u64)> {
    let spool = tempfile::tempfile()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot make a temporary file: {e}")))?;
    let mut out = io::BufWriter::new(spool);
    let count = write_parity(source, coding, &mut out)?;
    out.flush()?;
    let spool = out.into_inner().map_err(|e| io::Error::new(e.error().kind(), e.to_string()))?;
    Ok((dht_std::client::FileReader::from_file(spool, coding.parity_size()), count))
}

/// Rebuilds the data fragments of one stripe from any `k_i` of its
/// pieces: `data` holds the data fragments that were fetched (by position
/// in the stripe), `parity` the parity fragments (by position among the
/// stripe's parity). Returns every data fragment of the stripe, each
/// checked against `hashes` (by position in the stripe) when known.
pub fn decode_stripe(
    k: usize,
    m: usize,
    data: &BTreeMap<usize, Vec<u8>>,
    parity: &BTreeMap<usize, Vec<u8>>,
    hashes: &BTreeMap<usize, FragmentHash>,
) -> io::Result<Vec<Vec<u8>>> {
    let restored = if data.len() == k {
        Default::default()
    } else {
        reed_solomon_simd::decode(
            k,
            m,
            data.iter().map(|(i, b)| (*i, b)),
            parity.iter().map(|(i, b)| (*i, b)),
        )
        .map_err(rs_error)?
    };
    (0..k)
        .map(|i| {
            let bytes = data.get(&i).or_else(|| restored.get(&i)).cloned().ok_or_else(|| {
                io::Error::other(format!("fragment {i} of the stripe was not rebuilt"))
            })?;
            if let Some(hash) = hashes.get(&i) {
                let whole: &[u8; FRAGMENT_SIZE] = bytes
                    .as_slice()
                    .try_into()
                    .map_err(|_| io::Error::other("a rebuilt fragment has the wrong size"))?;
                if !hash.verifies(whole) {
                    return Err(io::Error::other(format!(
                        "fragment {i} of the stripe was rebuilt but does not match its hash"
                    )));
                }
            }
            Ok(bytes)
        })
        .collect()
}

/// A sink that takes a chosen set of fragments of a tree, zero-padded to
/// 8192 bytes, and says it holds every other one (so that a download
/// fetches only the chosen ones); a chosen fragment no holder gives is
/// passed over and noted. `hashes` records the hash of every fragment of
/// `range` the walk passed.
#[derive(Debug, Default)]
pub struct Pick {
    /// Positions to fetch.
    pub want: BTreeSet<u64>,
    /// Fragments received, by position.
    pub got: BTreeMap<u64, Vec<u8>>,
    /// Wanted fragments no holder gave.
    pub lost: BTreeSet<u64>,
    /// Hashes seen, by position (within `range`).
    pub hashes: BTreeMap<u64, FragmentHash>,
    /// The positions whose hashes to record.
    pub range: std::ops::Range<u64>,
    cursor: u64,
}

impl Pick {
    /// Starts a new pass of the download over the tree.
    pub fn rewind(&mut self) {
        self.cursor = 0;
    }
}

impl FileSink for Pick {
    fn write(&mut self, bytes: &[u8]) -> bool {
        let n = self.cursor / FRAGMENT_SIZE as u64;
        let mut whole = bytes.to_vec();
        whole.resize(FRAGMENT_SIZE, 0);
        self.got.insert(n, whole);
        self.cursor += bytes.len() as u64;
        true
    }

    fn holds(&mut self, offset: u64, _len: usize, hash: &FragmentHash) -> bool {
        let n = offset / FRAGMENT_SIZE as u64;
        if self.range.contains(&n) {
            self.hashes.insert(n, *hash);
        }
        !self.want.contains(&n) || self.got.contains_key(&n)
    }

    fn skip(&mut self, len: usize) -> bool {
        self.cursor += len as u64;
        true
    }

    fn patient(&self) -> bool {
        false
    }

    fn lost(&mut self, offset: u64, _len: usize, _hash: &FragmentHash) -> bool {
        self.lost.insert(offset / FRAGMENT_SIZE as u64);
        true
    }
}

/// Wraps the sink of a download so that it can be run again after a
/// stripe was rebuilt: what was written before is passed over, the
/// rebuilt fragments are written from memory in their place, and the
/// rest goes on as before (including the inner sink's own resume).
#[derive(Debug)]
pub struct Mend<K> {
    inner: K,
    /// Bytes the inner sink has, in file order.
    done: u64,
    /// Where this pass of the download is.
    cursor: u64,
    /// Rebuilt data fragments not yet written, by position.
    rebuilt: BTreeMap<u64, Vec<u8>>,
}

impl<K: FileSink> Mend<K> {
    /// Wraps `inner`.
    pub fn new(inner: K) -> Mend<K> {
        Mend { inner, done: 0, cursor: 0, rebuilt: BTreeMap::new() }
    }

    /// Starts a new pass of the download.
    pub fn rewind(&mut self) {
        self.cursor = 0;
    }

    /// Adds rebuilt fragments (by position), written when the download
    /// reaches them.
    pub fn add(&mut self, fragments: impl IntoIterator<Item = (u64, Vec<u8>)>) {
        self.rebuilt
            .extend(fragments.into_iter().filter(|(n, _)| n * FRAGMENT_SIZE as u64 >= self.done));
    }

    /// The inner sink.
    pub fn into_inner(self) -> K {
        self.inner
    }

    /// The inner sink.
    pub fn inner_mut(&mut self) -> &mut K {
        &mut self.inner
    }
}

impl<K: FileSink> FileSink for Mend<K> {
    fn write(&mut self, bytes: &[u8]) -> bool {
        let n = self.cursor / FRAGMENT_SIZE as u64;
        self.rebuilt.remove(&n);
        self.cursor += bytes.len() as u64;
        self.done = self.cursor;
        self.inner.write(bytes)
    }

    fn holds(&mut self, offset: u64, len: usize, hash: &FragmentHash) -> bool {
        offset + len as u64 <= self.done
            || self.rebuilt.contains_key(&(offset / FRAGMENT_SIZE as u64))
            || self.inner.holds(offset, len, hash)
    }

    fn skip(&mut self, len: usize) -> bool {
        let n = self.cursor / FRAGMENT_SIZE as u64;
        let at = self.cursor;
        self.cursor += len as u64;
        if at < self.done {
            return true;
        }
        self.done = self.cursor;
        match self.rebuilt.remove(&n) {
            Some(bytes) => self.inner.write(bytes.get(..len).unwrap_or(&[])),
            None => self.inner.skip(len),
        }
    }
}

/// Why a stripe could not be rebuilt.
#[derive(Debug)]
pub enum RebuildError {
    /// A download failed otherwise than on an unavailable fragment.
    Fetch(ClientError),
    /// Too few pieces of the stripe are left.
    TooFew {
        /// The stripe.
        stripe: u64,
        /// Pieces found.
        found: usize,
        /// Pieces needed.
        needed: usize,
    },
    /// Decoding failed, or a rebuilt fragment does not match its hash.
    Decode(io::Error),
}

impl fmt::Display for RebuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RebuildError::Fetch(e) => e.fmt(f),
            RebuildError::TooFew { stripe, found, needed } => write!(
                f,
                "stripe {stripe} of the file cannot be rebuilt: {found} of the {needed} pieces it needs are left"
            ),
            RebuildError::Decode(e) => write!(f, "{e}"),
        }
    }
}

/// Fetches into `pick` positions of `candidates` until it has `need`
/// fragments, passing over positions no holder has; each pass asks for
/// `spare` more than it lacks (some of them may be gone too).
fn gather(
    client: &mut Client,
    timeout: Duration,
    hash: FragmentHash,
    pick: &mut Pick,
    candidates: &[u64],
    need: usize,
    spare: usize,
) -> Result<(), ClientError> {
    while pick.got.len() < need {
        let lost = &pick.lost;
        let got = &pick.got;
        pick.want = candidates
            .iter()
            .filter(|n| !lost.contains(*n) && !got.contains_key(*n))
            .take(need + spare - pick.got.len())
            .copied()
            .collect();
        if pick.want.is_empty() {
            return Ok(());
        }
        pick.rewind();
        let asked = pick.want.len();
        let (back, result) = client.download(hash, std::mem::take(pick), timeout, |_| Ok(()));
        *pick = back;
        result?;
        log::debug!("asked for {asked} pieces: {} in, {} gone", pick.got.len(), pick.lost.len());
    }
    Ok(())
}

/// The data fragments of a rebuilt stripe, by position in the file.
pub type Rebuilt = Vec<(u64, Vec<u8>)>;

/// Rebuilds the stripe of data fragment `lost` of the coded file `file`
/// (its coded root): fetches the stripe's data fragments that are left,
/// then as many parity fragments as are missing, and decodes. Returns
/// every data fragment of the stripe, checked against its hash.
pub fn rebuild_stripe(
    client: &mut Client,
    timeout: Duration,
    file: FragmentHash,
    coding: &Coding,
    parity_root: FragmentHash,
    lost: u64,
) -> Result<Rebuilt, RebuildError> {
    let stripe = coding.stripe_of(lost).unwrap_or(0);
    let (data, parity) = coding.stripe(stripe);
    let (k, m) = ((data.end - data.start) as usize, (parity.end - parity.start) as usize);
    let mut picked = Pick { range: data.clone(), ..Pick::default() };
    picked.lost.insert(lost);
    let others: Vec<u64> = data.clone().collect();
    gather(client, timeout, file, &mut picked, &others, k, 0).map_err(RebuildError::Fetch)?;
    let mut parity_pick = Pick::default();
    // A few more than needed: some parity is gone too, and a second pass
    // costs more than a few fragments.
    let need = k - picked.got.len();
    let positions: Vec<u64> = parity.clone().collect();
    gather(client, timeout, parity_root, &mut parity_pick, &positions, need, need / 4 + 2)
        .map_err(RebuildError::Fetch)?;
    let found = picked.got.len() + parity_pick.got.len();
    if found < k {
        return Err(RebuildError::TooFew { stripe, found, needed: k });
    }
    log::info!(
        "rebuilding stripe {stripe} ({} data fragments missing) from {} data and {} parity \
         fragments",
        k - picked.got.len(),
        picked.got.len(),
        parity_pick.got.len()
    );
    let local = |map: BTreeMap<u64, Vec<u8>>, base: u64| {
        map.into_iter().map(|(n, b)| ((n - base) as usize, b)).collect::<BTreeMap<_, _>>()
    };
    let hashes = picked.hashes.iter().map(|(n, h)| ((n - data.start) as usize, *h)).collect();
    let rebuilt = decode_stripe(
        k,
        m,
        &local(std::mem::take(&mut picked.got), data.start),
        &local(parity_pick.got, parity.start),
        &hashes,
    )
    .map_err(RebuildError::Decode)?;
    Ok(rebuilt.into_iter().enumerate().map(|(i, b)| (data.start + i as u64, b)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redundancy_parses_and_refuses_what_the_index_cannot_hold() {
        assert_eq!("128+72".parse(), Ok(Redundancy { k: 128, m: 72 }));
        assert_eq!(" 4 + 2 ".trim().parse::<Redundancy>().unwrap().to_string(), "4+2");
        assert!("128".parse::<Redundancy>().unwrap_err().contains("K+M"));
        assert!("0+3".parse::<Redundancy>().unwrap_err().contains("K must be 1 to 256"));
        assert!("4+300".parse::<Redundancy>().is_err());
        assert!("a+3".parse::<Redundancy>().unwrap_err().contains("\"a\""));
    }

    #[test]
    fn any_k_pieces_of_a_stripe_rebuild_its_data() {
        let data: Vec<u8> =
            (0..(7 * FRAGMENT_SIZE + 100) as u32).map(|i| (i * 31 % 251) as u8).collect();
        let coding = Coding::new(data.len() as u64, 3, 2).unwrap();
        let mut parity = Vec::new();
        let count = write_parity(&mut &data[..], &coding, &mut parity).unwrap();
        assert_eq!((count, parity.len() as u64), (coding.parity_fragments(), coding.parity_size()));
        for s in 0..coding.stripes() {
            let (d, p) = coding.stripe(s);
            let (k, m) = ((d.end - d.start) as usize, (p.end - p.start) as usize);
            let fragment = |n: u64| read_padded(&mut &data[..], data.len() as u64, n).unwrap();
            let hashes: BTreeMap<usize, FragmentHash> = (0..k)
                .map(|i| {
                    (
                        i,
                        FragmentHash::of(
                            fragment(d.start + i as u64).as_slice().try_into().unwrap(),
                        ),
                    )
                })
                .collect();
            let piece = |j: u64| {
                let at = ((p.start + j) as usize) * FRAGMENT_SIZE;
                parity[at..at + FRAGMENT_SIZE].to_vec()
            };
            // Lose the first data fragments, as many as there is parity.
            let kept: BTreeMap<usize, Vec<u8>> =
                (m.min(k)..k).map(|i| (i, fragment(d.start + i as u64))).collect();
            let pieces: BTreeMap<usize, Vec<u8>> =
                (0..m as u64).map(|j| (j as usize, piece(j))).collect();
            let rebuilt = decode_stripe(k, m, &kept, &pieces, &hashes).unwrap();
            for (i, bytes) in rebuilt.iter().enumerate() {
                assert_eq!(bytes, &fragment(d.start + i as u64), "stripe {s} fragment {i}");
            }
            // One piece too few cannot be decoded; a wrong hash is caught.
            let fewer: BTreeMap<usize, Vec<u8>> =
                pieces.iter().skip(1).map(|(i, b)| (*i, b.clone())).collect();
            assert!(decode_stripe(k, m, &kept, &fewer, &hashes).is_err());
            let mut wrong = hashes.clone();
            wrong.insert(0, FragmentHash([9; 32]));
            assert!(decode_stripe(k, m, &kept, &pieces, &wrong).is_err());
        }
    }
}
