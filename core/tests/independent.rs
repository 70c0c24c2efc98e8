//! Known-answer vectors for entry hashes, checked two ways: against the committed vector file
//! (so a change to the hashing rules cannot go unnoticed), and by an independent
//! implementation written from docs/ledger-format.md alone (`tools/auditor/verify_ledger.py`:
//! Python `blake3` + `rfc8785`), run here in the test suite. The worked examples in the
//! docs are checked the same way.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use pled_core::{Body, ChainHead, ExecutionId, Kind, RecordedAt, SealedEntry, verify_chain};

fn repo() -> PathBuf {
    std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Bodies chosen to exercise JCS: key order by UTF-16 code units (which differs from UTF-8
/// byte order above the BMP), escapes, control characters, nesting, big numbers as strings,
/// and the ES6 number forms.
const BODIES: &[&str] = &[
    r#"{}"#,
    r#"{"b":2,"a":1,"c":{"z":[3,2,1],"y":null,"x":true}}"#,
    r#"{"text":"café ☕ 日本語 😀","\u20ac":"euro key","😀":"astral key","\ue000":"private-use key"}"#,
    r#"{"quote":"\"","backslash":"\\","controls":"\u0000\u0001\u001f\b\f\n\r\t","del":"\u007f","slash":"/","html":"</script>"}"#,
    r#"{"amount":"18446744073709551615","max_safe":9007199254740991,"min_safe":-9007199254740991}"#,
    r#"{"floats":[0.1,1e21,1e-7,-0.0,5e-324,123456789.125,1.7976931348623157e308,100,1e2,-1.5]}"#,
    r#"{"deep":{"a":{"b":{"c":{"d":{"e":[{"f":[[]]},{}]}}}}}}"#,
];

fn build_chain() -> Vec<SealedEntry> {
    let id = ExecutionId::from_u128(0x0192_f8c1_6c2e_7b35_9a0b_1c2d_3e4f_5a6b);
    let mut head = ChainHead::genesis(id);
    BODIES
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let at = RecordedAt::from_unix_micros(1_795_312_110_123_456 + i as i64 * 1_000_001).unwrap();
            let e = head.next_entry(Kind::new("kat.vector").unwrap(), at, Body::from_json_str(b).unwrap());
            head.advance(&e);
            e
        })
        .collect()
}

fn export(entries: &[SealedEntry]) -> Vec<u8> {
    entries.iter().flat_map(|e| [e.export_json(), b"\n".to_vec()].concat()).collect()
}

fn python_verifies(path: &Path) -> String {
    let out = Command::new("python3")
        .arg(repo().join("tools/auditor/verify_ledger.py"))
        .arg(path)
        .output()
        .expect("python3 must be installed (./run test installs it with blake3 and rfc8785)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "independent verifier failed: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

#[test]
fn vectors_match_the_committed_file_and_an_independent_implementation() {
    let chain = build_chain();
    verify_chain(chain[0].entry().execution_id, &chain).unwrap();
    let bytes = export(&chain);
    let path = repo().join("core/tests/vectors/entries.jsonl");
    if std::env::var_os("PLED_REGENERATE_VECTORS").is_some() {
        std::fs::write(&path, &bytes).unwrap();
    }
    let committed = std::fs::read(&path).expect("core/tests/vectors/entries.jsonl");
    assert_eq!(String::from_utf8_lossy(&committed), String::from_utf8_lossy(&bytes), "hashing rules changed");

    let report = python_verifies(&path);
    assert_eq!(report.trim(), format!("ok: {} entries in 1 executions", BODIES.len()));
}

#[test]
fn the_independent_verifier_catches_a_changed_byte() {
    let chain = build_chain();
    let mut bytes = export(&chain);
    // Change one character of the third entry's body text: "café" -> "cafe".
    let text = String::from_utf8(bytes.clone()).unwrap();
    let at = text.find("café").unwrap() + 3;
    bytes.splice(at..at + 2, *b"e");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tampered.jsonl");
    std::fs::write(&path, &bytes).unwrap();
    let out = Command::new("python3").arg(repo().join("tools/auditor/verify_ledger.py")).arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("line 3"), "{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn the_worked_examples_in_the_ledger_format_doc_hold() {
    let doc = std::fs::read_to_string(repo().join("docs/ledger-format.md")).unwrap();
    let lines: Vec<&str> =
        doc.lines().filter(|l| l.starts_with(r#"{"body":"#) && l.contains(r#""entry_hash":"#)).collect();
    assert!(lines.len() >= 3, "docs/ledger-format.md should carry at least 3 worked examples");
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let e = SealedEntry::from_export_value(&v).unwrap();
        assert_eq!(e.entry().compute_hash(), e.hash(), "doc example hash is wrong: {line}");
        assert_eq!(e.export_json(), line.as_bytes(), "doc example is not in canonical export form: {line}");
    }
    // The examples form one chain, which the independent verifier also accepts.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("doc.jsonl");
    std::fs::write(&path, lines.join("\n")).unwrap();
    python_verifies(&path);
}

#[test]
fn the_merkle_worked_example_in_the_ledger_format_doc_holds() {
    use pled_core::merkle::{MerkleTree, from_0x, hash_pair, leaf_hash, to_0x};
    let doc = std::fs::read_to_string(repo().join("docs/ledger-format.md")).unwrap();
    let value = |label: &str| -> String {
        doc.lines()
            .find_map(|l| l.strip_prefix(label))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("{label} missing"))
    };
    let entries: Vec<SealedEntry> = doc
        .lines()
        .filter(|l| l.starts_with(r#"{"body":"#) && l.contains(r#""entry_hash":"#))
        .map(|l| SealedEntry::from_export_value(&serde_json::from_str(l).unwrap()).unwrap())
        .collect();
    let leaves: Vec<_> = entries.iter().map(|e| leaf_hash(&e.entry().execution_id, e.seq(), &e.hash())).collect();
    for (i, leaf) in leaves.iter().enumerate() {
        assert_eq!(to_0x(leaf), value(&format!("leaf {} = ", i + 1)));
    }
    assert_eq!(to_0x(&hash_pair(&leaves[0], &leaves[1])), value("node(leaf 1, leaf 2) = "));
    let tree = MerkleTree::from_leaves(&leaves);
    assert_eq!(to_0x(&tree.root().unwrap()), value("root = node(node(leaf 1, leaf 2), leaf 3) = "));
    assert_eq!(tree.proof(0).unwrap(), vec![leaves[1], leaves[2]]);
    assert_eq!(tree.proof(2).unwrap(), vec![hash_pair(&leaves[0], &leaves[1])]);
    assert!(from_0x::<32>(&to_0x(&leaves[0])).is_some());
}
