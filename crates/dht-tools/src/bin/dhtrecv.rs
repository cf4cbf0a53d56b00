//! dhtrecv: download a file by its index hash.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use dht_core::download::{DownloadEvent, FileSink};
use dht_core::FragmentHash;
use dht_std::logger;
use dht_tools::{fail, join, safe_file_name, seconds, Progress, Verbosity};

/// Downloads the file whose index hash is HASH through the node at
/// HOST:PORT.
///
/// Every fragment is checked against its hash. The file is written to a
/// temporary file in the target directory and renamed when complete, so a
/// failed download leaves nothing behind. It is saved under the name
/// stored in the index (made safe: no path separators, no leading dots),
/// in the current directory, unless -o gives a path or a directory. An
/// existing file is not overwritten without --force.
#[derive(Parser, Debug)]
#[command(
    version,
    after_help = "Examples:\n  dhtrecv 3f2a...e9 127.0.0.1 8000\n  dhtrecv 3f2a...e9 127.0.0.1 8000 -o copy.jpg --force"
)]
struct Args {
    /// The index hash printed by dhtsend (64 hexadecimal digits).
    hash: String,
    /// Host of a node of the network.
    host: String,
    /// Port of that node.
    port: u16,
    /// UDP port this tool listens on for answers [default: any free port].
    #[arg(long, value_name = "PORT", default_value_t = 0)]
    listen: u16,
    /// Where to save: a file path, or an existing directory to save the
    /// file in under its stored name.
    #[arg(short, long, value_name = "PATH")]
    output: Option<PathBuf>,
    /// Overwrite an existing file.
    #[arg(long)]
    force: bool,
    /// Seconds to wait for the node to answer before giving up.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    connect_timeout: f64,
    /// Seconds the whole download may take.
    #[arg(long, value_name = "SECS", default_value_t = 600.0)]
    timeout: f64,
    #[command(flatten)]
    verbosity: Verbosity,
}

/// The temporary file the download is written to; removed unless kept.
struct PartFile {
    path: PathBuf,
    writer: Option<BufWriter<File>>,
    error: Option<io::Error>,
    kept: bool,
}

impl PartFile {
    fn create(dir: &Path, hash: &FragmentHash) -> Result<PartFile, String> {
        let path =
            dir.join(format!(".dhtrecv-{:016x}-{}.part", hash.prefix_u64(), std::process::id()));
        let file =
            File::create(&path).map_err(|e| format!("cannot write in {}: {e}", dir.display()))?;
        Ok(PartFile { path, writer: Some(BufWriter::new(file)), error: None, kept: false })
    }

    fn keep_as(mut self, target: &Path) -> Result<(), String> {
        let writer = self.writer.take();
        if let Some(mut w) = writer {
            w.flush().map_err(|e| format!("cannot write {}: {e}", self.path.display()))?;
            w.get_ref()
                .sync_all()
                .map_err(|e| format!("cannot write {}: {e}", self.path.display()))?;
        }
        fs::rename(&self.path, target)
            .map_err(|e| format!("cannot save {}: {e}", target.display()))?;
        self.kept = true;
        Ok(())
    }
}

impl FileSink for PartFile {
    fn write(&mut self, bytes: &[u8]) -> bool {
        match self.writer.as_mut().map(|w| w.write_all(bytes)) {
            Some(Ok(())) => true,
            Some(Err(e)) => {
                self.error.get_or_insert(e);
                false
            }
            None => false,
        }
    }
}

impl Drop for PartFile {
    fn drop(&mut self) {
        if !self.kept {
            self.writer.take();
            let _ = fs::remove_file(&self.path);
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    logger::init("dhtrecv: ", args.verbosity.level());
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => fail("dhtrecv", message),
    }
}

fn run(args: &Args) -> Result<(), String> {
    let hash = FragmentHash::from_hex(args.hash.trim())
        .map_err(|e| format!("'{}' is not an index hash: {e}", args.hash))?;
    // Where the file goes: a directory (name from the index) or a path.
    let (dir, fixed_name) = match &args.output {
        Some(path) if path.is_dir() => (path.clone(), None),
        Some(path) => {
            let parent = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
            if !parent.is_dir() {
                return Err(format!("directory {} does not exist", parent.display()));
            }
            let name =
                path.file_name().ok_or_else(|| format!("{} is not a file path", path.display()))?;
            (parent, Some(PathBuf::from(name)))
        }
        None => (PathBuf::from("."), None),
    };
    if let Some(name) = &fixed_name {
        let target = dir.join(name);
        if target.exists() && !args.force {
            return Err(format!("{} exists; use --force to overwrite it", target.display()));
        }
    }
    let mut client = join(&args.host, args.port, args.listen, args.connect_timeout)?;

    let part = PartFile::create(&dir, &hash)?;
    let mut target: Option<PathBuf> = None;
    let mut progress = Progress::new(0, args.verbosity.quiet);
    let (mut part, result) = client.download(hash, part, seconds(args.timeout)?, |event| {
        match event {
            DownloadEvent::IndexReceived { name, size, fragments } => {
                let path = match &fixed_name {
                    Some(name) => dir.join(name),
                    None => dir.join(safe_file_name(name.as_str(), &hash)),
                };
                log::info!("index: '{name}', {size} bytes in {fragments} fragments");
                if path.exists() && !args.force {
                    return Err(format!(
                        "{} exists; use --force to overwrite it or -o to choose another name",
                        path.display()
                    ));
                }
                progress.set_total(u64::from(*fragments));
                target = Some(path);
            }
            DownloadEvent::Written { .. } => progress.step(),
            DownloadEvent::Finished { .. } | DownloadEvent::Failed(_) => {}
        }
        Ok(())
    });
    progress.finish();
    if let Some(e) = part.error.take() {
        return Err(format!("cannot write the file: {e}"));
    }
    let size = result.map_err(|e| e.to_string())?;
    let target = target.ok_or("the download ended without an index")?;
    part.keep_as(&target)?;
    log::info!("saved {} ({size} bytes)", target.display());
    if !args.verbosity.quiet {
        eprintln!("{} ({size} bytes)", target.display());
    }
    Ok(())
}
