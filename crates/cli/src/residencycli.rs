//! `vallum site`, `vallum policy` and `vallum placement`: the site registry, bucket boundary
//! policies and placement decisions, through the admin API.

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::admin_client::{AdminConn, Client, encode};

/// Exit code of `placement explain` when the object could not be placed.
pub const EXIT_REFUSED: i32 = 3;

/// Arguments of `vallum site`.
#[derive(Debug, Args)]
pub struct SiteArgs {
    #[command(flatten)]
    conn: AdminConn,
    #[command(subcommand)]
    op: SiteOp,
}

#[derive(Debug, Subcommand)]
enum SiteOp {
    /// The sites of the registry with their derived exposures.
    List,
    /// One site's legal profile, exposures (with their legal basis) and certifications,
    /// health, and what it holds.
    Show { id: String },
    /// Adds a site at run time, from a JSON or TOML file with the fields of a `[[sites]]`
    /// entry (secrets by environment variable name; every gateway must have them). The site
    /// must answer before it is recorded; every gateway puts it in force within seconds.
    Add {
        /// The site's definition (`.toml` or `.json`).
        file: std::path::PathBuf,
    },
    /// Stops placing new data on a site; the repair moves its data to the sites the
    /// policies place it on. Refused when a bucket would be left without a compliant
    /// placement.
    Drain { id: String },
    /// Lets a drained site take new data again.
    Activate { id: String },
    /// Removes a site from the deployment; refused while it still holds data (drain it
    /// first) and for the primary site.
    Remove { id: String },
    /// The replica repair's progress (copies made, migrated, damaged, pending); with
    /// `--start`, a pass starts now.
    Repair {
        /// Start a pass now instead of waiting for the next interval.
        #[arg(long)]
        start: bool,
        /// Wait for the pass under way (or the next) to finish, printing its progress with
        /// the rate on stderr.
        #[arg(long)]
        wait: bool,
    },
}

/// Arguments of `vallum policy`.
#[derive(Debug, Args)]
pub struct PolicyArgs {
    #[command(flatten)]
    conn: AdminConn,
    #[command(subcommand)]
    op: PolicyOp,
}

#[derive(Debug, Subcommand)]
enum PolicyOp {
    /// The bucket's boundary policy: its own (with version), and the one in force.
    Show { bucket: String },
    /// Sets the bucket's boundary policy (a new version), from flags or a JSON file.
    /// Refused, with each site's reason, if the sites cannot satisfy it.
    Set {
        bucket: String,
        /// The policy as JSON (the admin API's document); the flags below are ignored.
        #[arg(long)]
        file: Option<std::path::PathBuf>,
        /// Policy name (quoted in refusals).
        #[arg(long)]
        name: Option<String>,
        /// Allowed jurisdiction: a country code (FR) or a group (EU, EEA); repeatable.
        #[arg(long = "allow")]
        allow: Vec<String>,
        /// Exposure a site must not have (e.g. us-cloud-act); repeatable.
        #[arg(long = "forbid-exposure")]
        forbid_exposure: Vec<String>,
        /// Certification every site must hold (`scheme` or `scheme:level`); repeatable.
        #[arg(long = "require-certification")]
        require_certification: Vec<String>,
        /// Replicas of every object.
        #[arg(long, default_value_t = 1)]
        replicas: u32,
        /// Legally independent operators (distinct ultimate parents) the replicas span.
        #[arg(long, default_value_t = 1)]
        operators: u32,
        /// Replicas durable before a write is acknowledged (default: all).
        #[arg(long)]
        quorum: Option<u32>,
    },
    /// Removes the bucket's own policy (a new version; the deployment default applies).
    Clear { bucket: String },
    /// Every version of the bucket's policy, with who set it and when.
    History { bucket: String },
}

/// Arguments of `vallum placement`.
#[derive(Debug, Args)]
pub struct PlacementArgs {
    #[command(flatten)]
    conn: AdminConn,
    #[command(subcommand)]
    op: PlacementOp,
}

#[derive(Debug, Subcommand)]
enum PlacementOp {
    /// Where an object of BUCKET named KEY goes, and why each site is in or out; exits 3
    /// when no compliant placement exists.
    Explain { bucket: String, key: String },
    /// Whether each bucket's stored data is inside its boundary policy today (a site's
    /// profile or a policy may have changed, a certification lapsed); with BUCKET, also what
    /// it holds. Exits 3 when any bucket is outside.
    Check {
        bucket: Option<String>,
        /// Also write the drift report in the common report shape here (Markdown, or JSON
        /// when the name ends in .json), with the log checkpoint it refers to.
        #[arg(long)]
        report: Option<std::path::PathBuf>,
    },
}

fn print(json_out: bool, value: &Value, text: impl FnOnce(&Value) -> String) -> anyhow::Result<()> {
    if json_out {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        print!("{}", text(value));
    }
    Ok(())
}

fn str_list(v: &Value) -> String {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

fn site_text(site: &Value) -> String {
    let p = &site["profile"];
    let or_undeclared = |v: &Value| match v.as_str() {
        Some("") | None => "undeclared".to_owned(),
        Some(s) => s.to_owned(),
    };
    let mut out = format!(
        "site {}\n  jurisdiction  {}{}\n  operator      {} ({})\n  parent        {} ({})\n  state         {}  weight {}\n",
        p["id"].as_str().unwrap_or(""),
        or_undeclared(&p["jurisdiction"]),
        p["facility"]
            .as_str()
            .map(|f| format!(", {f}"))
            .unwrap_or_default(),
        or_undeclared(&p["operator"]),
        or_undeclared(&site["operator_country"]),
        or_undeclared(&site["parent"]),
        or_undeclared(&site["parent_country"]),
        p["state"].as_str().unwrap_or(""),
        p["weight"],
    );
    let exposures = site["exposures"].as_array().cloned().unwrap_or_default();
    if exposures.is_empty() {
        out.push_str("  exposures     none\n");
    }
    for x in exposures {
        out.push_str(&format!(
            "  exposed to    {}: {}\n",
            x["id"].as_str().unwrap_or(""),
            x["basis"].as_str().unwrap_or("")
        ));
    }
    let health = &site["health"];
    if health.is_object() {
        if health["down"] == true {
            out.push_str(&format!(
                "  health        DOWN after {} failures in a row (next attempt in {} ms): {}\n",
                health["consecutive_failures"],
                health["next_attempt_in_ms"],
                health["last_error"].as_str().unwrap_or("")
            ));
        } else {
            out.push_str("  health        up\n");
        }
    }
    for c in site["certifications"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        out.push_str(&format!(
            "  certified     {} until {}{}\n",
            c["name"].as_str().unwrap_or(""),
            c["expires"].as_str().unwrap_or(""),
            if c["valid"] == true { "" } else { " (expired)" }
        ));
    }
    out
}

fn change_text(v: &Value) -> String {
    format!(
        "site {}: {} (state {})\n",
        v["site"].as_str().unwrap_or(""),
        v["action"].as_str().unwrap_or("").replace('_', " "),
        v["state"].as_str().unwrap_or("")
    )
}

fn repair_text(v: &Value) -> String {
    let r = &v["repair"];
    let counts = |c: &Value| {
        format!(
            "scanned {}, copied {} ({} bytes), migrated away {}, damaged {}, verified {}, pending {}, unplaceable {}, lost {}",
            c["scanned"],
            c["copied"],
            c["bytes_copied"],
            c["removed"],
            c["damaged"],
            c["verified"],
            c["pending"],
            c["unplaceable"],
            c["lost"]
        )
    };
    let mut out = format!("passes finished: {}\n", r["passes"]);
    if r["cursor"].is_string() {
        out.push_str(&format!(
            "pass under way{}: {}\n",
            if r["scrubbing"] == true {
                " (scrubbing)"
            } else {
                ""
            },
            counts(&r["current"])
        ));
    }
    if r["last"].is_object() {
        out.push_str(&format!("last pass: {}\n", counts(&r["last"])));
    }
    if v["started"] == true {
        out.push_str("a pass was started\n");
    }
    out
}

fn policy_text(p: &Value) -> String {
    if p.is_null() {
        return "none (no boundary)".into();
    }
    let mut out = format!(
        "{}: allowed [{}]",
        p["name"].as_str().unwrap_or(""),
        str_list(&p["allowed"])
    );
    if p["forbidden_exposures"].is_array() {
        out.push_str(&format!(
            ", forbidden exposures [{}]",
            str_list(&p["forbidden_exposures"])
        ));
    }
    if p["required_certifications"].is_array() {
        out.push_str(&format!(
            ", required certifications [{}]",
            str_list(&p["required_certifications"])
        ));
    }
    out.push_str(&format!(
        ", {} replica(s) on {} operator(s)",
        p["min_replicas"], p["min_operators"]
    ));
    if let Some(q) = p["write_quorum"].as_u64() {
        out.push_str(&format!(", write quorum {q}"));
    }
    out
}

fn version_text(v: &Value) -> String {
    format!(
        "version {} by {} at {} ms: {}",
        v["version"],
        v["set_by"].as_str().unwrap_or(""),
        v["set_ms"],
        policy_text(&v["policy"])
    )
}

fn decision_text(d: &Value, bucket: &str, key: &str) -> String {
    let mut out = format!(
        "{bucket}/{key} under policy {}\n",
        d["policy"].as_str().unwrap_or("")
    );
    if d["refusal"].is_null() {
        out.push_str(&format!(
            "  placed on {} (write quorum {})\n",
            str_list(&d["chosen"]),
            d["write_quorum"]
        ));
    } else {
        out.push_str("  REFUSED: no compliant placement\n");
    }
    for v in d["sites"].as_array().cloned().unwrap_or_default() {
        let site = v["site"].as_str().unwrap_or("");
        let reasons = v["reasons"].as_array().cloned().unwrap_or_default();
        if reasons.is_empty() {
            out.push_str(&format!(
                "  site {site}: permitted{}\n",
                if v["chosen"] == true { ", chosen" } else { "" }
            ));
        }
        for r in reasons {
            out.push_str(&format!("  {}\n", r.as_str().unwrap_or("")));
        }
    }
    out
}

/// Runs `vallum site`.
pub fn run_site(args: SiteArgs) -> anyhow::Result<()> {
    let json = args.conn.json;
    let c = args.conn.client()?;
    match args.op {
        SiteOp::List => {
            let v = c.call("GET", "sites", None)?;
            print(json, &v, |v| {
                v["sites"]
                    .as_array()
                    .map(|s| s.iter().map(site_text).collect::<Vec<_>>().join("\n"))
                    .unwrap_or_default()
            })
        }
        SiteOp::Show { id } => {
            let v = c.call("GET", &format!("sites/{}", encode(&id)), None)?;
            print(json, &v, site_text)
        }
        SiteOp::Add { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let doc: Value = if file.extension().is_some_and(|e| e == "toml") {
                let t: toml::Value = toml::from_str(&text)
                    .with_context(|| format!("{} is not valid TOML", file.display()))?;
                serde_json::to_value(t)?
            } else {
                serde_json::from_str(&text)
                    .with_context(|| format!("{} is not valid JSON", file.display()))?
            };
            let v = c.call("POST", "sites", Some(doc))?;
            print(json, &v, change_text)
        }
        SiteOp::Drain { id } => {
            let v = c.call("POST", &format!("sites/{}/drain", encode(&id)), None)?;
            print(json, &v, change_text)
        }
        SiteOp::Activate { id } => {
            let v = c.call("POST", &format!("sites/{}/activate", encode(&id)), None)?;
            print(json, &v, change_text)
        }
        SiteOp::Remove { id } => {
            let v = c.call("DELETE", &format!("sites/{}", encode(&id)), None)?;
            print(json, &v, change_text)
        }
        SiteOp::Repair { start, wait } => {
            let mut v = if start {
                c.call("POST", "repair", None)?
            } else {
                c.call("GET", "repair", None)?
            };
            if wait {
                v = wait_repair(&c, &v)?;
            }
            print(json, &v, repair_text)
        }
    }
}

/// How often `site repair --wait` asks for progress.
const REPAIR_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// Polls the replica repair until a pass finishes after `first` (the answer when the wait
/// began), printing the pass's progress and rate; the last answer.
fn wait_repair(c: &Client, first: &Value) -> anyhow::Result<Value> {
    let passes = first["repair"]["passes"].as_u64().unwrap_or(0);
    let started = std::time::Instant::now();
    loop {
        std::thread::sleep(REPAIR_POLL);
        let v = c.call("GET", "repair", None)?;
        let r = &v["repair"];
        if r["passes"].as_u64().unwrap_or(0) > passes {
            return Ok(v);
        }
        let current = &r["current"];
        let scanned = current["scanned"].as_u64().unwrap_or(0);
        let secs = started.elapsed().as_secs_f64().max(f64::EPSILON);
        eprintln!(
            "repair: {scanned} scanned ({:.0}/s), {} copied, {} pending",
            scanned as f64 / secs,
            current["copied"],
            current["pending"]
        );
    }
}

fn set_document(
    file: Option<std::path::PathBuf>,
    name: Option<String>,
    allow: Vec<String>,
    forbid_exposure: Vec<String>,
    require_certification: Vec<String>,
    (replicas, operators, quorum): (u32, u32, Option<u32>),
) -> anyhow::Result<Value> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        return serde_json::from_str(&text)
            .with_context(|| format!("{} is not a JSON policy document", path.display()));
    }
    let Some(name) = name else {
        bail!("give the policy a --name (or a --file)");
    };
    if allow.is_empty() {
        bail!("name at least one --allow jurisdiction (e.g. --allow EU)");
    }
    let mut doc = json!({
        "name": name,
        "allowed": allow,
        "min_replicas": replicas,
        "min_operators": operators,
    });
    if !forbid_exposure.is_empty() {
        doc["forbidden_exposures"] = json!(forbid_exposure);
    }
    if !require_certification.is_empty() {
        doc["required_certifications"] = json!(require_certification);
    }
    if let Some(q) = quorum {
        doc["write_quorum"] = json!(q);
    }
    Ok(doc)
}

fn boundary_path(bucket: &str) -> String {
    format!("buckets/{}/boundary", encode(bucket))
}

/// Runs `vallum policy`.
pub fn run_policy(args: PolicyArgs) -> anyhow::Result<()> {
    let json = args.conn.json;
    let c: Client = args.conn.client()?;
    match args.op {
        PolicyOp::Show { bucket } => {
            let v = c.call("GET", &boundary_path(&bucket), None)?;
            print(json, &v, |v| {
                let own = match v["current"]["version"].as_u64() {
                    Some(n) => format!("version {n}: {}", policy_text(&v["current"]["policy"])),
                    None => "none".into(),
                };
                format!(
                    "bucket {bucket}\n  own policy  {own}\n  in force    {}\n",
                    policy_text(&v["effective"])
                )
            })
        }
        PolicyOp::Set {
            bucket,
            file,
            name,
            allow,
            forbid_exposure,
            require_certification,
            replicas,
            operators,
            quorum,
        } => {
            let doc = set_document(
                file,
                name,
                allow,
                forbid_exposure,
                require_certification,
                (replicas, operators, quorum),
            )?;
            let v = c.call("PUT", &boundary_path(&bucket), Some(doc))?;
            print(json, &v, |v| {
                format!("bucket {bucket}: {}\n", version_text(&v["current"]))
            })
        }
        PolicyOp::Clear { bucket } => {
            let v = c.call("DELETE", &boundary_path(&bucket), None)?;
            print(json, &v, |v| {
                format!("bucket {bucket}: {}\n", version_text(&v["current"]))
            })
        }
        PolicyOp::History { bucket } => {
            let v = c.call("GET", &format!("{}/history", boundary_path(&bucket)), None)?;
            print(json, &v, |v| {
                let lines: Vec<String> = v["versions"]
                    .as_array()
                    .map(|a| a.iter().map(version_text).collect())
                    .unwrap_or_default();
                if lines.is_empty() {
                    format!("bucket {bucket}: no boundary policy was ever set\n")
                } else {
                    format!("{}\n", lines.join("\n"))
                }
            })
        }
    }
}

fn compliance_text(b: &Value) -> String {
    let name = b["bucket"].as_str().unwrap_or("");
    let policy = b["policy"].as_str().unwrap_or("none");
    let mut out = if b["compliant"] == true {
        format!(
            "bucket {name}: inside policy {policy} on site {}\n",
            b["site"].as_str().unwrap_or("")
        )
    } else {
        format!("bucket {name}: OUTSIDE policy {policy}\n")
    };
    for r in b["reasons"].as_array().cloned().unwrap_or_default() {
        out.push_str(&format!("  {}\n", r.as_str().unwrap_or("")));
    }
    for h in b["sites"].as_array().cloned().unwrap_or_default() {
        out.push_str(&format!(
            "  on site {}: {} blob(s), {} byte(s){}\n",
            h["site"].as_str().unwrap_or(""),
            h["blobs"],
            h["bytes"],
            if h["compliant"] == true {
                ""
            } else {
                " (outside)"
            }
        ));
    }
    if b["held"].is_object() {
        out.push_str(&format!(
            "  holds {} version(s), {} byte(s)\n",
            b["held"]["versions"], b["held"]["bytes"]
        ));
    }
    out
}

/// Runs `vallum placement`; `Ok(false)` when the object could not be placed, or a bucket's
/// data is outside its policy.
pub fn run_placement(args: PlacementArgs) -> anyhow::Result<bool> {
    let json = args.conn.json;
    let c = args.conn.client()?;
    match args.op {
        PlacementOp::Explain { bucket, key } => {
            let v = c.call(
                "GET",
                &format!("buckets/{}/placement/{}", encode(&bucket), encode(&key)),
                None,
            )?;
            print(json, &v, |v| decision_text(v, &bucket, &key))?;
            Ok(v["refusal"].is_null())
        }
        PlacementOp::Check {
            bucket: Some(bucket),
            report,
        } => {
            let v = c.call(
                "GET",
                &format!("buckets/{}/compliance", encode(&bucket)),
                None,
            )?;
            if let Some(path) = &report {
                crate::admin_client::write_report(&v, path)?;
            }
            print(json, &v, compliance_text)?;
            Ok(v["compliant"] == true)
        }
        PlacementOp::Check {
            bucket: None,
            report,
        } => {
            let v = c.call("GET", "compliance", None)?;
            if let Some(path) = &report {
                crate::admin_client::write_report(&v, path)?;
            }
            print(json, &v, |v| {
                v["buckets"]
                    .as_array()
                    .map(|a| a.iter().map(compliance_text).collect::<String>())
                    .unwrap_or_default()
            })?;
            Ok(v["non_compliant"] == 0)
        }
    }
}
