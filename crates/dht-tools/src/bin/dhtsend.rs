//! dhtsend: upload a file.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use dht_core::upload::UploadEvent;
use dht_core::{IndexName, MAX_FILE_SIZE};
use dht_std::client::FileReader;
use dht_std::logger;
use dht_tools::{fail, index_name, join, node_addrs, say, seconds, Network, Progress, Verbosity};

/// Uploads a file to the network through the node at HOST:PORT.
///
/// The file is cut into 8192-byte fragments; each is sent to a node of its
/// shard and acknowledged. A '#' is printed on stderr per fragment stored
/// (a progress bar on a terminal). When every fragment and the index are
/// stored, the index hash, the file's address for dhtrecv, is printed
/// alone on stdout. Files up to 2,088,960 bytes (one index fragment).
#[derive(Parser, Debug)]
#[command(
    version,
    after_help = "Example:\n  hash=$(dhtsend photo.jpg 127.0.0.1 8000) && dhtrecv $hash 127.0.0.1 8042"
)]
// These doc comments are the --help text: "[::1]" in them is an address,
// not a rustdoc link.
#[allow(rustdoc::broken_intra_doc_links)]
struct Args {
    /// The file to upload.
    file: PathBuf,
    /// Host of a node of the network: a name, an IPv4 or IPv6 address
    /// (::1 or [::1]), with :PORT if PORT is not given apart ([::1]:8000).
    /// Every address of a name is tried in turn.
    host: String,
    /// Port of that node (may be given with HOST instead).
    port: Option<u16>,
    /// UDP port this tool listens on for answers [default: any free port].
    #[arg(long, value_name = "PORT", default_value_t = 0)]
    listen: u16,
    /// Seconds to wait for the node to answer before giving up (shared
    /// among the addresses of HOST).
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    connect_timeout: f64,
    /// Seconds the whole upload may take.
    #[arg(long, value_name = "SECS", default_value_t = 600.0)]
    timeout: f64,
    /// Name stored in the index [default: the file's name].
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    network: Network,
    #[command(flatten)]
    verbosity: Verbosity,
}

fn main() -> ExitCode {
    let args = Args::parse();
    logger::init("dhtsend: ", args.verbosity.level());
    match run(&args) {
        Ok(hash) => {
            say(hash);
            ExitCode::SUCCESS
        }
        Err(message) => fail("dhtsend", message),
    }
}

fn run(args: &Args) -> Result<String, String> {
    let reader = FileReader::open(&args.file).map_err(|e| e.to_string())?;
    let size = dht_core::upload::FileSource::size(&reader);
    if size > MAX_FILE_SIZE {
        return Err(format!(
            "{} is {size} bytes; the limit is {MAX_FILE_SIZE} bytes (one index fragment of 255 \
             fragments; nested indexes are not implemented)",
            args.file.display()
        ));
    }
    let name = index_name(&args.file, args.name.as_deref());
    let mut client = join(
        &node_addrs(&args.host, args.port)?,
        args.listen,
        args.connect_timeout,
        &args.network,
    )?;
    let mut progress = Progress::new(0, args.verbosity.quiet);
    let result = client.upload(
        IndexName::from_file_name(&name),
        reader,
        seconds(args.timeout)?,
        |event, total| {
            progress.set_total(u64::from(total));
            if let UploadEvent::Stored { fragment, holder } = event {
                log::debug!("fragment {fragment} stored by {holder}");
                progress.step();
            }
        },
    );
    progress.finish();
    result.map(|hash| hash.to_string()).map_err(|e| e.to_string())
}
