//! The journal: how the domain records what happens into the transparency log.
//!
//! [`ObjectService`](crate::service::ObjectService) builds a log entry for every write, read,
//! delete and configuration change and hands it to a [`Journal`] before it answers: a write
//! after its commit, a GET before its first byte leaves. If the journal fails, the request
//! fails. The server's journal is the durable transparency log; tests may use
//! [`MemoryJournal`].
//!
//! Who acts is request context, not a parameter of every domain call: the HTTP layer opens a
//! [`RequestContext`] scope for each request and fills in the principal once authentication
//! has resolved it; background jobs run under `system:<job>`.

use std::sync::{Arc, Mutex};

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

/// Per-request context: who acts, and the request id.
#[derive(Debug, Default)]
pub struct RequestContext {
    actor: Mutex<Option<String>>,
    /// The lockbox grant the actor works under, if any: the justification of key use.
    grant: Mutex<Option<String>>,
    /// The guardians' signed approvals of that grant, if they signed: passed to key services.
    approvals: Mutex<Option<String>>,
    request_id: Option<String>,
    /// SSE-C keys the request carries: for the object it names, and for a copy's source.
    customer_keys: Mutex<CustomerKeys>,
}

/// The customer-provided keys of a request (never stored).
#[derive(Debug, Clone, Default)]
pub struct CustomerKeys {
    /// `x-amz-server-side-encryption-customer-*`: the target object's key.
    pub target: Option<vallum_crypto::customer::CustomerKey>,
    /// `x-amz-copy-source-server-side-encryption-customer-*`: the copy source's key.
    pub source: Option<vallum_crypto::customer::CustomerKey>,
}

/// Sets the customer-provided keys of the current request.
pub fn set_customer_keys(keys: CustomerKeys) {
    let _ = CONTEXT.try_with(|c| {
        if let Ok(mut k) = c.customer_keys.lock() {
            *k = keys;
        }
    });
}

/// The customer-provided keys of the current request.
#[must_use]
pub fn customer_keys() -> CustomerKeys {
    CONTEXT
        .try_with(|c| {
            c.customer_keys
                .lock()
                .map(|k| k.clone())
                .unwrap_or_default()
        })
        .unwrap_or_default()
}

impl RequestContext {
    /// A context for the request `request_id`; the actor is set once known.
    #[must_use]
    pub fn new(request_id: Option<String>) -> Arc<Self> {
        Arc::new(Self {
            actor: Mutex::new(None),
            grant: Mutex::new(None),
            approvals: Mutex::new(None),
            request_id,
            customer_keys: Mutex::default(),
        })
    }

    /// A context for background work by `job`.
    #[must_use]
    pub fn system(job: &str) -> Arc<Self> {
        let ctx = Self::new(None);
        ctx.set_actor(format!("system:{job}"));
        ctx
    }

    /// Records the lockbox grant the actor works under.
    pub fn set_grant(&self, grant: Option<String>) {
        if let Ok(mut g) = self.grant.lock() {
            *g = grant;
        }
    }

    /// Records who acts.
    pub fn set_actor(&self, actor: String) {
        if let Ok(mut a) = self.actor.lock() {
            *a = Some(actor);
        }
    }
}

tokio::task_local! {
    static CONTEXT: Arc<RequestContext>;
}

/// Runs `fut` with `ctx` as its request context.
pub async fn in_context<F: std::future::Future>(ctx: Arc<RequestContext>, fut: F) -> F::Output {
    CONTEXT.scope(ctx, fut).await
}

/// Sets the lockbox grant the current request works under.
pub fn set_grant(grant: Option<String>) {
    let _ = CONTEXT.try_with(|c| {
        if let Ok(mut g) = c.grant.lock() {
            *g = grant;
        }
    });
}

/// Sets the guardians' signed approvals of the current request's grant.
pub fn set_grant_approvals(approvals: Option<String>) {
    let _ = CONTEXT.try_with(|c| {
        if let Ok(mut a) = c.approvals.lock() {
            *a = approvals;
        }
    });
}

/// The guardians' signed approvals of the current request's grant.
#[must_use]
pub fn current_grant_approvals() -> Option<String> {
    CONTEXT
        .try_with(|c| c.approvals.lock().ok().and_then(|a| a.clone()))
        .ok()
        .flatten()
}

/// The lockbox grant the current request works under.
#[must_use]
pub fn current_grant() -> Option<String> {
    CONTEXT
        .try_with(|c| c.grant.lock().ok().and_then(|g| g.clone()))
        .ok()
        .flatten()
}

/// Sets the actor of the current request, if there is one.
pub fn set_actor(actor: String) {
    let _ = CONTEXT.try_with(|c| c.set_actor(actor));
}

/// The actor and request id of the current context; `anonymous` when no principal was
/// authenticated, `unattributed` outside any request context.
#[must_use]
pub fn current() -> (String, Option<String>) {
    CONTEXT
        .try_with(|c| {
            let actor = c
                .actor
                .lock()
                .ok()
                .and_then(|a| a.clone())
                .unwrap_or_else(|| "anonymous".into());
            (actor, c.request_id.clone())
        })
        .unwrap_or_else(|_| ("unattributed".into(), None))
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

    #[tokio::test]
    async fn context_carries_the_actor_and_keys_can_be_hashed() {
        assert_eq!(current().0, "unattributed");
        let ctx = RequestContext::new(Some("req-1".into()));
        let seen = in_context(Arc::clone(&ctx), async {
            let before = current();
            set_actor("key:AKIA1".into());
            (before, current())
        })
        .await;
        assert_eq!(seen.0, ("anonymous".into(), Some("req-1".into())));
        assert_eq!(seen.1, ("key:AKIA1".into(), Some("req-1".into())));
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
