//! `vallum jobs`: every background job of the gateway is in one registry, listed with what it
//! last did; only the platform's side (root, operators) may see it.

use std::time::{Duration, Instant};

use crate::common::{Server, json, run, run_failing, vallum_admin, vallum_as};

fn jobs(server: &Server) -> serde_json::Value {
    json(&run(vallum_admin(server, "jobs").arg("--json")))
}

#[test]
fn every_background_job_is_listed_with_what_it_last_did() {
    let server = Server::start();
    // The jobs that run at start (garbage collection, lifecycle, key deletion, repair, the
    // boundary check) each take a first step within moments.
    let deadline = Instant::now() + Duration::from_secs(20);
    let listed = loop {
        let v = jobs(&server);
        let ran = v["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|j| j["steps"].as_u64().unwrap_or(0) > 0)
            .count();
        if ran >= 5 || Instant::now() > deadline {
            break v;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let by_name = |n: &str| {
        listed["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["name"] == n)
            .unwrap_or_else(|| panic!("job {n} missing: {listed}"))
            .clone()
    };
    let names: Vec<&str> = listed["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap())
        .collect();
    // Embedded metadata: the log integrates at each write, so no ledger job; the store's guard
    // runs instead.
    let mut want = vec![
        "boundary-check",
        "gc",
        "iam-refresh",
        "key-deletion",
        "key-rewrap",
        "lifecycle",
        "meta-guard",
        "replica-repair",
        "site-refresh",
    ];
    want.sort_unstable();
    assert_eq!(names, want, "{listed}");
    for leased in ["gc", "lifecycle", "key-deletion", "replica-repair"] {
        let j = by_name(leased);
        assert_eq!(j["leased"], true, "{j}");
        assert_eq!(j["holds_lease"], true, "{j}");
        assert!(j["steps"].as_u64().unwrap() >= 1, "{j}");
        assert_eq!(j["failures"], 0, "{j}");
        assert!(j["last_success_ms"].as_i64().unwrap() > 0, "{j}");
    }
    assert_eq!(by_name("boundary-check")["leased"], false);
    // What a step reported: the collector's counts, the repair's pass.
    let gc = by_name("gc");
    assert!(gc["progress"]["trash_deleted"].is_u64(), "{gc}");
    assert!(by_name("replica-repair")["progress"]["passes"].is_u64());
    assert_eq!(by_name("iam-refresh")["interval_secs"], 5);

    // The table names each job with its state.
    let text = run(&mut vallum_admin(&server, "jobs"));
    assert!(text.starts_with("JOB"), "{text}");
    for line in ["gc ", "replica-repair ", "boundary-check "] {
        let row = text
            .lines()
            .find(|l| l.starts_with(line))
            .unwrap_or_else(|| panic!("{line} missing:\n{text}"));
        assert!(row.ends_with(" ok"), "{row}");
    }

    // A tenant's administrator does not see the platform's jobs.
    let tenant = json(&run(
        vallum_admin(&server, "tenant").args(["create", "acme"])
    ));
    let key = tenant["access_key"]["id"].as_str().unwrap();
    let secret = tenant["secret_key"].as_str().unwrap();
    let refused = run_failing(&mut vallum_as(&server, key, secret, "jobs"));
    assert!(refused.contains("AccessDenied"), "{refused}");
}
