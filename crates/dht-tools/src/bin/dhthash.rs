//! dhthash: the address dhtsend would print, without any network.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use dht_core::upload::{Upload, UploadError};
use dht_core::IndexName;
use dht_std::logger;
use dht_tools::{fail, open_source, say, source_name, Verbosity};

/// Prints the index hash that `dhtsend FILE` would print, computed locally.
///
/// With one FILE, the hash alone; with several, one line per file, the
/// hash then the file, as sha256sum does. `-` reads standard input (named
/// `stdin`, as dhtsend names it). With -v, every fragment's number, hash
/// and shard go to standard error.
#[derive(Parser, Debug)]
#[command(
    name = "dhthash",
    version,
    after_help = "Examples:\n  dhthash photo.jpg\n  dhthash *.jpg\n  tar c dir | dhthash -"
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
    verbosity: Verbosity,
}

fn main() -> ExitCode {
    let args = Args::parse();
    logger::init("dhthash: ", args.verbosity.level());
    if args.name.is_some() && args.files.len() > 1 {
        return fail("dhthash", "--name names one file; it was given with several");
    }
    if args.files.iter().filter(|f| f.as_os_str() == "-").count() > 1 {
        return fail("dhthash", "standard input (-) can be read once only");
    }
    let several = args.files.len() > 1;
    let mut failed = false;
    for file in &args.files {
        match hash(file, args.name.as_deref(), args.verbosity.verbose > 0) {
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
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// The index hash of `file`, as text; with `verbose`, its fragments listed
/// on standard error.
fn hash(file: &Path, name: Option<&str>, verbose: bool) -> Result<String, String> {
    let reader = open_source(file)?;
    let name = source_name(file, name);
    let upload = Upload::<_, 1>::new(IndexName::from_file_name(&name), reader).map_err(
        |(e, reader)| match e {
            UploadError::SourceFailed { offset } => format!(
                "cannot read {} at byte {offset}: {}",
                file.display(),
                reader.error.as_ref().map(|e| e.to_string()).unwrap_or_default()
            ),
            other => other.to_string(),
        },
    )?;
    if verbose {
        eprintln!(
            "# {} ({} bytes, {} fragments)",
            upload.name(),
            upload.file_size(),
            upload.hashes().len()
        );
        for (i, hash) in upload.hashes().iter().enumerate() {
            eprintln!("{i:>3} {hash} shard {}", hash.shard());
        }
        eprintln!("index {} shard {}", upload.index_hash(), upload.index_hash().shard());
    }
    Ok(upload.index_hash().to_string())
}
