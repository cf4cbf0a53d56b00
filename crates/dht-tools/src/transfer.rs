//! Whole transfers of coded files, shared by the tools and by the node's
//! stripe repair ([`crate::repair`]): a download that rebuilds the
//! stripes whose data fragments are lost, and the upload of a file's
//! parity.

use std::collections::BTreeSet;
use std::io::{self, Write};
use std::time::Duration;

use dht_core::download::{DownloadError, DownloadEvent, FileSink};
use dht_core::index::Coding;
use dht_core::upload::UploadEvent;
use dht_core::{FragmentHash, IndexName};
use dht_std::client::{Client, ClientError, FileReader, UploadOptions};

use crate::coding::{parity_file, rebuild_stripe, Mend, RebuildError};
use crate::Failure;

/// A download's destination that writes to any [`Write`] in file order,
/// keeping the first error for the message.
pub struct WriteSink<W: Write> {
    /// Where the bytes go.
    pub out: W,
    /// The first write that failed.
    pub error: Option<io::Error>,
}

impl<W: Write> WriteSink<W> {
    /// Writes to `out`.
    pub fn new(out: W) -> Self {
        WriteSink { out, error: None }
    }
}

impl<W: Write> FileSink for WriteSink<W> {
    fn write(&mut self, bytes: &[u8]) -> bool {
        match self.out.write_all(bytes) {
            Ok(()) => true,
            Err(e) => {
                self.error.get_or_insert(e);
                false
            }
        }
    }
}

/// Downloads `hash` into `sink`; `on_event` sees every event (those of
/// the first fragments again after a rebuild: the download passes over
/// what was written) and may stop it. A data fragment of a coded file
/// that no holder has is rebuilt from its stripe, and the download goes
/// on from there; each stripe is rebuilt once at most. Returns the sink,
/// the outcome and the number of stripes decoded.
pub fn download_mending<K: FileSink>(
    client: &mut Client,
    hash: FragmentHash,
    sink: K,
    timeout: Duration,
    mut on_event: impl FnMut(&DownloadEvent) -> Result<(), String>,
) -> (K, Result<u64, ClientError>, u64) {
    let mut mend = Mend::new(sink);
    let mut rebuilt = BTreeSet::new();
    let mut decoded = 0;
    loop {
        mend.rewind();
        let (back, result) = client.download(hash, mend, timeout, &mut on_event);
        mend = back;
        let lost = match (&result, client.last_coding()) {
            (
                Err(ClientError::Download(DownloadError::FragmentUnavailable { fragment, .. })),
                Some(coding),
            ) => Some((*fragment, coding)),
            _ => None,
        };
        let Some((lost, (coding, parity))) = lost else {
            return (mend.into_inner(), result, decoded);
        };
        let stripe = coding.stripe_of(lost).unwrap_or(0);
        if !rebuilt.insert(stripe) {
            return (mend.into_inner(), result, decoded);
        }
        log::info!("fragment {lost} has no holder left: rebuilding its stripe from parity");
        match rebuild_stripe(client, timeout, hash, &coding, parity, lost) {
            Ok(fragments) => {
                decoded += 1;
                mend.add(fragments);
            }
            Err(RebuildError::Fetch(e)) => return (mend.into_inner(), Err(e), decoded),
            // Not found, as without parity: the exit status says so.
            Err(e @ RebuildError::TooFew { .. }) => {
                log::error!("{e}");
                return (mend.into_inner(), result, decoded);
            }
            Err(e) => {
                let message = e.to_string();
                return (
                    mend.into_inner(),
                    Err(ClientError::Io(io::Error::other(message))),
                    decoded,
                );
            }
        }
    }
}

/// Computes the parity of `reader` as `coding` says into a temporary
/// file and uploads it as the unnamed parity tree of a coded file, as
/// `options` say (without a coding: the parity tree is plain). `on_event`
/// sees the upload's events. Returns the parity fragments and the parity
/// tree's root.
pub fn send_parity(
    client: &mut Client,
    reader: &mut FileReader,
    coding: &Coding,
    options: &UploadOptions,
    timeout: Duration,
    mut on_event: impl FnMut(&UploadEvent),
) -> Result<(u64, FragmentHash), Failure> {
    let started = std::time::Instant::now();
    let (parity, count) = parity_file(reader, coding)
        .map_err(|e| Failure::local(format!("cannot compute the parity: {e}")))?;
    log::info!(
        "parity: {count} fragments for {} stripes of {}+{} ({:.2} s)",
        coding.stripes(),
        coding.k,
        coding.m,
        started.elapsed().as_secs_f64()
    );
    let plain = UploadOptions { coding: None, ..*options };
    let root = client
        .upload(IndexName::EMPTY, parity, &plain, timeout, |event, _| on_event(event))
        .map_err(|e| Failure::from(e).context("cannot store the parity fragments"))?;
    Ok((count, root))
}
