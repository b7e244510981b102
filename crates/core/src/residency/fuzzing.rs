//! The bodies of the residency fuzz targets (`fuzz/`, `cargo fuzz run <target>`), one per
//! parser of operator-supplied input: exposure-rules files, boundary policy documents, site
//! profiles and dates. Each must never panic, and what it accepts must round-trip;
//! `tests/residency_parsers.rs` runs them over mutated seeds on every test run.

use super::{BoundaryPolicy, CivilDate, ExposureRules, SiteProfile, place};

fn today() -> CivilDate {
    CivilDate::parse("2026-12-01").expect("a valid date")
}

/// Exposure-rules files (TOML): accepted ones survive re-encoding, and derive exposures for
/// any site without panicking.
pub fn exposure_rules(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(rules) = ExposureRules::parse(text) {
        let again = toml::to_string(&rules).expect("accepted rules encode");
        assert_eq!(ExposureRules::parse(&again).as_ref(), Ok(&rules));
        let mut site = SiteProfile::new("s", "US", "op");
        site.parent_country = "CN".into();
        let _ = rules.exposures(&site);
    }
}

/// Boundary policy documents (JSON): validation never panics; a valid policy round-trips
/// and places against a small registry without panicking.
pub fn boundary_policy(data: &[u8]) {
    let Ok(policy) = serde_json::from_slice::<BoundaryPolicy>(data) else {
        return;
    };
    let rules = ExposureRules::builtin();
    if policy.validate(&rules).is_ok() {
        let again = serde_json::to_vec(&policy).expect("accepted policies encode");
        assert_eq!(
            serde_json::from_slice::<BoundaryPolicy>(&again)
                .ok()
                .as_ref(),
            Some(&policy)
        );
        let sites = [
            SiteProfile::new("fr", "FR", "a"),
            SiteProfile::new("us", "US", "b"),
            SiteProfile::new("de", "DE", "c"),
        ];
        let decision = place(Some(&policy), &sites, &rules, data, today());
        assert_eq!(decision.permitted(), decision.refusal.is_none());
    }
}

/// Site profiles (JSON, as the configuration and admin API carry them) and dates.
pub fn site_profile(data: &[u8]) {
    if let Ok(site) = serde_json::from_slice::<SiteProfile>(data) {
        let _ = site.validate();
        let _ = ExposureRules::builtin().exposures(&site);
        let _ = site.holds("SecNumCloud", today());
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(date) = CivilDate::parse(text)
    {
        assert_eq!(date.to_string(), text, "only the canonical form parses");
    }
}
