//! Where an upload's bytes come from: a regular file as it is; standard
//! input (`-`), a pipe, FIFO or other stream copied first into an
//! anonymous temporary file (on disk, so memory stays bounded whatever
//! the size), since an upload reads each fragment twice (to hash it when
//! it is offered, then to send it to the holder that asks for it). Shared by `dhtsend` and `dhthash`, so that
//! both give a stream the same address.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use dht_core::index::MAX_TREE_SIZE;
use dht_std::client::FileReader;

/// Whether `path` means standard input (`-`).
pub fn is_stdin(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// The name stored in the index for `path`: `name` if given, `stdin` for
/// `-`, else the file's name.
pub fn source_name(path: &Path, name: Option<&str>) -> String {
    match name {
        None if is_stdin(path) => "stdin".to_owned(),
        _ => crate::index_name(path, name),
    }
}

/// The message for a source over the limit; `what` says how large it is.
pub fn too_large(what: &str) -> String {
    format!(
        "{what}; the limit is {MAX_TREE_SIZE} bytes (an index tree of {} levels)",
        dht_core::index::MAX_HEIGHT
    )
}

/// Opens the source at `path` (see the module). A stream of no bytes is
/// refused: `cat f | dhtsend /dev/stdin` used to take the pipe's size (0)
/// and store an empty file.
pub fn open_source(path: &Path) -> Result<FileReader, String> {
    let stream: Box<dyn Read> = if is_stdin(path) {
        Box::new(std::io::stdin().lock())
    } else {
        let file = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let meta = file.metadata().map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if meta.is_dir() {
            return Err(format!("{} is a directory, not a file", path.display()));
        }
        if meta.is_file() {
            // Read in place, opened once.
            let size = meta.len();
            if size > MAX_TREE_SIZE {
                return Err(too_large(&format!("{} is {}", path.display(), crate::size(size))));
            }
            return Ok(FileReader::from_file(file, size));
        }
        Box::new(file)
    };
    let shown =
        if is_stdin(path) { "standard input".to_owned() } else { path.display().to_string() };
    let mut spool = tempfile::tempfile()
        .map_err(|e| format!("cannot make a temporary file to hold {shown}: {e}"))?;
    let copied = std::io::copy(&mut stream.take(MAX_TREE_SIZE + 1), &mut spool)
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if copied > MAX_TREE_SIZE {
        return Err(too_large(&format!("{shown} gives more than {MAX_TREE_SIZE} bytes")));
    }
    if copied == 0 {
        return Err(format!("{shown} gave no bytes: nothing to upload"));
    }
    log::info!("read {} from {shown}", crate::size(copied));
    Ok(FileReader::from_file(spool, copied))
}
