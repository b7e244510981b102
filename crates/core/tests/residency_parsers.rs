//! The residency parsers over thousands of mutations of real seeds (the built-in exposure
//! rules, documented policies, site profiles, dates): no panic, and accepted input
//! round-trips. The same bodies are the `cargo fuzz` targets in `fuzz/`.

use vallum_core::residency::fuzzing;
use vallum_core::residency::profile::DEFAULT_EXPOSURE_RULES;
use vallum_ledger::fuzzing::run_mutated;

#[test]
fn exposure_rules_files() {
    run_mutated(
        fuzzing::exposure_rules,
        &[DEFAULT_EXPOSURE_RULES.as_bytes().to_vec()],
        3_000,
        11,
    );
}

#[test]
fn boundary_policy_documents() {
    let seeds: Vec<Vec<u8>> = [
        r#"{"name": "eu-strict", "allowed": ["EU"], "forbidden_exposures": ["us-cloud-act", "us-fisa-702"]}"#,
        r#"{"name": "fr-hds", "allowed": ["FR"], "required_certifications": ["HDS", "EUCS:high"], "min_replicas": 3, "min_operators": 2, "write_quorum": 2}"#,
        r#"{"name": "x", "allowed": ["EEA", "CH"]}"#,
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    run_mutated(fuzzing::boundary_policy, &seeds, 20_000, 12);
}

#[test]
fn site_profiles_and_dates() {
    let seeds: Vec<Vec<u8>> = [
        r#"{"id": "paris-1", "jurisdiction": "FR", "operator": "Cloud France SAS", "parent": "Hyperscale Inc", "parent_country": "US", "certifications": [{"scheme": "SecNumCloud", "expires": "2027-06-30"}, {"scheme": "EUCS", "level": "high", "expires": "2027-01-31"}], "weight": 2, "state": "draining"}"#,
        "2024-02-29",
        "2026-12-01",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    run_mutated(fuzzing::site_profile, &seeds, 20_000, 13);
}
