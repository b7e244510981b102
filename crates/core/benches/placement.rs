//! What one placement decision costs: judging every site of a registry against a boundary
//! policy (jurisdiction, exposures derived from the parent company, certifications by date),
//! weighted rendezvous hashing and operator diversity. Target: < 10 µs for 100 sites on the
//! write path (`choose`); `explain` also builds every reason.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use vallum_core::residency::{
    BoundaryPolicy, Certification, CivilDate, ExposureRules, Registry, SiteProfile,
};

const COUNTRIES: [&str; 8] = ["FR", "DE", "NL", "IT", "ES", "US", "CH", "SE"];
const PARENT_COUNTRIES: [&str; 4] = ["FR", "DE", "US", "NL"];

/// `n` sites over 8 countries and 20 operator groups, a quarter with a SecNumCloud
/// certificate, weights 1-4.
fn registry(n: usize) -> Vec<SiteProfile> {
    (0..n)
        .map(|i| {
            let mut s = SiteProfile::new(
                &format!("site-{i:04}"),
                COUNTRIES[i % COUNTRIES.len()],
                &format!("Operator {}", i % 20),
            );
            s.parent = format!("Group {}", i % 20);
            s.parent_country = PARENT_COUNTRIES[(i / 3) % PARENT_COUNTRIES.len()].into();
            s.weight = 1 + (i % 4) as u32;
            if i % 4 == 0 {
                s.certifications.push(Certification {
                    scheme: "SecNumCloud".into(),
                    level: None,
                    expires: CivilDate::parse("2030-01-01").unwrap(),
                });
            }
            s
        })
        .collect()
}

fn policies() -> Vec<(&'static str, BoundaryPolicy)> {
    let mut strict = BoundaryPolicy::allowing("eu-strict", &["EU"]);
    strict.forbidden_exposures = vec!["us-cloud-act".into(), "us-fisa-702".into()];
    strict.min_replicas = 3;
    strict.min_operators = 2;
    let mut certified = BoundaryPolicy::allowing("fr-secnumcloud", &["FR", "DE"]);
    certified.required_certifications = vec!["SecNumCloud".into()];
    certified.min_replicas = 2;
    vec![
        ("eu_strict_3_replicas_2_operators", strict),
        ("certified_2_replicas", certified),
    ]
}

fn decisions(c: &mut Criterion) {
    let rules = ExposureRules::builtin();
    let today = CivilDate::parse("2026-12-01").unwrap();
    let mut g = c.benchmark_group("placement");
    for n in [10, 100, 1000] {
        let registry = Registry::new(registry(n), &rules);
        for (name, policy) in policies() {
            assert!(
                registry
                    .choose(Some(&policy), b"bucket\0key", today)
                    .refusal
                    .is_none(),
                "{name} must be satisfiable with {n} sites"
            );
            let mut i = 0u64;
            // What every write pays.
            g.bench_function(format!("choose/{name}/{n}_sites"), |b| {
                b.iter(|| {
                    i += 1;
                    black_box(registry.choose(Some(&policy), &i.to_le_bytes(), today))
                });
            });
            // What `placement explain` and a refusal's message pay.
            g.bench_function(format!("explain/{name}/{n}_sites"), |b| {
                b.iter(|| {
                    i += 1;
                    black_box(registry.explain(Some(&policy), &i.to_le_bytes(), today))
                });
            });
        }
    }
    g.finish();
}

criterion_group!(benches, decisions);
criterion_main!(benches);
