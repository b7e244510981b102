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
    loop {
        let p = c.call("GET", &format!("keys/{}/rewrap", encode(id)), None)?;
        eprintln!(
            "re-wrap {id}: {} scanned, {} re-wrapped, {} current, {} skipped, {} failed",
            p["scanned"], p["rewrapped"], p["current"], p["skipped"], p["failed"]
        );
        if p["done"].as_bool() == Some(true) {
            return Ok(p);
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Runs `vallum key`.
pub fn run(args: KeyArgs) -> anyhow::Result<()> {
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
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
