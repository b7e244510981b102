//! The job registry over a real metadata store: steps, backlog, progress, failures, waking,
//! leases held and released.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use vallum_core::clock::{Clock, SystemClock};
use vallum_core::jobs::{Job, JobError, JobRegistry, Step};
use vallum_core::meta::MetaStore;
use vallum_meta::SqliteMetaStore;

/// A job whose steps count, report progress, fail on request and have work for `backlog`
/// steps in a row.
struct Counting {
    name: &'static str,
    leased: bool,
    steps: AtomicU64,
    backlog: AtomicU64,
    fail: AtomicBool,
    wake: Arc<Notify>,
}

impl Counting {
    fn new(name: &'static str, leased: bool, backlog: u64) -> Arc<Self> {
        Arc::new(Self {
            name,
            leased,
            steps: AtomicU64::new(0),
            backlog: AtomicU64::new(backlog),
            fail: AtomicBool::new(false),
            wake: Arc::new(Notify::new()),
        })
    }
}

#[async_trait]
impl Job for Counting {
    fn name(&self) -> &'static str {
        self.name
    }
    fn leased(&self) -> bool {
        self.leased
    }
    fn interval(&self) -> Duration {
        Duration::from_secs(3600)
    }
    fn wake(&self) -> Option<Arc<Notify>> {
        Some(Arc::clone(&self.wake))
    }
    async fn step(&self) -> Result<Step, JobError> {
        let n = self.steps.fetch_add(1, Ordering::SeqCst) + 1;
        if self.fail.load(Ordering::SeqCst) {
            return Err(format!("step {n} failed").into());
        }
        let left = self.backlog.load(Ordering::SeqCst);
        if left > 0 {
            self.backlog.store(left - 1, Ordering::SeqCst);
        }
        Ok(Step::more(left > 1).with_progress(serde_json::json!({ "step": n })))
    }
}

async fn until(mut f: impl FnMut() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached in 5 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_step_through_their_backlog_report_fail_wake_and_release_their_lease() {
    let dir = tempfile::tempdir().unwrap();
    let meta: Arc<dyn MetaStore> = Arc::new(
        SqliteMetaStore::open(&dir.path().join("meta.db"))
            .await
            .unwrap(),
    );
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let busy = Counting::new("busy", true, 3);
    let plain = Counting::new("plain", false, 0);
    let mut registry = JobRegistry::new();
    registry.register(busy.clone());
    registry.register(plain.clone());
    let statuses = registry.statuses();
    let running = registry.spawn_all(meta.clone(), Arc::clone(&clock), "gw-1");
    // The backlog of three runs at start, back to back; the idle job runs once.
    until(|| {
        busy.steps.load(Ordering::SeqCst) == 3
            && plain.steps.load(Ordering::SeqCst) == 1
            && statuses.list().iter().all(|s| s.steps > 0)
    })
    .await;
    let list = statuses.list();
    let names: Vec<&str> = list.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["busy", "plain"]);
    let b = &list[0];
    assert!(b.leased && b.holds_lease);
    assert_eq!((b.steps, b.failures), (3, 0));
    assert_eq!(b.progress, Some(serde_json::json!({ "step": 3 })));
    assert_eq!(b.interval_secs, 3600);
    assert!(!list[1].leased);
    // Another gateway cannot take the lease while this one holds it.
    let now = clock.now_ms();
    assert!(
        !meta
            .acquire_lease("busy", "gw-2", now, 60_000)
            .await
            .unwrap()
    );
    // A failure is recorded, then cleared by the next success; waking runs a step at once.
    plain.fail.store(true, Ordering::SeqCst);
    plain.wake.notify_one();
    until(|| {
        statuses
            .list()
            .iter()
            .any(|s| s.name == "plain" && s.failures == 1)
    })
    .await;
    let p = statuses
        .list()
        .into_iter()
        .find(|s| s.name == "plain")
        .unwrap();
    assert_eq!(p.last_error.as_deref(), Some("step 2 failed"));
    plain.fail.store(false, Ordering::SeqCst);
    plain.wake.notify_one();
    until(|| {
        statuses
            .list()
            .iter()
            .any(|s| s.name == "plain" && s.steps == 3 && s.last_error.is_none())
    })
    .await;
    assert_eq!(
        busy.steps.load(Ordering::SeqCst),
        3,
        "no step before the interval"
    );
    // Stopping releases the lease: another gateway takes it at once.
    running.stop().await;
    assert!(
        meta.acquire_lease("busy", "gw-2", now, 60_000)
            .await
            .unwrap()
    );
}

#[test]
#[should_panic(expected = "registered twice")]
fn a_job_name_is_registered_once() {
    let mut registry = JobRegistry::new();
    registry.register(Counting::new("gc", true, 0));
    registry.register(Counting::new("gc", true, 0));
}
