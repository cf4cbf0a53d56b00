//! dhtsend: upload a file.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use dht_core::index::data_fragment_len;
use dht_core::upload::{Item, UploadEvent};
use dht_core::verify::{Check, VerifyEvent};
use dht_core::IndexName;
use dht_std::client::UploadOptions;
use dht_std::logger;
use dht_tools::{
    exit, fail, join, node_addrs, open_source, say, seconds, source_name, Failure, Network,
    Progress, Searching, Verbosity,
};

/// Uploads a file to the network through the node at HOST:PORT.
///
/// The file is cut into 8192-byte fragments; each is sent to a node of its
/// shard and acknowledged. On a terminal a bar shows bytes, rate and ETA;
/// elsewhere a '#' is printed on stderr per data fragment stored (per
/// percent for a file over 255 fragments). When every fragment and the index are
/// stored, the index hash, the file's address for dhtrecv, is printed
/// alone on stdout. A file over 2,088,960 bytes gets a tree of index
/// fragments; its root is the address. With --redundancy the file is
/// erasure-coded: dhtrecv rebuilds data fragments whose holders are all
/// gone, and the nodes store such lost pieces again by themselves (dhtnode
/// --repair-rate). By the durability model, 128+72 keeps 99.8 % of 20 MB
/// files through a crash of half of a 256-node network; whole copies keep
/// none.
#[derive(Parser, Debug)]
#[command(
    name = "dhtsend",
    version,
    after_help = concat!("Example:\n  hash=$(dhtsend photo.jpg 127.0.0.1 8000) && dhtrecv $hash 127.0.0.1 8042", "\n\n", dht_tools::exit_status_help!())
)]
// These doc comments are the --help text: "[::1]" in them is an address,
// not a rustdoc link.
#[allow(rustdoc::broken_intra_doc_links)]
struct Args {
    /// The file to upload; `-` reads standard input. Standard input, a
    /// pipe or FIFO (`/dev/stdin`, `<(...)`) is first copied to a
    /// temporary file (it must be read twice: once to hash, once to
    /// send); one that gives no bytes is an error.
    file: PathBuf,
    /// Host of a node of the network: a name, an IPv4 or IPv6 address
    /// (::1 or [::1]), with :PORT if PORT is not given apart ([::1]:8000).
    /// Every address of a name is tried in turn.
    host: String,
    /// Port of that node (may be given with HOST instead).
    port: Option<u16>,
    /// UDP port this tool listens on for answers [default: any free port].
    #[arg(long, value_name = "PORT", default_value_t = 0, hide_default_value = true)]
    listen: u16,
    /// Seconds to wait for the node to answer before giving up (shared
    /// among the addresses of HOST).
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    connect_timeout: f64,
    /// Seconds the whole upload may take.
    #[arg(long, value_name = "SECS", default_value_t = 600.0)]
    timeout: f64,
    /// Name stored in the index [default: the file's name; `stdin` for
    /// `-`].
    #[arg(long)]
    name: Option<String>,
    /// Do not read the upload back. By default the index and a sample of
    /// the fragments are fetched from holders other than the one that
    /// acknowledged each, and dhtsend exits with 3 if one is missing.
    #[arg(long)]
    no_verify: bool,
    /// Data fragments read back after the upload (besides the index).
    #[arg(long, value_name = "N", default_value_t = 8)]
    verify_sample: u16,
    #[command(flatten)]
    coded: dht_tools::coding::RedundancyArg,
    #[command(flatten)]
    copies: dht_tools::coding::CopiesArg,
    #[command(flatten)]
    network: Network,
    #[command(flatten)]
    verbosity: Verbosity,
}

fn main() -> ExitCode {
    let args = Args::parse();
    logger::init("dhtsend: ", args.verbosity.level());
    match run(&args) {
        Ok((hash, None)) => {
            say(hash);
            ExitCode::SUCCESS
        }
        Ok((hash, Some(problem))) => {
            // The address is printed all the same: the file may still be
            // whole, and the user may want to retry or repair.
            say(hash);
            fail("dhtsend", Failure::new(exit::NOT_READ_BACK, problem))
        }
        Err(message) => fail("dhtsend", message),
    }
}

fn run(args: &Args) -> Result<(String, Option<String>), Failure> {
    let mut reader = open_source(&args.file).map_err(Failure::local)?;
    let name = source_name(&args.file, args.name.as_deref());
    let stored = IndexName::from_file_name(&name);
    if stored.as_str() != name {
        log::warn!(
            "the name \"{}\" is stored as \"{}\" (29 bytes at most, no control characters)",
            name.escape_debug(),
            stored.as_str().escape_debug()
        );
    }
    let timeout = seconds(args.timeout).map_err(Failure::usage)?;
    let mut client = join(
        &node_addrs(&args.host, args.port).map_err(Failure::usage)?,
        args.listen,
        args.connect_timeout,
        &args.network,
    )?;
    let mut progress = Progress::new(args.verbosity.quiet);
    // The root and a sample of data fragments spread over the file are
    // read back after the upload: only their holders are kept.
    let size = dht_core::upload::FileSource::size(&reader);
    let data = dht_core::index::data_fragments(size);
    let coded = args.coded.redundancy.is_some();
    let (index_copies, data_copies) = args.copies.resolve(coded);
    let mut options = UploadOptions { coding: None, index_copies, data_copies };
    let parity = match args.coded.redundancy {
        Some(r) => {
            let (parity, root) =
                send_parity(&mut client, &mut reader, r, &options, timeout, &args.verbosity)?;
            options.coding = Some((r.k, r.m, root));
            parity
        }
        None => 0,
    };
    progress.set_total(data, size);
    let mut fragments = 0;
    // One copy of each data fragment has no other holder to read it back
    // from: only the index is read back then.
    let single = options.data_copies == 1;
    if single && !args.no_verify {
        log::info!("one copy of each data fragment: only the index is read back");
    }
    let sample = if single { 0 } else { u64::from(args.verify_sample) };
    let step = (data / sample.max(1)).max(1);
    let mut root: Option<Check> = None;
    let mut held_before = 0u64;
    let mut searching = Searching::default();
    let mut sampled: Vec<Check> = Vec::new();
    let result = client.upload(
        IndexName::from_file_name(&name),
        reader,
        &options,
        timeout,
        |event, total| {
            fragments = total + parity;
            match event {
                UploadEvent::Stored { item, hash, holder, already } => {
                    held_before += u64::from(*already);
                    log::debug!("{item} stored by {holder}");
                    let check = Check { hash: *hash, acknowledged_by: holder.addr };
                    match item {
                        Item::Root => root = Some(check),
                        Item::Data(n) if n % step == 0 && n / step < sample => sampled.push(check),
                        Item::Data(_) | Item::Index => {}
                    }
                    if let Item::Data(n) = item {
                        progress.step(data_fragment_len(size, *n) as u64);
                    }
                }
                UploadEvent::Searching { shard } => searching.say(*shard),
                UploadEvent::Finished { .. } | UploadEvent::Failed(_) => {}
            }
        },
    );
    progress.finish();
    let entry = client.entry();
    let index = result.map_err(|e| {
        Failure::from(e).context(format!("cannot store {} through {entry}", args.file.display()))
    })?;
    if held_before > 0 && !args.verbosity.quiet {
        eprintln!(
            "dhtsend: {held_before} of {fragments} fragments were held already; only the others \
             were sent"
        );
    }
    if args.no_verify {
        return Ok((index.to_string(), None));
    }
    let checks: Vec<Check> = root.into_iter().chain(sampled).collect();
    let events = client.verify(&checks, timeout)?;
    let missing: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            VerifyEvent::Missing { index, asked } => Some(format!(
                "{} (asked {asked} other holders)",
                checks.get(usize::from(*index)).map_or_else(String::new, |c| c.hash.to_string())
            )),
            _ => None,
        })
        .collect();
    let alone = events.iter().filter(|e| matches!(e, VerifyEvent::Alone { .. })).count();
    if alone > 0 {
        log::warn!(
            "{alone} of the fragments read back have a single holder: their shard has one member \
             (the network is too small for R copies)"
        );
    }
    log::info!(
        "read back {} of {} fragments from other holders",
        checks.len() - missing.len() - alone,
        checks.len()
    );
    let problem = (!missing.is_empty()).then(|| {
        format!(
            "uploaded, but {} of the {} fragments read back were found on no holder other than \
             the one that acknowledged them: {}",
            missing.len(),
            checks.len(),
            missing.join(", ")
        )
    });
    Ok((index.to_string(), problem))
}

/// Uploads the parity of `reader` ([`dht_tools::transfer::send_parity`])
/// with progress. Returns the parity fragments and the parity tree's root.
fn send_parity(
    client: &mut dht_std::client::Client,
    reader: &mut dht_std::client::FileReader,
    redundancy: dht_tools::coding::Redundancy,
    options: &UploadOptions,
    timeout: std::time::Duration,
    verbosity: &Verbosity,
) -> Result<(u64, dht_core::FragmentHash), Failure> {
    let size = dht_core::upload::FileSource::size(reader);
    let coding = dht_core::index::Coding::new(size, redundancy.k, redundancy.m)
        .map_err(|e| Failure::usage(format!("--redundancy {redundancy}: {e}")))?;
    let mut progress = Progress::new(verbosity.quiet);
    progress.set_total(coding.parity_fragments(), coding.parity_size());
    let sent =
        dht_tools::transfer::send_parity(client, reader, &coding, options, timeout, |event| {
            if let UploadEvent::Stored { item: Item::Data(_), .. } = event {
                progress.step(8192);
            }
        });
    progress.finish();
    let (count, root) = sent?;
    if !verbosity.quiet {
        eprintln!("dhtsend: {count} parity fragments stored ({redundancy} a stripe)");
    }
    Ok((count, root))
}
