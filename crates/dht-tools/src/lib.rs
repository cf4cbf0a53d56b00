//! What the five tools share: verbosity flags, error reporting, progress
//! display, host arguments ([`address`]), joining through an entry node,
//! the file-name rules of `dhtsend` and `dhtrecv`, and saving a download
//! ([`save`]). The network work itself is in `dht-std`, the protocol in
//! `dht-core`.

pub mod address;
pub mod save;
pub mod source;

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
) -> Result<Client, String> {
    let share = seconds(connect_timeout)? / entries.len().max(1) as u32;
    let key = network.key()?;
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
        Err(errors) => Err(join_failure(&errors, share)),
    }
}

/// One message for the failed attempts to join through each address.
fn join_failure(errors: &[(SocketAddr, ClientError)], share: Duration) -> String {
    match errors {
        [] => "no address to join through".into(),
        [(_, e)] => e.to_string(),
        _ if matches!(errors.last(), Some((_, ClientError::Interrupted))) => {
            ClientError::Interrupted.to_string()
        }
        _ if errors.iter().all(|(_, e)| matches!(e, ClientError::NoAnswer { .. })) => {
            let addrs: Vec<SocketAddr> = errors.iter().map(|(a, _)| *a).collect();
            format!(
                "no node answered at {} within {:.1} s each; is a dhtnode running there, and \
                 does the network have a key (--key-file)?",
                address::list(&addrs),
                share.as_secs_f64()
            )
        }
        _ => errors.iter().map(|(a, e)| format!("{a}: {e}")).collect::<Vec<_>>().join("; "),
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

/// Prints a line on stdout. A closed stdout (`dhtping --stats | head`) is
/// not an error worth a panic: the line is dropped.
pub fn say(line: impl std::fmt::Display) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// Prints `program: message` on stderr and returns a failing exit code.
pub fn fail(program: &str, message: impl std::fmt::Display) -> ExitCode {
    let _ = writeln!(std::io::stderr(), "{program}: {message}");
    ExitCode::from(1)
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
        let style = indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{wide_bar}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("#>-");
        bar.set_style(style);
        if let Ok(mut shown) = BAR.lock() {
            *shown = Some(bar.clone());
        }
        dht_std::logger::route_through(above_the_bar);
        self.bar = Some(bar);
    }

    /// The number of data fragments.
    pub fn total(&self) -> u64 {
        self.fragments
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
