//! Log entries: what Vallum records, in a versioned, canonical encoding (see
//! `docs/formats/log-entry.md`).
//!
//! An entry is one line of JSON with the fields in a fixed order, no insignificant whitespace,
//! absent optional fields omitted, integers only. [`Entry::parse`] accepts exactly the bytes
//! [`Entry::encode`] produces (it re-encodes and compares), so one event has one encoding and
//! therefore one leaf hash.

use serde::{Deserialize, Serialize};

use crate::{LedgerError, malformed};

/// Version of the entry encoding, the `v` field of every entry.
pub const ENTRY_VERSION: u32 = 1;
/// Largest encoded entry Vallum writes (an entry bundle holds at most 65535 bytes per entry).
pub const MAX_ENCODED_ENTRY_BYTES: usize = 16 * 1024;

/// One log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Encoding version ([`ENTRY_VERSION`]).
    pub v: u32,
    /// When the recorded action happened, milliseconds since the Unix epoch (UTC).
    pub time_ms: i64,
    /// Who acted: `key:<access key id>`, `anonymous`, or `system:<job>` for background work.
    pub actor: String,
    /// The request that caused it, to match server logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// What happened.
    pub event: Event,
}

/// An object key as recorded: in clear, or as a keyed hash when the bucket asks for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyRef {
    /// The key itself.
    Plain(String),
    /// HMAC-SHA-256 of the key under the deployment's log key-hashing secret, hex.
    Hmac(String),
}

/// A storage site as an entry records it: enough to judge a boundary offline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteRef {
    /// Site id.
    pub id: String,
    /// ISO 3166-1 alpha-2 country of the site (`""` if the operator did not declare it).
    pub jurisdiction: String,
    /// Legal exposures of the site's operator (e.g. `us-cloud-act`), sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exposures: Vec<String>,
}

/// A bucket's boundary policy as recorded in the log (the part an offline audit replays).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BoundaryRecord {
    /// Allowed jurisdictions: countries (`FR`) or groups (`EU`, `EEA`).
    pub allowed: Vec<String>,
    /// Exposures a site must not have.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forbidden_exposures: Vec<String>,
}

/// What an entry records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Event {
    /// The log (re)started under a signer; records the site profile in force.
    LogStarted {
        /// The log's origin line.
        origin: String,
        /// The signer's verifier key.
        vkey: String,
        /// The sites this deployment writes to.
        sites: Vec<SiteRef>,
    },
    /// A bucket was created.
    BucketCreated {
        /// Bucket name.
        bucket: String,
        /// Created with object lock enabled.
        object_lock: bool,
    },
    /// A bucket was deleted.
    BucketDeleted {
        /// Bucket name.
        bucket: String,
    },
    /// A bucket setting changed (versioning, object lock, lifecycle, encryption…).
    BucketChanged {
        /// Bucket name.
        bucket: String,
        /// Which setting.
        setting: String,
        /// Its new value, summarised.
        value: String,
    },
    /// The bucket's boundary policy changed; the audit replays these in log order.
    BoundaryPolicyChanged {
        /// Bucket name.
        bucket: String,
        /// The policy now in force.
        policy: BoundaryRecord,
    },
    /// The bucket's default encryption changed.
    EncryptionPolicyChanged {
        /// Bucket name.
        bucket: String,
        /// The key the bucket now uses (none: unencrypted).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key_id: Option<String>,
    },
    /// An object version was stored (PUT, copy, completed multipart upload).
    ObjectStored {
        /// Bucket name.
        bucket: String,
        /// Object key.
        key: KeyRef,
        /// Version id (`null` in an unversioned bucket).
        version_id: String,
        /// Size in bytes.
        size: u64,
        /// The object's ETag (MD5 of the content, or of the part MD5s for multipart).
        etag: String,
        /// SHA-256 of the content, hex, when it was computed or supplied.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sha256: Option<String>,
        /// How it was written: `put`, `copy` or `multipart`.
        via: String,
        /// The sites that hold the bytes.
        sites: Vec<SiteRef>,
        /// The key the data key is wrapped with, once encryption exists.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key_id: Option<String>,
    },
    /// Object bytes were read (GET); logged before the bytes leave.
    ObjectRead {
        /// Bucket name.
        bucket: String,
        /// Object key.
        key: KeyRef,
        /// Version id.
        version_id: String,
        /// First byte served.
        first: u64,
        /// Bytes served.
        length: u64,
        /// The site read from.
        site: SiteRef,
    },
    /// An object version was deleted, or a delete marker placed.
    ObjectDeleted {
        /// Bucket name.
        bucket: String,
        /// Object key.
        key: KeyRef,
        /// The version removed (absent when only a delete marker was placed).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version_id: Option<String>,
        /// The delete marker created, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        delete_marker: Option<String>,
        /// GOVERNANCE retention was bypassed.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        bypass_governance: bool,
    },
    /// Retention or legal hold of a version changed.
    ObjectLockChanged {
        /// Bucket name.
        bucket: String,
        /// Object key.
        key: KeyRef,
        /// Version id.
        version_id: String,
        /// `retention` or `legal_hold`.
        setting: String,
        /// New value: `GOVERNANCE until <ms>`, `COMPLIANCE until <ms>`, `none`, `ON`, `OFF`.
        value: String,
        /// GOVERNANCE retention was bypassed to make the change.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        bypass_governance: bool,
    },
    /// A data key was wrapped or unwrapped by a key provider.
    KeyUsed {
        /// `wrap` or `unwrap`.
        operation: String,
        /// The key-encryption key.
        key_id: String,
        /// The provider that holds it.
        provider: String,
        /// Why: customer request, replication, lockbox grant id…
        justification: String,
        /// The bucket whose object the data key belongs to.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bucket: Option<String>,
        /// Where the provider runs, for the boundary audit.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        location: Option<SiteRef>,
    },
    /// A key lifecycle action (create, rotate, disable, enable, schedule deletion, destroy).
    KeyLifecycle {
        /// The key.
        key_id: String,
        /// The action.
        action: String,
    },
    /// Credentials or an administrative action (credentials created, metadata migrated…).
    Admin {
        /// The action.
        action: String,
        /// What it acted on.
        target: String,
    },
}

impl Event {
    /// The bucket this event concerns, if any.
    #[must_use]
    pub fn bucket(&self) -> Option<&str> {
        match self {
            Event::BucketCreated { bucket, .. }
            | Event::BucketDeleted { bucket }
            | Event::BucketChanged { bucket, .. }
            | Event::BoundaryPolicyChanged { bucket, .. }
            | Event::EncryptionPolicyChanged { bucket, .. }
            | Event::ObjectStored { bucket, .. }
            | Event::ObjectRead { bucket, .. }
            | Event::ObjectDeleted { bucket, .. }
            | Event::ObjectLockChanged { bucket, .. } => Some(bucket),
            Event::KeyUsed { bucket, .. } => bucket.as_deref(),
            Event::LogStarted { .. } | Event::KeyLifecycle { .. } | Event::Admin { .. } => None,
        }
    }

    /// The entry type name as encoded (`object_stored`, …).
    #[must_use]
    pub fn type_name(&self) -> &'static str {
        match self {
            Event::LogStarted { .. } => "log_started",
            Event::BucketCreated { .. } => "bucket_created",
            Event::BucketDeleted { .. } => "bucket_deleted",
            Event::BucketChanged { .. } => "bucket_changed",
            Event::BoundaryPolicyChanged { .. } => "boundary_policy_changed",
            Event::EncryptionPolicyChanged { .. } => "encryption_policy_changed",
            Event::ObjectStored { .. } => "object_stored",
            Event::ObjectRead { .. } => "object_read",
            Event::ObjectDeleted { .. } => "object_deleted",
            Event::ObjectLockChanged { .. } => "object_lock_changed",
            Event::KeyUsed { .. } => "key_used",
            Event::KeyLifecycle { .. } => "key_lifecycle",
            Event::Admin { .. } => "admin",
        }
    }
}

impl Entry {
    /// A version-1 entry.
    #[must_use]
    pub fn new(time_ms: i64, actor: impl Into<String>, event: Event) -> Self {
        Self {
            v: ENTRY_VERSION,
            time_ms,
            actor: actor.into(),
            request_id: None,
            event,
        }
    }

    /// The canonical encoding.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        // Serialising plain structs, strings and integers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses an entry, accepting only its canonical encoding of a known version.
    pub fn parse(bytes: &[u8]) -> Result<Self, LedgerError> {
        if bytes.len() > MAX_ENCODED_ENTRY_BYTES {
            return Err(malformed("log entry", "too large"));
        }
        let entry: Entry =
            serde_json::from_slice(bytes).map_err(|e| malformed("log entry", e.to_string()))?;
        if entry.v != ENTRY_VERSION {
            return Err(malformed(
                "log entry",
                format!("unknown entry version {}", entry.v),
            ));
        }
        if entry.encode() != bytes {
            return Err(malformed("log entry", "not in canonical form"));
        }
        Ok(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site() -> SiteRef {
        SiteRef {
            id: "paris-1".into(),
            jurisdiction: "FR".into(),
            exposures: vec![],
        }
    }

    #[test]
    fn entries_round_trip_and_only_the_canonical_form_parses() {
        let e = Entry::new(
            1_700_000_000_000,
            "key:AKIAEXAMPLE",
            Event::ObjectStored {
                bucket: "records".into(),
                key: KeyRef::Plain("a/b.txt".into()),
                version_id: "null".into(),
                size: 5,
                etag: "5d41402abc4b2a76b9719d911017c592".into(),
                sha256: None,
                via: "put".into(),
                sites: vec![site()],
                key_id: None,
            },
        );
        let bytes = e.encode();
        assert_eq!(Entry::parse(&bytes).unwrap(), e);
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.starts_with(r#"{"v":1,"time_ms":1700000000000,"actor":"key:AKIAEXAMPLE","event":{"type":"object_stored","bucket":"records","key":{"plain":"a/b.txt"}"#), "{text}");
        // Whitespace, reordered fields, unknown fields and unknown versions are refused.
        let spaced = text.replacen(':', ": ", 1);
        assert!(Entry::parse(spaced.as_bytes()).is_err());
        let reordered = text.replacen(
            r#"{"v":1,"time_ms":1700000000000,"#,
            r#"{"time_ms":1700000000000,"v":1,"#,
            1,
        );
        assert!(Entry::parse(reordered.as_bytes()).is_err());
        let unknown = text.replacen(r#""via":"put""#, r#""via":"put","extra":1"#, 1);
        assert!(Entry::parse(unknown.as_bytes()).is_err());
        let v2 = text.replacen(r#""v":1"#, r#""v":2"#, 1);
        assert!(Entry::parse(v2.as_bytes()).is_err());
        assert!(Entry::parse(b"").is_err());
        assert!(Entry::parse(&vec![b' '; MAX_ENCODED_ENTRY_BYTES + 1]).is_err());
    }
}
