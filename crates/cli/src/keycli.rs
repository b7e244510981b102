//! `vallum key`: key lifecycle through the admin API, signed with the root credentials.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use vallum_crypto::sigv4::{self, Signer};

/// Time limit of one admin call.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(60);

/// How often `--wait` polls a re-wrap job.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Arguments of `vallum key`.
#[derive(Debug, Args)]
pub struct KeyArgs {
    /// The Vallum endpoint.
    #[arg(long, env = "VALLUM_ENDPOINT", default_value = "http://127.0.0.1:9000")]
    endpoint: String,
    /// Root access key.
    #[arg(long, env = "AWS_ACCESS_KEY_ID")]
    access_key: String,
    /// Root secret key.
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    secret_key: String,
    /// Region of the signature scope.
    #[arg(long, env = "AWS_DEFAULT_REGION", default_value = "us-east-1")]
    region: String,
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
    },
}

/// A key id as one path segment.
fn encode(id: &str) -> String {
    sigv4::uri_encode(id, false)
}

struct Client {
    base: http::Uri,
    signer: Signer,
    agent: ureq::Agent,
}

impl Client {
    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<serde_json::Value> {
        let full = format!("/_vallum/admin/v1/{path}");
        let authority = self.base.authority().map(|a| a.as_str()).unwrap_or("");
        let url = format!(
            "{}://{authority}{full}",
            self.base.scheme_str().unwrap_or("http")
        );
        let bytes = body.map(|b| b.to_string()).unwrap_or_default();
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let date = sigv4::amz_date(secs);
        let auth = self.signer.authorization(
            method,
            &full,
            "",
            authority,
            &date,
            &sigv4::payload_hash(bytes.as_bytes()),
        );
        let mut resp = match method {
            "GET" => self
                .agent
                .get(&url)
                .header("x-amz-date", &date)
                .header("authorization", &auth)
                .call(),
            _ => self
                .agent
                .post(&url)
                .header("x-amz-date", &date)
                .header("authorization", &auth)
                .header("content-type", "application/json")
                .send(bytes.as_bytes()),
        }
        .with_context(|| format!("calling {url}"))?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(16 * 1024 * 1024)
            .read_to_string()
            .with_context(|| format!("reading the answer of {url}"))?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("HTTP {status} from {url}: {text}"))?;
        if status != 200 {
            bail!(
                "{} ({status}): {}",
                value["error"].as_str().unwrap_or("error"),
                value["message"].as_str().unwrap_or("")
            );
        }
        Ok(value)
    }

    fn wait_rewrap(&self, id: &str) -> anyhow::Result<serde_json::Value> {
        loop {
            let p = self.call("GET", &format!("keys/{}/rewrap", encode(id)), None)?;
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
}

/// Runs `vallum key`.
pub fn run(args: KeyArgs) -> anyhow::Result<()> {
    let base: http::Uri = args
        .endpoint
        .parse()
        .with_context(|| format!("--endpoint {:?}", args.endpoint))?;
    if base.scheme_str() != Some("http") {
        bail!("--endpoint must be an http:// URL");
    }
    let c = Client {
        base,
        signer: Signer {
            access_key: args.access_key,
            secret: zeroize::Zeroizing::new(args.secret_key),
            region: args.region,
            service: "vallum-admin".into(),
        },
        agent: ureq::Agent::config_builder()
            .timeout_global(Some(ADMIN_TIMEOUT))
            .http_status_as_error(false)
            .build()
            .into(),
    };
    let out = match args.op {
        KeyOp::List => c.call("GET", "keys", None)?,
        KeyOp::Create { id } => {
            c.call("POST", "keys", Some(serde_json::json!({ "key_id": id })))?
        }
        KeyOp::Describe { id } => c.call("GET", &format!("keys/{}", encode(&id)), None)?,
        KeyOp::Rotate { id, wait } => {
            let r = c.call("POST", &format!("keys/{}/rotate", encode(&id)), None)?;
            if wait { c.wait_rewrap(&id)? } else { r }
        }
        KeyOp::Rewrap { id, wait } => {
            let r = c.call("POST", &format!("keys/{}/rewrap", encode(&id)), None)?;
            if wait { c.wait_rewrap(&id)? } else { r }
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
        KeyOp::Destroy { id, yes } => {
            if !yes {
                bail!("destroying {id} makes every object under it unrecoverable; add --yes");
            }
            c.call(
                "POST",
                &format!("keys/{}/destroy", encode(&id)),
                Some(serde_json::json!({ "confirm": id })),
            )?
        }
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
