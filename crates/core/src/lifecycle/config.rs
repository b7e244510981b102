//! The lifecycle configuration model and rule evaluation: part of the model layer (bucket
//! records hold it), so it imports only other model types.

use crate::error::Invalid;
use serde::{Deserialize, Serialize};
use vallum_types::limits::MAX_LIFECYCLE_RULES;

use crate::versioning::Tags;

/// A day, in ms.
pub(crate) const DAY_MS: i64 = 86_400_000;

/// Which objects a rule applies to. All given conditions must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifecycleFilter {
    /// Key prefix (empty: every key).
    #[serde(default)]
    pub prefix: String,
    /// Tags the object must carry, all of them.
    #[serde(default, skip_serializing_if = "Tags::is_empty")]
    pub tags: Tags,
    /// Only objects larger than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_greater_than: Option<u64>,
    /// Only objects smaller than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_less_than: Option<u64>,
}

impl LifecycleFilter {
    pub(crate) fn matches(&self, key: &str, size: u64, tags: &Tags) -> bool {
        key.starts_with(&self.prefix)
            && self.tags.iter().all(|(k, v)| tags.get(k) == Some(v))
            && self.size_greater_than.is_none_or(|n| size > n)
            && self.size_less_than.is_none_or(|n| size < n)
    }
}

/// One lifecycle rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifecycleRule {
    /// The rule's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `Status: Enabled`.
    pub enabled: bool,
    /// Which objects it applies to.
    #[serde(default)]
    pub filter: LifecycleFilter,
    /// Expire current versions this many days after creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_days: Option<u32>,
    /// Expire current versions from this date (midnight UTC), ms since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_date_ms: Option<i64>,
    /// Remove delete markers that are a key's only version.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub expired_object_delete_marker: bool,
    /// Remove noncurrent versions this many days after they became noncurrent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noncurrent_days: Option<u32>,
    /// Keep this many newest noncurrent versions regardless of age.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newer_noncurrent_versions: Option<u32>,
    /// Abort multipart uploads this many days after initiation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_incomplete_days: Option<u32>,
    /// Given with the legacy `<Prefix>` outside a `<Filter>`, and returned the same way.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub legacy_prefix: bool,
}

/// A bucket's lifecycle configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifecycleConfig {
    /// The rules, in the order given.
    pub rules: Vec<LifecycleRule>,
}

impl LifecycleConfig {
    /// When the current version of `key` (last modified at `last_modified_ms`) expires, and
    /// under which rule: the earliest of the enabled expiration rules that match it, as S3
    /// reports it in `x-amz-expiration`.
    #[must_use]
    pub fn expiration(
        &self,
        key: &str,
        size: u64,
        tags: &Tags,
        last_modified_ms: i64,
    ) -> Option<(i64, Option<&str>)> {
        self.rules
            .iter()
            .filter(|r| r.enabled && r.filter.matches(key, size, tags))
            .filter_map(|r| {
                let at = match (r.expiration_days, r.expiration_date_ms) {
                    (Some(days), _) => due_ms(last_modified_ms, days),
                    (None, Some(date)) => date,
                    (None, None) => return None,
                };
                Some((at, r.id.as_deref()))
            })
            .min_by_key(|(at, _)| *at)
    }

    /// Checks the configuration as S3 does; the error is the message for `InvalidArgument`
    /// (or `MalformedXML`).
    pub fn validate(&self) -> std::result::Result<(), Invalid> {
        if self.rules.is_empty() || self.rules.len() > MAX_LIFECYCLE_RULES {
            return Err(Invalid(format!(
                "a lifecycle configuration has 1 to {MAX_LIFECYCLE_RULES} rules"
            )));
        }
        let mut ids = std::collections::BTreeSet::new();
        for rule in &self.rules {
            if let Some(id) = &rule.id {
                if id.len() > 255 {
                    return Err(Invalid(
                        "ID length should not exceed allowed limit of 255".into(),
                    ));
                }
                if !ids.insert(id.clone()) {
                    return Err(
                        "Rule ID must be unique. Found same ID for more than one rule".into(),
                    );
                }
            }
            if rule.expiration_days.is_some() && rule.expiration_date_ms.is_some() {
                return Err(Invalid("an Expiration names Days or Date, not both".into()));
            }
            if rule.expiration_days == Some(0) || rule.noncurrent_days == Some(0) {
                return Err(Invalid(
                    "'Days' in the Expiration action must be a positive integer".into(),
                ));
            }
            if rule.abort_incomplete_days == Some(0) {
                return Err(Invalid(
                    "'DaysAfterInitiation' must be a positive integer".into(),
                ));
            }
            if rule
                .expiration_date_ms
                .is_some_and(|d| d.rem_euclid(DAY_MS) != 0)
            {
                return Err(Invalid("'Date' must be at midnight GMT".into()));
            }
            if rule.abort_incomplete_days.is_some() && !rule.filter.tags.is_empty() {
                return Err(Invalid(
                    "AbortIncompleteMultipartUpload cannot be specified with Tags".into(),
                ));
            }
            if rule.expired_object_delete_marker && !rule.filter.tags.is_empty() {
                return Err(Invalid(
                    "ExpiredObjectDeleteMarker cannot be specified with Tags".into(),
                ));
            }
            let has_action = rule.expiration_days.is_some()
                || rule.expiration_date_ms.is_some()
                || rule.expired_object_delete_marker
                || rule.noncurrent_days.is_some()
                || rule.abort_incomplete_days.is_some();
            if !has_action {
                return Err(Invalid(
                    "At least one action needs to be specified in a rule".into(),
                ));
            }
        }
        Ok(())
    }
}

/// When something that started at `start_ms` is `days` old by S3's reckoning: the start plus
/// the days, rounded up to the next midnight UTC.
#[must_use]
pub fn due_ms(start_ms: i64, days: u32) -> i64 {
    let t = start_ms.saturating_add(i64::from(days).saturating_mul(DAY_MS));
    let rem = t.rem_euclid(DAY_MS);
    if rem == 0 { t } else { t - rem + DAY_MS }
}
