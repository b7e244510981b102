//! `vallum key`: key lifecycle through the admin API, signed with the root credentials.

use std::time::Duration;

use anyhow::bail;
use clap::{Args, Subcommand};

use crate::admin_client::{AdminConn, Client, encode};

/// How often `--wait` polls a re-wrap job.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Arguments of `vallum key`.
#[derive(Debug, Args)]
pub struct KeyArgs {
    #[command(flatten)]
    conn: AdminConn,
    #[command(subcommand)]
    op: KeyOp,
}

#[derive(Debug, Subcommand)]
enum KeyOp {
    /// List keys.
    List,
    /// Create a key-encryption key.
    Create { id: String },
    /// Show a key, what is encrypted under it, and its re-wrap job.
    Describe { id: String },
    /// Add a key version and re-wrap every object's data key under it in the background.
    Rotate {
        id: String,
        /// Wait for the re-wrap job, printing its progress.
        #[arg(long)]
        wait: bool,
    },
    /// (Re)start the re-wrap job of a key.
    Rewrap {
        id: String,
        /// Wait for it, printing its progress.
        #[arg(long)]
        wait: bool,
    },
    /// Refuse every use of the key (reads of its objects fail) until enabled.
    Disable { id: String },
    /// Allow the key again.
    Enable { id: String },
    /// Destroy the key after a waiting period (7-30 days); reads fail meanwhile.
    ScheduleDeletion {
        id: String,
        #[arg(long, default_value_t = 30)]
        days: u32,
    },
    /// Cancel a scheduled deletion (the key is enabled again).
    CancelDeletion { id: String },
    /// Destroy the key now (crypto-shredding): every object under it becomes unrecoverable;
    /// prints what was lost.
    Destroy {
        id: String,
        /// Confirm.
        #[arg(long)]
        yes: bool,
        /// Also write the shred report in the common report shape here (Markdown, or JSON
        /// when the name ends in .json), with the log checkpoint it refers to.
        #[arg(long)]
        report: Option<std::path::PathBuf>,
    },
}

fn wait_rewrap(c: &Client, id: &str) -> anyhow::Result<serde_json::Value> {
    // The versions under the key when the wait starts: what the job has to go through.
    let total = c.call("GET", &format!("keys/{}", encode(id)), None)?["usage"]["versions"].as_u64();
    let started = std::time::Instant::now();
    loop {
        let p = c.call("GET", &format!("keys/{}/rewrap", encode(id)), None)?;
        let scanned = p["scanned"].as_u64().unwrap_or(0);
        eprintln!(
            "re-wrap {id}: {} ({} re-wrapped, {} current, {} skipped, {} failed)",
            progress_line(scanned, total, started.elapsed()),
            p["rewrapped"],
            p["current"],
            p["skipped"],
            p["failed"]
        );
        if p["done"].as_bool() == Some(true) {
            return Ok(p);
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// `done/total scanned (P%), R/s, about S s left`: the rate since the start and the time the
/// rest takes at that rate (no estimate until something is done or without a total).
fn progress_line(done: u64, total: Option<u64>, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
    match total.filter(|t| *t > 0) {
        Some(total) => {
            let left = total.saturating_sub(done);
            let eta = if rate > 0.0 {
                format!(", about {:.0} s left", left as f64 / rate)
            } else {
                String::new()
            };
            format!(
                "{done}/{total} scanned ({:.0}%), {rate:.0}/s{eta}",
                100.0 * done.min(total) as f64 / total as f64
            )
        }
        None => format!("{done} scanned, {rate:.0}/s"),
    }
}

/// Runs `vallum key`.
pub fn run(args: KeyArgs) -> anyhow::Result<()> {
    let json = args.conn.json;
    let c = args.conn.client()?;
    let out = match args.op {
        KeyOp::List => c.call("GET", "keys", None)?,
        KeyOp::Create { id } => {
            c.call("POST", "keys", Some(serde_json::json!({ "key_id": id })))?
        }
        KeyOp::Describe { id } => c.call("GET", &format!("keys/{}", encode(&id)), None)?,
        KeyOp::Rotate { id, wait } => {
            let r = c.call("POST", &format!("keys/{}/rotate", encode(&id)), None)?;
            if wait { wait_rewrap(&c, &id)? } else { r }
        }
        KeyOp::Rewrap { id, wait } => {
            let r = c.call("POST", &format!("keys/{}/rewrap", encode(&id)), None)?;
            if wait { wait_rewrap(&c, &id)? } else { r }
        }
        KeyOp::Disable { id } => c.call("POST", &format!("keys/{}/disable", encode(&id)), None)?,
        KeyOp::Enable { id } => c.call("POST", &format!("keys/{}/enable", encode(&id)), None)?,
        KeyOp::ScheduleDeletion { id, days } => c.call(
            "POST",
            &format!("keys/{}/schedule-deletion", encode(&id)),
            Some(serde_json::json!({ "days": days })),
        )?,
        KeyOp::CancelDeletion { id } => c.call(
            "POST",
            &format!("keys/{}/cancel-deletion", encode(&id)),
            None,
        )?,
        KeyOp::Destroy { id, yes, report } => {
            if !yes {
                bail!("destroying {id} makes every object under it unrecoverable; add --yes");
            }
            let out = c.call(
                "POST",
                &format!("keys/{}/destroy", encode(&id)),
                Some(serde_json::json!({ "confirm": id })),
            )?;
            if let Some(path) = &report {
                crate::admin_client::write_report(&out, path)?;
            }
            out
        }
    };
    crate::output::print(json, &out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_give_rate_and_time_left() {
        assert_eq!(
            progress_line(50, Some(200), Duration::from_secs(10)),
            "50/200 scanned (25%), 5/s, about 30 s left"
        );
        assert_eq!(
            progress_line(0, Some(200), Duration::from_secs(0)),
            "0/200 scanned (0%), 0/s"
        );
        // More than counted at the start (objects written meanwhile): no negative time.
        assert_eq!(
            progress_line(300, Some(200), Duration::from_secs(10)),
            "300/200 scanned (100%), 30/s, about 0 s left"
        );
        assert_eq!(
            progress_line(7, None, Duration::from_secs(7)),
            "7 scanned, 1/s"
        );
    }
}
