//! dhthash: the address dhtsend would print, without any network.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use dht_core::upload::{FileSource, Upload, UploadError};
use dht_core::{IndexName, MAX_FILE_SIZE};
use dht_std::client::FileReader;
use dht_std::logger;
use dht_tools::{fail, index_name, say, Verbosity};

/// Prints the index hash that `dhtsend FILE` would print, computed locally.
///
/// With -v, also lists every fragment: its number, hash and shard.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// The file to hash.
    file: PathBuf,
    /// Name stored in the index [default: the file's name], as dhtsend --name.
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    verbosity: Verbosity,
}

fn main() -> ExitCode {
    let args = Args::parse();
    logger::init("dhthash: ", args.verbosity.level());
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => fail("dhthash", message),
    }
}

fn run(args: &Args) -> Result<(), String> {
    let reader = FileReader::open(&args.file).map_err(|e| e.to_string())?;
    let size = reader.size();
    if size > MAX_FILE_SIZE {
        return Err(format!(
            "{} is {size} bytes; the limit is {MAX_FILE_SIZE} bytes (one index fragment)",
            args.file.display()
        ));
    }
    let name = index_name(&args.file, args.name.as_deref());
    let upload = Upload::<_, 1>::new(IndexName::from_file_name(&name), reader).map_err(
        |(e, reader)| match e {
            UploadError::SourceFailed { offset } => format!(
                "cannot read {} at byte {offset}: {}",
                args.file.display(),
                reader.error.as_ref().map(|e| e.to_string()).unwrap_or_default()
            ),
            other => other.to_string(),
        },
    )?;
    if args.verbosity.verbose > 0 {
        say(format!(
            "# {} ({} bytes, {} fragments)",
            upload.name(),
            upload.file_size(),
            upload.hashes().len()
        ));
        for (i, hash) in upload.hashes().iter().enumerate() {
            say(format!("{i:>3} {hash} shard {}", hash.shard()));
        }
        say(format!("index {} shard {}", upload.index_hash(), upload.index_hash().shard()));
    }
    say(format!("{}", upload.index_hash()));
    Ok(())
}
