//! `vallum tenant|user|access-key|operator|charter|lockbox|authz`: identity, access control
//! and the operator lockbox through the admin API. Every call is signed with the caller's own
//! access key (root, a tenant's user, an operator, a grant) and judged by the server's
//! decision point; the answer is printed readably, or as JSON with `--json`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::admin_client::{AdminConn, encode};

fn read_json(path: &PathBuf) -> anyhow::Result<Value> {
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading stdin")?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
    };
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

/// Arguments of `vallum tenant`.
#[derive(Debug, Args)]
pub struct TenantArgs {
    #[command(flatten)]
    conn: AdminConn,
    #[command(subcommand)]
    op: TenantOp,
}

#[derive(Debug, Subcommand)]
enum TenantOp {
    /// List tenants (root).
    List,
    /// Create a tenant with its first administrator `admin`; prints that user's access key
    /// and secret, once (root).
    Create {
        id: String,
        #[arg(long, default_value = "")]
        display_name: String,
        /// https:// URL lockbox events are posted to for the tenant's guardians (each post is
        /// signed with a secret printed once, as `webhook_secret`).
        #[arg(long)]
        guardian_webhook: Option<String>,
    },
    /// Show a tenant.
    Show { id: String },
    /// Change the display name or the guardian webhook (`--guardian-webhook ""` clears it; a
    /// webhook set gets a new signing secret, printed once as `webhook_secret`).
    Update {
        id: String,
        #[arg(long)]
        display_name: Option<String>,
        #[arg(long)]
        guardian_webhook: Option<String>,
    },
    /// A new signing secret for the tenant's webhook, printed once (tenant admins).
    WebhookSecret { id: String },
    /// Stop every key of the tenant's users (root).
    Disable { id: String },
    /// Let them work again (root).
    Enable { id: String },
    /// Delete a tenant without buckets, with its users and keys (root).
    Delete { id: String },
}

/// Runs `vallum tenant`.
pub fn run_tenant(args: TenantArgs) -> anyhow::Result<()> {
    let json = args.conn.json;
    let c = args.conn.client()?;
    let out = match args.op {
        TenantOp::List => c.call("GET", "tenants", None)?,
        TenantOp::Create {
            id,
            display_name,
            guardian_webhook,
        } => c.call(
            "POST",
            "tenants",
            Some(json!({ "id": id, "display_name": display_name, "guardian_webhook": guardian_webhook })),
        )?,
        TenantOp::Show { id } => c.call("GET", &format!("tenants/{}", encode(&id)), None)?,
        TenantOp::Update {
            id,
            display_name,
            guardian_webhook,
        } => {
            let mut body = serde_json::Map::new();
            if let Some(d) = display_name {
                body.insert("display_name".into(), json!(d));
            }
            if let Some(w) = guardian_webhook {
                body.insert(
                    "guardian_webhook".into(),
                    if w.is_empty() { Value::Null } else { json!(w) },
                );
            }
            c.call("PUT", &format!("tenants/{}", encode(&id)), Some(Value::Object(body)))?
        }
        TenantOp::WebhookSecret { id } => c.call(
            "POST",
            &format!("tenants/{}/webhook-secret", encode(&id)),
            None,
        )?,
        TenantOp::Disable { id } => {
            c.call("POST", &format!("tenants/{}/disable", encode(&id)), None)?
        }
        TenantOp::Enable { id } => c.call("POST", &format!("tenants/{}/enable", encode(&id)), None)?,
        TenantOp::Delete { id } => c.call("DELETE", &format!("tenants/{}", encode(&id)), None)?,
    };
    crate::output::print(json, &out)
}

/// Arguments of `vallum user`.
#[derive(Debug, Args)]
pub struct UserArgs {
    #[command(flatten)]
    conn: AdminConn,
    /// The tenant (default: `default`, the root credentials' own).
    #[arg(long, env = "VALLUM_TENANT", default_value = "default")]
    tenant: String,
    #[command(subcommand)]
    op: UserOp,
}

#[derive(Debug, Subcommand)]
enum UserOp {
    /// List the tenant's users.
    List,
    /// Create a user; `--role admin` administers the tenant, `--role guardian` signs the
    /// charter off and decides on operator access.
    Create {
        name: String,
        #[arg(long = "role")]
        roles: Vec<String>,
    },
    /// Show a user and its access keys.
    Show { name: String },
    /// Stop the user's keys.
    Disable { name: String },
    /// Let them work again.
    Enable { name: String },
    /// Delete the user and its keys.
    Delete { name: String },
    /// Set the user's identity policy (S3/IAM JSON) from FILE (`-`: stdin).
    PutPolicy { name: String, file: PathBuf },
    /// Show it.
    GetPolicy { name: String },
    /// Remove it.
    DeletePolicy { name: String },
    /// A guardian makes its own approval key: generated here, the secret half written to FILE
    /// (0600, never sent), the public half registered. From then on its lockbox approvals are
    /// signed with it (`vallum lockbox approve --signing-key FILE`), and a key service given
    /// the public half can check them.
    ApprovalKey {
        /// The guardian (the caller itself).
        name: String,
        /// Where to write the signing key.
        #[arg(long, required_unless_present = "vkey", conflicts_with = "vkey")]
        signing_key_out: Option<PathBuf>,
        /// Register this public key instead (made elsewhere, e.g. on an offline machine).
        #[arg(long)]
        vkey: Option<String>,
    },
}

/// Runs `vallum user`.
pub fn run_user(args: UserArgs) -> anyhow::Result<()> {
    let json = args.conn.json;
    let c = args.conn.client()?;
    let base = format!("tenants/{}/users", encode(&args.tenant));
    let out = match args.op {
        UserOp::List => c.call("GET", &base, None)?,
        UserOp::Create { name, roles } => {
            c.call("POST", &base, Some(json!({ "name": name, "roles": roles })))?
        }
        UserOp::Show { name } => c.call("GET", &format!("{base}/{}", encode(&name)), None)?,
        UserOp::ApprovalKey {
            name,
            signing_key_out,
            vkey,
        } => {
            let vkey = match (vkey, signing_key_out) {
                (Some(v), _) => v,
                (None, Some(out)) => {
                    let signer =
                        vallum_ledger::note::Signer::generate(&format!("{}/{name}", args.tenant))
                            .context("generating the approval key")?;
                    write_private(&out, signer.to_skey().as_bytes())?;
                    signer.vkey()
                }
                (None, None) => anyhow::bail!("give --signing-key-out FILE or --vkey KEY"),
            };
            c.call(
                "PUT",
                &format!("{base}/{}/approval-key", encode(&name)),
                Some(json!({ "vkey": vkey })),
            )?
        }
        UserOp::Disable { name } => {
            c.call("POST", &format!("{base}/{}/disable", encode(&name)), None)?
        }
        UserOp::Enable { name } => {
            c.call("POST", &format!("{base}/{}/enable", encode(&name)), None)?
        }
        UserOp::Delete { name } => c.call("DELETE", &format!("{base}/{}", encode(&name)), None)?,
        UserOp::PutPolicy { name, file } => c.call(
            "PUT",
            &format!("{base}/{}/policy", encode(&name)),
            Some(read_json(&file)?),
        )?,
        UserOp::GetPolicy { name } => {
            c.call("GET", &format!("{base}/{}/policy", encode(&name)), None)?
        }
        UserOp::DeletePolicy { name } => {
            c.call("DELETE", &format!("{base}/{}/policy", encode(&name)), None)?
        }
    };
    crate::output::print(json, &out)
}

/// Arguments of `vallum access-key`.
#[derive(Debug, Args)]
pub struct AccessKeyArgs {
    #[command(flatten)]
    conn: AdminConn,
    #[command(subcommand)]
    op: AccessKeyOp,
}

#[derive(Debug, Subcommand)]
enum AccessKeyOp {
    /// Create an access key for a user (`--tenant T --user U`) or an operator
    /// (`--operator O`); the secret is printed once.
    Create {
        #[arg(long, default_value = "default")]
        tenant: String,
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        operator: Option<String>,
    },
    /// List a user's or an operator's keys.
    List {
        #[arg(long, default_value = "default")]
        tenant: String,
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        operator: Option<String>,
    },
    /// Show a key (never its secret).
    Show { id: String },
    /// Replace a key's secret; the new one is printed once, the old one stops working.
    Rotate { id: String },
    /// Stop a key.
    Disable { id: String },
    /// Let it work again.
    Enable { id: String },
    /// Delete a key.
    Delete { id: String },
}

fn owner_path(tenant: &str, user: Option<&str>, operator: Option<&str>) -> anyhow::Result<String> {
    match (user, operator) {
        (Some(u), None) => Ok(format!(
            "tenants/{}/users/{}/access-keys",
            encode(tenant),
            encode(u)
        )),
        (None, Some(o)) => Ok(format!("operators/{}/access-keys", encode(o))),
        _ => anyhow::bail!("name exactly one owner: --user (with --tenant) or --operator"),
    }
}

/// Runs `vallum access-key`.
pub fn run_access_key(args: AccessKeyArgs) -> anyhow::Result<()> {
    let json = args.conn.json;
    let c = args.conn.client()?;
    let out = match args.op {
        AccessKeyOp::Create {
            tenant,
            user,
            operator,
        } => c.call(
            "POST",
            &owner_path(&tenant, user.as_deref(), operator.as_deref())?,
            None,
        )?,
        AccessKeyOp::List {
            tenant,
            user,
            operator,
        } => c.call(
            "GET",
            &owner_path(&tenant, user.as_deref(), operator.as_deref())?,
            None,
        )?,
        AccessKeyOp::Show { id } => c.call("GET", &format!("access-keys/{}", encode(&id)), None)?,
        AccessKeyOp::Rotate { id } => {
            c.call("POST", &format!("access-keys/{}/rotate", encode(&id)), None)?
        }
        AccessKeyOp::Disable { id } => c.call(
            "POST",
            &format!("access-keys/{}/disable", encode(&id)),
            None,
        )?,
        AccessKeyOp::Enable { id } => {
            c.call("POST", &format!("access-keys/{}/enable", encode(&id)), None)?
        }
        AccessKeyOp::Delete { id } => {
            c.call("DELETE", &format!("access-keys/{}", encode(&id)), None)?
        }
    };
    crate::output::print(json, &out)
}

/// Arguments of `vallum operator`.
#[derive(Debug, Args)]
pub struct OperatorArgs {
    #[command(flatten)]
    conn: AdminConn,
    #[command(subcommand)]
    op: OperatorOp,
}

/// Attested attributes on the command line.
#[derive(Debug, Args)]
struct AttributeArgs {
    /// Citizenship (ISO 3166-1 alpha-2; repeatable).
    #[arg(long = "citizenship")]
    citizenship: Vec<String>,
    /// Country of residence.
    #[arg(long)]
    residency: Option<String>,
    /// Security clearance: none, restricted, confidential, secret, top_secret.
    #[arg(long)]
    clearance: Option<String>,
    /// Employer.
    #[arg(long)]
    employer: Option<String>,
    /// Working location or facility.
    #[arg(long)]
    location: Option<String>,
    /// Evidence of the attestation (vetting file, HR record).
    #[arg(long, default_value = "")]
    evidence: String,
}

impl AttributeArgs {
    fn attributes(&self) -> Value {
        json!({
            "citizenship": self.citizenship,
            "residency": self.residency,
            "clearance": self.clearance,
            "employer": self.employer,
            "location": self.location,
        })
    }
}

#[derive(Debug, Subcommand)]
enum OperatorOp {
    /// List operators (root).
    List,
    /// Register an operator (root). The attributes are the platform's declaration; tenants'
    /// charters count only what the tenant's own guardians attest (`attest-for`).
    Create {
        name: String,
        /// Personnel role (sre, support, dba, ...), matched against tenants' charters.
        #[arg(long)]
        role: String,
        #[command(flatten)]
        attrs: AttributeArgs,
    },
    /// Show an operator and its keys.
    Show { name: String },
    /// Declare an operator's attributes anew (root; tenants' charters do not count them).
    Attest {
        name: String,
        #[arg(long)]
        role: Option<String>,
        #[command(flatten)]
        attrs: AttributeArgs,
    },
    /// A tenant's guardian attests an operator for that tenant: the role and attributes the
    /// tenant's charter is checked against, and the one access key the operator files
    /// requests with. Only attested operators get access; rotating that key voids it.
    AttestFor {
        name: String,
        /// The tenant (the guardian's own).
        #[arg(long)]
        tenant: String,
        /// The operator's access key id the attestation covers.
        #[arg(long)]
        access_key: String,
        #[arg(long)]
        role: String,
        #[command(flatten)]
        attrs: AttributeArgs,
    },
    /// The tenant's attestations of operators.
    Attestations {
        #[arg(long)]
        tenant: String,
    },
    /// A tenant's guardian withdraws its attestation; the operator's grants for the tenant end.
    Withdraw {
        name: String,
        #[arg(long)]
        tenant: String,
    },
    /// Stop an operator's keys.
    Disable { name: String },
    /// Let them work again.
    Enable { name: String },
    /// Delete an operator and its keys.
    Delete { name: String },
}

/// Runs `vallum operator`.
pub fn run_operator(args: OperatorArgs) -> anyhow::Result<()> {
    let json = args.conn.json;
    let c = args.conn.client()?;
    let out = match args.op {
        OperatorOp::List => c.call("GET", "operators", None)?,
        OperatorOp::Create { name, role, attrs } => c.call(
            "POST",
            "operators",
            Some(json!({ "name": name, "role": role, "attributes": attrs.attributes(), "evidence": attrs.evidence })),
        )?,
        OperatorOp::Show { name } => c.call("GET", &format!("operators/{}", encode(&name)), None)?,
        OperatorOp::Attest { name, role, attrs } => c.call(
            "POST",
            &format!("operators/{}/attest", encode(&name)),
            Some(json!({ "role": role, "attributes": attrs.attributes(), "evidence": attrs.evidence })),
        )?,
        OperatorOp::AttestFor {
            name,
            tenant,
            access_key,
            role,
            attrs,
        } => c.call(
            "PUT",
            &format!(
                "tenants/{}/attestations/{}",
                encode(&tenant),
                encode(&name)
            ),
            Some(json!({
                "role": role,
                "attributes": attrs.attributes(),
                "access_key": access_key,
                "evidence": attrs.evidence,
            })),
        )?,
        OperatorOp::Attestations { tenant } => c.call(
            "GET",
            &format!("tenants/{}/attestations", encode(&tenant)),
            None,
        )?,
        OperatorOp::Withdraw { name, tenant } => c.call(
            "DELETE",
            &format!(
                "tenants/{}/attestations/{}",
                encode(&tenant),
                encode(&name)
            ),
            None,
        )?,
        OperatorOp::Disable { name } => {
            c.call("POST", &format!("operators/{}/disable", encode(&name)), None)?
        }
        OperatorOp::Enable { name } => {
            c.call("POST", &format!("operators/{}/enable", encode(&name)), None)?
        }
        OperatorOp::Delete { name } => {
            c.call("DELETE", &format!("operators/{}", encode(&name)), None)?
        }
    };
    crate::output::print(json, &out)
}

/// Arguments of `vallum charter`.
#[derive(Debug, Args)]
pub struct CharterArgs {
    #[command(flatten)]
    conn: AdminConn,
    /// The tenant.
    #[arg(long, env = "VALLUM_TENANT", default_value = "default")]
    tenant: String,
    #[command(subcommand)]
    op: CharterOp,
}

#[derive(Debug, Subcommand)]
enum CharterOp {
    /// The charter in force and every version.
    Show,
    /// Propose a new version from FILE (JSON, see docs/charter.md; `-`: stdin).
    Propose { file: PathBuf },
    /// Sign a proposed version off (guardians); enough signatures put it in force.
    Sign {
        version: u32,
        #[arg(long, default_value = "")]
        comment: String,
    },
}

/// Runs `vallum charter`.
pub fn run_charter(args: CharterArgs) -> anyhow::Result<()> {
    let json = args.conn.json;
    let c = args.conn.client()?;
    let base = format!("tenants/{}/charter", encode(&args.tenant));
    let out = match args.op {
        CharterOp::Show => c.call("GET", &base, None)?,
        CharterOp::Propose { file } => c.call("PUT", &base, Some(read_json(&file)?))?,
        CharterOp::Sign { version, comment } => c.call(
            "POST",
            &format!("{base}/{version}/sign"),
            Some(json!({ "comment": comment })),
        )?,
    };
    crate::output::print(json, &out)
}

/// Arguments of `vallum lockbox`.
#[derive(Debug, Args)]
pub struct LockboxArgs {
    #[command(flatten)]
    conn: AdminConn,
    #[command(subcommand)]
    op: LockboxOp,
}

/// What an operator asks for.
#[derive(Debug, Args)]
struct ScopeArgs {
    /// The tenant.
    #[arg(long)]
    tenant: String,
    /// The bucket.
    #[arg(long)]
    bucket: String,
    /// Key prefix (default: the whole bucket).
    #[arg(long, default_value = "")]
    prefix: String,
    /// Operations: read, list, write, delete (repeatable or comma-separated).
    #[arg(long = "operation", value_delimiter = ',', required = true)]
    operations: Vec<String>,
    /// Why.
    #[arg(long)]
    purpose: String,
    /// Incident or ticket reference.
    #[arg(long)]
    ticket: String,
    /// How long, seconds.
    #[arg(long, default_value_t = 3600)]
    duration_secs: u64,
}

impl ScopeArgs {
    fn body(&self) -> Value {
        json!({
            "tenant": self.tenant,
            "scope": { "bucket": self.bucket, "prefix": self.prefix, "operations": self.operations },
            "purpose": self.purpose,
            "ticket": self.ticket,
            "duration_secs": self.duration_secs,
        })
    }
}

#[derive(Debug, Subcommand)]
enum LockboxOp {
    /// File an access request (operators); the tenant's guardians are notified.
    Request(ScopeArgs),
    /// Emergency access within the charter's break-glass rules: granted at once, raises an
    /// alert, reviewed by guardians afterwards (operators).
    BreakGlass(ScopeArgs),
    /// Requests: an operator's own, or a tenant's (guardians, admins).
    List,
    /// One request.
    Show { id: String },
    /// Approve (guardians); the charter's number of approvals starts the grant. A guardian with
    /// an approval key signs with it.
    Approve {
        id: String,
        #[arg(long, default_value = "")]
        comment: String,
        /// The guardian's signing key (from `vallum user approval-key`).
        #[arg(long)]
        signing_key: Option<PathBuf>,
    },
    /// Deny (guardians).
    Deny {
        id: String,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Revoke a grant at once (guardians, admins, or the operator itself).
    Revoke {
        id: String,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Claim an approved grant's scoped, expiring credential, once (the requesting operator).
    Credential { id: String },
    /// Review a break-glass grant after the fact (guardians).
    Review {
        id: String,
        /// Whether the emergency justified it.
        #[arg(long)]
        justified: bool,
        #[arg(long, default_value = "")]
        comment: String,
    },
}

/// Runs `vallum lockbox`.
pub fn run_lockbox(args: LockboxArgs) -> anyhow::Result<()> {
    let json = args.conn.json;
    let c = args.conn.client()?;
    let at = |id: &str, what: &str| format!("lockbox/{}/{what}", encode(id));
    let out = match args.op {
        LockboxOp::Request(s) => c.call("POST", "lockbox", Some(s.body()))?,
        LockboxOp::BreakGlass(s) => c.call("POST", "lockbox/break-glass", Some(s.body()))?,
        LockboxOp::List => c.call("GET", "lockbox", None)?,
        LockboxOp::Show { id } => c.call("GET", &format!("lockbox/{}", encode(&id)), None)?,
        LockboxOp::Approve {
            id,
            comment,
            signing_key,
        } => {
            let signature = match signing_key {
                Some(path) => {
                    let skey = zeroize::Zeroizing::new(
                        std::fs::read_to_string(&path)
                            .with_context(|| format!("reading {}", path.display()))?,
                    );
                    let signer = vallum_ledger::note::Signer::from_skey(skey.trim())
                        .context("the signing key file is damaged")?;
                    // What is signed is the server's statement of the request, shown here.
                    let statement = c.call("GET", &at(&id, "statement"), None)?;
                    let text = statement["statement"]
                        .as_str()
                        .context("the server gave no approval statement")?;
                    Some(signer.sign(text).line())
                }
                None => None,
            };
            c.call(
                "POST",
                &at(&id, "approve"),
                Some(json!({ "comment": comment, "signature": signature })),
            )?
        }
        LockboxOp::Deny { id, comment } => c.call(
            "POST",
            &at(&id, "deny"),
            Some(json!({ "comment": comment })),
        )?,
        LockboxOp::Revoke { id, comment } => c.call(
            "POST",
            &at(&id, "revoke"),
            Some(json!({ "comment": comment })),
        )?,
        LockboxOp::Credential { id } => c.call("POST", &at(&id, "credential"), None)?,
        LockboxOp::Review {
            id,
            justified,
            comment,
        } => c.call(
            "POST",
            &at(&id, "review"),
            Some(json!({ "justified": justified, "comment": comment })),
        )?,
    };
    crate::output::print(json, &out)
}

/// Arguments of `vallum authz`.
#[derive(Debug, Args)]
pub struct AuthzArgs {
    #[command(flatten)]
    conn: AdminConn,
    #[command(subcommand)]
    op: AuthzOp,
}

#[derive(Debug, Subcommand)]
enum AuthzOp {
    /// Explain the decision for a principal, an action and a resource: allow, explicit deny
    /// or implicit deny, with every policy that decided it. Exit code 0 allowed, 3 denied.
    Explain {
        /// The principal: a user of your tenant,
        #[arg(long, group = "who")]
        user: Option<String>,
        /// or an access key,
        #[arg(long, group = "who")]
        key: Option<String>,
        /// or an operator (root only),
        #[arg(long, group = "who")]
        operator: Option<String>,
        /// or an unsigned request.
        #[arg(long, group = "who")]
        anonymous: bool,
        /// The action, e.g. s3:GetObject.
        action: String,
        /// The bucket.
        #[arg(long)]
        bucket: Option<String>,
        /// The object key.
        #[arg(long)]
        object: Option<String>,
        /// A listing's prefix.
        #[arg(long)]
        prefix: Option<String>,
        /// The client's address.
        #[arg(long)]
        source_ip: Option<String>,
        /// The request arrives over TLS.
        #[arg(long)]
        secure: bool,
    },
}

/// Runs `vallum authz`; whether the decision allows.
pub fn run_authz(args: AuthzArgs) -> anyhow::Result<bool> {
    let json = args.conn.json;
    let c = args.conn.client()?;
    let AuthzOp::Explain {
        user,
        key,
        operator,
        anonymous,
        action,
        bucket,
        object,
        prefix,
        source_ip,
        secure,
    } = args.op;
    let out = c.call(
        "POST",
        "authz/explain",
        Some(json!({
            "user": user, "access_key": key, "operator": operator, "anonymous": anonymous,
            "action": action, "bucket": bucket, "key": object, "prefix": prefix,
            "source_ip": source_ip, "secure": secure,
        })),
    )?;
    crate::output::print(json, &out)?;
    Ok(out["decision"] == "allow")
}

/// Writes a secret file readable by its owner only.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    Ok(())
}
