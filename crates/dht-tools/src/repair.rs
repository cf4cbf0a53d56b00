//! Stripe repair: `dhtnode` rebuilding the pieces of coded files that no
//! holder has any more, without anyone running a command.
//!
//! The members of a shard restore the copies of fragments that survive
//! (the core's replication). A data or parity fragment whose every holder
//! died is gone for them; only its stripe can give it back. So after a
//! neighbor is declared dead, once the deaths have settled (10 s after the
//! last one, 60 s after the first at most), the node looks at the coded
//! roots it holds. For each, the member that ranks first for the root
//! (in the root's own shard, or the next shard of its spread if it knows
//! no member there) repairs the file. A node also looks once
//! [`AFTER_START`] after it starts: a network restarted without some of
//! its nodes declares nobody dead (the missing never joined the new
//! tables), and their pieces would stay lost.
//!
//! The repair:
//!
//! 1. it downloads the file through its own node with a client of its
//!    own, rebuilding the stripes whose data fragments are lost
//!    ([`download_mending`]), into an anonymous temporary file in its
//!    store directory;
//! 2. it computes the parity again and offers every parity, data and index
//!    fragment with the copy counts the coded root records. A fragment
//!    that is held is answered "already held" and its bytes do not move;
//!    a lost one is stored on the members that should hold it, as at
//!    upload. The address comes out the same, which checks the rebuild.
//!
//! Extra copies (a dead node that comes back with its old pieces) are
//! dropped by the core's extra-copy check, down to the recorded counts.
//!
//! The repair runs on its own thread, one file at a time, and keeps to a
//! byte budget: each fragment downloaded, fetched to decode a stripe or
//! stored anew is counted as it moves, and the thread sleeps whenever the
//! bytes moved run ahead of `rate` bytes a second since the repair began
//! (the pieces fetched to decode one stripe count at once: a burst of at
//! most one stripe).

use std::collections::BTreeMap;
use std::io::{self, BufWriter, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use dht_core::auth::NetworkKey;
use dht_core::config::FRAGMENT_SIZE;
use dht_core::download::DownloadEvent;
use dht_core::fragment::FragmentBytes;
use dht_core::holders::{Holders, Placement};
use dht_core::index::{Coding, IndexFragment, CODED_MARKER};
use dht_core::node::Event;
use dht_core::store::FragmentStore;
use dht_core::time::{Duration, Instant};
use dht_core::upload::UploadEvent;
use dht_core::{FragmentHash, IndexName, Node};
use dht_std::client::{Client, FileReader, UploadOptions};

use crate::transfer::{download_mending, send_parity, WriteSink};

/// How long after the last neighbor declared dead the repair looks.
pub const SETTLE: Duration = Duration::from_secs(10);
/// How long after the first one at most.
pub const SETTLE_AT_MOST: Duration = Duration::from_secs(60);
/// When a node looks after it starts (it has joined and learned its
/// shard's members by then).
pub const AFTER_START: Duration = Duration::from_secs(120);
/// How long one file's download or upload may take.
const FILE_TIMEOUT: StdDuration = StdDuration::from_secs(600);
/// How long after a failed repair it is tried again.
const RETRY_AFTER: StdDuration = StdDuration::from_secs(300);
/// Tries of one file's repair before it is given up (until the next
/// death starts a look again).
const TRIES: u32 = 3;

/// How the repair thread reaches the network.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The node's own address: the repair's client joins through it.
    pub entry: SocketAddr,
    /// The network key, if the network has one.
    pub key: Option<NetworkKey>,
    /// Largest datagram to send.
    pub max_datagram: u16,
    /// The node's store directory (fragments are in `fragments.pack`, the
    /// temporary file goes here).
    pub store: PathBuf,
    /// Bytes a second the repair may move, on average.
    pub rate: u64,
}

/// What the node's thread asks the repair thread.
enum Job {
    /// A coded root was stored.
    Root(FragmentHash, Coding),
    /// Repair these coded files.
    Repair(Vec<(FragmentHash, Coding)>),
}

/// The node's side of the stripe repair: notes deaths and stored
/// fragments, and hands the files this node repairs to the repair thread.
pub struct StripeRepair {
    jobs: Sender<Job>,
    /// The coded roots held here, as the repair thread found them.
    roots: Arc<Mutex<BTreeMap<FragmentHash, Coding>>>,
    /// The first and the last death since the last look.
    deaths: Option<(Instant, Instant)>,
    /// A look asked for apart from deaths ([`StripeRepair::look_later`]).
    later: Option<Instant>,
}

impl StripeRepair {
    /// Starts the repair thread, which first finds the coded roots already
    /// in the store.
    pub fn start(settings: Settings) -> io::Result<StripeRepair> {
        let (jobs, inbox) = mpsc::channel();
        let roots = Arc::new(Mutex::new(BTreeMap::new()));
        let found = Arc::clone(&roots);
        std::thread::Builder::new()
            .name("stripe-repair".into())
            .spawn(move || Worker::new(settings, found).run(inbox))?;
        Ok(StripeRepair { jobs, roots, deaths: None, later: None })
    }

    /// What the store should call with each fragment it writes
    /// ([`dht_std::DirStore::on_written`]): coded roots are passed on to
    /// the repair thread, anything else costs a byte's comparison.
    pub fn store_hook(&self) -> impl Fn(&FragmentHash, &FragmentBytes) + Send + 'static {
        let jobs = self.jobs.clone();
        move |hash, bytes| {
            if let Some(coding) = coding_of(bytes) {
                let _ = jobs.send(Job::Root(*hash, coding));
            }
        }
    }

    /// Asks for a look at `at` (the node's start plus [`AFTER_START`]).
    pub fn look_later(&mut self, at: Instant) {
        self.later = Some(at);
    }

    /// When the repair wants to look at the node.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let deaths = self.deaths.map(settled);
        [deaths, self.later].into_iter().flatten().min()
    }

    /// A node event: a death (re)starts the wait.
    pub fn on_event(&mut self, now: Instant, event: &Event) {
        if let Event::NeighborDead(_) = event {
            self.deaths = Some(match self.deaths {
                Some((first, _)) => (first, now),
                None => (now, now),
            });
        }
    }

    /// Whether a look is due at `now`; what is due is then taken as done
    /// (a death after it starts a wait again, a later look stays).
    fn due(&mut self, now: Instant) -> bool {
        if self.poll_timeout().is_none_or(|at| now < at) {
            return false;
        }
        if self.deaths.is_some_and(|d| settled(d) <= now) {
            self.deaths = None;
        }
        if self.later.is_some_and(|at| at <= now) {
            self.later = None;
        }
        true
    }

    /// Once the deaths have settled (or at the look asked for): the coded
    /// roots held here that this node ranks first for go to the repair
    /// thread.
    pub fn handle_timeout<S: FragmentStore>(&mut self, now: Instant, node: &Node<S>) {
        if !self.due(now) {
            return;
        }
        let Ok(mut roots) = self.roots.lock() else { return };
        roots.retain(|hash, _| node.store().contains(hash));
        let mine: Vec<(FragmentHash, Coding)> = roots
            .iter()
            .filter(|(hash, coding)| repairs(node, hash, coding))
            .map(|(hash, coding)| (*hash, *coding))
            .collect();
        if !roots.is_empty() {
            log::info!(
                "stripe repair: {} coded files held here, {} of them repaired by this node",
                roots.len(),
                mine.len()
            );
        }
        if !mine.is_empty() {
            let _ = self.jobs.send(Job::Repair(mine));
        }
    }
}

/// When a look follows the deaths seen first and last.
fn settled((first, last): (Instant, Instant)) -> Instant {
    (last + SETTLE).min(first + SETTLE_AT_MOST)
}

/// Whether `node` repairs the coded file whose root is `hash`: it ranks
/// first for the root among the members it knows of the first shard of
/// the root's placement where it knows any.
fn repairs<S: FragmentStore>(node: &Node<S>, hash: &FragmentHash, coding: &Coding) -> bool {
    let placement = match coding.index_copies {
        0 => Placement::home(node.config().copies().unwrap_or(16)),
        n => Placement::counted(n),
    };
    placement
        .shards(hash)
        .map(|shard| Holders::<1>::of_shard_in(hash, shard, node.neighbors(), Some(node.me()), 1))
        .find(|ranked| !ranked.is_empty())
        .is_some_and(|ranked| ranked.contains(node.id()))
}

/// What one file's repair did.
#[derive(Debug, Default)]
struct Repaired {
    /// Stripes decoded from parity (their lost data fragments rebuilt).
    stripes: u64,
    /// Fragments offered, and of them those stored anew.
    offered: u64,
    stored: u64,
    /// Bytes downloaded and sent.
    bytes: u64,
}

/// The byte budget of a repair: bytes a second on average since it began.
/// Each fragment moved is spent as it moves; a spend that runs ahead of
/// the budget sleeps until it fits, so the repair never bursts by more
/// than what one call spends.
struct Budget {
    rate: u64,
    since: std::time::Instant,
    moved: u64,
}

impl Budget {
    fn new(rate: u64) -> Self {
        Budget { rate: rate.max(1), since: std::time::Instant::now(), moved: 0 }
    }

    /// Counts `bytes` moved, and waits while they are ahead of the budget.
    fn spend(&mut self, bytes: u64) {
        self.moved += bytes;
        let due = StdDuration::from_secs_f64(self.moved as f64 / self.rate as f64);
        if let Some(wait) = due.checked_sub(self.since.elapsed()) {
            std::thread::sleep(wait);
        }
    }
}

/// The repair thread.
struct Worker {
    settings: Settings,
    roots: Arc<Mutex<BTreeMap<FragmentHash, Coding>>>,
}

impl Worker {
    fn new(settings: Settings, roots: Arc<Mutex<BTreeMap<FragmentHash, Coding>>>) -> Self {
        Worker { settings, roots }
    }

    fn run(mut self, inbox: Receiver<Job>) {
        self.find_roots();
        // Failed repairs, with the tries they had, tried again after
        // RETRY_AFTER unless a look asks for them sooner.
        let mut failed: Vec<(FragmentHash, Coding, u32)> = Vec::new();
        loop {
            let job = if failed.is_empty() {
                inbox.recv().map_err(|_| RecvTimeoutError::Disconnected)
            } else {
                inbox.recv_timeout(RETRY_AFTER)
            };
            let (files, tries): (Vec<(FragmentHash, Coding)>, Vec<u32>) = match job {
                Ok(Job::Root(hash, coding)) => {
                    if let Ok(mut roots) = self.roots.lock() {
                        roots.insert(hash, coding);
                    }
                    continue;
                }
                Ok(Job::Repair(files)) => {
                    // A new look starts every file's tries again.
                    failed.retain(|(h, _, _)| files.iter().all(|(f, _)| f != h));
                    let n = files.len();
                    (files, vec![0; n])
                }
                Err(RecvTimeoutError::Timeout) => {
                    let held = self.roots.lock().map(|r| r.clone()).unwrap_or_default();
                    let again: Vec<_> =
                        failed.drain(..).filter(|(h, _, _)| held.contains_key(h)).collect();
                    log::info!("stripe repair: trying {} failed files again", again.len());
                    again.into_iter().map(|(h, c, t)| ((h, c), t)).unzip()
                }
                Err(RecvTimeoutError::Disconnected) => return,
            };
            for ((hash, coding), tries) in self.repair_all(&files).into_iter().zip(tries) {
                let tries = tries + 1;
                match hash {
                    Some(hash) if tries < TRIES => failed.push((hash, coding, tries)),
                    Some(hash) => log::error!(
                        "stripe repair of {hash} failed {TRIES} times: given up until a \
                         neighbor dies again"
                    ),
                    None => {}
                }
            }
        }
    }

    /// The coded roots in the store when the node starts (those stored
    /// later come from [`StripeRepair::store_hook`]): a fragment is read
    /// whole only if its first 31 bytes end with a coded root's marker.
    fn find_roots(&mut self) {
        let mut found = Vec::new();
        let scanned = dht_std::store::for_each_held(&self.settings.store, |record| {
            if record.head.get(30) != Some(&CODED_MARKER) {
                return;
            }
            let mut bytes = [0u8; FRAGMENT_SIZE];
            if let Some(coding) = record.read(&mut bytes).ok().and_then(|()| coding_of(&bytes)) {
                found.push((record.hash, coding));
            }
        });
        if let Err(e) = scanned {
            log::warn!("stripe repair: cannot read the store: {e}");
        }
        if let Ok(mut roots) = self.roots.lock() {
            roots.extend(found);
        }
        let found = self.roots.lock().map(|r| r.len()).unwrap_or(0);
        if found > 0 {
            log::info!("stripe repair: {found} coded files held here");
        }
    }

    /// Repairs `files` one after the other. Returns, for each file in
    /// turn, its hash if its repair failed, with its coding.
    fn repair_all(
        &mut self,
        files: &[(FragmentHash, Coding)],
    ) -> Vec<(Option<FragmentHash>, Coding)> {
        let started = std::time::Instant::now();
        let mut total = Repaired::default();
        let mut budget = Budget::new(self.settings.rate);
        let mut outcomes = Vec::new();
        for (hash, coding) in files {
            let mut failed = None;
            match self.repair(hash, coding, &mut budget) {
                Ok(done) => {
                    log::info!(
                        "stripe repair of {hash}: {} stripes decoded, {} of {} fragments stored \
                         anew, {:.1} MB moved",
                        done.stripes,
                        done.stored,
                        done.offered,
                        done.bytes as f64 / 1e6
                    );
                    total.stripes += done.stripes;
                    total.stored += done.stored;
                    total.offered += done.offered;
                    total.bytes += done.bytes;
                }
                Err(e) => {
                    log::warn!("stripe repair of {hash} failed: {e}");
                    failed = Some(*hash);
                }
            }
            outcomes.push((failed, *coding));
        }
        log::info!(
            "stripe repair finished in {:.1} s: {} files ({} failed), {} stripes decoded, {} \
             fragments stored anew, {:.1} MB moved",
            started.elapsed().as_secs_f64(),
            files.len(),
            outcomes.iter().filter(|(failed, _)| failed.is_some()).count(),
            total.stripes,
            total.stored,
            total.bytes as f64 / 1e6
        );
        outcomes
    }

    fn client(&self) -> Result<Client, String> {
        let mut client =
            Client::bind(self.settings.entry, 0).map_err(|e| format!("cannot bind: {e}"))?;
        client.set_network_key(self.settings.key.clone());
        client.set_max_datagram(self.settings.max_datagram).map_err(|e| e.to_string())?;
        client
            .join(StdDuration::from_secs(5))
            .map_err(|e| format!("cannot join through the node: {e}"))?;
        Ok(client)
    }

    /// Repairs the coded file `hash` (see the module's text).
    fn repair(
        &mut self,
        hash: &FragmentHash,
        coding: &Coding,
        budget: &mut Budget,
    ) -> Result<Repaired, String> {
        let mut client = self.client()?;
        let file = tempfile::tempfile_in(&self.settings.store)
            .map_err(|e| format!("cannot create a temporary file: {e}"))?;
        let sink = WriteSink::new(BufWriter::new(&file));
        let mut name = None;
        let (mut sink, result, stripes) =
            download_mending(&mut client, *hash, sink, FILE_TIMEOUT, |event| {
                match event {
                    DownloadEvent::IndexReceived { name: stored, .. } => {
                        name.get_or_insert(*stored);
                    }
                    // (Again on the passes after a rebuild: those are read
                    // again too.)
                    DownloadEvent::Written { .. } => budget.spend(FRAGMENT_SIZE as u64),
                    _ => {}
                }
                Ok(())
            });
        if let Some(e) = sink.error.take() {
            return Err(format!("cannot write the temporary file: {e}"));
        }
        let size = result.map_err(|e| format!("cannot download it: {e}"))?;
        sink.out.flush().map_err(|e| format!("cannot write the temporary file: {e}"))?;
        drop(sink);
        // The pieces fetched to decode the stripes, not counted as written.
        let decoding = stripes * u64::from(coding.k) * FRAGMENT_SIZE as u64;
        budget.spend(decoding);
        let mut done = Repaired { stripes, bytes: size + decoding, ..Repaired::default() };
        let copy = file.try_clone().map_err(|e| e.to_string())?;
        let mut reader = FileReader::from_file(copy, size);
        let mut options = UploadOptions {
            coding: None,
            index_copies: coding.index_copies,
            data_copies: coding.data_copies,
        };
        let mut count = |event: &UploadEvent| {
            if let UploadEvent::Stored { already, .. } = event {
                done.offered += 1;
                if !already {
                    done.stored += 1;
                    budget.spend(FRAGMENT_SIZE as u64);
                }
            }
        };
        let (_, parity) =
            send_parity(&mut client, &mut reader, coding, &options, FILE_TIMEOUT, &mut count)
                .map_err(|e| e.to_string())?;
        options.coding = Some((coding.k, coding.m, parity));
        let name = name.unwrap_or(IndexName::EMPTY);
        let again = client
            .upload(name, reader, &options, FILE_TIMEOUT, |event, _| count(event))
            .map_err(|e| format!("cannot offer its fragments again: {e}"))?;
        done.bytes += done.stored * FRAGMENT_SIZE as u64;
        if again != *hash {
            return Err(format!("the rebuilt file's address is {again}, not the one repaired"));
        }
        Ok(done)
    }
}

/// The coding of `bytes` if they are a coded root; anything else costs
/// one byte's comparison.
fn coding_of(bytes: &FragmentBytes) -> Option<Coding> {
    if bytes.get(30) != Some(&CODED_MARKER) {
        return None;
    }
    IndexFragment::decode(bytes).ok()?.coded().map(|(coding, _, _)| coding)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idle() -> StripeRepair {
        let (jobs, _) = mpsc::channel();
        StripeRepair { jobs, roots: Arc::default(), deaths: None, later: None }
    }

    fn at(secs: u64) -> Instant {
        Instant::from_micros(secs * 1_000_000)
    }

    fn death(repair: &mut StripeRepair, secs: u64) {
        let peer = dht_core::PeerInfo {
            id: dht_core::NodeId(7),
            addr: dht_core::PeerAddr::from(SocketAddr::from(([127, 0, 0, 1], 9))),
        };
        repair.on_event(at(secs), &Event::NeighborDead(peer));
    }

    #[test]
    fn a_look_comes_10_s_after_the_last_death_and_60_s_after_the_first_at_most() {
        let mut repair = idle();
        assert_eq!(repair.poll_timeout(), None, "nothing to look at: no wake-up");
        death(&mut repair, 100);
        assert_eq!(repair.poll_timeout(), Some(at(110)));
        death(&mut repair, 105);
        assert_eq!(repair.poll_timeout(), Some(at(115)));
        for t in (110..=155).step_by(5) {
            death(&mut repair, t);
        }
        assert_eq!(repair.poll_timeout(), Some(at(160)), "60 s after the first death");
        assert!(!repair.due(at(159)));
        assert!(repair.due(at(160)));
        assert_eq!(repair.poll_timeout(), None);
        assert!(!repair.due(at(500)), "one look for those deaths");
    }

    #[test]
    fn the_look_after_the_start_stays_when_an_earlier_look_is_due() {
        let mut repair = idle();
        repair.look_later(at(120));
        death(&mut repair, 20);
        assert_eq!(repair.poll_timeout(), Some(at(30)));
        assert!(repair.due(at(30)));
        assert_eq!(repair.poll_timeout(), Some(at(120)), "the look after the start is kept");
        assert!(repair.due(at(120)));
        assert_eq!(repair.poll_timeout(), None);
    }
}
