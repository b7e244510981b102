//! The object service's residency operations: the placement check every write passes, the
//! explanation of a decision, and boundary policy changes with their history.

use crate::context::RequestContext;
use std::sync::Arc;

use serde::Serialize;
use vallum_ledger::entry::Event;
use vallum_types::limits::MAX_LIST_KEYS;

use super::{BoundaryPolicy, BucketBoundary, CivilDate, Decision, Residency};
use vallum_types::BlobId;

use crate::blob::{BlobError, ByteStream};
use crate::error::{Error, Result};
use crate::meta::BucketUpdate;
use crate::meta::{BucketRecord, MetaError, SiteUsage};
use crate::residency::sites::{SiteHandle, Topology, Written};
use crate::service::ObjectService;

/// Proof that the placement engine permitted a write, and where it goes: the only way to
/// write to a site outside the repair (whose copies go where `desired_sites` says). Only the
/// residency module makes one (`check_placement`) and only it holds the site stores.
pub(crate) struct Placed {
    /// The sites in force when the decision was made.
    top: Arc<Topology>,
    /// The sites to write to (topology indices), best first.
    targets: Vec<usize>,
    /// Copies that must be durable before the write is acknowledged.
    quorum: usize,
    /// Copies the placement wants; fewer written means the repair completes the rest.
    wanted: usize,
}

impl Placed {
    /// Streams `data` as blob `blob` to the placed sites; durable on the write quorum.
    pub(crate) async fn put(
        &self,
        blob: BlobId,
        data: ByteStream,
    ) -> std::result::Result<Written, BlobError> {
        self.top
            .put_replicas(blob, data, &self.targets, self.quorum)
            .await
    }

    /// The ids of the sites `written` holds copies on.
    pub(crate) fn site_ids(&self, written: &Written) -> Vec<String> {
        self.top.ids_of(&written.sites)
    }

    /// Whether `written` has fewer copies than the placement wants (acknowledged at the
    /// quorum; the repair completes the rest).
    pub(crate) fn short_of_wanted(&self, written: &Written) -> bool {
        written.sites.len() < self.wanted
    }
}

/// Whether the data a bucket holds is inside its boundary policy now, site by site: the drift
/// report after a site's profile or a policy changed, or a certification lapsed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BucketCompliance {
    /// Bucket name.
    pub bucket: String,
    /// The policy in force (none: no boundary, always compliant).
    pub policy: Option<String>,
    /// The sites holding the bucket's data (the primary site when it holds none yet).
    pub site: String,
    /// Whether every site holding its data is inside the policy today.
    pub compliant: bool,
    /// Every rule a site holding its data breaks, as sentences (empty when compliant).
    pub reasons: Vec<String>,
    /// Versions (delete markers aside) and their bytes held, when counted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held: Option<Held>,
    /// Blobs and bytes per site holding them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sites: Vec<SiteHolding>,
}

/// The boundary drift report of `buckets` (the platform's, or one bucket's) in the common
/// report shape: a violation per rule a site holding a bucket's data breaks today.
#[must_use]
pub fn drift_report(
    subject: &str,
    buckets: &[BucketCompliance],
    generated_ms: i64,
    checkpoint: Option<vallum_ledger::report::CheckpointRef>,
) -> vallum_ledger::report::Report {
    use vallum_ledger::report::{Finding, Outcome, Report, ReportKind, Severity};
    let mut r = Report::new(
        ReportKind::BoundaryDrift,
        format!("Boundary drift: {subject}"),
        subject,
    );
    r.generated_ms = generated_ms;
    r.checkpoint = checkpoint;
    let policies: std::collections::BTreeSet<&str> =
        buckets.iter().filter_map(|b| b.policy.as_deref()).collect();
    r.policy = (!policies.is_empty()).then(|| {
        format!(
            "the buckets' boundary policies: {}",
            policies.into_iter().collect::<Vec<_>>().join(", ")
        )
    });
    let outside = buckets.iter().filter(|b| !b.compliant).count();
    (r.outcome, r.summary) = if outside == 0 {
        (
            Outcome::Pass,
            format!(
                "the data of all {} bucket(s) is inside its boundary policy",
                buckets.len()
            ),
        )
    } else {
        (
            Outcome::Fail,
            format!(
                "{outside} of {} bucket(s) hold data outside their boundary policy",
                buckets.len()
            ),
        )
    };
    for b in buckets.iter().filter(|b| !b.compliant) {
        for reason in &b.reasons {
            r.push(Finding {
                severity: Severity::Violation,
                subject: format!("bucket {}", b.bucket),
                message: format!(
                    "{reason} (policy {})",
                    b.policy.as_deref().unwrap_or("none")
                ),
                log_index: None,
                time_ms: None,
            });
        }
    }
    r.details = serde_json::to_value(buckets).unwrap_or_default();
    r
}

/// What one site holds of a bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SiteHolding {
    /// The site.
    pub site: String,
    /// Blobs (object segments and upload parts) with a copy there.
    pub blobs: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Whether the site is inside the bucket's policy today.
    pub compliant: bool,
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
    /// Places every write with `residency`'s engine over `stores`, one per site of its
    /// registry; reads prefer site `primary` (this gateway's local one), which also holds
    /// blobs recorded without a site list.
    pub fn with_sites(
        self,
        residency: Residency,
        stores: Vec<(String, Arc<dyn crate::blob::BlobStore>)>,
        primary: &str,
    ) -> Result<Self> {
        let top = topology(residency, stores, primary)?;
        self.replace_topology(top);
        Ok(self)
    }

    /// Puts a new set of sites in force (a site added, drained or removed at run time).
    pub fn set_sites(
        &self,
        residency: Residency,
        stores: Vec<(String, Arc<dyn crate::blob::BlobStore>)>,
        primary: &str,
    ) -> Result<()> {
        let top = topology(residency, stores, primary)?;
        self.replace_topology(top);
        Ok(())
    }

    /// The residency facts in force (none: a service for tests of other layers, whose writes
    /// go to its one blob store unchecked).
    #[must_use]
    pub fn residency(&self) -> Option<Arc<Residency>> {
        self.topology().residency.clone()
    }

    fn today(&self) -> CivilDate {
        CivilDate::from_epoch_ms(self.clock.now_ms())
    }

    /// The policy in force for `bucket`: its own, else the deployment default.
    #[must_use]
    pub fn boundary_of<'a>(
        residency: Option<&'a Residency>,
        bucket: &'a BucketRecord,
    ) -> Option<&'a BoundaryPolicy> {
        let own = bucket.boundary.as_ref().and_then(|b| b.policy.as_ref());
        own.or_else(|| residency?.default_policy())
    }

    /// The engine's decision for object `key` of `bucket`, with every site's verdict.
    pub fn decide_placement(&self, bucket: &BucketRecord, key: &str) -> Result<Decision> {
        let top = self.topology();
        let residency = top
            .residency()
            .ok_or_else(|| Error::InvalidRequest("no site registry is configured".into()))?;
        Ok(residency.place(
            Self::boundary_of(Some(residency), bucket),
            &placement_key(&bucket.name, key),
            self.today(),
        ))
    }

    /// The sites object `key` of `bucket` belongs on (topology indices, best first) under the
    /// sites in force, or why there are none.
    pub(crate) fn desired_sites(
        &self,
        top: &Topology,
        bucket: &BucketRecord,
        key: &str,
    ) -> std::result::Result<Vec<usize>, String> {
        match top.residency() {
            Some(residency) => chosen_sites(residency, bucket, key, self.today()),
            None => Ok(vec![top.primary]),
        }
    }

    /// Refuses a write of `key` into `bucket` that the boundary policy does not permit, and
    /// says where a permitted one goes. Called before any byte is written: its token is what
    /// `write_blob` asks for. Chosen sites that are down are replaced by the next permitted
    /// ones when the policy can still be met without them; else the write goes to the chosen
    /// sites that are up, if they make the write quorum.
    pub(crate) fn check_placement(&self, bucket: &BucketRecord, key: &str) -> Result<Placed> {
        let top = self.topology();
        let Some(residency) = top.residency() else {
            return Ok(Placed {
                targets: vec![top.primary],
                quorum: 1,
                wanted: 1,
                top,
            });
        };
        let today = self.today();
        let mut targets = chosen_sites(residency, bucket, key, today).map_err(|why| {
            tracing::warn!(target: "vallum::audit", event = "placement_refused", bucket = %bucket.name, reason = %why, "write refused by the boundary policy");
            Error::NoCompliantPlacement(why)
        })?;
        let policy = Self::boundary_of(Some(residency), bucket);
        let wanted = targets.len();
        let quorum = policy.map_or(1, |p| p.quorum() as usize).min(wanted);
        let down = |i: usize| top.health(i).down;
        if targets.iter().any(|&i| down(i)) {
            let pkey = placement_key(&bucket.name, key);
            let substitute = residency.choose_without(policy, &pkey, today, &down);
            if substitute.refusal.is_none() {
                targets = substitute.chosen;
            } else {
                targets.retain(|&i| !down(i));
            }
        }
        if targets.len() < quorum {
            return Err(Error::Unavailable(format!(
                "policy {} needs {quorum} durable replicas before acknowledging a write, and only {} of its sites are reachable",
                policy.map_or(super::NO_POLICY, |p| p.name.as_str()),
                targets.len()
            )));
        }
        Ok(Placed {
            top,
            targets,
            quorum,
            wanted,
        })
    }

    /// Logs the deployment default policy as the boundary of a new bucket, if there is one,
    /// so an audit of the bucket has a policy from its first entry.
    pub(crate) async fn log_default_boundary(
        &self,
        ctx: &RequestContext,
        bucket: &str,
    ) -> Result<()> {
        let top = self.topology();
        match top.residency().and_then(Residency::default_policy) {
            Some(p) => self.log_boundary(ctx, bucket, Some(p)).await,
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
        ctx: &RequestContext,
        name: &str,
        policy: Option<BoundaryPolicy>,
    ) -> Result<BucketRecord> {
        let top = self.topology();
        let residency = top
            .residency()
            .ok_or_else(|| Error::InvalidRequest("no site registry is configured".into()))?;
        if let Some(p) = &policy {
            p.validate(residency.rules())
                .map_err(|e| Error::InvalidArgument(e.0))?;
        }
        let effective = policy.as_ref().or(residency.default_policy());
        let probe = residency.place(effective, &placement_key(name, ""), self.today());
        if !probe.permitted() {
            return Err(Error::NoCompliantPlacement(probe.explain_refusal()));
        }
        let actor = ctx.actor.clone();
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
        self.log_boundary(ctx, name, effective).await?;
        Ok(bucket)
    }

    /// Records the policy now in force for `bucket` in the transparency log: the audit
    /// replays it; without any policy there is nothing to audit against, which is recorded
    /// as a plain setting change (the audit then keeps the last policy it knew).
    pub(crate) async fn log_boundary(
        &self,
        ctx: &RequestContext,
        bucket: &str,
        effective: Option<&BoundaryPolicy>,
    ) -> Result<()> {
        self.log(
            ctx,
            match effective {
                Some(p) => Event::BoundaryPolicyChanged {
                    bucket: bucket.to_owned(),
                    policy: p.record(),
                },
                None => Event::BucketChanged {
                    bucket: bucket.to_owned(),
                    setting: "boundary".into(),
                    value: "none".into(),
                },
            },
        )
        .await
    }

    /// Whether every site holding bucket `record`'s data (`usage`) is inside its policy
    /// today (draining does not count: it only stops new data).
    fn compliance_of(
        &self,
        top: &Topology,
        residency: &Residency,
        record: &BucketRecord,
        usage: &[SiteUsage],
    ) -> BucketCompliance {
        let policy = Self::boundary_of(Some(residency), record);
        let decision = residency.place(policy, &placement_key(&record.name, ""), self.today());
        let mut holdings: Vec<SiteHolding> = Vec::new();
        for u in usage.iter().filter(|u| u.bucket == record.name) {
            let ids = if u.sites.is_empty() {
                vec![top.primary().id.clone()]
            } else {
                u.sites.clone()
            };
            for id in ids {
                match holdings.iter_mut().find(|h| h.site == id) {
                    Some(h) => {
                        h.blobs += u.blobs;
                        h.bytes += u.bytes;
                    }
                    None => holdings.push(SiteHolding {
                        site: id,
                        blobs: u.blobs,
                        bytes: u.bytes,
                        compliant: true,
                    }),
                }
            }
        }
        let mut reasons = Vec::new();
        for h in &mut holdings {
            match decision.sites.iter().find(|v| v.site == h.site) {
                Some(v) => {
                    let before = reasons.len();
                    reasons.extend(v.breaches().cloned());
                    h.compliant = reasons.len() == before;
                }
                None => {
                    h.compliant = false;
                    reasons.push(format!(
                        "site {}: no longer configured, yet recorded as holding data",
                        h.site
                    ));
                }
            }
        }
        if holdings.is_empty() && !decision.permitted() {
            // Nothing stored, and nowhere to store anything: every write is refused.
            reasons.extend(decision.sites.iter().flat_map(|v| v.breaches().cloned()));
            if reasons.is_empty() {
                reasons.push(decision.explain_refusal());
            }
        }
        let site = if holdings.is_empty() {
            top.primary().id.clone()
        } else {
            holdings
                .iter()
                .map(|h| h.site.as_str())
                .collect::<Vec<_>>()
                .join(",")
        };
        BucketCompliance {
            bucket: record.name.clone(),
            policy: policy.map(|p| p.name.clone()),
            site,
            compliant: reasons.is_empty(),
            reasons,
            held: None,
            sites: holdings,
        }
    }

    /// The compliance of every bucket (without counting versions).
    pub async fn compliance(&self) -> Result<Vec<BucketCompliance>> {
        let top = self.topology();
        let Some(residency) = top.residency() else {
            return Ok(Vec::new());
        };
        let usage = self.meta.site_usage(None).await?;
        Ok(self
            .meta
            .list_buckets()
            .await?
            .iter()
            .map(|b| self.compliance_of(&top, residency, b, &usage))
            .collect())
    }

    /// One bucket's compliance, with the versions and bytes it holds (a scan of its versions).
    pub async fn bucket_compliance(&self, name: &str) -> Result<BucketCompliance> {
        let top = self.topology();
        let residency = top
            .residency()
            .ok_or_else(|| Error::InvalidRequest("no site registry is configured".into()))?;
        let record = self.bucket(name).await?;
        let usage = self.meta.site_usage(Some(name)).await?;
        let mut report = self.compliance_of(&top, residency, &record, &usage);
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

/// The engine's choice for object `key` of `bucket` on `today` (registry indices, best
/// first), or why there is none. Refusals are rare: only they pay for the sentences.
fn chosen_sites(
    residency: &Residency,
    bucket: &BucketRecord,
    key: &str,
    today: CivilDate,
) -> std::result::Result<Vec<usize>, String> {
    let policy = ObjectService::boundary_of(Some(residency), bucket);
    let pkey = placement_key(&bucket.name, key);
    let choice = residency.choose(policy, &pkey, today);
    if choice.refusal.is_some() {
        return Err(residency.place(policy, &pkey, today).explain_refusal());
    }
    Ok(choice.chosen)
}

/// The topology of `residency`'s sites over `stores` (one per site, any order).
fn topology(
    residency: Residency,
    mut stores: Vec<(String, Arc<dyn crate::blob::BlobStore>)>,
    primary: &str,
) -> Result<Topology> {
    let mut sites = Vec::with_capacity(residency.sites().len());
    for profile in residency.sites() {
        let at = stores
            .iter()
            .position(|(id, _)| *id == profile.id)
            .ok_or_else(|| {
                Error::InvalidArgument(format!("site {} has no blob store", profile.id))
            })?;
        let (id, store) = stores.swap_remove(at);
        sites.push(SiteHandle::new(id, store, residency.site_ref(profile)));
    }
    if let Some((extra, _)) = stores.first() {
        return Err(Error::InvalidArgument(format!(
            "blob store {extra} belongs to no site of the registry"
        )));
    }
    let primary = sites
        .iter()
        .position(|s| s.id == primary)
        .ok_or_else(|| Error::InvalidArgument(format!("site {primary} is not in the registry")))?;
    Ok(Topology {
        residency: Some(Arc::new(residency)),
        sites,
        primary,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vallum_ledger::report::{Outcome, ReportKind, Severity};

    fn bucket(name: &str, reasons: &[&str]) -> BucketCompliance {
        BucketCompliance {
            bucket: name.into(),
            policy: Some("eu".into()),
            site: "paris-1".into(),
            compliant: reasons.is_empty(),
            reasons: reasons.iter().map(|r| (*r).to_owned()).collect(),
            held: None,
            sites: vec![],
        }
    }

    #[test]
    fn drift_is_a_violation_per_broken_rule() {
        let buckets = [
            bucket("clean", &[]),
            bucket("moved", &["site us-1 is in US, outside the allowed [EU]"]),
        ];
        let r = drift_report("platform", &buckets, 5, None);
        assert_eq!(
            (r.kind, r.outcome),
            (ReportKind::BoundaryDrift, Outcome::Fail)
        );
        assert_eq!(
            r.summary,
            "1 of 2 bucket(s) hold data outside their boundary policy"
        );
        assert_eq!(
            r.policy.as_deref(),
            Some("the buckets' boundary policies: eu")
        );
        assert_eq!(r.findings.len(), 1);
        assert_eq!(r.findings[0].severity, Severity::Violation);
        assert_eq!(r.findings[0].subject, "bucket moved");
        assert_eq!(
            r.findings[0].message,
            "site us-1 is in US, outside the allowed [EU] (policy eu)"
        );
        assert_eq!(r.details[1]["bucket"], "moved");
        let r = drift_report("bucket clean", &buckets[..1], 5, None);
        assert_eq!((r.outcome, r.findings.len()), (Outcome::Pass, 0));
    }
}
