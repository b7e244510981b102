//! Versioning and object lock: the states, the rules, and the checks every metadata store
//! applies *inside* its transaction, so that no interleaving of requests can remove a locked
//! version or shorten a COMPLIANCE retention.
//!
//! The rules (S3's, made strict where S3 leaves room):
//! * A bucket is `Unversioned` until versioning is first enabled; afterwards it is `Enabled` or
//!   `Suspended`, never `Unversioned` again. A bucket with object lock cannot be suspended.
//! * A version is *protected* while it has a legal hold or a retention date in the future.
//!   A protected version cannot be removed by anyone. The only exception is a GOVERNANCE
//!   retention (never a legal hold, never COMPLIANCE), which a request that carries
//!   `x-amz-bypass-governance-retention: true` *and* holds the permission for it may bypass.
//! * A COMPLIANCE retention can be extended, never shortened, removed or turned into
//!   GOVERNANCE — by any principal, the root account and operators included, with or without
//!   the bypass header. The check is in [`check_retention_change`]; there is no other code
//!   path that writes a retention.

use crate::error::Invalid;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use vallum_types::limits::{
    MAX_OBJECT_TAGS, MAX_RETENTION_DAYS, MAX_TAG_KEY_CHARS, MAX_TAG_VALUE_CHARS,
};

use crate::error::{MetaError, MetaResult};

/// The version id of the version a non-versioned write creates.
pub const NULL_VERSION: &str = "null";
const DAY_MS: i64 = 86_400_000;

/// A bucket's versioning state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Versioning {
    /// Never enabled: every write replaces the key's `null` version.
    #[default]
    Unversioned,
    /// Every write creates a new version.
    Enabled,
    /// Writes replace the `null` version; existing versions are kept.
    Suspended,
}

impl Versioning {
    /// The name stored in the metadata store and shown by S3 (`Enabled`, `Suspended`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Versioning::Unversioned => "Unversioned",
            Versioning::Enabled => "Enabled",
            Versioning::Suspended => "Suspended",
        }
    }

    /// Parses a stored name.
    pub fn parse(text: &str) -> MetaResult<Self> {
        match text {
            "Unversioned" => Ok(Versioning::Unversioned),
            "Enabled" => Ok(Versioning::Enabled),
            "Suspended" => Ok(Versioning::Suspended),
            other => Err(MetaError::Corrupt(format!("versioning state {other}"))),
        }
    }
}

/// Object lock retention modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RetentionMode {
    /// Bypassable with `x-amz-bypass-governance-retention` and the permission for it.
    Governance,
    /// Not bypassable by anyone until the date passes.
    Compliance,
}

impl RetentionMode {
    /// The S3 name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            RetentionMode::Governance => "GOVERNANCE",
            RetentionMode::Compliance => "COMPLIANCE",
        }
    }
}

/// A version's retention: it may not be removed before `until_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// The mode.
    pub mode: RetentionMode,
    /// Retain-until date, ms since the epoch.
    pub until_ms: i64,
}

/// The object lock state of one version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectLock {
    /// Retention, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
    /// Legal hold: protects the version regardless of retention, until removed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub legal_hold: bool,
}

impl ObjectLock {
    /// True when nothing protects the version at `now_ms` (retention past or absent, no hold).
    #[must_use]
    pub fn is_free(&self, now_ms: i64) -> bool {
        !self.legal_hold && self.retention.is_none_or(|r| r.until_ms <= now_ms)
    }

    /// Whether the version may be removed at `now_ms`; the error names the reason.
    /// `bypass_governance` is true only when the request carried the bypass header *and* the
    /// caller holds the permission to bypass.
    pub fn check_removable(&self, now_ms: i64, bypass_governance: bool) -> MetaResult<()> {
        if self.legal_hold {
            return Err(MetaError::Locked(
                "the object version is under a legal hold".into(),
            ));
        }
        match self.retention {
            Some(r) if r.until_ms > now_ms => match r.mode {
                RetentionMode::Compliance => Err(MetaError::Locked(format!(
                    "the object version is under COMPLIANCE retention until {}",
                    r.until_ms
                ))),
                RetentionMode::Governance if bypass_governance => Ok(()),
                RetentionMode::Governance => Err(MetaError::Locked(format!(
                    "the object version is under GOVERNANCE retention until {}; bypassing it needs x-amz-bypass-governance-retention and the permission to bypass",
                    r.until_ms
                ))),
            },
            _ => Ok(()),
        }
    }
}

/// Whether a version's retention may change from `old` to `new` at `now_ms`.
/// Extending (same mode, later date) is always allowed, as is anything on an expired
/// retention. Shortening, removing, or changing the mode of an active GOVERNANCE retention
/// (to COMPLIANCE too) needs the bypass; of an active COMPLIANCE retention, it is refused to everyone.
pub fn check_retention_change(
    old: Option<Retention>,
    new: Option<Retention>,
    now_ms: i64,
    bypass_governance: bool,
) -> MetaResult<()> {
    let Some(old) = old.filter(|o| o.until_ms > now_ms) else {
        return Ok(());
    };
    // Any other change is an override, GOVERNANCE to COMPLIANCE included (as in S3).
    let extends = new.is_some_and(|n| n.mode == old.mode && n.until_ms >= old.until_ms);
    if extends {
        return Ok(());
    }
    match old.mode {
        RetentionMode::Compliance => Err(MetaError::Locked(format!(
            "COMPLIANCE retention until {} can only be extended",
            old.until_ms
        ))),
        RetentionMode::Governance if bypass_governance => Ok(()),
        RetentionMode::Governance => Err(MetaError::Locked(format!(
            "shortening or removing GOVERNANCE retention until {} needs x-amz-bypass-governance-retention and the permission to bypass",
            old.until_ms
        ))),
    }
}

/// A bucket's default retention: applied to every new version that names none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultRetention {
    /// The mode.
    pub mode: RetentionMode,
    /// Retention period in days (exactly one of `days` and `years`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days: Option<u32>,
    /// Retention period in years (365 days each, as S3 counts them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub years: Option<u32>,
}

impl DefaultRetention {
    /// Checks that exactly one positive period is given and it is not absurdly long.
    pub fn validate(&self) -> Result<(), Invalid> {
        let days = match (self.days, self.years) {
            (Some(d), None) => d,
            (None, Some(y)) => y.saturating_mul(365),
            _ => {
                return Err(Invalid(
                    "a default retention names exactly one of Days and Years".to_owned(),
                ));
            }
        };
        if days == 0 || days > MAX_RETENTION_DAYS {
            return Err(Invalid(format!(
                "the default retention period must be between 1 and {MAX_RETENTION_DAYS} days"
            )));
        }
        Ok(())
    }

    /// The retention a version written at `now_ms` gets.
    #[must_use]
    pub fn retention_from(&self, now_ms: i64) -> Retention {
        let days = i64::from(
            self.days
                .unwrap_or_else(|| self.years.unwrap_or(0).saturating_mul(365)),
        );
        Retention {
            mode: self.mode,
            until_ms: now_ms.saturating_add(days.saturating_mul(DAY_MS)),
        }
    }
}

/// A bucket's object lock configuration. Its presence means object lock is enabled, which
/// cannot be undone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectLockConfig {
    /// Default retention for new versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_retention: Option<DefaultRetention>,
}

/// Object tags, key → value.
pub type Tags = BTreeMap<String, String>;

/// Checks an object's tag set against S3's limits.
pub fn validate_tags(tags: &Tags) -> Result<(), Invalid> {
    validate_tag_set(tags, MAX_OBJECT_TAGS, "Object")
}

/// Checks a tag set of at most `max` tags (`what`: Object or Bucket) against S3's rules for
/// keys and values.
pub fn validate_tag_set(tags: &Tags, max: usize, what: &str) -> Result<(), Invalid> {
    if tags.len() > max {
        return Err(Invalid(format!("{what} tags cannot be greater than {max}")));
    }
    for (k, v) in tags {
        if k.is_empty() || k.chars().count() > MAX_TAG_KEY_CHARS {
            return Err(Invalid(format!(
                "The TagKey you have provided is invalid: it must be 1 to {MAX_TAG_KEY_CHARS} characters"
            )));
        }
        if v.chars().count() > MAX_TAG_VALUE_CHARS {
            return Err(Invalid(format!(
                "The TagValue you have provided is invalid: it must be at most {MAX_TAG_VALUE_CHARS} characters"
            )));
        }
    }
    Ok(())
}

/// A fresh version id for a version ordered at `seq`: 16 hex digits of `seq` then 16 random
/// ones, so ids sort by creation and never collide.
#[must_use]
pub fn new_version_id(seq: i64) -> String {
    let mut random = [0u8; 8];
    // A failing OS random source is not something to continue past.
    getrandom::fill(&mut random).expect("the OS random source failed");
    format!(
        "{:016x}{:016x}",
        u64::try_from(seq).unwrap_or(0),
        u64::from_be_bytes(random)
    )
}

/// True for a version id Vallum could have issued (`null` or 32 lower-case hex digits).
#[must_use]
pub fn is_valid_version_id(text: &str) -> bool {
    text == NULL_VERSION
        || (text.len() == 32
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

/// The order key of a new latest version: after the current latest, and in microseconds of
/// the wall clock when that is later (so orders read as times on a healthy clock).
#[must_use]
pub fn next_seq(latest_seq: Option<i64>, now_ms: i64) -> i64 {
    let by_clock = now_ms.saturating_mul(1000);
    latest_seq.map_or(by_clock, |s| by_clock.max(s.saturating_add(1)))
}

/// A change to one version's mutable state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionUpdate {
    /// Put/DeleteObjectTagging.
    Tags(Tags),
    /// PutObjectRetention.
    Retention {
        /// The new retention (`None` removes it).
        retention: Option<Retention>,
        /// The request may bypass GOVERNANCE (header present and permission held).
        bypass_governance: bool,
    },
    /// PutObjectLegalHold.
    LegalHold(bool),
}

/// Applies `update` to a version's tags and lock state if the rules allow it.
pub fn apply_version_update(
    tags: &mut Tags,
    lock: &mut ObjectLock,
    update: &VersionUpdate,
    bucket_has_lock: bool,
    now_ms: i64,
) -> MetaResult<()> {
    match update {
        VersionUpdate::Tags(new) => {
            tags.clone_from(new);
            Ok(())
        }
        VersionUpdate::Retention {
            retention,
            bypass_governance,
        } => {
            if !bucket_has_lock {
                return Err(MetaError::InvalidBucketState(
                    "Bucket is missing Object Lock Configuration".into(),
                ));
            }
            check_retention_change(lock.retention, *retention, now_ms, *bypass_governance)?;
            lock.retention = *retention;
            Ok(())
        }
        VersionUpdate::LegalHold(on) => {
            if !bucket_has_lock {
                return Err(MetaError::InvalidBucketState(
                    "Bucket is missing Object Lock Configuration".into(),
                ));
            }
            lock.legal_hold = *on;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ret(mode: RetentionMode, until_ms: i64) -> Option<Retention> {
        Some(Retention { mode, until_ms })
    }

    #[test]
    fn compliance_cannot_be_shortened_removed_or_downgraded_even_with_bypass() {
        let old = ret(RetentionMode::Compliance, 2_000);
        for bypass in [false, true] {
            assert!(
                check_retention_change(old, ret(RetentionMode::Compliance, 1_999), 1_000, bypass)
                    .is_err()
            );
            assert!(check_retention_change(old, None, 1_000, bypass).is_err());
            assert!(
                check_retention_change(old, ret(RetentionMode::Governance, 3_000), 1_000, bypass)
                    .is_err()
            );
            assert!(
                check_retention_change(old, ret(RetentionMode::Compliance, 2_500), 1_000, bypass)
                    .is_ok()
            );
        }
        // Once expired it is no longer binding.
        assert!(check_retention_change(old, None, 2_000, false).is_ok());
    }

    #[test]
    fn governance_changes_need_the_bypass() {
        let old = ret(RetentionMode::Governance, 2_000);
        assert!(check_retention_change(old, None, 1_000, false).is_err());
        assert!(check_retention_change(old, None, 1_000, true).is_ok());
        assert!(
            check_retention_change(old, ret(RetentionMode::Governance, 1_500), 1_000, false)
                .is_err()
        );
        assert!(
            check_retention_change(old, ret(RetentionMode::Governance, 2_500), 1_000, false)
                .is_ok()
        );
        // Turning GOVERNANCE into COMPLIANCE overrides it too: bypass only.
        assert!(
            check_retention_change(old, ret(RetentionMode::Compliance, 2_000), 1_000, false)
                .is_err()
        );
        assert!(
            check_retention_change(old, ret(RetentionMode::Compliance, 2_000), 1_000, true).is_ok()
        );
    }

    #[test]
    fn removal_rules() {
        let hold = ObjectLock {
            retention: None,
            legal_hold: true,
        };
        assert!(hold.check_removable(0, true).is_err());
        let gov = ObjectLock {
            retention: ret(RetentionMode::Governance, 10),
            legal_hold: false,
        };
        assert!(gov.check_removable(5, false).is_err());
        assert!(gov.check_removable(5, true).is_ok());
        assert!(gov.check_removable(10, false).is_ok());
        let comp = ObjectLock {
            retention: ret(RetentionMode::Compliance, 10),
            legal_hold: false,
        };
        assert!(comp.check_removable(5, true).is_err());
        assert!(comp.check_removable(11, false).is_ok());
        assert!(!comp.is_free(5) && comp.is_free(10));
    }

    #[test]
    fn version_ids_sort_by_seq_and_validate() {
        let a = new_version_id(next_seq(None, 1_000));
        let b = new_version_id(next_seq(Some(1_000_000), 1_000));
        assert!(a < b, "{a} {b}");
        assert!(is_valid_version_id(&a) && is_valid_version_id("null"));
        assert!(!is_valid_version_id("NULL") && !is_valid_version_id(&a[..31]));
        assert!(!is_valid_version_id(&a.to_uppercase()));
    }

    #[test]
    fn default_retention_validation() {
        let d = |days, years| DefaultRetention {
            mode: RetentionMode::Governance,
            days,
            years,
        };
        assert!(d(Some(1), None).validate().is_ok());
        assert!(d(Some(1), Some(1)).validate().is_err());
        assert!(d(None, None).validate().is_err());
        assert!(d(Some(0), None).validate().is_err());
        assert!(d(None, Some(101)).validate().is_err());
        assert_eq!(d(Some(2), None).retention_from(5).until_ms, 5 + 2 * DAY_MS);
        assert_eq!(d(None, Some(1)).retention_from(0).until_ms, 365 * DAY_MS);
    }
}
