//! Every parser of untrusted log input, run over thousands of mutations of real seeds (the
//! golden files and the specs' examples): no panic, and accepted input round-trips. The same
//! bodies are the `cargo fuzz` targets in `fuzz/`, which explore far more.

use std::path::Path;

use vallum_ledger::fuzzing;

/// Deterministic xorshift, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut d = seed.to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(d.len() + 1);
        match rng.below(7) {
            0 if !d.is_empty() => {
                let i = at.min(d.len() - 1);
                d[i] ^= 1 << rng.below(8);
            }
            1 => d.insert(at, rng.next() as u8),
            2 if at < d.len() => {
                d.remove(at);
            }
            3 => d.truncate(at),
            4 => {
                // Interesting bytes for these formats.
                let b =
                    [b'\n', b' ', b'+', b'/', b'"', b'{', b'}', b'0', 0xe2, 0xff][rng.below(10)];
                d.insert(at, b);
            }
            5 if !d.is_empty() => {
                let from = rng.below(d.len());
                let len = rng.below(16).min(d.len() - from);
                let chunk = d[from..from + len].to_vec();
                let at = at.min(d.len());
                d.splice(at..at, chunk);
            }
            _ => {}
        }
    }
    d
}

fn golden(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden")
            .join(name),
    )
    .unwrap()
}

fn run(target: fn(&[u8]), seeds: &[Vec<u8>], iterations: usize, salt: u64) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ salt);
    for s in seeds {
        target(s);
    }
    for _ in 0..iterations {
        let seed = &seeds[rng.below(seeds.len())];
        target(&mutate(&mut rng, seed));
    }
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
