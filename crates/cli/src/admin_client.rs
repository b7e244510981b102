//! The signed admin-API client the admin subcommands share (`vallum key`, `site`, `policy`,
//! `placement`, `tenant`, `user`, `lockbox`, ...): SigV4 with the caller's access key (the
//! root credentials, a tenant's user, an operator, a lockbox grant), JSON in and out.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use vallum_crypto::sigv4::{self, Signer};

/// Time limit of one admin call.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(60);

/// Largest admin answer read.
const MAX_ADMIN_ANSWER_BYTES: u64 = 16 * 1024 * 1024;

/// Where the admin API is and who calls it.
#[derive(Debug, Args)]
pub struct AdminConn {
    /// The Vallum endpoint.
    #[arg(long, env = "VALLUM_ENDPOINT", default_value = "http://127.0.0.1:9000")]
    endpoint: String,
    /// Access key: the root credentials, a tenant user's, an operator's or a lockbox grant's.
    #[arg(long, env = "AWS_ACCESS_KEY_ID")]
    access_key: String,
    /// Its secret key.
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    secret_key: String,
    /// Region of the signature scope.
    #[arg(long, env = "AWS_DEFAULT_REGION", default_value = "us-east-1")]
    region: String,
    /// PEM certificates to trust for an `https://` endpoint (a private CA), instead of the
    /// system's roots.
    #[arg(long, env = "AWS_CA_BUNDLE")]
    ca_file: Option<std::path::PathBuf>,
    /// Print the admin API's JSON answer instead of readable text (for scripts; also
    /// `VALLUM_JSON=1`).
    #[arg(
        long,
        global = true,
        env = "VALLUM_JSON",
        value_parser = clap::builder::FalseyValueParser::new()
    )]
    pub json: bool,
}

/// One path segment, percent-encoded (a `/` inside it included).
pub fn encode(segment: &str) -> String {
    sigv4::uri_encode(segment, false)
}

/// A client of one server's admin API.
pub struct Client {
    base: http::Uri,
    signer: Signer,
    agent: ureq::Agent,
}

impl AdminConn {
    /// The connection the environment describes (`VALLUM_ENDPOINT`, `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_DEFAULT_REGION`), for commands that reach the server only
    /// when asked to.
    pub fn from_env(endpoint: Option<String>) -> anyhow::Result<Self> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Ok(Self {
            endpoint: endpoint
                .or_else(|| var("VALLUM_ENDPOINT"))
                .unwrap_or_else(|| "http://127.0.0.1:9000".into()),
            access_key: var("AWS_ACCESS_KEY_ID")
                .context("AWS_ACCESS_KEY_ID: the caller's access key is needed")?,
            secret_key: var("AWS_SECRET_ACCESS_KEY")
                .context("AWS_SECRET_ACCESS_KEY: the caller's secret key is needed")?,
            region: var("AWS_DEFAULT_REGION").unwrap_or_else(|| "us-east-1".into()),
            ca_file: var("AWS_CA_BUNDLE").map(Into::into),
            json: var("VALLUM_JSON").is_some_and(|v| !matches!(v.as_str(), "0" | "false" | "no")),
        })
    }

    /// The client these arguments describe.
    pub fn client(self) -> anyhow::Result<Client> {
        let base: http::Uri = self
            .endpoint
            .parse()
            .with_context(|| format!("--endpoint {:?}", self.endpoint))?;
        let mut config = ureq::Agent::config_builder()
            .timeout_global(Some(ADMIN_TIMEOUT))
            .http_status_as_error(false);
        match base.scheme_str() {
            Some("http") => {}
            Some("https") => {
                config = config.tls_config(vallum_server::tls_client::tls_config(
                    self.ca_file.as_deref(),
                )?);
            }
            _ => bail!("--endpoint must be an http:// or https:// URL"),
        }
        Ok(Client {
            base,
            signer: Signer {
                access_key: self.access_key,
                secret: zeroize::Zeroizing::new(self.secret_key),
                region: self.region,
                service: "vallum-admin".into(),
            },
            agent: config.build().into(),
        })
    }
}

impl Client {
    /// Calls `method` (GET, POST, PUT or DELETE) on `path` under the admin prefix; the JSON
    /// answer, or the server's error and message.
    pub fn call(
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
        if !matches!(method, "GET" | "POST" | "PUT" | "DELETE") {
            bail!("admin calls use GET, POST, PUT or DELETE, not {method}");
        }
        let mut request = http::Request::builder()
            .method(method)
            .uri(&url)
            .header("x-amz-date", &date)
            .header("authorization", &auth);
        if !bytes.is_empty() {
            request = request.header("content-type", "application/json");
        }
        let request = request
            .body(bytes.into_bytes())
            .with_context(|| format!("building the request to {url}"))?;
        let sent = self.agent.run(request);
        let mut resp = sent.with_context(|| format!("calling {url}"))?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(MAX_ADMIN_ANSWER_BYTES)
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
}

/// Writes the common-shape report in an admin API answer (its `report` field) to `path`: JSON
/// when the name ends in `.json`, Markdown otherwise.
pub fn write_report(answer: &serde_json::Value, path: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let report: vallum_ledger::report::Report =
        serde_json::from_value(answer["report"].clone()).context("the answer carries no report")?;
    let text = if path.extension().is_some_and(|e| e == "json") {
        report.to_json()
    } else {
        report.to_markdown()
    };
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
