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

/// Files of one index keep the address they had before index trees: the
/// expected lines were printed by `dhthash` of the original tools (commit
/// 21ca2fb), one file at a time, for these files.
#[test]
fn files_of_one_index_keep_the_address_they_had_before_index_trees() {
    let work = TempDir::new("hash-before");
    let sizes = [0usize, 1, 8191, 8192, 8193, 100_000, 1_044_480, 2_088_959, 2_088_960];
    let mut names = Vec::new();
    for size in sizes {
        let data: Vec<u8> = (0..size).map(|i| ((i * 7 + size) % 251) as u8).collect();
        let name = format!("p{size}.bin");
        std::fs::write(work.path().join(&name), data).unwrap();
        names.push(name);
    }
    let args: Vec<&str> = names.iter().map(String::as_str).collect();
    let run = run_tool("dhthash", &args, work.path());
    assert!(run.ok(), "{}", run.stderr);
    let expected = [
        "055bf102b1281cd755cdbdaecb7979f49143ac4a9b273ff61247288a0b3ddb59  p0.bin",
        "6339a62ba7589836f686c260064db81071df884382f253a7d57a3a88ebdd979f  p1.bin",
        "c1a1a6ec02a11dacdccbd44c464f2ac1430cfdded9b3caf15ba1f09faa1047d6  p8191.bin",
        "ae430f78315bac2e1775a05b7706c05e37aa5ad7f7e2cdc451f96e25746eee3b  p8192.bin",
        "abc2991c898c38ff09514d291152fbb689afb566f625837832d661c981598497  p8193.bin",
        "801e1b545dc1319347c6738ec25e14fcb39eabf9a4bedf8c0ac32c05c5dfa625  p100000.bin",
        "a3431f9bad8a2fa120782727fc081eb572014d3a61275e7bce80cf59eb71a203  p1044480.bin",
        "896a8f46d5ef64232eb965373c53e6400053b27d5f8c265552ab09a5e4848aa8  p2088959.bin",
        "5d33454617fb73f667e451ca886b072aac515a701b10bbee7faf49a2dad92712  p2088960.bin",
    ];
    assert_eq!(run.stdout.lines().collect::<Vec<_>>(), expected);
}
