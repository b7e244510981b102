//! The object service's residency operations: the placement check every write passes, the
//! explanation of a decision, and boundary policy changes with their history.

use std::sync::Arc;

use serde::Serialize;
use vallum_ledger::entry::Event;
use vallum_types::limits::MAX_LIST_KEYS;

use super::{BoundaryPolicy, BucketBoundary, CivilDate, Decision, Rejection, Residency};
use crate::error::{Error, Result};
use crate::meta::{BucketRecord, MetaError};
use crate::service::ObjectService;
use crate::versioning::BucketUpdate;

/// Proof that the placement engine permitted a write: `write_blob` takes one, so no byte
/// reaches a site without a decision.
pub(crate) struct Placed(());

/// Whether the data a bucket holds on this deployment's site is inside its boundary policy
/// now: the drift report after a site's profile or a policy changed, or a certification lapsed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BucketCompliance {
    /// Bucket name.
    pub bucket: String,
    /// The policy in force (none: no boundary, always compliant).
    pub policy: Option<String>,
    /// The site holding the bucket's data.
    pub site: String,
    /// Whether that site is inside the policy today.
    pub compliant: bool,
    /// Every rule the site breaks, as sentences (empty when compliant).
    pub reasons: Vec<String>,
    /// Versions (delete markers aside) and their bytes held there, when counted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held: Option<Held>,
}

/// What a bucket holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Held {
    /// Object versions, delete markers aside.
    pub versions: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// How often a boundary change is retried when another gateway changed it in between.
const BOUNDARY_CHANGE_ATTEMPTS: usize = 3;

/// The rendezvous input of an object: its bucket and key. Sites never see it (they see opaque
/// blob ids), and it makes `placement explain` exact for objects not yet written.
fn placement_key(bucket: &str, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(bucket.len() + 1 + key.len());
    k.extend_from_slice(bucket.as_bytes());
    k.push(0);
    k.extend_from_slice(key.as_bytes());
    k
}

impl ObjectService {
    /// Places every write with `residency`'s engine; this service's blob store is the site
    /// `local_site` of its registry.
    pub fn with_residency(mut self, residency: Residency, local_site: &str) -> Result<Self> {
        let site = residency.site(local_site).ok_or_else(|| {
            Error::InvalidArgument(format!("site {local_site} is not in the registry"))
        })?;
        self.site = residency.site_ref(site);
        self.local_site = local_site.to_owned();
        self.residency = Some(Arc::new(residency));
        Ok(self)
    }

    /// The residency facts in force (none: a service for tests of other layers, whose writes
    /// go to its one blob store unchecked).
    #[must_use]
    pub fn residency(&self) -> Option<&Residency> {
        self.residency.as_deref()
    }

    fn today(&self) -> CivilDate {
        CivilDate::from_epoch_ms(self.clock.now_ms())
    }

    /// The policy in force for `bucket`: its own, else the deployment default.
    #[must_use]
    pub fn boundary_of<'a>(&'a self, bucket: &'a BucketRecord) -> Option<&'a BoundaryPolicy> {
        let own = bucket.boundary.as_ref().and_then(|b| b.policy.as_ref());
        own.or_else(|| self.residency.as_ref()?.default_policy())
    }

    /// The engine's decision for object `key` of `bucket`, with every site's verdict.
    pub fn decide_placement(&self, bucket: &BucketRecord, key: &str) -> Result<Decision> {
        let residency = self
            .residency
            .as_ref()
            .ok_or_else(|| Error::InvalidRequest("no site registry is configured".into()))?;
        Ok(residency.place(
            self.boundary_of(bucket),
            &placement_key(&bucket.name, key),
            self.today(),
        ))
    }

    /// Refuses a write of `key` into `bucket` that the boundary policy does not permit on
    /// this service's site. Called before any byte is written: its token is what
    /// `write_blob` asks for.
    pub(crate) fn check_placement(&self, bucket: &BucketRecord, key: &str) -> Result<Placed> {
        let Some(residency) = &self.residency else {
            return Ok(Placed(()));
        };
        let policy = self.boundary_of(bucket);
        let pkey = placement_key(&bucket.name, key);
        let choice = residency.choose(policy, &pkey, self.today());
        if choice.refusal.is_some() {
            // Refusals are rare: only they pay for the sentences.
            let why = residency
                .place(policy, &pkey, self.today())
                .explain_refusal();
            tracing::warn!(target: "vallum::audit", event = "placement_refused", bucket = %bucket.name, reason = %why, "write refused by the boundary policy");
            return Err(Error::NoCompliantPlacement(why));
        }
        let sites = residency.sites();
        let chosen: Vec<&str> = choice
            .chosen
            .iter()
            .map(|&i| sites[i].id.as_str())
            .collect();
        let policy_name = policy.map_or(super::NO_POLICY, |p| p.name.as_str());
        if !chosen.contains(&self.local_site.as_str()) {
            // The engine chose sites this gateway cannot write to; never fall back.
            return Err(Error::NoCompliantPlacement(format!(
                "policy {policy_name} places this object on {}, which this gateway does not write to",
                chosen.join(", ")
            )));
        }
        if chosen.len() > 1 {
            return Err(Error::NoCompliantPlacement(format!(
                "policy {policy_name} needs {} replicas; this deployment writes to one site",
                chosen.len()
            )));
        }
        Ok(Placed(()))
    }

    /// Logs the deployment default policy as the boundary of a new bucket, if there is one,
    /// so an audit of the bucket has a policy from its first entry.
    pub(crate) async fn log_default_boundary(&self, bucket: &str) -> Result<()> {
        match self.residency.as_ref().and_then(|r| r.default_policy()) {
            Some(p) => self.log_boundary(bucket, Some(p)).await,
            None => Ok(()),
        }
    }

    /// The decision for object `key` of bucket `name`, for `placement explain`.
    pub async fn explain_placement(&self, name: &str, key: &str) -> Result<Decision> {
        let bucket = self.bucket(name).await?;
        self.decide_placement(&bucket, key)
    }

    /// Sets (or with `None` removes) bucket `name`'s boundary policy as a new version. The
    /// policy must be valid and satisfiable by the sites in the registry now: a policy that
    /// would leave the bucket's data nowhere to go is refused with each site's reason.
    pub async fn set_boundary(
        &self,
        name: &str,
        policy: Option<BoundaryPolicy>,
    ) -> Result<BucketRecord> {
        let residency = self
            .residency
            .as_ref()
            .ok_or_else(|| Error::InvalidRequest("no site registry is configured".into()))?;
        if let Some(p) = &policy {
            p.validate(residency.rules())
                .map_err(Error::InvalidArgument)?;
        }
        let effective = policy.as_ref().or(residency.default_policy());
        let probe = residency.place(effective, &placement_key(name, ""), self.today());
        if !probe.permitted() {
            return Err(Error::NoCompliantPlacement(probe.explain_refusal()));
        }
        let actor = crate::journal::current().0;
        let mut attempts = 0;
        let bucket = loop {
            attempts += 1;
            let current = self.bucket(name).await?;
            let next = BucketBoundary {
                version: current.boundary.as_ref().map_or(0, |b| b.version) + 1,
                policy: policy.clone(),
                set_by: actor.clone(),
                set_ms: self.clock.now_ms(),
            };
            match self
                .meta
                .update_bucket(name, &BucketUpdate::Boundary(next))
                .await
            {
                Err(MetaError::PreconditionFailed) if attempts < BOUNDARY_CHANGE_ATTEMPTS => {}
                Err(MetaError::PreconditionFailed) => {
                    return Err(Error::Unavailable(
                        "the boundary policy kept changing concurrently; retry".into(),
                    ));
                }
                other => break other?,
            }
        };
        tracing::info!(target: "vallum::audit", event = "boundary_policy_changed", bucket = name, policy = ?effective.map(|p| &p.name), "boundary policy changed");
        self.log_boundary(name, effective).await?;
        Ok(bucket)
    }

    /// Records the policy now in force for `bucket` in the transparency log: the audit
    /// replays it; without any policy there is nothing to audit against, which is recorded
    /// as a plain setting change (the audit then keeps the last policy it knew).
    pub(crate) async fn log_boundary(
        &self,
        bucket: &str,
        effective: Option<&BoundaryPolicy>,
    ) -> Result<()> {
        self.log(match effective {
            Some(p) => Event::BoundaryPolicyChanged {
                bucket: bucket.to_owned(),
                policy: p.record(),
            },
            None => Event::BucketChanged {
                bucket: bucket.to_owned(),
                setting: "boundary".into(),
                value: "none".into(),
            },
        })
        .await
    }

    /// Whether bucket `record`'s data, all on this service's site, is inside its policy today
    /// (draining does not count: it only stops new data).
    fn compliance_of(&self, residency: &Residency, record: &BucketRecord) -> BucketCompliance {
        let policy = self.boundary_of(record);
        let decision = residency.place(policy, &placement_key(&record.name, ""), self.today());
        let reasons: Vec<String> = decision
            .sites
            .iter()
            .find(|v| v.site == self.local_site)
            .map(|v| {
                v.rejections
                    .iter()
                    .zip(&v.reasons)
                    .filter(|(r, _)| !matches!(r, Rejection::Draining))
                    .map(|(_, why)| why.clone())
                    .collect()
            })
            .unwrap_or_default();
        BucketCompliance {
            bucket: record.name.clone(),
            policy: policy.map(|p| p.name.clone()),
            site: self.local_site.clone(),
            compliant: reasons.is_empty(),
            reasons,
            held: None,
        }
    }

    /// The compliance of every bucket (without counting what they hold).
    pub async fn compliance(&self) -> Result<Vec<BucketCompliance>> {
        let Some(residency) = &self.residency else {
            return Ok(Vec::new());
        };
        Ok(self
            .meta
            .list_buckets()
            .await?
            .iter()
            .map(|b| self.compliance_of(residency, b))
            .collect())
    }

    /// One bucket's compliance, with the versions and bytes it holds (a scan of its versions).
    pub async fn bucket_compliance(&self, name: &str) -> Result<BucketCompliance> {
        let residency = self
            .residency
            .as_ref()
            .ok_or_else(|| Error::InvalidRequest("no site registry is configured".into()))?;
        let record = self.bucket(name).await?;
        let mut report = self.compliance_of(residency, &record);
        let mut held = Held::default();
        let mut after: Option<(String, i64)> = None;
        loop {
            let page = crate::list::versions_after(
                &*self.meta,
                name,
                after.as_ref().map(|(k, s)| (k.as_str(), *s)),
                MAX_LIST_KEYS,
            )
            .await?;
            let Some(last) = page.last() else { break };
            after = Some((last.key.clone(), last.seq));
            for v in page.iter().filter(|v| !v.delete_marker) {
                held.versions += 1;
                held.bytes += v.size_bytes;
            }
        }
        report.held = Some(held);
        Ok(report)
    }

    /// Every version of bucket `name`'s boundary policy, oldest first.
    pub async fn boundary_history(&self, name: &str) -> Result<Vec<BucketBoundary>> {
        self.bucket(name).await?;
        Ok(self.meta.boundary_history(name).await?)
    }
}
