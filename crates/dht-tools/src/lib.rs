//! What the five tools share: verbosity flags, error reporting, progress
//! display, host arguments ([`address`]), joining through an entry node,
//! the file-name rules of `dhtsend` and `dhtrecv`, and saving a download
//! ([`save`]). The network work itself is in `dht-std`, the protocol in
//! `dht-core`.

pub mod address;
pub mod save;

pub use address::node_addrs;
pub use save::safe_file_name;

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use dht_std::client::Client;
use dht_std::transport::resolve;

/// A number of seconds from the command line as a duration.
pub fn seconds(value: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(value).map_err(|_| format!("'{value}' is not a number of seconds"))
}

/// A client on UDP port `listen` (0: any) attached to the node at
/// `host:port`, without joining.
pub fn client_for(host: &str, port: u16, listen: u16) -> Result<(Client, SocketAddr), String> {
    let entry = resolve(host, port).map_err(|e| e.to_string())?;
    let client = Client::bind(entry, listen).map_err(|e| e.to_string())?;
    Ok((client, entry))
}

/// A client that has joined the network through `host:port` within
/// `connect_timeout` seconds.
pub fn join(host: &str, port: u16, listen: u16, connect_timeout: f64) -> Result<Client, String> {
    let (mut client, entry) = client_for(host, port, listen)?;
    let started = std::time::Instant::now();
    let neighbors = client.join(seconds(connect_timeout)?).map_err(|e| e.to_string())?;
    log::info!(
        "joined through {entry} in {:.1} ms: {neighbors} nodes known",
        started.elapsed().as_secs_f64() * 1e3
    );
    Ok(client)
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

/// Progress on stderr: one `#` per step as the original tools printed, or
/// a bar with a count when stderr is a terminal.
pub struct Progress {
    total: u64,
    done: u64,
    bar: bool,
    quiet: bool,
}

impl Progress {
    /// Progress towards `total` steps; nothing is drawn when `quiet`.
    pub fn new(total: u64, quiet: bool) -> Self {
        Progress { total, done: 0, bar: std::io::stderr().is_terminal(), quiet }
    }

    /// Sets the total (known only after the index arrived, for dhtrecv).
    pub fn set_total(&mut self, total: u64) {
        self.total = total;
    }

    /// One more step done.
    pub fn step(&mut self) {
        self.done += 1;
        if self.quiet {
            return;
        }
        let mut err = std::io::stderr().lock();
        if self.bar {
            let width = 40u64;
            let filled = (self.done * width).checked_div(self.total).unwrap_or(width).min(width);
            let _ = write!(
                err,
                "\r[{}{}] {}/{}",
                "#".repeat(filled as usize),
                " ".repeat((width - filled) as usize),
                self.done,
                self.total
            );
        } else {
            let _ = write!(err, "#");
        }
        let _ = err.flush();
    }

    /// Ends the progress line.
    pub fn finish(&mut self) {
        if !self.quiet && self.done > 0 {
            let _ = writeln!(std::io::stderr());
        }
    }
}
