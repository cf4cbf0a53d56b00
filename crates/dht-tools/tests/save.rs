//! Saving a download (dht_tools::save) on real directories, without any
//! network: what is refused, what is left untouched, and that no partial
//! file stays behind.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{symlink, FileTypeExt};
use std::path::Path;
use std::process::Command;

use dht_core::FragmentHash;
use dht_tools::save::{check_target, save_into, PartFile, SaveError, Target};

/// The names in `dir`, sorted.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A source that yields `good` bytes and then fails.
struct FailingSource {
    good: usize,
}

impl Read for FailingSource {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.good == 0 {
            return Err(io::Error::other("the network went away"));
        }
        let n = buf.len().min(self.good);
        buf[..n].fill(b'x');
        self.good -= n;
        Ok(n)
    }
}

#[test]
fn a_new_file_gets_exactly_the_bytes_and_no_partial_file_stays() {
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let path = save_into(dir.path(), "photo.jpg", false, &data[..]).unwrap();
    assert_eq!(path, dir.path().join("photo.jpg"));
    assert_eq!(fs::read(&path).unwrap(), data);
    assert_eq!(names_in(dir.path()), ["photo.jpg"]);
    // Empty files too.
    save_into(dir.path(), "empty", false, &b""[..]).unwrap();
    assert_eq!(fs::read(dir.path().join("empty")).unwrap(), b"");
    assert_eq!(names_in(dir.path()), ["empty", "photo.jpg"]);
}

#[test]
fn an_existing_file_is_kept_without_force_and_replaced_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("doc.txt");
    fs::write(&target, b"first version").unwrap();
    let err = save_into(dir.path(), "doc.txt", false, &b"second"[..]).unwrap_err();
    assert!(matches!(err, SaveError::Exists(_)), "{err:?}");
    assert!(err.to_string().contains("exists; use --force"), "{err}");
    assert_eq!(fs::read(&target).unwrap(), b"first version");
    assert_eq!(names_in(dir.path()), ["doc.txt"]);

    save_into(dir.path(), "doc.txt", true, &b"second"[..]).unwrap();
    assert_eq!(fs::read(&target).unwrap(), b"second");
    assert_eq!(names_in(dir.path()), ["doc.txt"]);
}

#[test]
fn a_symbolic_link_is_never_replaced_nor_followed() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let victim = elsewhere.path().join("victim");
    fs::write(&victim, b"precious").unwrap();
    let link = dir.path().join("stdout");
    symlink(&victim, &link).unwrap();
    let dangling = dir.path().join("dangling");
    symlink(elsewhere.path().join("nothing"), &dangling).unwrap();
    for force in [false, true] {
        for name in ["stdout", "dangling"] {
            let err = save_into(dir.path(), name, force, &b"payload"[..]).unwrap_err();
            assert!(matches!(err, SaveError::NotAFile(_, "a symbolic link")), "{err:?}");
            assert!(err.to_string().contains("never replaced, even with --force"), "{err}");
            assert!(err.to_string().contains("-o -"), "{err}");
        }
    }
    assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert_eq!(fs::read_link(&link).unwrap(), victim);
    assert_eq!(fs::read(&victim).unwrap(), b"precious");
    assert!(fs::symlink_metadata(&dangling).unwrap().file_type().is_symlink());
    assert!(!elsewhere.path().join("nothing").exists(), "a dangling link is not followed");
    assert_eq!(names_in(dir.path()), ["dangling", "stdout"]);
}

#[test]
fn a_directory_is_never_replaced() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("sub")).unwrap();
    fs::write(dir.path().join("sub").join("inside"), b"kept").unwrap();
    for force in [false, true] {
        let err = save_into(dir.path(), "sub", force, &b"payload"[..]).unwrap_err();
        assert!(matches!(err, SaveError::NotAFile(_, "a directory")), "{err:?}");
    }
    assert_eq!(fs::read(dir.path().join("sub").join("inside")).unwrap(), b"kept");
    assert_eq!(names_in(dir.path()), ["sub"]);
}

#[test]
fn a_fifo_or_a_device_is_never_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo runs");
    assert!(made.success());
    for force in [false, true] {
        let err = save_into(dir.path(), "pipe", force, &b"payload"[..]).unwrap_err();
        assert!(matches!(err, SaveError::NotAFile(_, "a FIFO")), "{err:?}");
    }
    assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
    assert_eq!(names_in(dir.path()), ["pipe"]);
    // /dev/null is a character device: refused even when forced, and
    // checked without writing anywhere.
    let err = check_target(Path::new("/dev/null"), true).unwrap_err();
    assert!(matches!(err, SaveError::NotAFile(_, "a character device")), "{err:?}");
}

#[test]
fn a_failure_mid_write_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let err = save_into(dir.path(), "big.bin", false, FailingSource { good: 50_000 }).unwrap_err();
    assert!(err.to_string().contains("the network went away"), "{err}");
    assert!(names_in(dir.path()).is_empty(), "{:?}", names_in(dir.path()));
    // Over an existing file, forced: it stays as it was.
    fs::write(dir.path().join("big.bin"), b"old").unwrap();
    save_into(dir.path(), "big.bin", true, FailingSource { good: 10 }).unwrap_err();
    assert_eq!(fs::read(dir.path().join("big.bin")).unwrap(), b"old");
    assert_eq!(names_in(dir.path()), ["big.bin"]);
}

#[test]
fn a_partial_file_is_hidden_and_removed_unless_kept() {
    let dir = tempfile::tempdir().unwrap();
    let first = PartFile::create(dir.path()).unwrap();
    let second = PartFile::create(dir.path()).unwrap();
    for part in [&first, &second] {
        let name = part.path().file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with(".dhtrecv-") && name.ends_with(".part"), "{name}");
        assert_eq!(part.path().parent(), Some(dir.path()));
    }
    assert_ne!(first.path(), second.path());
    assert_eq!(names_in(dir.path()).len(), 2);
    drop(first);
    drop(second);
    assert!(names_in(dir.path()).is_empty());
}

#[test]
fn a_target_that_appears_during_the_download_is_not_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("late.txt");
    assert_eq!(check_target(&target, false).unwrap(), Target::Absent);
    let mut part = PartFile::create(dir.path()).unwrap();
    io::Write::write_all(&mut part, b"download").unwrap();
    // Someone plants a link at the name while the download runs.
    symlink("/etc/passwd", &target).unwrap();
    for force in [false, true] {
        let err = part.keep_as(&target, force).unwrap_err();
        assert!(matches!(err, SaveError::NotAFile(_, "a symbolic link")), "{err:?}");
    }
    drop(part);
    assert_eq!(fs::read_link(&target).unwrap(), Path::new("/etc/passwd"));
    assert_eq!(names_in(dir.path()), ["late.txt"]);
}

#[test]
fn a_name_that_is_not_a_plain_file_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["", ".", "..", "a/b", "../x"] {
        let err = save_into(dir.path(), name, true, &b"x"[..]).unwrap_err();
        assert!(matches!(err, SaveError::BadName(_)), "{name:?}: {err:?}");
    }
    assert!(names_in(dir.path()).is_empty());
}

#[test]
fn a_missing_directory_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nodir");
    let err = save_into(&missing, "x", false, &b"x"[..]).unwrap_err();
    assert!(err.to_string().contains("cannot write in"), "{err}");
    assert!(names_in(dir.path()).is_empty());
}

#[test]
fn a_resumable_partial_file_is_kept_checked_locked_and_never_a_link() {
    use dht_core::download::FileSink;
    let dir = tempfile::tempdir().unwrap();
    let fragment = [7u8; dht_core::FRAGMENT_SIZE];
    let hash = FragmentHash::of(&fragment);
    let file = FragmentHash([0x5A; 32]);
    let name = format!(".dhtrecv-{}.part", &file.to_string()[..16]);

    // A run that wrote a fragment and a half, then stopped: kept.
    let mut first = PartFile::resume(dir.path(), &file).unwrap();
    assert_eq!(first.path(), dir.path().join(&name));
    assert!(FileSink::write(&mut first, &fragment));
    assert!(FileSink::write(&mut first, &fragment[..4000]));
    assert!(first.will_be_kept());
    drop(first);
    assert_eq!(names_in(dir.path()), std::slice::from_ref(&name));

    // The next run finds it, checks it, skips what is right.
    let mut second = PartFile::resume(dir.path(), &file).unwrap();
    assert_eq!(second.existing(), 8192 + 4000);
    // While it is open, a third run gets a partial file of its own.
    let third = PartFile::resume(dir.path(), &file).unwrap();
    assert_ne!(third.path(), second.path());
    drop(third);
    assert!(second.holds(0, 8192, &hash));
    assert!(!second.holds(0, 8192, &file), "wrong hash");
    assert!(!second.holds(8192, 8192, &hash), "past what is there");
    assert!(second.skip(8192));
    assert_eq!(second.reused(), 1);
    // Refused: removed after all.
    second.discard();
    drop(second);
    assert!(names_in(dir.path()).is_empty(), "{:?}", names_in(dir.path()));

    // A link in its place is neither followed nor removed.
    let elsewhere = dir.path().join("elsewhere");
    fs::write(&elsewhere, b"precious").unwrap();
    std::os::unix::fs::symlink(&elsewhere, dir.path().join(&name)).unwrap();
    let fresh = PartFile::resume(dir.path(), &file).unwrap();
    assert_ne!(fresh.path(), dir.path().join(&name));
    drop(fresh);
    assert_eq!(fs::read(&elsewhere).unwrap(), b"precious");
    assert!(fs::symlink_metadata(dir.path().join(&name)).unwrap().file_type().is_symlink());
}
