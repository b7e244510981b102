//! Admin API resources of residency: the site registry with derived exposures, the exposure
//! rules, bucket boundary policies (versioned), placement decisions and the compliance (drift)
//! report.

use http::{Method, StatusCode};
use serde_json::{Value, json};
use vallum_core::residency::{BoundaryPolicy, CivilDate, Residency, SiteProfile};
use vallum_core::service::ObjectService;

use crate::admin::{Admin, Failure, not_allowed, value};

fn registry(s: &ObjectService) -> Result<&Residency, Failure> {
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

/// Routes `sites…`, `exposure-rules` and `buckets/<b>/…`.
pub(crate) async fn route(
    s: &ObjectService,
    method: &Method,
    seg: &[&str],
    body: &[u8],
) -> Result<Value, Failure> {
    let today = CivilDate::from_epoch_ms(s.now_ms());
    match (method, seg) {
        (&Method::GET, ["sites"]) => {
            let r = registry(s)?;
            let sites: Vec<Value> = r.sites().iter().map(|x| site_view(r, x, today)).collect();
            Ok(json!({ "sites": sites }))
        }
        (&Method::GET, ["sites", id]) => {
            let r = registry(s)?;
            let site = r.site(id).ok_or_else(|| {
                Failure(StatusCode::NOT_FOUND, "NoSuchSite", format!("no site {id}"))
            })?;
            let mut view = site_view(r, site, today);
            view["health"] = value(&s.blobs().health());
            Ok(view)
        }
        (&Method::GET, ["exposure-rules"]) => Ok(value(registry(s)?.rules())),
        (&Method::GET, ["buckets", b, "boundary"]) => {
            let bucket = s.bucket(b).await?;
            Ok(json!({
                "bucket": b,
                "current": value(&bucket.boundary),
                "effective": value(&s.boundary_of(&bucket)),
                "default": value(&registry(s)?.default_policy()),
            }))
        }
        (&Method::PUT, ["buckets", b, "boundary"]) => {
            let policy: BoundaryPolicy = Admin::parse(body)?;
            let bucket = s.set_boundary(b, Some(policy)).await?;
            Ok(json!({ "bucket": b, "current": value(&bucket.boundary) }))
        }
        (&Method::DELETE, ["buckets", b, "boundary"]) => {
            let bucket = s.set_boundary(b, None).await?;
            Ok(json!({ "bucket": b, "current": value(&bucket.boundary) }))
        }
        (&Method::GET, ["buckets", b, "boundary", "history"]) => {
            Ok(json!({ "bucket": b, "versions": value(&s.boundary_history(b).await?) }))
        }
        (&Method::GET, ["compliance"]) => {
            let buckets = s.compliance().await?;
            let outside = buckets.iter().filter(|b| !b.compliant).count();
            Ok(json!({ "buckets": value(&buckets), "non_compliant": outside }))
        }
        (&Method::GET, ["buckets", b, "compliance"]) => Ok(value(&s.bucket_compliance(b).await?)),
        (&Method::GET, ["buckets", b, "placement", key]) => {
            Ok(value(&s.explain_placement(b, key).await?))
        }
        (_, ["sites" | "exposure-rules" | "compliance", ..])
        | (_, ["buckets", _, "boundary" | "placement" | "compliance", ..]) => {
            Err(not_allowed(method))
        }
        _ => Err(Failure(
            StatusCode::NOT_FOUND,
            "NoSuchResource",
            "no such admin resource".into(),
        )),
    }
}
