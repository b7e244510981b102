//! Admin API resources of residency: the site registry with derived exposures, the exposure
//! rules, bucket boundary policies (versioned), placement decisions and the compliance (drift)
//! report.

use http::StatusCode;
use serde_json::{Value, json};
use vallum_core::context::RequestContext;
use vallum_core::meta::SiteRecord;
use vallum_core::records::TypedRecords;
use vallum_core::residency::{BoundaryPolicy, CivilDate, Residency, SiteProfile};
use vallum_core::service::ObjectService;

use crate::admin::{Admin, Failure, value};
use crate::admin_ops::{ResidencyOp, SiteOp};

fn registry(s: &ObjectService) -> Result<std::sync::Arc<Residency>, Failure> {
    s.residency().ok_or_else(|| {
        Failure(
            StatusCode::NOT_FOUND,
            "NoSuchResource",
            "this deployment has no site registry".into(),
        )
    })
}

/// A site with what follows from its profile: exposures with their basis, and whether each
/// certification is valid today.
fn site_view(r: &Residency, site: &SiteProfile, today: CivilDate) -> Value {
    let certifications: Vec<Value> = site
        .certifications
        .iter()
        .map(|c| json!({ "name": c.name(), "expires": c.expires.to_string(), "valid": c.expires >= today }))
        .collect();
    json!({
        "profile": value(site),
        "operator_country": site.operator_country(),
        "parent": site.parent(),
        "parent_country": site.parent_country(),
        "exposures": value(&r.rules().exposures(site)),
        "certifications": certifications,
    })
}

/// Serves the site registry's queries and the buckets' boundary policies.
pub(crate) async fn route(
    ctx: &RequestContext,
    s: &ObjectService,
    op: ResidencyOp,
    body: &[u8],
) -> Result<Value, Failure> {
    use ResidencyOp as R;
    let today = CivilDate::from_epoch_ms(s.now_ms());
    match &op {
        R::ListSites => {
            let r = registry(s)?;
            let top = s.topology();
            let sites: Vec<Value> = r
                .sites()
                .iter()
                .map(|x| {
                    let mut v = site_view(&r, x, today);
                    if let Some(i) = top.index(&x.id) {
                        v["health"] = value(&top.health_report(i));
                    }
                    v
                })
                .collect();
            Ok(json!({ "sites": sites }))
        }
        R::GetSite(id) => {
            let r = registry(s)?;
            let site = r.site(id).ok_or_else(|| {
                Failure(StatusCode::NOT_FOUND, "NoSuchSite", format!("no site {id}"))
            })?;
            let mut view = site_view(&r, site, today);
            let top = s.topology();
            if let Some(i) = top.index(id) {
                view["health"] = value(&top.health_report(i));
                view["primary"] = json!(top.primary().id == *id);
            }
            let (blobs, bytes) = held_by(s, id).await?;
            view["holds"] = json!({ "blobs": blobs, "bytes": bytes });
            Ok(view)
        }
        R::ExposureRules => Ok(value(registry(s)?.rules())),
        R::GetBoundary(b) => {
            let bucket = s.bucket(b).await?;
            Ok(json!({
                "bucket": b,
                "current": value(&bucket.boundary),
                "effective": value(&ObjectService::boundary_of(s.residency().as_deref(), &bucket)),
                "default": value(&registry(s)?.default_policy()),
            }))
        }
        R::PutBoundary(b) => {
            let policy: BoundaryPolicy = Admin::parse(body)?;
            let bucket = s.set_boundary(ctx, b, Some(policy)).await?;
            Ok(json!({ "bucket": b, "current": value(&bucket.boundary) }))
        }
        R::DeleteBoundary(b) => {
            let bucket = s.set_boundary(ctx, b, None).await?;
            Ok(json!({ "bucket": b, "current": value(&bucket.boundary) }))
        }
        R::BoundaryHistory(b) => {
            Ok(json!({ "bucket": b, "versions": value(&s.boundary_history(b).await?) }))
        }
        R::Placement(b, key) => Ok(value(&s.explain_placement(b, key).await?)),
    }
}

fn site_failure(e: crate::server::ServerError) -> Failure {
    Failure(StatusCode::BAD_REQUEST, "InvalidSite", e.to_string())
}

fn conflict(message: String) -> Failure {
    Failure(StatusCode::CONFLICT, "SiteInUse", message)
}

/// The buckets left without a compliant placement if `residency`'s sites were in force: a
/// drain or removal that would strand a bucket's data is refused, naming them.
async fn stranded(s: &ObjectService, residency: &Residency) -> Result<Vec<String>, Failure> {
    let today = CivilDate::from_epoch_ms(s.now_ms());
    let mut out = Vec::new();
    for b in s.meta().list_buckets().await? {
        let policy = ObjectService::boundary_of(Some(residency), &b);
        let decision = residency.place(policy, b.name.as_bytes(), today);
        if !decision.permitted() {
            out.push(format!("{}: {}", b.name, decision.explain_refusal()));
        }
    }
    Ok(out)
}

/// Refuses a site change (`next`, described by `doing`) that would leave a bucket without a
/// compliant placement: its data could not move, and nothing could be written.
async fn refuse_stranding(
    s: &ObjectService,
    sites: &crate::sites::SiteManager,
    records: &[vallum_core::meta::SiteRecord],
    next: &vallum_core::meta::SiteRecord,
    doing: &str,
) -> Result<(), Failure> {
    let mut trial: Vec<vallum_core::meta::SiteRecord> = records
        .iter()
        .filter(|r| r.id != next.id)
        .cloned()
        .collect();
    trial.push(next.clone());
    let (residency, _) = sites.build(&trial).await.map_err(site_failure)?;
    let stranded = stranded(s, &residency).await?;
    if stranded.is_empty() {
        return Ok(());
    }
    Err(conflict(format!(
        "{doing} site {} would leave buckets without a compliant placement, so their data could not move: {}",
        next.id,
        stranded.join("; ")
    )))
}

/// Blobs and bytes recorded on site `id` (blobs without a list are on the primary).
async fn held_by(s: &ObjectService, id: &str) -> Result<(u64, u64), Failure> {
    let primary = s.topology().primary().id.clone();
    let (mut blobs, mut bytes) = (0, 0);
    for u in s.meta().site_usage(None).await? {
        let holds = if u.sites.is_empty() {
            primary == id
        } else {
            u.sites.iter().any(|x| x == id)
        };
        if holds {
            blobs += u.blobs;
            bytes += u.bytes;
        }
    }
    Ok((blobs, bytes))
}

/// Site changes at run time (`POST sites`, `POST sites/<id>/drain|activate`,
/// `DELETE sites/<id>`).
pub(crate) async fn manage(
    ctx: &RequestContext,
    s: &ObjectService,
    sites: &crate::sites::SiteManager,
    op: SiteOp,
    body: &[u8],
) -> Result<Value, Failure> {
    let actor = ctx.actor.clone();
    let records = s.meta().load_all::<SiteRecord>().await?;
    let record =
        |id: &str, definition: Option<String>, state: &str| vallum_core::meta::SiteRecord {
            id: id.to_owned(),
            definition,
            state: state.to_owned(),
            changed_by: actor.clone(),
            changed_ms: s.now_ms(),
        };
    // A site added at run time keeps its definition through every change of state.
    let definition_of = |id: &str| {
        records
            .iter()
            .find(|r| r.id == id)
            .and_then(|r| r.definition.clone())
    };
    let in_force = sites.effective(&records).map_err(site_failure)?;
    let find = |id: &str| {
        in_force
            .iter()
            .find(|x| x.config.id == id)
            .cloned()
            .ok_or_else(|| Failure(StatusCode::NOT_FOUND, "NoSuchSite", format!("no site {id}")))
    };
    let (action, id, next) = match &op {
        SiteOp::Add => {
            let config: crate::config::SiteConfig = Admin::parse(body)?;
            config
                .validate_backend("site")
                .map_err(|e| Failure(StatusCode::BAD_REQUEST, "InvalidSite", e.to_string()))?;
            config
                .profile()
                .validate()
                .map_err(|e| Failure(StatusCode::BAD_REQUEST, "InvalidSite", e.0))?;
            if records.iter().any(|r| r.id == config.id)
                || sites.config().all_sites().iter().any(|c| c.id == config.id)
            {
                return Err(Failure(
                    StatusCode::CONFLICT,
                    "SiteExists",
                    format!(
                        "site {} exists (or existed: site ids are never reused)",
                        config.id
                    ),
                ));
            }
            sites.probe(&config).await.map_err(site_failure)?;
            let definition = serde_json::to_string(&config)
                .map_err(|e| Failure(StatusCode::BAD_REQUEST, "InvalidSite", e.to_string()))?;
            (
                "site_added",
                config.id.clone(),
                record(&config.id, Some(definition), crate::sites::STATE_ACTIVE),
            )
        }
        SiteOp::Drain(id) | SiteOp::Activate(id) => {
            let drain = matches!(op, SiteOp::Drain(_));
            let site = find(id)?;
            let state = if drain {
                crate::sites::STATE_DRAINING
            } else {
                crate::sites::STATE_ACTIVE
            };
            let next = record(id, definition_of(id), state);
            if state == crate::sites::STATE_DRAINING {
                refuse_stranding(s, sites, &records, &next, "draining").await?;
            }
            let action = if site.state == state {
                "site_unchanged"
            } else if drain {
                "site_draining"
            } else {
                "site_activated"
            };
            (action, (*id).to_owned(), next)
        }
        SiteOp::Remove(id) => {
            find(id)?;
            if *id == sites.primary() {
                return Err(conflict(format!(
                    "site {id} is this deployment's primary site ([site] in the configuration); it cannot be removed at run time"
                )));
            }
            let (blobs, bytes) = held_by(s, id).await?;
            if blobs > 0 {
                return Err(conflict(format!(
                    "site {id} still holds {blobs} blobs ({bytes} bytes); drain it (vallum site drain {id}) and wait until the repair has moved them"
                )));
            }
            let next = record(id, definition_of(id), crate::sites::STATE_REMOVED);
            refuse_stranding(s, sites, &records, &next, "removing").await?;
            ("site_removed", (*id).to_owned(), next)
        }
    };
    if action != "site_unchanged" {
        s.meta().save(&next.id, &next).await?;
        s.log(
            ctx,
            vallum_ledger::entry::Event::Admin {
                action: action.to_owned(),
                target: id.clone(),
            },
        )
        .await?;
        tracing::info!(target: "vallum::audit", event = action, site = %id, "site changed");
        sites.refresh(s).await.map_err(site_failure)?;
        s.repair_hint().notify_one();
    }
    Ok(json!({ "site": id, "state": next.state, "action": action }))
}
