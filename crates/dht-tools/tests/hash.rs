//! dhthash without a network: several files like sha256sum, standard
//! input, details on standard error.

mod common;

use common::{random_bytes, run_shell, run_tool, tool, TempDir};

#[test]
fn several_files_standard_input_and_details_on_stderr() {
    let work = TempDir::new("hash-files");
    std::fs::write(work.path().join("a.bin"), random_bytes(1, 20_000)).unwrap();
    std::fs::write(work.path().join("b.bin"), random_bytes(2, 9_000)).unwrap();
    let one = |args: &[&str]| {
        let run = run_tool("dhthash", args, work.path());
        assert!(run.ok(), "dhthash {args:?}: {}", run.stderr);
        run.stdout.trim().to_owned()
    };
    let a = one(&["a.bin"]);
    let b = one(&["b.bin"]);
    assert_eq!(a.len(), 64, "one file: the hash alone: {a:?}");

    // Several: one line each, hash then file, as sha256sum.
    assert_eq!(one(&["a.bin", "b.bin"]), format!("{a}  a.bin\n{b}  b.bin"));

    // -v: stdout keeps the hash alone; the fragments go to stderr.
    let verbose = run_tool("dhthash", &["-v", "a.bin"], work.path());
    assert_eq!(verbose.stdout.trim(), a);
    assert!(verbose.stderr.contains("index "), "{}", verbose.stderr);
    assert_eq!(verbose.stderr.lines().filter(|l| l.contains(" shard ")).count(), 4);

    // `-` is standard input, named `stdin` as dhtsend names it.
    let piped = run_shell(&format!("cat a.bin | '{}' -", tool("dhthash").display()), work.path());
    assert!(piped.ok(), "{}", piped.stderr);
    assert_eq!(piped.stdout.trim(), one(&["--name", "stdin", "a.bin"]));

    // A file that cannot be read: said, the others still hashed, exit 1.
    let mixed = run_tool("dhthash", &["a.bin", "missing.bin", "b.bin"], work.path());
    assert!(!mixed.ok());
    assert!(mixed.stderr.contains("cannot open missing.bin"), "{}", mixed.stderr);
    assert_eq!(mixed.stdout.trim(), format!("{a}  a.bin\n{b}  b.bin"));
    // --name with several files is refused.
    let named = run_tool("dhthash", &["--name", "x", "a.bin", "b.bin"], work.path());
    assert!(!named.ok() && named.stderr.contains("--name"), "{}", named.stderr);
}
