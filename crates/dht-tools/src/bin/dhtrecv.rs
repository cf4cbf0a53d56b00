//! dhtrecv: download a file by its index hash.

use std::ffi::OsString;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use dht_core::download::DownloadError;
use dht_core::download::{DownloadEvent, FileSink};
use dht_core::index::data_fragment_len;
use dht_core::FragmentHash;
use dht_std::client::{Client, ClientError};
use dht_std::logger;
use dht_tools::save::{check_target, PartFile};
use dht_tools::transfer::{download_mending, WriteSink};
use dht_tools::{
    fail, join, node_addrs, safe_file_name, seconds, Failure, Network, Progress, Searching,
    Verbosity,
};

/// Downloads the file whose index hash is HASH through the node at
/// HOST:PORT.
///
/// Every fragment is checked against its hash. The file is saved under the
/// name stored in the index, in the current directory, unless -o gives a
/// path, a directory, or - for standard output.
///
/// A name from the network is made safe first: spaces (all Unicode
/// whitespace) and dots are stripped from its start, and spaces from its
/// end, until none is left there; it is cut to 255 bytes; path separators,
/// control characters, Unicode format characters (bidi overrides,
/// zero-width characters) and line separators become '_'. So it never
/// leaves the directory and never starts with a dot (no ".profile" or
/// "..") and shows what it is. A name with nothing left becomes
/// <16 hex digits of the hash>.bin.
///
/// The download is written to a hidden file (.dhtrecv-<16 hex digits of
/// HASH>.part) in the target's directory, opened without following links,
/// and renamed when complete. A download that stops early (Ctrl-C, a
/// timeout, a fragment no node gave) keeps it, and the same command run
/// again continues it: every fragment found there is checked against its
/// hash and only the others are fetched (--restart starts over). A refused
/// download, or one that wrote nothing, leaves nothing behind. An
/// existing file is replaced only with --force, and a symbolic link, a
/// directory, a device, a FIFO or a socket never (write to standard output
/// with -o -, not -o /dev/stdout). With -o - nothing is written to disk,
/// messages and progress go to stderr, and a download that fails part way
/// has already written its first bytes: check the exit status (below;
/// every failure also says what failed in one line on stderr).
#[derive(Parser, Debug)]
#[command(
    name = "dhtrecv",
    version,
    after_help = concat!("Examples:\n  dhtrecv 3f2a...e9 127.0.0.1 8000\n  dhtrecv 3f2a...e9 127.0.0.1 8000 -o copy.jpg --force\n  dhtrecv 3f2a...e9 127.0.0.1 8000 -o - | sha256sum", "\n\n", dht_tools::exit_status_help!())
)]
// These doc comments are the --help text: "[::1]" in them is an address,
// not a rustdoc link.
#[allow(rustdoc::broken_intra_doc_links)]
struct Args {
    /// The index hash printed by dhtsend (64 hexadecimal digits).
    hash: String,
    /// Host of a node of the network: a name, an IPv4 or IPv6 address
    /// (::1 or [::1]), with :PORT if PORT is not given apart ([::1]:8000).
    /// Every address of a name is tried in turn.
    host: String,
    /// Port of that node (may be given with HOST instead).
    port: Option<u16>,
    /// UDP port this tool listens on for answers [default: any free port].
    #[arg(long, value_name = "PORT", default_value_t = 0, hide_default_value = true)]
    listen: u16,
    /// Where to save: a file path, an existing directory to save the file
    /// in under its stored name, or - for standard output.
    #[arg(short, long, value_name = "PATH")]
    output: Option<PathBuf>,
    /// Replace an existing regular file (never a link, directory, device,
    /// FIFO or socket).
    #[arg(long)]
    force: bool,
    /// Start over: forget what an interrupted download of this file left
    /// in the target's directory instead of continuing it.
    #[arg(long)]
    restart: bool,
    /// Seconds to wait for the node to answer before giving up (shared
    /// among the addresses of HOST).
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    connect_timeout: f64,
    /// Seconds the whole download may take.
    #[arg(long, value_name = "SECS", default_value_t = 600.0)]
    timeout: f64,
    #[command(flatten)]
    network: Network,
    #[command(flatten)]
    verbosity: Verbosity,
}

fn main() -> ExitCode {
    let args = Args::parse();
    logger::init("dhtrecv: ", args.verbosity.level());
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => fail("dhtrecv", message),
    }
}

/// Where the file goes.
enum Destination {
    /// Standard output (`-o -`), with no file.
    Stdout,
    /// A file in `dir`: named `name` (from -o), or by the index; written
    /// to `part` until complete.
    File { dir: PathBuf, name: Option<OsString>, part: PartFile },
}

/// The destination `-o` asks for. A fixed target is checked and the
/// partial file created now, so that a download that could not be saved
/// is refused before it starts.
fn destination(
    output: Option<&Path>,
    force: bool,
    hash: &FragmentHash,
) -> Result<Destination, Failure> {
    let in_dir = |dir: PathBuf, name: Option<OsString>| {
        let part = PartFile::resume(&dir, hash).map_err(Failure::local)?;
        Ok(Destination::File { dir, name, part })
    };
    let Some(path) = output else {
        return in_dir(PathBuf::from("."), None);
    };
    if path == Path::new("-") {
        return Ok(Destination::Stdout);
    }
    if path.is_dir() {
        return in_dir(path.to_path_buf(), None);
    }
    if path.as_os_str().to_string_lossy().ends_with('/') {
        // Meant as a directory: never a file of that name.
        return Err(Failure::local(format!("directory {} does not exist", path.display())));
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(Failure::local(format!("directory {} does not exist", dir.display())));
    }
    let name = path
        .file_name()
        .ok_or_else(|| Failure::usage(format!("{} is not a file path", path.display())))?;
    check_target(&dir.join(name), force).map_err(Failure::local)?;
    in_dir(dir, Some(name.to_owned()))
}

fn run(args: &Args) -> Result<(), Failure> {
    let hash = FragmentHash::from_hex(args.hash.trim())
        .map_err(|e| Failure::usage(format!("'{}' is not an index hash: {e}", args.hash)))?;
    let timeout = seconds(args.timeout).map_err(Failure::usage)?;
    let entries = node_addrs(&args.host, args.port).map_err(Failure::usage)?;
    let destination = destination(args.output.as_deref(), args.force, &hash)?;
    let mut client = join(&entries, args.listen, args.connect_timeout, &args.network)?;
    let entry = client.entry();
    let failed =
        |e: ClientError| Failure::from(e).context(format!("cannot get {hash} from {entry}"));
    let mut progress = Progress::new(args.verbosity.quiet);
    let (dir, fixed_name, part) = match destination {
        Destination::Stdout => {
            let sink = WriteSink::new(BufWriter::new(io::stdout()));
            let (mut sink, result) =
                download(&mut client, hash, sink, timeout, &mut progress, |_| Ok(()));
            if let Some(e) = sink.error.take() {
                return Err(Failure::local(format!("cannot write to standard output: {e}")));
            }
            let size = result.map_err(failed)?;
            sink.out
                .flush()
                .map_err(|e| Failure::local(format!("cannot write to standard output: {e}")))?;
            log::info!("wrote {} to standard output", dht_tools::size(size));
            return Ok(());
        }
        Destination::File { dir, name, mut part } => {
            if part.existing() > 0 {
                if args.restart {
                    part.restart().map_err(|e| {
                        Failure::local(format!("cannot empty {}: {e}", part.path().display()))
                    })?;
                } else if !args.verbosity.quiet {
                    eprintln!(
                        "dhtrecv: continuing the download left in {} ({}); fragments \
                         found right there are not fetched again (--restart starts over)",
                        part.path().display(),
                        dht_tools::size(part.existing())
                    );
                }
            }
            (dir, name, part)
        }
    };
    let mut target: Option<PathBuf> = None;
    let (mut part, result) =
        download(&mut client, hash, part, timeout, &mut progress, |stored: &str| {
            let path = match &fixed_name {
                Some(name) => dir.join(name),
                None => {
                    let safe = safe_file_name(stored, &hash);
                    if safe != stored {
                        log::warn!(
                            "the stored name \"{}\" is saved as \"{}\"",
                            stored.escape_debug(),
                            safe.escape_debug()
                        );
                    }
                    dir.join(safe)
                }
            };
            check_target(&path, args.force).map_err(|e| e.to_string())?;
            target = Some(path);
            Ok(())
        });
    if let Some(e) = part.error.take() {
        return Err(Failure::local(format!("cannot write {}: {e}", part.path().display())));
    }
    let size = match result {
        Ok(size) => size,
        // Not a file this tool can save: nothing to continue.
        Err(
            e @ ClientError::Download(DownloadError::BadIndex(_) | DownloadError::TooDeep { .. }),
        ) => {
            part.discard();
            return Err(failed(e));
        }
        // Refused (the target): what an earlier run left stays for later.
        Err(e @ ClientError::Aborted(_)) => return Err(e.into()),
        Err(e) if part.will_be_kept() => {
            let kept = part.path().display().to_string();
            return Err(failed(e).hint(format!(
                "the partial download is kept in {kept}: run the same command again to continue \
                 it"
            )));
        }
        Err(e) => return Err(failed(e)),
    };
    let target = target.ok_or("the download ended without an index")?;
    part.keep_as(&target, args.force).map_err(Failure::local)?;
    let reused = part.reused();
    let shown = dht_tools::size(size);
    log::info!("saved {} ({shown}, {reused} fragments were already there)", target.display());
    if !args.verbosity.quiet {
        match reused {
            0 => eprintln!("{} ({shown})", target.display()),
            n => eprintln!(
                "{} ({shown}; {n} of {} fragments were already there)",
                target.display(),
                dht_core::index::data_fragments(size)
            ),
        }
    }
    Ok(())
}

/// Downloads `hash` into `sink` with progress on stderr; `on_name` sees
/// the name stored in the index and may refuse to go on. A data fragment
/// of a coded file that no holder has is rebuilt from its stripe
/// ([`download_mending`]).
fn download<K: FileSink>(
    client: &mut Client,
    hash: FragmentHash,
    sink: K,
    timeout: Duration,
    progress: &mut Progress,
    mut on_name: impl FnMut(&str) -> Result<(), String>,
) -> (K, Result<u64, ClientError>) {
    let mut file_size = 0;
    let mut searching = Searching::default();
    let mut named = false;
    let mut counted = 0u64;
    let (sink, result, _) = download_mending(client, hash, sink, timeout, |event| {
        match event {
            DownloadEvent::IndexReceived { name, size, fragments } if !named => {
                log::info!(
                    "index: \"{}\", {} in {fragments} fragments",
                    name.as_str().escape_debug(),
                    dht_tools::size(*size)
                );
                progress.set_total(*fragments, *size);
                file_size = *size;
                named = true;
                on_name(name.as_str())?;
            }
            // A pass after a rebuild passes over what was written.
            DownloadEvent::Written { fragment } if *fragment >= counted => {
                counted = fragment + 1;
                progress.step(data_fragment_len(file_size, *fragment) as u64);
            }
            DownloadEvent::Searching { shard } => searching.say(*shard),
            _ => {}
        }
        Ok(())
    });
    progress.finish();
    (sink, result)
}
