//! Residency: storage sites with legal profiles, boundary policies, and the placement engine
//! that is the only path by which bytes reach a site (DESIGN.md invariant 2).
//!
//! * [`profile`]: sites' legal profiles and the exposures derived from them by data.
//! * [`policy`]: boundary policies and their versions per bucket.
//! * [`placement`]: the engine — judge every site, choose by weighted rendezvous hashing,
//!   enforce operator independence, explain every refusal.

pub mod fuzzing;
pub mod placement;
pub mod policy;
pub mod profile;
pub mod repair;
mod service;
pub mod sites;

use crate::error::Invalid;
use std::collections::BTreeSet;

pub(crate) use service::Placed;
pub use service::{BucketCompliance, Held, SiteHolding, drift_report};

pub use placement::{
    Choice, Decision, NO_POLICY, Refusal, Registry, Rejection, SiteVerdict, place,
};
pub use policy::{BoundaryPolicy, BucketBoundary};
pub use profile::{Certification, CivilDate, Exposure, ExposureRules, SiteProfile, SiteState};
use vallum_ledger::entry::SiteRef;
use vallum_types::limits::MAX_SITES;

/// The residency facts in force: exposure rules, the site registry and the deployment's
/// default boundary policy (for buckets without one of their own).
#[derive(Debug, Clone)]
pub struct Residency {
    rules: ExposureRules,
    registry: Registry,
    default_policy: Option<BoundaryPolicy>,
}

impl Residency {
    /// Checks and assembles the facts: every site valid and unique, the default policy valid.
    pub fn new(
        rules: ExposureRules,
        sites: Vec<SiteProfile>,
        default_policy: Option<BoundaryPolicy>,
    ) -> Result<Self, Invalid> {
        if sites.is_empty() || sites.len() > MAX_SITES {
            return Err(Invalid(format!(
                "between 1 and {MAX_SITES} sites are needed"
            )));
        }
        let mut ids = BTreeSet::new();
        for site in &sites {
            site.validate()?;
            if !ids.insert(site.id.as_str()) {
                return Err(Invalid(format!("site {} is defined twice", site.id)));
            }
            if let Some(x) = site
                .declared_exposures
                .iter()
                .find(|x| rules.rule(x).is_none())
            {
                tracing::info!(site = %site.id, exposure = %x, "site declares an exposure the rules do not define");
            }
        }
        if let Some(p) = &default_policy {
            p.validate(&rules)
                .map_err(|e| format!("default boundary policy: {e}"))?;
        }
        Ok(Self {
            registry: Registry::new(sites, &rules),
            rules,
            default_policy,
        })
    }

    /// The exposure rules.
    #[must_use]
    pub fn rules(&self) -> &ExposureRules {
        &self.rules
    }

    /// The site registry.
    #[must_use]
    pub fn sites(&self) -> &[SiteProfile] {
        self.registry.sites()
    }

    /// The site `id`.
    #[must_use]
    pub fn site(&self, id: &str) -> Option<&SiteProfile> {
        self.sites().iter().find(|s| s.id == id)
    }

    /// The deployment's default policy.
    #[must_use]
    pub fn default_policy(&self) -> Option<&BoundaryPolicy> {
        self.default_policy.as_ref()
    }

    /// The policy in force for a bucket whose own policy is `bucket_policy`.
    #[must_use]
    pub fn effective<'a>(
        &'a self,
        bucket_policy: Option<&'a BoundaryPolicy>,
    ) -> Option<&'a BoundaryPolicy> {
        bucket_policy.or(self.default_policy.as_ref())
    }

    /// Where an object with `placement_key` goes under `policy` on `today`, with every
    /// site's verdict. Without any policy every active site is permitted (no boundary was
    /// asked for).
    #[must_use]
    pub fn place(
        &self,
        policy: Option<&BoundaryPolicy>,
        placement_key: &[u8],
        today: CivilDate,
    ) -> Decision {
        self.registry.explain(policy, placement_key, today)
    }

    /// The same choice as [`Residency::place`] without the reasons: the write path's.
    #[must_use]
    pub fn choose(
        &self,
        policy: Option<&BoundaryPolicy>,
        placement_key: &[u8],
        today: CivilDate,
    ) -> Choice {
        self.registry.choose(policy, placement_key, today)
    }

    /// [`Residency::choose`] without the sites `excluded` says are out (down for now).
    #[must_use]
    pub fn choose_without(
        &self,
        policy: Option<&BoundaryPolicy>,
        placement_key: &[u8],
        today: CivilDate,
        excluded: &dyn Fn(usize) -> bool,
    ) -> Choice {
        self.registry
            .choose_without(policy, placement_key, today, excluded)
    }

    /// A site as log entries record it: its exposures by id, sorted.
    #[must_use]
    pub fn site_ref(&self, site: &SiteProfile) -> SiteRef {
        SiteRef {
            id: site.id.clone(),
            jurisdiction: site.jurisdiction.clone(),
            exposures: self
                .rules
                .exposures(site)
                .into_iter()
                .map(|x| x.id)
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> CivilDate {
        CivilDate::parse("2026-12-01").unwrap()
    }

    #[test]
    fn the_registry_is_validated_and_the_default_policy_applies_to_buckets_without_one() {
        let rules = ExposureRules::builtin();
        let fr = SiteProfile::new("local", "FR", "Nuage SA");
        assert!(Residency::new(rules.clone(), vec![], None).is_err());
        let twice = Residency::new(rules.clone(), vec![fr.clone(), fr.clone()], None);
        assert_eq!(twice.unwrap_err(), "site local is defined twice");
        let bad_default = BoundaryPolicy::allowing("x", &["Mars"]);
        assert!(
            Residency::new(rules.clone(), vec![fr.clone()], Some(bad_default))
                .unwrap_err()
                .starts_with("default boundary policy: ")
        );

        let de_only = BoundaryPolicy::allowing("de-only", &["DE"]);
        let r = Residency::new(rules.clone(), vec![fr.clone()], Some(de_only.clone())).unwrap();
        // The default refuses the French site; a bucket's own EU policy permits it.
        let d = r.place(r.effective(None), b"k", today());
        assert!(!d.permitted());
        assert!(
            d.explain_refusal()
                .contains("site local: located in FR, outside [DE] allowed by policy de-only"),
            "{}",
            d.explain_refusal()
        );
        let eu = BoundaryPolicy::allowing("eu", &["EU"]);
        assert_eq!(
            r.place(r.effective(Some(&eu)), b"k", today()).chosen,
            ["local"]
        );

        // No policy anywhere: every active site is permitted, whatever its country.
        let mut us = SiteProfile::new("us", "US", "Hyperscale Inc");
        us.weight = 2;
        let open = Residency::new(rules, vec![fr, us.clone()], None).unwrap();
        let d = open.place(None, b"k", today());
        assert!(d.permitted() && d.chosen.len() == 1, "{d:?}");
        assert_eq!(
            open.site_ref(&us).exposures,
            ["us-cloud-act", "us-fisa-702"]
        );
    }
}
