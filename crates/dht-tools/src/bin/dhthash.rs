//! dhthash: the address dhtsend would print, without any network.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use dht_core::upload::{hash_file, Item, UploadError};
use dht_core::IndexName;
use dht_std::logger;
use dht_tools::{exit, fail, open_source, say, source_name, Failure, Verbosity};

/// Prints the index hash that `dhtsend FILE` would print, computed locally.
///
/// With one FILE, the hash alone; with several, one line per file, the
/// hash then the file, as sha256sum does. `-` reads standard input (named
/// `stdin`, as dhtsend names it). With -v, every fragment's number, hash
/// and shard go to standard error: data fragments by number, the interior
/// indexes of a file over 2,088,960 bytes as `idx`, the root as `index`;
/// with --redundancy the parity fragments follow (`par`, their tree's
/// indexes `pidx`), then the coded root, the address (`coded`). A coded
/// root records the copy counts: give --data-copies and --index-copies as
/// they were given to dhtsend (the defaults are the same).
#[derive(Parser, Debug)]
#[command(
    name = "dhthash",
    version,
    after_help = concat!("Examples:\n  dhthash photo.jpg\n  dhthash *.jpg\n  tar c dir | dhthash -", "\n\n", dht_tools::exit_status_help!())
)]
struct Args {
    /// The files to hash (`-`: standard input).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Name stored in the index [default: the file's name; `stdin` for
    /// `-`], as dhtsend --name. Only with one FILE.
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    coded: dht_tools::coding::RedundancyArg,
    #[command(flatten)]
    copies: dht_tools::coding::CopiesArg,
    #[command(flatten)]
    verbosity: Verbosity,
}

fn main() -> ExitCode {
    let args = Args::parse();
    logger::init("dhthash: ", args.verbosity.level());
    if args.name.is_some() && args.files.len() > 1 {
        return fail("dhthash", Failure::usage("--name names one file; it was given with several"));
    }
    if args.files.iter().filter(|f| f.as_os_str() == "-").count() > 1 {
        return fail("dhthash", Failure::usage("standard input (-) can be read once only"));
    }
    let several = args.files.len() > 1;
    let mut failed = false;
    for file in &args.files {
        match hash(
            file,
            args.name.as_deref(),
            args.coded.redundancy,
            args.copies,
            args.verbosity.verbose > 0,
        ) {
            Ok(hash) if several => say(format!("{hash}  {}", file.display())),
            Ok(hash) => say(hash),
            Err(message) => {
                // Like sha256sum: say what failed, go on with the others.
                eprintln!("dhthash: {message}");
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::from(exit::LOCAL_IO)
    } else {
        ExitCode::SUCCESS
    }
}

/// The index hash of `file`, as text; with `verbose`, its fragments listed
/// on standard error.
fn hash(
    file: &Path,
    name: Option<&str>,
    redundancy: Option<dht_tools::coding::Redundancy>,
    copies: dht_tools::coding::CopiesArg,
    verbose: bool,
) -> Result<String, String> {
    let reader = open_source(file)?;
    let name = source_name(file, name);
    let mut reader = reader;
    let size = dht_core::upload::FileSource::size(&reader);
    let name = IndexName::from_file_name(&name);
    if verbose {
        let fragments = dht_core::index::data_fragments(size);
        let indexes = dht_core::index::index_fragments(size).unwrap_or(0);
        let shown = dht_tools::size(size);
        eprintln!("# {name} ({shown}, {fragments} fragments, {indexes} index fragments)");
    }
    let hash = hash_file(name, &mut reader, |item, hash| {
        if verbose {
            match item {
                Item::Data(n) => eprintln!("{n:>3} {hash} shard {}", hash.shard()),
                Item::Index => eprintln!("idx {hash} shard {}", hash.shard()),
                Item::Root => eprintln!("index {hash} shard {}", hash.shard()),
            }
        }
    })
    .map_err(|e| match e {
        UploadError::SourceFailed { offset } => format!(
            "cannot read {} at byte {offset}: {}",
            file.display(),
            reader.error.as_ref().map(|e| e.to_string()).unwrap_or_default()
        ),
        other => other.to_string(),
    })?;
    let Some(r) = redundancy else { return Ok(hash.to_string()) };
    let coding = dht_core::index::Coding::new(size, r.k, r.m)
        .map_err(|e| format!("{}: --redundancy {r}: {e}", file.display()))?;
    let (index_copies, data_copies) = copies.resolve(true);
    let coding = dht_core::index::Coding { index_copies, data_copies, ..coding };
    let (mut parity, _) = dht_tools::coding::parity_file(&mut reader, &coding)
        .map_err(|e| format!("cannot compute the parity of {}: {e}", file.display()))?;
    let parity_root = hash_file(IndexName::EMPTY, &mut parity, |item, hash| {
        if verbose {
            match item {
                Item::Data(_) => eprintln!("par {hash} shard {}", hash.shard()),
                Item::Index | Item::Root => eprintln!("pidx {hash} shard {}", hash.shard()),
            }
        }
    })
    .map_err(|e| format!("cannot hash the parity of {}: {e}", file.display()))?;
    let coded = dht_core::index::IndexFragment::coded_root(name, coding, hash, parity_root).hash();
    if verbose {
        eprintln!("coded {coded} shard {}", coded.shard());
    }
    Ok(coded.to_string())
}
