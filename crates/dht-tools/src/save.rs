//! Saving a download without harm: the file name from the network made
//! safe, a partial file that no one else's path can redirect, and a final
//! rename that replaces only what it was allowed to.
//!
//! A name from the network ([`safe_file_name`]) is cleaned to a fixed
//! point: surrounding Unicode whitespace and leading dots are trimmed until
//! nothing changes, the name is cut to [`MAX_NAME_BYTES`] on a character
//! boundary, and separators, control characters, format characters (bidi
//! controls, zero-width characters, the byte order mark) and line or
//! paragraph separators in it become `_`. The result never contains `/`
//! or `\`, never starts with a dot (so it is neither `.`, `..` nor hidden),
//! and is never empty: a name with nothing left but dots, underscores and
//! spaces becomes `<first 16 hex digits of the hash>.bin`.
//!
//! A download is written to a [`PartFile`], `.dhtrecv-<pid>-<random>.part`
//! in the target's directory, created exclusively (it never opens an
//! existing file or follows a symbolic link). [`PartFile::keep_as`] then
//! gives it its name:
//! - a target that does not exist is created without replacing anything,
//!   even one that appears in the meantime;
//! - an existing regular file is replaced only when forced;
//! - a symbolic link, a directory, a device, a FIFO or a socket is never
//!   replaced, forced or not.
//!
//! A partial file that is not kept is removed when dropped, so a failed or
//! refused download leaves nothing behind; but for one that can be
//! continued ([`PartFile::resume`]): `.dhtrecv-<16 hex digits of the
//! hash>.part`, kept when a download that wrote into it stops early, and
//! opened again (never through a link, and only while no other process
//! holds its lock) by the next download of the same file into the same
//! directory, which checks every fragment it finds there against its hash
//! and fetches only the others.
//!
//! ```
//! # fn main() -> Result<(), dht_tools::save::SaveError> {
//! let dir = std::env::temp_dir().join(format!("save-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let hash = dht_core::FragmentHash([0xAB; 32]);
//! let name = dht_tools::safe_file_name(" .bash_login", &hash);
//! assert_eq!(name, "bash_login");
//! let path = dht_tools::save::save_into(&dir, &name, false, &b"echo hi"[..])?;
//! assert_eq!(std::fs::read(&path).unwrap(), b"echo hi");
//! // Saved once; a second time needs `force`.
//! assert!(dht_tools::save::save_into(&dir, &name, false, &b"x"[..]).is_err());
//! # std::fs::remove_dir_all(&dir).unwrap();
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use dht_core::download::FileSink;
use dht_core::FragmentHash;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// The longest name [`safe_file_name`] returns, in bytes: `NAME_MAX` of
/// Linux and of most Unix file systems.
pub const MAX_NAME_BYTES: usize = 255;

/// Whether `c` may not appear in a saved name as it is: a path separator,
/// a control character (Cc), a format character (Cf: the bidi controls
/// U+202A..U+202E and U+2066..U+2069, the zero-width characters
/// U+200B..U+200F and U+2060, the byte order mark U+FEFF, the soft hyphen
/// and the rest of the category, from the `unicode-properties` tables), or
/// a line or paragraph separator (Zl, Zp), which breaks a line like a
/// newline does.
fn is_replaced(c: char) -> bool {
    c == '/'
        || c == '\\'
        || c.is_control()
        || matches!(
            c.general_category(),
            GeneralCategory::Format
                | GeneralCategory::LineSeparator
                | GeneralCategory::ParagraphSeparator
        )
}

/// The longest prefix of `text` of at most `max` bytes that ends on a
/// character boundary.
fn cut(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or("")
}

/// A file name from the network made safe to create in a directory (the
/// rules are in the [module doc](self)). Cleaning a cleaned name changes
/// nothing.
pub fn safe_file_name(name: &str, hash: &FragmentHash) -> String {
    // Trimming can expose a dot (" .x") and stripping dots a space
    // (". x"): repeat until neither changes anything. Cutting the end off
    // then can expose only a space at the end.
    let mut name = name;
    loop {
        let next = name.trim().trim_start_matches('.');
        if next.len() == name.len() {
            break;
        }
        name = next;
    }
    let name = cut(name, MAX_NAME_BYTES).trim_end();
    // Then the characters in between. `_` is neither a space nor a dot,
    // and no longer than what it replaces, so the ends stay clean.
    let cleaned: String = name.chars().map(|c| if is_replaced(c) { '_' } else { c }).collect();
    if cleaned.chars().all(|c| c == '.' || c == '_' || c.is_whitespace()) {
        format!("{:016x}.bin", hash.prefix_u64())
    } else {
        cleaned
    }
}

/// Why a download was not saved.
#[derive(Debug)]
pub enum SaveError {
    /// The target is a regular file and replacing it was not allowed.
    Exists(PathBuf),
    /// The target is not a regular file (what it is: "a symbolic link",
    /// "a directory", ...); it is never replaced.
    NotAFile(PathBuf, &'static str),
    /// The name is not a plain file name (empty, `.`, `..` or with a `/`).
    BadName(String),
    /// A file system operation failed: what was being done, and why.
    Io(String, io::Error),
}

impl fmt::Display for SaveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SaveError::Exists(path) => write!(
                f,
                "{} exists; use --force to overwrite it or -o to choose another name",
                path.display()
            ),
            SaveError::NotAFile(path, what) => {
                write!(f, "{} is {what}; it is never replaced, even with --force", path.display())?;
                if *what == "a symbolic link" || *what == "a character device" {
                    f.write_str(" (-o - writes the file to standard output)")?;
                }
                Ok(())
            }
            SaveError::BadName(name) => write!(f, "'{name}' is not a file name"),
            SaveError::Io(what, e) => write!(f, "{what}: {e}"),
        }
    }
}

impl std::error::Error for SaveError {}

/// What may happen to an existing target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Nothing is there: the download creates it.
    Absent,
    /// A regular file is there and may be replaced.
    Replace,
}

/// Checks what is at `target` (without following a symbolic link) and
/// whether a download may be saved there: nothing, or a regular file when
/// `force`. Called before a download starts, to refuse early, and again
/// right before the rename.
pub fn check_target(target: &Path, force: bool) -> Result<Target, SaveError> {
    let meta = match fs::symlink_metadata(target) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Target::Absent),
        Err(e) => return Err(SaveError::Io(format!("cannot look at {}", target.display()), e)),
    };
    let kind = meta.file_type();
    let what = if kind.is_file() {
        return if force { Ok(Target::Replace) } else { Err(SaveError::Exists(target.into())) };
    } else if kind.is_symlink() {
        "a symbolic link"
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    };
    Err(SaveError::NotAFile(target.into(), what))
}

/// Creates `path` for writing only if nothing is there. `create_new`
/// (`O_CREAT | O_EXCL`) already fails on any existing name, a symbolic
/// link included, dangling or not, without following it (POSIX `open`);
/// `O_NOFOLLOW` says the same again so that the rule holds even if the
/// flags are ever changed.
fn create_exclusive(path: &Path) -> io::Result<File> {
    OpenOptions::new().write(true).create_new(true).custom_flags(libc::O_NOFOLLOW).open(path)
}

/// A download being written: `.dhtrecv-<pid>-<random>.part` in the target's
/// directory, removed when dropped unless [`PartFile::keep_as`] named it.
#[derive(Debug)]
pub struct PartFile {
    path: PathBuf,
    writer: Option<BufWriter<File>>,
    /// The first write error, kept for the message (the download only
    /// learns that writing failed).
    pub error: Option<io::Error>,
    kept: bool,
    /// Bytes an interrupted download left in it (resumable files).
    existing: u64,
    /// Where the next bytes go.
    position: u64,
    /// Kept for a later download when dropped with bytes in it.
    resumable: bool,
    /// Fragments found right in it and kept.
    reused: u64,
}

impl PartFile {
    /// Creates a new partial file in `dir`.
    pub fn create(dir: &Path) -> Result<PartFile, SaveError> {
        let mut attempts = 0;
        loop {
            let random = dht_std::random_seed() as u32;
            let path = dir.join(format!(".dhtrecv-{}-{random:08x}.part", std::process::id()));
            match create_exclusive(&path) {
                Ok(file) => return Ok(PartFile::with(path, file, 0, false)),
                // Someone's file (or link) has that name: pick another.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 16 => {
                    attempts += 1;
                }
                Err(e) => {
                    return Err(SaveError::Io(format!("cannot write in {}", dir.display()), e));
                }
            }
        }
    }

    fn with(path: PathBuf, file: File, existing: u64, resumable: bool) -> PartFile {
        let writer = Some(BufWriter::new(file));
        PartFile {
            path,
            writer,
            error: None,
            kept: false,
            existing,
            position: 0,
            resumable,
            reused: 0,
        }
    }

    /// The partial file of the download of `hash` into `dir` that can be
    /// continued (see the [module doc](self)): what an interrupted download
    /// of the same file left, or a new one. If another process is writing
    /// it, or something other than a regular file has its name, a fresh
    /// [`PartFile::create`] instead.
    pub fn resume(dir: &Path, hash: &FragmentHash) -> Result<PartFile, SaveError> {
        let hex = hash.to_string();
        let path = dir.join(format!(".dhtrecv-{}.part", hex.get(..16).unwrap_or(&hex)));
        let opened = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&path);
        let file = match opened {
            Ok(file) => file,
            Err(e) => {
                log::debug!("cannot open {} ({e}): a fresh partial file", path.display());
                return PartFile::create(dir);
            }
        };
        let meta = file
            .metadata()
            .map_err(|e| SaveError::Io(format!("cannot read {}", path.display()), e))?;
        if !meta.is_file() {
            log::warn!("{} is not a regular file: left alone", path.display());
            return PartFile::create(dir);
        }
        if file.try_lock().is_err() {
            log::warn!(
                "another dhtrecv is writing {}: this one starts a partial file of its own",
                path.display()
            );
            return PartFile::create(dir);
        }
        Ok(PartFile::with(path, file, meta.len(), true))
    }

    /// Where the partial file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes an interrupted download left in it.
    pub fn existing(&self) -> u64 {
        self.existing
    }

    /// Fragments found right in what an interrupted download left.
    pub fn reused(&self) -> u64 {
        self.reused
    }

    /// Forgets what an interrupted download left: the download starts over.
    pub fn restart(&mut self) -> io::Result<()> {
        if let Some(writer) = self.writer.as_mut() {
            writer.flush()?;
            writer.get_ref().set_len(0)?;
            writer.seek(SeekFrom::Start(0))?;
        }
        self.existing = 0;
        self.position = 0;
        Ok(())
    }

    /// Removes the file when dropped even if it could be continued (the
    /// download was refused, or its file is not what was asked for).
    pub fn discard(&mut self) {
        self.resumable = false;
    }

    /// Whether it is kept when dropped: resumable, with bytes in it.
    pub fn will_be_kept(&self) -> bool {
        self.resumable && !self.kept && self.existing.max(self.position) > 0
    }

    /// Flushes the file to disk and gives it the name `target`, which must
    /// be in the same directory, following the rules of the
    /// [module doc](self). On an error the partial file stays until
    /// dropped, which removes it.
    pub fn keep_as(&mut self, target: &Path, force: bool) -> Result<(), SaveError> {
        let part = self.path.clone();
        let writing = |e| SaveError::Io(format!("cannot write {}", part.display()), e);
        if let Some(e) = self.error.take() {
            return Err(writing(e));
        }
        if let Some(mut writer) = self.writer.take() {
            writer.flush().map_err(writing)?;
            // What an interrupted download left past the end goes.
            writer.get_ref().set_len(self.position).map_err(writing)?;
            writer.get_ref().sync_all().map_err(writing)?;
        }
        let saving = |e| SaveError::Io(format!("cannot save {}", target.display()), e);
        if check_target(target, force)? == Target::Absent {
            // Nothing is there. The workspace forbids unsafe code, so
            // renameat2(RENAME_NOREPLACE) through libc is out; link(2) makes
            // the same promise portably: it fails with EEXIST if anything,
            // even a dangling symbolic link, took the name meanwhile, and
            // never follows it. The partial name is unlinked afterwards (by
            // drop, should this fail). File systems without hard links
            // (FAT, some FUSE) fall back to a rename right after a fresh
            // check, the best they allow.
            match fs::hard_link(&part, target) {
                Ok(()) => {
                    if let Err(e) = fs::remove_file(&part) {
                        log::warn!("cannot remove {}: {e}", part.display());
                    }
                    return Ok(());
                }
                // It appeared since the check: judge it as it is now.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if check_target(target, force)? == Target::Absent {
                        return Err(saving(e));
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::PermissionDenied | io::ErrorKind::Unsupported
                    ) || e.raw_os_error() == Some(libc::EMLINK) =>
                {
                    log::debug!("no hard link in {} ({e}); renaming", target.display());
                    check_target(target, force)?;
                }
                Err(e) => return Err(saving(e)),
            }
        }
        // A regular file, and forced (or no hard links): rename(2) replaces
        // it at once. Were it swapped for a link since the check, rename
        // would replace the link itself, never what it points to.
        fs::rename(&part, target).map_err(saving)?;
        self.kept = true;
        Ok(())
    }
}

impl Write for PartFile {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self.writer.as_mut() {
            Some(writer) => {
                let n = writer.write(bytes)?;
                self.position += n as u64;
                Ok(n)
            }
            None => Err(io::Error::other("the partial file is closed")),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        self.writer.as_mut().map_or(Ok(()), |writer| writer.flush())
    }
}

impl FileSink for PartFile {
    fn write(&mut self, bytes: &[u8]) -> bool {
        match self.write_all(bytes) {
            Ok(()) => true,
            Err(e) => {
                self.error.get_or_insert(e);
                false
            }
        }
    }

    /// Whether the bytes an interrupted download left at `offset` are the
    /// fragment `hash` (read from the file, past everything written since).
    fn holds(&mut self, offset: u64, len: usize, hash: &FragmentHash) -> bool {
        let Some(writer) = self.writer.as_ref() else { return false };
        if offset < self.position || offset + len as u64 > self.existing {
            return false;
        }
        let mut fragment = [0u8; dht_core::FRAGMENT_SIZE];
        let Some(bytes) = fragment.get_mut(..len) else { return false };
        writer.get_ref().read_exact_at(bytes, offset).is_ok() && hash.verifies(&fragment)
    }

    fn skip(&mut self, len: usize) -> bool {
        let Some(writer) = self.writer.as_mut() else { return false };
        match writer.seek(SeekFrom::Current(len as i64)) {
            Ok(_) => {
                self.position += len as u64;
                self.reused += 1;
                true
            }
            Err(e) => {
                self.error.get_or_insert(e);
                false
            }
        }
    }
}

impl Drop for PartFile {
    fn drop(&mut self) {
        if self.will_be_kept() {
            if let Some(mut writer) = self.writer.take() {
                let _ = writer.flush();
            }
        } else if !self.kept {
            self.writer.take();
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Saves everything `source` yields as `dir/name` with the rules of the
/// [module doc](self): the same steps dhtrecv takes ([`check_target`],
/// [`PartFile::create`], the writes, [`PartFile::keep_as`]), for a source
/// that can be read. Returns the path saved. On any error nothing is left
/// in `dir` and an existing target is untouched.
pub fn save_into(
    dir: &Path,
    name: &str,
    force: bool,
    mut source: impl Read,
) -> Result<PathBuf, SaveError> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(SaveError::BadName(name.to_owned()));
    }
    let target = dir.join(name);
    check_target(&target, force)?;
    let mut part = PartFile::create(dir)?;
    io::copy(&mut source, &mut part)
        .map_err(|e| SaveError::Io(format!("cannot write {}", part.path().display()), e))?;
    part.keep_as(&target, force)?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: FragmentHash = FragmentHash([0xAB; 32]);
    const FALLBACK: &str = "abababababababab.bin";

    fn clean(name: &str) -> String {
        safe_file_name(name, &HASH)
    }

    /// What every cleaned name must be.
    fn assert_safe(from: &str, name: &str) {
        assert!(!name.is_empty(), "{from:?} -> empty");
        assert!(name.len() <= MAX_NAME_BYTES, "{from:?} -> {} bytes", name.len());
        assert!(!name.contains('/') && !name.contains('\\'), "{from:?} -> {name:?}");
        assert!(!name.starts_with('.'), "{from:?} -> {name:?}");
        assert!(name != "." && name != "..", "{from:?} -> {name:?}");
        assert_eq!(name.trim(), name, "{from:?} -> {name:?} has spaces around it");
        assert!(!name.chars().any(is_replaced), "{from:?} -> {name:?}");
        assert_eq!(clean(name), name, "cleaning {from:?} again changes it");
    }

    #[test]
    fn a_normal_name_stays_as_it_is() {
        for name in ["photo.jpg", "a b.txt", "été 2024.pdf", "x", "report.tar.gz", "日本語.txt"]
        {
            assert_eq!(clean(name), name);
        }
    }

    #[test]
    fn spaces_before_a_dot_do_not_hide_a_file() {
        assert_eq!(clean(" .bash_login"), "bash_login");
        assert_eq!(clean("\u{3000}.profile"), "profile");
        assert_eq!(clean("\u{a0}.x"), "x");
        assert_eq!(clean(".. .x"), "x");
        assert_eq!(clean(". . . .bashrc"), "bashrc");
        assert_eq!(clean("\u{2003}\u{205f}\u{1680}.\u{85}.ssh"), "ssh");
        assert_eq!(clean(".bashrc"), "bashrc");
        assert_eq!(clean("\t.bashrc\r\n"), "bashrc");
    }

    #[test]
    fn format_characters_cannot_disguise_a_name() {
        // Right-to-left override: shows as "invoiceexe.pdf".
        assert_eq!(clean("invoice\u{202E}fdp.exe"), "invoice_fdp.exe");
        for c in ('\u{202A}'..='\u{202E}').chain('\u{2066}'..='\u{2069}') {
            assert_eq!(clean(&format!("a{c}b")), "a_b", "U+{:04X}", c as u32);
        }
        // Zero-width characters, word joiner, byte order mark, soft hyphen.
        for c in ('\u{200B}'..='\u{200F}').chain(['\u{2060}', '\u{FEFF}', '\u{AD}']) {
            assert_eq!(clean(&format!("a{c}b")), "a_b", "U+{:04X}", c as u32);
        }
        // Zero-width space before a dot: no hidden file.
        assert_eq!(clean("\u{200B}.bashrc"), "_.bashrc");
        // Line and paragraph separators and control characters.
        assert_eq!(clean("a\u{2028}b\u{2029}c"), "a_b_c");
        assert_eq!(clean("bad\u{7}name\u{9b}"), "bad_name_");
        assert_eq!(clean("two\nlines"), "two_lines");
    }

    #[test]
    fn names_from_the_network_stay_in_the_directory() {
        assert_eq!(clean("../../etc/passwd"), "_.._etc_passwd");
        assert_eq!(clean("/etc/passwd"), "_etc_passwd");
        assert_eq!(clean("a/b"), "a_b");
        assert_eq!(clean("a\\b"), "a_b");
        for hostile in ["../x", "./.././", "a/../../b", "/", "\\..\\x", "..\\..", "./"] {
            assert_safe(hostile, &clean(hostile));
        }
    }

    #[test]
    fn a_name_with_nothing_left_falls_back_to_the_hash() {
        for empty in ["", ".", "..", "...", " ", ". .", " . . ", "\u{3000}", "/", "../..", "_"] {
            assert_eq!(clean(empty), FALLBACK, "{empty:?}");
        }
        assert_eq!(clean("\u{200B}"), FALLBACK);
    }

    #[test]
    fn a_long_name_is_cut_on_a_character_boundary() {
        let long = "x".repeat(1000);
        assert_eq!(clean(&long), "x".repeat(MAX_NAME_BYTES));
        // 2-byte characters: 255 bytes would split one.
        let accents = "é".repeat(200);
        let cleaned = clean(&accents);
        assert_eq!(cleaned, "é".repeat(127));
        // Cutting exposes a space at the end: it goes too.
        let spaced = format!("{} {}", "a".repeat(254), "b".repeat(10));
        assert_eq!(clean(&spaced), "a".repeat(254));
        // Leading dots and spaces are dropped before cutting.
        let dotted = format!("{}{}", ". ".repeat(300), "y".repeat(300));
        assert_eq!(clean(&dotted), "y".repeat(MAX_NAME_BYTES));
    }

    #[test]
    fn cleaning_is_idempotent() {
        let mut samples: Vec<String> = [
            " .bash_login",
            "\u{3000}.profile",
            "\u{a0}.x",
            ".. .x",
            "invoice\u{202E}fdp.exe",
            "../../etc/passwd",
            "a/b",
            "",
            ". . .",
            "photo.jpg",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // Names drawn from the characters that matter, with a fixed seed.
        let pool = [
            '.', ' ', '/', '\\', 'a', 'é', '\u{3000}', '\u{a0}', '\u{202E}', '\u{200B}',
            '\u{FEFF}', '\n', '\u{7f}', '_', '\u{2028}', '日',
        ];
        let mut state = 7u64;
        let mut next = move |below: usize| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) as usize % below
        };
        for _ in 0..2000 {
            let len = next(300);
            samples.push((0..len).map(|_| pool[next(pool.len())]).collect());
        }
        for sample in &samples {
            assert_safe(sample, &clean(sample));
        }
    }

    #[test]
    fn the_partial_file_is_never_opened_through_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"keep").unwrap();
        let link = dir.path().join(".part");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let err = create_exclusive(&link).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        std::os::unix::fs::symlink(dir.path().join("nowhere"), dir.path().join(".dangling"))
            .unwrap();
        assert!(create_exclusive(&dir.path().join(".dangling")).is_err());
        assert!(!dir.path().join("nowhere").exists(), "a dangling link is not followed");
        assert_eq!(fs::read(&victim).unwrap(), b"keep");
    }

    #[test]
    fn cut_ends_on_a_character_boundary() {
        assert_eq!(cut("aé", 2), "a");
        assert_eq!(cut("aé", 3), "aé");
        assert_eq!(cut("", 3), "");
    }
}
