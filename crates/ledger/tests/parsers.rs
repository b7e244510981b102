//! Every parser of untrusted log input, run over thousands of mutations of real seeds (the
//! golden files and the specs' examples): no panic, and accepted input round-trips. The same
//! bodies are the `cargo fuzz` targets in `fuzz/`, which explore far more.

use std::path::Path;

use vallum_ledger::fuzzing::{self, run_mutated as run};

fn golden(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden")
            .join(name),
    )
    .unwrap()
}

#[test]
fn checkpoints_and_notes() {
    let note = golden("log/checkpoint");
    let text = String::from_utf8(note.clone()).unwrap();
    let body = format!("{}\n", text.split("\n\n").next().unwrap());
    let seeds = vec![
        note.clone(),
        body.into_bytes(),
        b"example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
            .to_vec(),
        b"golden.vallum.test/log+54070e54+ARJs0NpomAeCiAMQwrz6WkcXHj2L1PQCU1E5hLAaGI2s".to_vec(),
    ];
    run(fuzzing::checkpoint, &seeds, 20_000, 1);
    run(fuzzing::note, &seeds, 20_000, 2);
}

#[test]
fn entries() {
    let seeds: Vec<Vec<u8>> = String::from_utf8(golden("entries.jsonl"))
        .unwrap()
        .lines()
        .map(|l| l.as_bytes().to_vec())
        .collect();
    run(fuzzing::entry, &seeds, 30_000, 3);
}

#[test]
fn bundles() {
    run(fuzzing::bundle, &[golden("bundle.json")], 3_000, 4);
    run(fuzzing::bundle, &[golden("bundle-v2.json")], 3_000, 7);
}

#[test]
fn sealed_leaves_and_openings() {
    let mut opening = b"vallum-opening 2\n".to_vec();
    opening.extend_from_slice(&[9u8; 32]);
    opening.push(4);
    opening.extend_from_slice(b"acme");
    opening.extend_from_slice(
        golden("entries.jsonl")
            .split(|b| *b == b'\n')
            .next()
            .unwrap(),
    );
    let seeds = vec![
        opening,
        format!("{{\"v\":2,\"c\":\"{}\"}}", "ab".repeat(32)).into_bytes(),
    ];
    run(fuzzing::sealed, &seeds, 20_000, 8);
}

#[test]
fn witness_requests_tile_paths_and_entry_bundles() {
    let cp = String::from_utf8(golden("log/checkpoint")).unwrap();
    let request = format!(
        "old 300\n/FylmQGyUtlbemgHDHsgUV+/4dyd+fFg3y4xudxOIkU=\njrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=\n\n{cp}"
    );
    run(
        fuzzing::witness_request,
        &[request.into_bytes(), b"old 0\n\n".to_vec()],
        20_000,
        5,
    );
    let seeds = vec![
        b"tile/0/x001/x234/067.p/8".to_vec(),
        b"tile/entries/000".to_vec(),
        b"tile/2/001.p/255".to_vec(),
        golden("log/tile/entries/002.p/88"),
    ];
    run(fuzzing::tiles, &seeds, 20_000, 6);
}
