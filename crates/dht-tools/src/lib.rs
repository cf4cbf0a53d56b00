//! What the five tools share: verbosity flags, error reporting, progress
//! display, host arguments ([`address`]), joining through an entry node,
//! the file-name rules of `dhtsend` and `dhtrecv`, and saving a download
//! ([`save`]). The network work itself is in `dht-std`, the protocol in
//! `dht-core`.

pub mod address;
pub mod coding;
pub mod repair;
pub mod save;
pub mod source;
pub mod transfer;
pub mod watch;

pub use address::node_addrs;
pub use save::safe_file_name;
pub use source::{open_source, source_name};

use std::io::{IsTerminal, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use address::Attempt;
use clap::Args;
use dht_std::client::{Client, ClientError};

/// A number of seconds from the command line as a duration.
pub fn seconds(value: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(value).map_err(|_| format!("'{value}' is not a number of seconds"))
}

/// `--key-file` and `--max-datagram`, shared by every tool that talks to
/// the network.
#[derive(Args, Debug, Clone)]
pub struct Network {
    /// The network's key file: every datagram is then authenticated with
    /// it, and datagrams without it are ignored. Every node and tool of a
    /// network needs the same key (deploy_test_scene.sh writes one as
    /// test_scene/network.key).
    #[arg(long, value_name = "PATH", env = "DHT_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// The largest UDP datagram to send, in bytes (fragments travel in
    /// pieces that fit) [default: 8320 on loopback, where one datagram
    /// carries a whole fragment; 1452 elsewhere, so that no datagram is
    /// cut into IP fragments on a 1500-byte Ethernet].
    #[arg(long, value_name = "BYTES")]
    pub max_datagram: Option<u16>,
}

impl Network {
    /// The key, if a key file was given.
    pub fn key(&self) -> Result<Option<dht_core::auth::NetworkKey>, String> {
        match &self.key_file {
            Some(path) => dht_std::key::read_key_file(path).map(Some).map_err(|e| e.to_string()),
            None => Ok(None),
        }
    }

    /// The key file, for messages.
    pub fn key_file_display(&self) -> String {
        self.key_file.as_ref().map_or_else(String::new, |p| p.display().to_string())
    }

    /// The largest datagram for talking to `peer`.
    pub fn max_datagram_for(&self, peer: IpAddr) -> u16 {
        self.max_datagram.unwrap_or(if peer.is_loopback() {
            dht_core::MAX_DATAGRAM_SIZE as u16
        } else {
            dht_core::config::ETHERNET_DATAGRAM
        })
    }
}

/// A client that has joined the network through the node at one of
/// `entries` (the addresses of one host, see [`address`]), tried in turn,
/// each for an equal share of `connect_timeout` seconds, with the key and
/// datagram size of `network`.
pub fn join(
    entries: &[SocketAddr],
    listen: u16,
    connect_timeout: f64,
    network: &Network,
) -> Result<Client, Failure> {
    let share = seconds(connect_timeout).map_err(Failure::usage)? / entries.len().max(1) as u32;
    let key = network.key().map_err(Failure::local)?;
    let started = std::time::Instant::now();
    let joined = address::in_turn(entries, |entry| {
        let mut client = Client::bind(entry, listen).map_err(Attempt::Next)?;
        client.set_network_key(key.clone());
        client.set_max_datagram(network.max_datagram_for(entry.ip())).map_err(Attempt::Stop)?;
        match client.join(share) {
            Ok(neighbors) => Ok((client, neighbors)),
            Err(ClientError::Interrupted) => Err(Attempt::Stop(ClientError::Interrupted)),
            Err(e) => {
                if entries.len() > 1 {
                    log::info!("{e}; trying the next address");
                }
                Err(Attempt::Next(e))
            }
        }
    });
    match joined {
        Ok((client, neighbors)) => {
            log::info!(
                "joined through {} in {:.1} ms: {neighbors} nodes known",
                client.entry(),
                started.elapsed().as_secs_f64() * 1e3
            );
            Ok(client)
        }
        Err(errors) => Err(join_failure(errors, share)),
    }
}

/// One failure for the failed attempts to join through each address.
fn join_failure(errors: Vec<(SocketAddr, ClientError)>, share: Duration) -> Failure {
    let unreachable =
        |e: &ClientError| matches!(e, ClientError::NoAnswer { .. } | ClientError::Refused { .. });
    match errors.as_slice() {
        [] => Failure::usage("no address to join through"),
        [_] => errors
            .into_iter()
            .next()
            .map(|(_, e)| Failure::from(e))
            .unwrap_or_else(|| Failure::usage("no address to join through")),
        _ if matches!(errors.last(), Some((_, ClientError::Interrupted))) => {
            Failure::from(ClientError::Interrupted)
        }
        _ if errors.iter().all(|(_, e)| unreachable(e)) => {
            let addrs: Vec<SocketAddr> = errors.iter().map(|(a, _)| *a).collect();
            Failure::new(
                exit::UNREACHABLE,
                format!(
                    "no node answered at {} (within {:.1} s each, or nothing listens there); is \
                     a dhtnode running there, and does the network have a key (--key-file)?",
                    address::list(&addrs),
                    share.as_secs_f64()
                ),
            )
        }
        _ => Failure::new(
            exit::UNREACHABLE,
            errors.iter().map(|(a, e)| format!("{a}: {e}")).collect::<Vec<_>>().join("; "),
        ),
    }
}

/// The name stored in a file's index: `name` if given, else the file's name.
pub fn index_name(file: &Path, name: Option<&str>) -> String {
    match name {
        Some(name) => name.to_owned(),
        None => file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
    }
}

/// `-v` and `-q`, shared by every tool.
#[derive(Args, Debug, Clone, Copy)]
pub struct Verbosity {
    /// More log output on stderr: -v info, -vv debug, -vvv every datagram.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
}

impl Verbosity {
    /// The verbosity as a number (-1 quiet, 0 default, 1.. verbose).
    pub fn level(&self) -> i8 {
        if self.quiet {
            -1
        } else {
            self.verbose.min(3) as i8
        }
    }
}

/// Says that an upload or download looks for more nodes of a shard
/// (`Searching` events), once per shard: under load it can come back often.
#[derive(Default)]
pub struct Searching(std::collections::HashSet<u8>);

impl Searching {
    /// The operation began searching for nodes of `shard`.
    pub fn say(&mut self, shard: dht_core::id::Shard) {
        if self.0.insert(shard.get()) {
            log::warn!(
                "no node of shard {shard} is free yet (none known, or each known one busy or \
                 silent): looking for more, for up to 30 s"
            );
        }
    }
}

/// A size as people read it, the exact count beside it from 1000 bytes on:
/// `10.5 MB (10485760 bytes)`, `512 bytes`.
pub fn size(bytes: u64) -> String {
    if bytes < 1000 {
        format!("{bytes} bytes")
    } else {
        format!("{} ({bytes} bytes)", bytesize::ByteSize::b(bytes).display().si())
    }
}

/// Prints a line on stdout. A closed stdout (`dhtping --stats | head`) is
/// not an error worth a panic: the line is dropped.
pub fn say(line: impl std::fmt::Display) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// The tools' exit statuses: one per class of failure, so that a script
/// can tell them apart ([`EXIT_STATUS_HELP`] says the same in `--help`).
pub mod exit {
    /// Any other failure.
    pub const FAILURE: u8 = 1;
    /// A bad command line (also clap's own).
    pub const USAGE: u8 = 2;
    /// dhtsend: stored, but a fragment read back from no other holder.
    pub const NOT_READ_BACK: u8 = 3;
    /// No node answered at the address given, or nothing listens there.
    pub const UNREACHABLE: u8 = 4;
    /// No node holds a file with this hash.
    pub const NOT_FOUND: u8 = 5;
    /// What the network gave is not a valid file (a fragment's hash given
    /// as a file's, a damaged index).
    pub const INTEGRITY: u8 = 6;
    /// A local file could not be read or written (or may not be replaced).
    pub const LOCAL_IO: u8 = 7;
    /// The network failed part way: a fragment no node gave, no node of a
    /// shard, the time allowed ran out.
    pub const NETWORK: u8 = 8;
    /// Interrupted (SIGINT or SIGTERM), as a shell counts it: 128 + 2.
    pub const INTERRUPTED: u8 = 130;
}

/// The exit statuses as text, for the end of each tool's `--help` (a
/// macro, so that `concat!` can put it after the examples).
#[macro_export]
macro_rules! exit_status_help {
    () => {
        "Exit status: 0 done; 1 another failure; 2 bad command line; 3 stored but not read \
         back (dhtsend); 4 no node answered (or nothing listens) at the address; 5 no node \
         holds the file; 6 what came is not a valid file; 7 a local file could not be read or \
         written; 8 the network failed part way (or the time ran out); 130 interrupted."
    };
}

/// The exit statuses as text ([`exit_status_help!`]).
pub const EXIT_STATUS_HELP: &str = exit_status_help!();

/// Why a tool failed: its exit status ([`exit`]), the chain of causes
/// (what the tool was doing, then why that failed, outermost first) and
/// what to try, printed on one line: `dhtrecv: cannot get 3f2a… from
/// 127.0.0.1:8000: fragment 12 of the file could not be fetched after 16
/// attempts; the partial download is kept in ….part: run the same command
/// again to continue it`.
#[derive(Debug)]
pub struct Failure {
    /// The exit status.
    pub code: u8,
    error: anyhow::Error,
    hint: Option<String>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `{:#}`: every cause, joined by ": ".
        write!(f, "{:#}", self.error)?;
        match &self.hint {
            Some(hint) => write!(f, "; {hint}"),
            None => Ok(()),
        }
    }
}

impl Failure {
    /// A failure of class `code`.
    pub fn new(code: u8, message: impl std::fmt::Display) -> Failure {
        Failure { code, error: anyhow::Error::msg(message.to_string()), hint: None }
    }

    /// The same failure, as the cause of `what` (what the tool was doing).
    pub fn context(self, what: impl std::fmt::Display) -> Failure {
        Failure { error: self.error.context(what.to_string()), ..self }
    }

    /// The same failure, with what to try after it.
    pub fn hint(self, hint: impl std::fmt::Display) -> Failure {
        Failure { hint: Some(hint.to_string()), ..self }
    }

    /// A bad command line.
    pub fn usage(message: impl std::fmt::Display) -> Failure {
        Failure::new(exit::USAGE, message)
    }

    /// A local file problem.
    pub fn local(message: impl std::fmt::Display) -> Failure {
        Failure::new(exit::LOCAL_IO, message)
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure::new(exit::FAILURE, message)
    }
}

impl From<&str> for Failure {
    fn from(message: &str) -> Failure {
        Failure::new(exit::FAILURE, message)
    }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Failure {
        use dht_core::download::DownloadError as D;
        use dht_core::upload::UploadError as U;
        let code = match &e {
            ClientError::NoAnswer { .. } | ClientError::Refused { .. } => exit::UNREACHABLE,
            ClientError::Download(D::IndexNotFound { .. }) => exit::NOT_FOUND,
            ClientError::Download(D::BadIndex(_) | D::TooDeep { .. }) => exit::INTEGRITY,
            ClientError::Download(D::SinkFailed)
            | ClientError::Upload(U::SourceFailed { .. } | U::SourceChanged { .. })
            | ClientError::Io(_)
            | ClientError::Aborted(_) => exit::LOCAL_IO,
            ClientError::Download(
                D::IndexUnavailable { .. } | D::FragmentUnavailable { .. } | D::NoHolder { .. },
            )
            | ClientError::Upload(U::NoHolder { .. } | U::GaveUp { .. })
            | ClientError::Timeout { .. } => exit::NETWORK,
            ClientError::Interrupted => exit::INTERRUPTED,
            ClientError::Upload(U::FileTooLarge { .. }) => exit::FAILURE,
        };
        Failure { code, error: anyhow::Error::new(e), hint: None }
    }
}

/// Prints `program: message` on stderr and returns the failure's exit
/// status.
pub fn fail(program: &str, failure: impl Into<Failure>) -> ExitCode {
    let failure = failure.into();
    let _ = writeln!(std::io::stderr(), "{program}: {failure}");
    ExitCode::from(failure.code)
}

/// Progress on stderr, counted in data fragments and bytes (the same for
/// an upload and its download). On a terminal, a bar fitted to its width
/// with bytes, total, rate, elapsed time and ETA, log lines printed above
/// it ([indicatif]). Elsewhere (a pipe, a file), the original tools' `#`
/// per data fragment for a file of one index (up to 255), and for a larger
/// file one `#` per percent: never more than 255 marks.
pub struct Progress {
    fragments: u64,
    done: u64,
    marks: u64,
    quiet: bool,
    bar: Option<indicatif::ProgressBar>,
}

/// The bar being drawn, for the log lines to print above it.
static BAR: std::sync::Mutex<Option<indicatif::ProgressBar>> = std::sync::Mutex::new(None);

/// Prints a log line above the bar, if one is drawn.
fn above_the_bar(line: &str) -> bool {
    match BAR.lock().ok().and_then(|bar| bar.clone()) {
        Some(bar) => {
            bar.println(line);
            true
        }
        None => false,
    }
}

/// Data fragments of one index: up to this many, one `#` each.
const MARKS_PER_FRAGMENT_UP_TO: u64 = 255;

impl Progress {
    /// Progress of nothing yet ([`Progress::set_total`] gives the file);
    /// nothing is drawn when `quiet`.
    pub fn new(quiet: bool) -> Self {
        Progress { fragments: 0, done: 0, marks: 0, quiet, bar: None }
    }

    /// The file: `bytes` in `fragments` data fragments (known only after
    /// the index arrived, for dhtrecv). Starts the bar on a terminal.
    pub fn set_total(&mut self, fragments: u64, bytes: u64) {
        self.fragments = fragments;
        if self.quiet || self.bar.is_some() || !std::io::stderr().is_terminal() {
            return;
        }
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(bytes),
            indicatif::ProgressDrawTarget::stderr(),
        );
        // Everything on one line of the terminal: on a narrow one the bar
        // keeps the percentage, the rate and the ETA, then only the bar.
        let columns = console::Term::stderr().size().1;
        let template = match columns {
            0..=39 => "[{wide_bar}]",
            40..=69 => "[{wide_bar}] {percent:>3}% {binary_bytes_per_sec} ETA {eta}",
            _ => "{elapsed_precise} [{wide_bar}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
        };
        let style = indicatif::ProgressStyle::with_template(template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("#>-");
        bar.set_style(style);
        if let Ok(mut shown) = BAR.lock() {
            *shown = Some(bar.clone());
        }
        dht_std::logger::route_through(above_the_bar);
        self.bar = Some(bar);
    }

    /// A data fragment of `bytes` bytes is done.
    pub fn step(&mut self, bytes: u64) {
        self.done += 1;
        if self.quiet {
            return;
        }
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
            return;
        }
        let due = if self.fragments <= MARKS_PER_FRAGMENT_UP_TO {
            self.done
        } else {
            self.done * 100 / self.fragments.max(1)
        };
        if due > self.marks {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "{}", "#".repeat((due - self.marks) as usize));
            let _ = err.flush();
            self.marks = due;
        }
    }

    /// Ends the progress line (or clears the bar).
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
            if let Ok(mut shown) = BAR.lock() {
                *shown = None;
            }
        } else if !self.quiet && self.marks > 0 {
            let _ = writeln!(std::io::stderr());
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(super::size(0), "0 bytes");
        assert_eq!(super::size(999), "999 bytes");
        assert_eq!(super::size(10_485_760), "10.5 MB (10485760 bytes)");
        assert_eq!(super::size(2_088_960), "2.1 MB (2088960 bytes)");
    }
}
