//! A witness (C2SP *tlog-witness*, "add-checkpoint"): it keeps the latest checkpoint it
//! cosigned for each log it knows, verifies the log's signature and a consistency proof from
//! that checkpoint before cosigning a new one (C2SP *tlog-cosignature*), and refuses forks
//! and rollbacks. State is persisted (atomically with the check) before it answers.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::checkpoint::Checkpoint;
use crate::cosignature::Cosigner;
use crate::merkle::{Hash, empty_root, verify_consistency};
use crate::note::{Note, Verifier};
use crate::unb64;

/// Most consistency proof lines a request may carry (tlog-witness).
pub const MAX_PROOF_LINES: usize = 63;
/// Largest add-checkpoint request body.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// Why a checkpoint was not cosigned, with the HTTP status tlog-witness assigns.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WitnessError {
    /// The request is malformed, or old size > checkpoint size (400).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// No trusted signature (403).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// Unknown origin (404).
    #[error("unknown log origin {0:?}")]
    UnknownOrigin(String),
    /// The old size is not the size the witness last cosigned (409); carries that size.
    #[error("conflict: the latest cosigned size is {0}")]
    Conflict(u64),
    /// The consistency proof does not verify, or a same-size root differs (422): a fork.
    #[error("inconsistent: {0}")]
    Inconsistent(String),
    /// The witness could not persist its state (500).
    #[error("storage: {0}")]
    Storage(String),
}

impl WitnessError {
    /// The HTTP status for this refusal.
    #[must_use]
    pub fn status(&self) -> u16 {
        match self {
            WitnessError::BadRequest(_) => 400,
            WitnessError::Forbidden(_) => 403,
            WitnessError::UnknownOrigin(_) => 404,
            WitnessError::Conflict(_) => 409,
            WitnessError::Inconsistent(_) => 422,
            WitnessError::Storage(_) => 500,
        }
    }
}

/// A parsed add-checkpoint request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddCheckpoint {
    /// The size the client believes the witness last cosigned.
    pub old_size: u64,
    /// Consistency proof from `old_size`.
    pub proof: Vec<Hash>,
    /// The checkpoint note (text and signatures).
    pub checkpoint: Vec<u8>,
}

impl AddCheckpoint {
    /// Parses a request body: `old <N>\n`, proof lines, an empty line, the checkpoint.
    pub fn parse(body: &[u8]) -> Result<Self, WitnessError> {
        let bad = |why: &str| WitnessError::BadRequest(why.to_owned());
        if body.len() > MAX_REQUEST_BYTES {
            return Err(bad("request too large"));
        }
        let text = std::str::from_utf8(body).map_err(|_| bad("not UTF-8"))?;
        let (head, checkpoint) = text
            .split_once("\n\n")
            .ok_or_else(|| bad("no empty line before the checkpoint"))?;
        let mut lines = head.split('\n');
        let old = lines
            .next()
            .and_then(|l| l.strip_prefix("old "))
            .ok_or_else(|| bad("first line must be `old <size>`"))?;
        if old.is_empty()
            || !old.bytes().all(|b| b.is_ascii_digit())
            || (old.len() > 1 && old.starts_with('0'))
        {
            return Err(bad("old size is not a canonical decimal"));
        }
        let old_size = old.parse().map_err(|_| bad("old size out of range"))?;
        let proof = lines
            .map(|l| {
                unb64(l)
                    .and_then(|v| Hash::try_from(v).ok())
                    .ok_or_else(|| bad("a proof line is not a base64 hash"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if proof.len() > MAX_PROOF_LINES {
            return Err(bad("more than 63 proof lines"));
        }
        Ok(Self {
            old_size,
            proof,
            checkpoint: checkpoint.as_bytes().to_vec(),
        })
    }

    /// Encodes the request body.
    #[must_use]
    pub fn to_body(&self) -> Vec<u8> {
        let mut out = format!("old {}\n", self.old_size);
        for h in &self.proof {
            out.push_str(&crate::b64(h));
            out.push('\n');
        }
        out.push('\n');
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.checkpoint);
        bytes
    }
}

/// The witness.
pub struct Witness {
    cosigner: Cosigner,
    logs: HashMap<String, Verifier>,
    dir: PathBuf,
    lock: Mutex<()>,
}

impl std::fmt::Debug for Witness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Witness")
            .field("name", &self.cosigner.signer().name())
            .field("logs", &self.logs.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn state_file(dir: &Path, origin: &str) -> PathBuf {
    use sha2::Digest;
    let h = sha2::Sha256::digest(origin.as_bytes());
    let name: String = h[..16].iter().map(|b| format!("{b:02x}")).collect();
    dir.join(format!("{name}.checkpoint"))
}

impl Witness {
    /// A witness cosigning with `cosigner` for the logs whose keys are given (the key name is
    /// the log's origin), keeping state in `dir`.
    pub fn new(cosigner: Cosigner, logs: Vec<Verifier>, dir: &Path) -> Result<Self, WitnessError> {
        fs::create_dir_all(dir).map_err(|e| WitnessError::Storage(e.to_string()))?;
        Ok(Self {
            cosigner,
            logs: logs.into_iter().map(|v| (v.name.clone(), v)).collect(),
            dir: dir.to_path_buf(),
            lock: Mutex::new(()),
        })
    }

    /// The witness's verifier key (cosignature/v1).
    #[must_use]
    pub fn vkey(&self) -> String {
        self.cosigner.verifier().to_vkey()
    }

    /// The latest checkpoint cosigned for `origin`, if any.
    pub fn latest(&self, origin: &str) -> Result<Option<Checkpoint>, WitnessError> {
        match fs::read_to_string(state_file(&self.dir, origin)) {
            Ok(text) => Checkpoint::parse(&text)
                .map(Some)
                .map_err(|e| WitnessError::Storage(format!("state of {origin:?}: {e}"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(WitnessError::Storage(e.to_string())),
        }
    }

    /// Handles an add-checkpoint request body; returns the cosignature lines to send back.
    pub fn add_checkpoint(&self, body: &[u8], now_secs: u64) -> Result<String, WitnessError> {
        let req = AddCheckpoint::parse(body)?;
        let note =
            Note::parse(&req.checkpoint).map_err(|e| WitnessError::BadRequest(e.to_string()))?;
        let cp =
            Checkpoint::parse(&note.text).map_err(|e| WitnessError::BadRequest(e.to_string()))?;
        let key = self
            .logs
            .get(&cp.origin)
            .ok_or_else(|| WitnessError::UnknownOrigin(cp.origin.clone()))?;
        crate::note::open(&note, std::slice::from_ref(key))
            .map_err(|e| WitnessError::Forbidden(e.to_string()))?;
        if req.old_size > cp.size {
            return Err(WitnessError::BadRequest(format!(
                "old size {} is larger than the checkpoint size {}",
                req.old_size, cp.size
            )));
        }
        // Check and persist atomically: no two requests interleave here.
        let _guard = self
            .lock
            .lock()
            .map_err(|_| WitnessError::Storage("lock poisoned".into()))?;
        let latest = self.latest(&cp.origin)?;
        let latest_size = latest.as_ref().map_or(0, |c| c.size);
        if req.old_size != latest_size {
            return Err(WitnessError::Conflict(latest_size));
        }
        if cp.size == 0 && cp.root != empty_root() {
            return Err(WitnessError::Inconsistent(
                "a checkpoint of size 0 must have the empty root".into(),
            ));
        }
        match &latest {
            None => {
                if !req.proof.is_empty() {
                    return Err(WitnessError::Inconsistent(
                        "a proof from size 0 must be empty".into(),
                    ));
                }
            }
            Some(old) if old.size == cp.size => {
                if old.root != cp.root {
                    self.keep_evidence(body, now_secs);
                    return Err(WitnessError::Inconsistent(format!(
                        "fork: another root for size {} was cosigned before",
                        cp.size
                    )));
                }
            }
            Some(old) => {
                if verify_consistency(old.size, cp.size, &old.root, &cp.root, &req.proof).is_err() {
                    self.keep_evidence(body, now_secs);
                    return Err(WitnessError::Inconsistent(format!(
                        "fork: size {} is not consistent with the cosigned size {} (the log changed an entry below index {})",
                        cp.size, old.size, old.size
                    )));
                }
            }
        }
        self.persist(&cp)?;
        let sig = self.cosigner.cosign(&note.text, now_secs);
        Ok(sig.line())
    }

    fn persist(&self, cp: &Checkpoint) -> Result<(), WitnessError> {
        let path = state_file(&self.dir, &cp.origin);
        let tmp = path.with_extension("tmp");
        let storage = |e: std::io::Error| WitnessError::Storage(e.to_string());
        let mut f = fs::File::create(&tmp).map_err(storage)?;
        f.write_all(cp.to_text().as_bytes()).map_err(storage)?;
        f.sync_all().map_err(storage)?;
        fs::rename(&tmp, &path).map_err(storage)?;
        fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(storage)?;
        Ok(())
    }

    /// Keeps a log-signed request that failed a consistency check: proof of misbehaviour.
    fn keep_evidence(&self, body: &[u8], now_secs: u64) {
        let dir = self.dir.join("evidence");
        if fs::create_dir_all(&dir).is_ok() {
            let _ = fs::write(dir.join(format!("{now_secs}-{}.req", body.len())), body);
        }
        tracing_free_warn(&format!(
            "witness refused an inconsistent checkpoint; evidence kept in {}",
            dir.display()
        ));
    }
}

/// The ledger has no logging dependency; refusals are reported on stderr.
fn tracing_free_warn(msg: &str) {
    eprintln!("warning: {msg}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{self, MemoryTree, consistency_proof};
    use crate::note::Signer;

    fn tree(entries: &[&str]) -> MemoryTree {
        let mut t = MemoryTree::new();
        entries.iter().for_each(|e| t.push(e.as_bytes()));
        t
    }

    fn request(log: &Signer, t: &MemoryTree, old: u64, size: u64) -> Vec<u8> {
        let cp = Checkpoint {
            origin: log.name().into(),
            size,
            root: merkle::root(t, size).unwrap(),
            extensions: vec![],
        };
        AddCheckpoint {
            old_size: old,
            proof: if old == 0 || old > size {
                vec![]
            } else {
                consistency_proof(t, old, size).unwrap()
            },
            checkpoint: cp.sign(log).to_text().into_bytes(),
        }
        .to_body()
    }

    #[test]
    fn cosigns_consistent_checkpoints_and_refuses_forks_and_rollbacks() {
        let dir = tempfile::tempdir().unwrap();
        let log = Signer::generate("vallum.test/log").unwrap();
        let logv = Verifier::parse(&log.vkey()).unwrap();
        let w = Witness::new(
            Cosigner::new(Signer::generate("witness.test/w1").unwrap()),
            vec![logv.clone()],
            dir.path(),
        )
        .unwrap();
        let good = tree(&["a", "b", "c", "d", "e"]);
        let lines = w.add_checkpoint(&request(&log, &good, 0, 3), 100).unwrap();
        // The cosignature verifies as a note signature over the checkpoint.
        let cp_text = Checkpoint {
            origin: log.name().into(),
            size: 3,
            root: merkle::root(&good, 3).unwrap(),
            extensions: vec![],
        }
        .to_text();
        let note = Note::parse(format!("{cp_text}\n{lines}").as_bytes()).unwrap();
        let wv = Verifier::parse(&w.vkey()).unwrap();
        crate::note::open(&note, &[wv]).unwrap();
        // A stale old size: 409 with the size.
        assert_eq!(
            w.add_checkpoint(&request(&log, &good, 0, 5), 101),
            Err(WitnessError::Conflict(3))
        );
        assert_eq!(WitnessError::Conflict(3).status(), 409);
        w.add_checkpoint(&request(&log, &good, 3, 5), 102).unwrap();
        // A fork: entry 1 rewritten. Same size, other root → 422; larger size → proof fails.
        let forked = tree(&["a", "X", "c", "d", "e", "f"]);
        let e = w
            .add_checkpoint(&request(&log, &forked, 5, 5), 103)
            .unwrap_err();
        assert_eq!(e.status(), 422, "{e}");
        let mut body = request(&log, &forked, 5, 6);
        let e = w.add_checkpoint(&body, 104).unwrap_err();
        assert_eq!(e.status(), 422);
        assert!(e.to_string().contains("below index 5"), "{e}");
        assert!(dir.path().join("evidence").read_dir().unwrap().count() >= 2);
        // Old size above the checkpoint: 400. Unknown origin: 404. Not signed by the log: 403.
        assert_eq!(
            w.add_checkpoint(&request(&log, &good, 5, 3), 105)
                .unwrap_err()
                .status(),
            400
        );
        let stranger = Signer::generate("other.test/log").unwrap();
        assert_eq!(
            w.add_checkpoint(&request(&stranger, &good, 0, 3), 106)
                .unwrap_err()
                .status(),
            404
        );
        let impostor = Signer::generate("vallum.test/log").unwrap();
        assert_eq!(
            w.add_checkpoint(&request(&impostor, &good, 5, 5), 107)
                .unwrap_err()
                .status(),
            403
        );
        // Garbage is a 400, and the state survived all of it (and a restart).
        body.truncate(10);
        assert_eq!(w.add_checkpoint(&body, 108).unwrap_err().status(), 400);
        drop(w);
        let w = Witness::new(
            Cosigner::new(Signer::generate("witness.test/w1").unwrap()),
            vec![logv],
            dir.path(),
        )
        .unwrap();
        assert_eq!(w.latest(log.name()).unwrap().unwrap().size, 5);
    }
}
