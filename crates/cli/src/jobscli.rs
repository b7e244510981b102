//! `vallum jobs`: the gateway's background jobs (garbage collection, lifecycle, key deletion,
//! replica repair, boundary check, refreshes, log integration) and what each last did, through
//! the admin API.

use clap::Args;
use serde_json::Value;

use crate::admin_client::AdminConn;

/// Arguments of `vallum jobs`.
#[derive(Debug, Args)]
pub struct JobsArgs {
    #[command(flatten)]
    conn: AdminConn,
}

fn when(v: &Value) -> String {
    v.as_i64()
        .and_then(|ms| {
            time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
        })
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "-".into())
}

/// The jobs as a table: one line each, then each job's last error.
fn table(v: &Value) -> String {
    let mut out = format!(
        "{:<16} {:<7} {:>9} {:>7} {:>8}  {:<25} {}\n",
        "JOB", "LEASED", "INTERVAL", "STEPS", "FAILURES", "LAST SUCCESS", "STATE"
    );
    let jobs = v["jobs"].as_array().cloned().unwrap_or_default();
    for j in &jobs {
        let state = if j["last_error"].is_string() {
            "failing"
        } else if j["holds_lease"] == false {
            "standby (another gateway holds the lease)"
        } else if j["steps"] == 0 {
            "waiting"
        } else {
            "ok"
        };
        out.push_str(&format!(
            "{:<16} {:<7} {:>8}s {:>7} {:>8}  {:<25} {}\n",
            j["name"].as_str().unwrap_or(""),
            if j["leased"] == true { "yes" } else { "no" },
            j["interval_secs"],
            j["steps"],
            j["failures"],
            when(&j["last_success_ms"]),
            state
        ));
    }
    for j in jobs.iter().filter(|j| j["last_error"].is_string()) {
        out.push_str(&format!(
            "{}: {}\n",
            j["name"].as_str().unwrap_or(""),
            j["last_error"].as_str().unwrap_or("")
        ));
    }
    for r in v["rewraps"].as_array().cloned().unwrap_or_default() {
        out.push_str(&format!(
            "re-wrap of key {}: {}\n",
            r["key_id"].as_str().unwrap_or(""),
            r["progress"]
        ));
    }
    out
}

/// Runs `vallum jobs`.
pub fn run(args: JobsArgs) -> anyhow::Result<()> {
    let json = args.conn.json;
    let v = args.conn.client()?.call("GET", "jobs", None)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", table(&v));
    }
    Ok(())
}
