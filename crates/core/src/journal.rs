//! The journal: how the domain records what happens into the transparency log.
//!
//! [`ObjectService`](crate::service::ObjectService) builds a log entry for every write, read,
//! delete and configuration change and hands it to a [`Journal`] before it answers: a write
//! after its commit, a GET before its first byte leaves. If the journal fails, the request
//! fails. The server's journal is the durable transparency log; tests may use
//! [`MemoryJournal`].
//!
//! Who acts comes from the [`RequestContext`](crate::context::RequestContext) each acting call
//! takes as an argument.

use std::sync::Mutex;

use async_trait::async_trait;
use hmac::{KeyInit, Mac};
use zeroize::Zeroizing;

pub use vallum_ledger::entry::{BoundaryRecord, Entry, Event, KeyRef, SiteRef};

/// Why the journal could not record an entry.
#[derive(Debug, thiserror::Error)]
#[error("the transparency log cannot be written: {0}")]
pub struct JournalError(pub String);

/// Records entries durably.
#[async_trait]
pub trait Journal: Send + Sync {
    /// Records `entries` (in order); returns once they are durable.
    async fn record(&self, entries: Vec<Entry>) -> Result<(), JournalError>;
}

/// Keeps entries in memory (tests, tools). Not durable.
#[derive(Debug, Default)]
pub struct MemoryJournal {
    entries: Mutex<Vec<Entry>>,
    failing: std::sync::atomic::AtomicBool,
}

impl MemoryJournal {
    /// The entries recorded so far.
    #[must_use]
    pub fn entries(&self) -> Vec<Entry> {
        self.entries.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// Makes every later `record` fail (to test that requests fail with the log).
    pub fn fail_from_now_on(&self) {
        self.failing
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[async_trait]
impl Journal for MemoryJournal {
    async fn record(&self, entries: Vec<Entry>) -> Result<(), JournalError> {
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(JournalError("memory journal set to fail".into()));
        }
        self.entries
            .lock()
            .map_err(|_| JournalError("poisoned".into()))?
            .extend(entries);
        Ok(())
    }
}

/// Records events as entries by a context's actor, at the clock's time, into a journal: what
/// every service that acts (objects, identity, keys) logs through.
#[derive(Clone)]
pub struct Recorder {
    journal: std::sync::Arc<dyn Journal>,
    clock: std::sync::Arc<dyn crate::clock::Clock>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").finish_non_exhaustive()
    }
}

impl Recorder {
    /// Records into `journal`, timed by `clock`.
    #[must_use]
    pub fn new(
        journal: std::sync::Arc<dyn Journal>,
        clock: std::sync::Arc<dyn crate::clock::Clock>,
    ) -> Self {
        Self { journal, clock }
    }

    /// [`Self::record`] for a service's action: when the entries cannot be written the action
    /// fails, as `Unavailable` (and says so in the server's log), for nothing is done unlogged.
    pub async fn record_or_fail(
        &self,
        ctx: &crate::context::RequestContext,
        events: Vec<Event>,
    ) -> crate::Result<()> {
        self.record(ctx, events).await.map_err(|e| {
            tracing::error!(error = %e, "request failed: its log entry could not be written");
            crate::Error::Unavailable(e.to_string())
        })
    }

    /// Records `events` in order, durably, in one batch, by `ctx`'s actor for its request.
    pub async fn record(
        &self,
        ctx: &crate::context::RequestContext,
        events: Vec<Event>,
    ) -> Result<(), JournalError> {
        let now = self.clock.now_ms();
        let entries = events
            .into_iter()
            .map(|event| {
                let mut e = Entry::new(now, ctx.actor.clone(), event);
                e.request_id.clone_from(&ctx.request_id);
                e
            })
            .collect();
        self.journal.record(entries).await
    }
}

/// Which buckets record object keys as keyed hashes, and the secret for it.
pub struct KeyPrivacy {
    secret: Zeroizing<[u8; 32]>,
    buckets: Vec<String>,
}

impl std::fmt::Debug for KeyPrivacy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPrivacy")
            .field("buckets", &self.buckets)
            .finish_non_exhaustive()
    }
}

impl KeyPrivacy {
    /// Hash the keys of `buckets` (`*`: every bucket) under `secret`.
    #[must_use]
    pub fn new(secret: Zeroizing<[u8; 32]>, buckets: Vec<String>) -> Self {
        Self { secret, buckets }
    }

    /// No bucket hashes its keys.
    #[must_use]
    pub fn none() -> Self {
        Self::new(Zeroizing::new([0; 32]), Vec::new())
    }

    /// The key as the log records it.
    #[must_use]
    pub fn key_ref(&self, bucket: &str, key: &str) -> KeyRef {
        if !self.buckets.iter().any(|b| b == "*" || b == bucket) {
            return KeyRef::Plain(key.to_owned());
        }
        KeyRef::Hmac(keyed_hash(&self.secret, bucket, key))
    }
}

/// HMAC-SHA-256 over `bucket 0x00 key`, hex; what an auditor holding the secret recomputes to
/// find a given object's entries.
#[must_use]
pub fn keyed_hash(secret: &[u8; 32], bucket: &str, key: &str) -> String {
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(bucket.as_bytes());
    mac.update(&[0]);
    mac.update(key.as_bytes());
    crate::digest::hex(&mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_can_be_hashed() {
        let p = KeyPrivacy::new(Zeroizing::new([7; 32]), vec!["private".into()]);
        assert_eq!(p.key_ref("public", "a"), KeyRef::Plain("a".into()));
        let KeyRef::Hmac(h) = p.key_ref("private", "a") else {
            panic!("expected a hash")
        };
        assert_eq!(h.len(), 64);
        assert_ne!(KeyRef::Hmac(h.clone()), p.key_ref("private", "b"));
        assert_ne!(h, keyed_hash(&[8; 32], "private", "a"));
        // Computed independently (Python's hmac module) over "private" 0x00 "a".
        assert_eq!(
            h,
            "2f39d7c072b9b20672580e50a67831d37ca4eb8c9c54356d3c1fdb819a56d0cc"
        );
    }
}
