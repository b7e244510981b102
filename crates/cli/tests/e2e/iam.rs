//! Identity, access control and the operator lockbox end to end, through the real S3 and
//! admin endpoints: tenants and their users, operators with attested attributes, a charter
//! signed off by two guardians, lockbox grants (in scope, out of scope, expired, revoked),
//! break-glass, bucket policies from AWS's documented examples, and tenant isolation.

use crate::common;

use std::time::{Duration, Instant};

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use common::{
    Server, aws_as, bundle_entries, json, run, run_failing, tool, vallum_admin, vallum_as,
};
use serde_json::Value;

/// One post a guardian webhook received.
#[derive(Clone, Debug)]
struct Posted {
    body: Value,
    raw: Vec<u8>,
    signature: String,
    delivery: String,
}

/// A guardian webhook: an HTTPS listener (the test CA's localhost certificate) recording every
/// JSON event posted to it; it answers 500 to the first `fail_first` posts.
struct Hook {
    url: String,
    posts: std::sync::Arc<std::sync::Mutex<Vec<Posted>>>,
}

impl Hook {
    /// The events received so far, as `"<event>" <request id>`.
    fn heard(&self) -> Vec<String> {
        self.posts
            .lock()
            .unwrap()
            .iter()
            .map(|p| {
                format!(
                    "{} {}",
                    p.body["event"],
                    p.body["request"]["id"].as_str().unwrap_or("")
                )
            })
            .collect()
    }

    /// Waits until an event named `event` arrived (or 15 s passed).
    async fn wait_for(&self, event: &str) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let heard = self.heard();
            if heard.iter().any(|h| h.contains(event)) || Instant::now() > deadline {
                return heard;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn webhook(certs: &std::path::Path, fail_first: usize) -> Hook {
    use std::io::{BufRead, BufReader, Read, Write};
    let config =
        vallum_xks::tls::server_config(&certs.join("cert.pem"), &certs.join("key.pem")).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "https://localhost:{}/guardians",
        listener.local_addr().unwrap().port()
    );
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = std::sync::Arc::clone(&got);
    std::thread::spawn(move || {
        let mut seen = 0usize;
        for stream in listener.incoming() {
            let Ok(tcp) = stream else { continue };
            let Ok(conn) = rustls::ServerConnection::new(std::sync::Arc::clone(&config)) else {
                continue;
            };
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            let mut reader = BufReader::new(&mut tls);
            let (mut len, mut signature, mut delivery) = (0usize, String::new(), String::new());
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                } else if lower.starts_with("x-vallum-signature:") {
                    signature = line["x-vallum-signature:".len()..].trim().to_owned();
                } else if lower.starts_with("x-vallum-delivery:") {
                    delivery = line["x-vallum-delivery:".len()..].trim().to_owned();
                }
            }
            let mut raw = vec![0u8; len];
            let complete = reader.read_exact(&mut raw).is_ok();
            seen += 1;
            let status = if seen <= fail_first {
                "500 Oops"
            } else {
                "200 OK"
            };
            if complete
                && seen > fail_first
                && let Ok(body) = serde_json::from_slice::<Value>(&raw)
            {
                sink.lock().unwrap().push(Posted {
                    body,
                    raw,
                    signature,
                    delivery,
                });
            }
            let _ = tls.write_all(
                format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .as_bytes(),
            );
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    });
    Hook { url, posts: got }
}

/// Checks a post's `x-vallum-signature` (`t=<ts>,v1=<hex HMAC-SHA256 of "<ts>.<body>">`).
fn signature_valid(post: &Posted, secret: &str) -> bool {
    use hmac::{KeyInit, Mac};
    let Some((t, v1)) = post
        .signature
        .strip_prefix("t=")
        .and_then(|rest| rest.split_once(",v1="))
    else {
        return false;
    };
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(&post.raw);
    let want: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    want == v1
}

/// A principal's credentials.
#[derive(Clone)]
struct Who {
    name: &'static str,
    key: String,
    secret: String,
}

fn keypair(name: &'static str, v: &Value) -> Who {
    Who {
        name,
        key: v["access_key"]["id"].as_str().unwrap().to_owned(),
        secret: v["secret_key"].as_str().unwrap().to_owned(),
    }
}

fn as_who(server: &Server, who: &Who, sub: &str, args: &[&str]) -> Value {
    json(&run(
        vallum_as(server, &who.key, &who.secret, sub).args(args)
    ))
}

fn as_who_fails(server: &Server, who: &Who, sub: &str, args: &[&str]) -> String {
    run_failing(vallum_as(server, &who.key, &who.secret, sub).args(args))
}

fn root(server: &Server) -> Who {
    Who {
        name: "root",
        key: server.access_key.clone(),
        secret: server.secret_key.clone(),
    }
}

/// The outcome of one S3 call: `Ok` or the S3 error code.
type Outcome = Result<(), String>;

#[derive(Clone, Copy, Debug)]
enum Op {
    Get,
    Put,
    Delete,
    List,
    ListBuckets,
}

async fn s3(server: &Server, who: &Who, op: Op, bucket: &str, key: &str) -> Outcome {
    let c = server.client_with(&who.key, &who.secret);
    let code = |e: &dyn ProvideErrorMetadata| e.code().unwrap_or("?").to_owned();
    match op {
        Op::Get => c
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| code(&e)),
        Op::Put => c
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from_static(b"written"))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| code(&e)),
        Op::Delete => c
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| code(&e)),
        Op::List => c
            .list_objects_v2()
            .bucket(bucket)
            .prefix(key)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| code(&e)),
        Op::ListBuckets => c
            .list_buckets()
            .send()
            .await
            .map(|_| ())
            .map_err(|e| code(&e)),
    }
}

async fn get_text(server: &Server, who: &Who, bucket: &str, key: &str) -> String {
    let c = server.client_with(&who.key, &who.secret);
    let out = c.get_object().bucket(bucket).key(key).send().await.unwrap();
    String::from_utf8(out.body.collect().await.unwrap().into_bytes().to_vec()).unwrap()
}

async fn put_text(server: &Server, who: &Who, bucket: &str, key: &str, text: &str) {
    server
        .client_with(&who.key, &who.secret)
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(text.as_bytes().to_vec()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{} put {bucket}/{key}: {e:?}", who.name));
}

const CHARTER: &str = r#"{
  "roles": ["sre", "support"],
  "access": {
    "read": {"citizenship": ["FR", "DE"], "clearance": "secret", "location": ["par-1", "fra-1"]},
    "list": {"citizenship": ["FR", "DE"]},
    "break_glass": {"roles": ["sre"], "citizenship": ["FR"]}
  },
  "max_grant_secs": 14400,
  "approvals_required": 2,
  "audit_frequency_days": 90,
  "break_glass_max_secs": 3600
}"#;

/// Everything one test needs: two tenants with a bucket named alike, users, operators and a
/// charter in force for `acme`.
struct World {
    server: Server,
    acme_admin: Who,
    globex_admin: Who,
    alice: Who,
    gina: Who,
    bob: Who,
    olga: Who,
    ursula: Who,
    _tmp: tempfile::TempDir,
}

async fn world() -> World {
    // Guardian webhooks are HTTPS; the test's own receiver is on loopback.
    let tmp = tempfile::tempdir().unwrap();
    common::test_ca(tmp.path());
    let config = tmp.path().join("vallum.toml");
    std::fs::write(
        &config,
        format!(
            "[webhooks]\nallow_internal = true\nca_file = \"{}\"\nattempts = 4\n",
            tmp.path().join("ca.pem").display()
        ),
    )
    .unwrap();
    let server = Server::start_with(&["--config", config.to_str().unwrap()], &[]);
    let r = root(&server);
    let acme = as_who(
        &server,
        &r,
        "tenant",
        &["create", "acme", "--display-name", "ACME Bank"],
    );
    let acme_admin = keypair("acme-admin", &acme);
    let globex = as_who(&server, &r, "tenant", &["create", "globex"]);
    let globex_admin = keypair("globex-admin", &globex);
    // The same bucket name in both tenants: names are scoped.
    for (admin, text) in [(&acme_admin, "acme"), (&globex_admin, "globex")] {
        run(aws_as(&server, &admin.key, &admin.secret).args(["s3", "mb", "s3://records"]));
        put_text(
            &server,
            admin,
            "records",
            "logs/a.txt",
            &format!("{text} log"),
        )
        .await;
        put_text(
            &server,
            admin,
            "records",
            "secret/b.txt",
            &format!("{text} secret"),
        )
        .await;
    }
    let user = |name: &'static str, roles: &[&str]| {
        let mut args = vec!["create", name];
        for r in roles {
            args.extend(["--role", r]);
        }
        as_who(
            &server,
            &acme_admin,
            "user",
            &[&["--tenant", "acme"], &args[..]].concat(),
        );
        let k = as_who(
            &server,
            &acme_admin,
            "access-key",
            &["create", "--tenant", "acme", "--user", name],
        );
        keypair(name, &k)
    };
    let alice = user("alice", &["guardian"]);
    let gina = user("gina", &["guardian"]);
    let bob = user("bob", &[]);
    // Bob may read logs/ only (an identity policy).
    let policy = tmp.path().join("bob.json");
    std::fs::write(
        &policy,
        r#"{"Version":"2012-10-17","Statement":[{"Sid":"ReadLogs","Effect":"Allow","Action":["s3:GetObject"],"Resource":"arn:aws:s3:::records/logs/*"}]}"#,
    )
    .unwrap();
    as_who(
        &server,
        &acme_admin,
        "user",
        &[
            "--tenant",
            "acme",
            "put-policy",
            "bob",
            policy.to_str().unwrap(),
        ],
    );
    let operator = |name: &'static str, citizenship: &str| {
        as_who(
            &server,
            &r,
            "operator",
            &[
                "create",
                name,
                "--role",
                "sre",
                "--citizenship",
                citizenship,
                "--residency",
                citizenship,
                "--clearance",
                "secret",
                "--employer",
                "Vallum SAS",
                "--location",
                "par-1",
                "--evidence",
                "HR-2026-17",
            ],
        );
        keypair(
            name,
            &as_who(&server, &r, "access-key", &["create", "--operator", name]),
        )
    };
    let olga = operator("olga", "FR");
    let ursula = operator("ursula", "US");
    // The charter: proposed by the tenant's admin, in force after two guardians sign.
    let charter = tmp.path().join("charter.json");
    std::fs::write(&charter, CHARTER).unwrap();
    let proposed = as_who(
        &server,
        &acme_admin,
        "charter",
        &["--tenant", "acme", "propose", charter.to_str().unwrap()],
    );
    assert_eq!(proposed["proposed"]["version"], 1);
    assert_eq!(proposed["signatures_needed"], 2);
    let one = as_who(
        &server,
        &alice,
        "charter",
        &["--tenant", "acme", "sign", "1"],
    );
    assert_eq!(one["state"], "proposed");
    // The admin is no guardian: it cannot sign its own proposal.
    let e = as_who_fails(
        &server,
        &acme_admin,
        "charter",
        &["--tenant", "acme", "sign", "1"],
    );
    assert!(
        e.contains("AccessDenied") && e.contains("guardians-only"),
        "{e}"
    );
    let two = as_who(
        &server,
        &gina,
        "charter",
        &["--tenant", "acme", "sign", "1"],
    );
    assert_eq!(two["state"], "active");
    // Acme's guardians vet the operators themselves: the role, attributes and access key
    // their charter is checked against (what the platform declared counts for nothing).
    for (op, citizenship) in [(&olga, "FR"), (&ursula, "US")] {
        let att = as_who(
            &server,
            &alice,
            "operator",
            &[
                "attest-for",
                op.name,
                "--tenant",
                "acme",
                "--access-key",
                &op.key,
                "--role",
                "sre",
                "--citizenship",
                citizenship,
                "--residency",
                citizenship,
                "--clearance",
                "secret",
                "--employer",
                "Vallum SAS",
                "--location",
                "par-1",
                "--evidence",
                "acme vetting file 2026-03",
            ],
        );
        assert_eq!(att["access_key"], op.key.as_str());
        assert_eq!(att["by"], "acme/alice");
    }
    World {
        server,
        acme_admin,
        globex_admin,
        alice,
        gina,
        bob,
        olga,
        ursula,
        _tmp: tmp,
    }
}

fn request(w: &World, op: &Who, prefix: &str, operations: &str, secs: &str) -> Value {
    as_who(
        &w.server,
        op,
        "lockbox",
        &[
            "request",
            "--tenant",
            "acme",
            "--bucket",
            "records",
            "--prefix",
            prefix,
            "--operation",
            operations,
            "--purpose",
            "customer ticket: corrupted log",
            "--ticket",
            "INC-4711",
            "--duration-secs",
            secs,
        ],
    )
}

fn approve_twice(w: &World, id: &str) -> Value {
    let first = as_who(&w.server, &w.alice, "lockbox", &["approve", id]);
    assert_eq!(first["status"], "pending", "one approval of two: {first}");
    as_who(
        &w.server,
        &w.gina,
        "lockbox",
        &["approve", id, "--comment", "ok"],
    )
}

fn claim(w: &World, op: &Who, id: &str) -> Who {
    keypair(
        "grant",
        &as_who(&w.server, op, "lockbox", &["credential", id]),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn principals_actions_and_resources_give_the_expected_decisions() {
    let w = world().await;
    let s = &w.server;
    // Acme's guardians hear about lockbox events through their webhook, over HTTPS, each post
    // signed with the secret they were shown once; the receiver fails twice at first, and the
    // gateway retries.
    let hook = webhook(w._tmp.path(), 2);
    let set = as_who(
        s,
        &w.acme_admin,
        "tenant",
        &["update", "acme", "--guardian-webhook", &hook.url],
    );
    let webhook_secret = set["webhook_secret"].as_str().unwrap().to_owned();
    assert_eq!(webhook_secret.len(), 40);
    assert!(!set["guardian_webhook"].is_null());
    let anonymous_get = |path: &str| -> String {
        run(std::process::Command::new("curl").args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("{}/{path}", s.endpoint),
        ]))
    };

    // Operator access: filed, refused for the operator failing the charter, approved m of n.
    let e = as_who_fails(
        s,
        &w.ursula,
        "lockbox",
        &[
            "request",
            "--tenant",
            "acme",
            "--bucket",
            "records",
            "--operation",
            "read",
            "--purpose",
            "p",
            "--ticket",
            "INC-1",
            "--duration-secs",
            "600",
        ],
    );
    assert!(
        e.contains("does not meet the charter") && e.contains("citizenship FR or DE"),
        "{e}"
    );
    let too_long = as_who_fails(
        s,
        &w.olga,
        "lockbox",
        &[
            "request",
            "--tenant",
            "acme",
            "--bucket",
            "records",
            "--operation",
            "read",
            "--purpose",
            "p",
            "--ticket",
            "INC-1",
            "--duration-secs",
            "99999",
        ],
    );
    assert!(too_long.contains("at most 14400 s"), "{too_long}");
    let filed = request(&w, &w.olga, "logs/", "read,list", "600");
    let id = filed["id"].as_str().unwrap().to_owned();
    assert_eq!(filed["status"], "pending");
    // Nobody but the operator's own credential-claim works before approval.
    let e = as_who_fails(s, &w.olga, "lockbox", &["credential", &id]);
    assert!(e.contains("pending"), "{e}");
    // globex's admin cannot approve acme's request; acme's admin is no guardian.
    for who in [&w.globex_admin, &w.acme_admin, &w.bob] {
        let e = as_who_fails(s, who, "lockbox", &["approve", &id]);
        assert!(e.contains("AccessDenied"), "{}: {e}", who.name);
    }
    let granted = approve_twice(&w, &id);
    assert_eq!(granted["status"], "active", "{granted}");
    let in_scope = claim(&w, &w.olga, &id);
    assert!(in_scope.key.starts_with("VG"));
    let e = as_who_fails(s, &w.olga, "lockbox", &["credential", &id]);
    assert!(e.contains("already claimed"), "{e}");
    // Ursula cannot claim Olga's grant.
    let e = as_who_fails(s, &w.ursula, "lockbox", &["credential", &id]);
    assert!(e.contains("another operator"), "{e}");

    // An expired grant and a revoked one.
    let short = request(&w, &w.olga, "logs/", "read", "2");
    let short_id = short["id"].as_str().unwrap().to_owned();
    approve_twice(&w, &short_id);
    let expired = claim(&w, &w.olga, &short_id);
    let revocable = request(&w, &w.olga, "logs/", "read", "600");
    let revocable_id = revocable["id"].as_str().unwrap().to_owned();
    approve_twice(&w, &revocable_id);
    let revoked = claim(&w, &w.olga, &revocable_id);
    assert!(
        s3(s, &revoked, Op::Get, "records", "logs/a.txt")
            .await
            .is_ok()
    );
    let r = as_who(
        s,
        &w.alice,
        "lockbox",
        &["revoke", &revocable_id, "--comment", "done"],
    );
    assert_eq!(r["status"], "revoked");
    tokio::time::sleep(Duration::from_millis(2500)).await;

    // Break-glass: granted at once, within the charter's break-glass rules.
    let bg = as_who(
        s,
        &w.olga,
        "lockbox",
        &[
            "break-glass",
            "--tenant",
            "acme",
            "--bucket",
            "records",
            "--operation",
            "read",
            "--purpose",
            "outage: payments down",
            "--ticket",
            "INC-9000",
            "--duration-secs",
            "600",
        ],
    );
    let bg_id = bg["id"].as_str().unwrap().to_owned();
    assert_eq!(bg["status"], "active");
    assert_eq!(bg["break_glass"], true);
    let glass = claim(&w, &w.olga, &bg_id);
    let e = as_who_fails(
        s,
        &w.olga,
        "lockbox",
        &[
            "break-glass",
            "--tenant",
            "acme",
            "--bucket",
            "records",
            "--operation",
            "read",
            "--purpose",
            "p",
            "--ticket",
            "INC-1",
            "--duration-secs",
            "7200",
        ],
    );
    assert!(e.contains("at most 3600 s"), "{e}");

    use Op::*;
    let acme_admin = &w.acme_admin;
    let globex_admin = &w.globex_admin;
    let anon = Who {
        name: "anonymous",
        key: String::new(),
        secret: String::new(),
    };
    let _ = anon;
    // (principal, op, bucket, key, allowed?)
    let matrix: Vec<(&Who, Op, &str, &str, bool)> = vec![
        (acme_admin, Get, "records", "secret/b.txt", true),
        (acme_admin, Put, "records", "new.txt", true),
        (acme_admin, ListBuckets, "", "", true),
        (globex_admin, Get, "records", "secret/b.txt", true), // its own `records`
        (globex_admin, Get, "acme:records", "secret/b.txt", false),
        (globex_admin, Put, "acme:records", "x", false),
        (globex_admin, List, "acme:records", "", false),
        (&w.bob, Get, "records", "logs/a.txt", true),
        (&w.bob, Get, "records", "secret/b.txt", false),
        (&w.bob, Put, "records", "logs/x", false),
        (&w.bob, List, "records", "", false),
        (&w.alice, Get, "records", "logs/a.txt", false), // a guardian is not a reader
        (&w.olga, Get, "records", "logs/a.txt", false),
        (&w.olga, Get, "acme:records", "logs/a.txt", false),
        (&w.olga, ListBuckets, "", "", false),
        (&in_scope, Get, "records", "logs/a.txt", true),
        (&in_scope, List, "records", "logs/", true),
        (&in_scope, Get, "records", "secret/b.txt", false),
        (&in_scope, List, "records", "", false),
        (&in_scope, Put, "records", "logs/evil", false),
        (&in_scope, Delete, "records", "logs/a.txt", false),
        (&in_scope, ListBuckets, "", "", false),
        (&expired, Get, "records", "logs/a.txt", false),
        (&revoked, Get, "records", "logs/a.txt", false),
        (&glass, Get, "records", "secret/b.txt", true),
        (&glass, Put, "records", "secret/b.txt", false),
    ];
    let mut failures = Vec::new();
    for (who, op, bucket, key, allowed) in &matrix {
        let got = s3(s, who, *op, bucket, key).await;
        let ok = match (&got, allowed) {
            (Ok(()), true) => true,
            (Err(code), false) => code == "AccessDenied" || code == "InvalidAccessKeyId",
            _ => false,
        };
        if !ok {
            failures.push(format!(
                "{} {op:?} {bucket}/{key}: want allowed={allowed}, got {got:?}",
                who.name
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    // The grant reads acme's object, not globex's.
    assert_eq!(
        get_text(s, &in_scope, "records", "logs/a.txt").await,
        "acme log"
    );
    assert_eq!(
        get_text(s, globex_admin, "records", "logs/a.txt").await,
        "globex log"
    );
    // Anonymous: denied, and for a bucket that does not exist the same way.
    assert_eq!(anonymous_get("acme:records/logs/a.txt"), "403");
    assert_eq!(anonymous_get("records/logs/a.txt"), "403");

    // Admin API: operators run the service but see no customer keys; users do not administer.
    let sites = run(vallum_as(s, &w.olga.key, &w.olga.secret, "site").arg("list"));
    assert!(sites.contains("site local"), "{sites}");
    let e = as_who_fails(s, &w.olga, "key", &["list"]);
    assert!(e.contains("operator-no-customer-data"), "{e}");
    let e = as_who_fails(s, &w.olga, "tenant", &["list"]);
    assert!(e.contains("AccessDenied"), "{e}");
    let e = as_who_fails(
        s,
        &w.bob,
        "user",
        &["--tenant", "acme", "create", "mallory"],
    );
    assert!(e.contains("AccessDenied"), "{e}");
    let e = as_who_fails(s, acme_admin, "user", &["--tenant", "globex", "list"]);
    assert!(e.contains("tenant-isolation"), "{e}");
    let e = as_who_fails(s, &in_scope, "site", &["list"]);
    assert!(e.contains("AccessDenied"), "{e}");
    let e = as_who_fails(s, acme_admin, "tenant", &["create", "evil"]);
    assert!(e.contains("AccessDenied"), "{e}");

    // The decision trace.
    let out = run(
        vallum_as(s, &acme_admin.key, &acme_admin.secret, "authz").args([
            "explain",
            "--user",
            "bob",
            "s3:GetObject",
            "--bucket",
            "records",
            "--object",
            "logs/a.txt",
        ]),
    );
    let v = json(&out);
    assert_eq!(v["decision"], "allow");
    assert_eq!(v["reasons"][0]["description"], "ReadLogs");
    // Cedar's own evaluator, over the whole policy sets, reaches the same decision.
    assert_eq!(v["cedar"]["decision"], "allow", "{v}");
    assert_eq!(v["cedar"]["reasons"], v["reasons"], "{v}");
    assert_eq!(v["cedar"]["agrees"], true, "{v}");
    let out = run_failing(
        vallum_as(s, &acme_admin.key, &acme_admin.secret, "authz").args([
            "explain",
            "--user",
            "bob",
            "s3:PutObject",
            "--bucket",
            "records",
            "--object",
            "logs/a.txt",
        ]),
    );
    assert!(out.contains("implicit_deny"), "{out}");

    // Revoking stops a live grant at once; the break-glass grant is reviewed.
    let r = as_who(
        s,
        &w.gina,
        "lockbox",
        &[
            "review",
            &bg_id,
            "--justified",
            "--comment",
            "outage confirmed",
        ],
    );
    assert_eq!(r["review"]["justified"], true);
    let e = as_who_fails(s, &w.gina, "lockbox", &["review", &bg_id, "--justified"]);
    assert!(e.contains("already reviewed"), "{e}");
    let heard = hook.wait_for("lockbox_break_glass_reviewed").await;
    for want in [
        format!("\"lockbox_request_filed\" {id}"),
        format!("\"lockbox_approval\" {id}"),
        format!("\"lockbox_granted\" {id}"),
        format!("\"lockbox_credential_claimed\" {id}"),
        format!("\"lockbox_break_glass\" {bg_id}"),
        format!("\"lockbox_revoked\" {revocable_id}"),
        format!("\"lockbox_break_glass_reviewed\" {bg_id}"),
    ] {
        assert!(heard.contains(&want), "{want} not in {heard:?}");
    }
    // Every post is signed with the tenant's secret, and no event was delivered twice: the
    // two failed attempts were retried, not lost.
    let posts = hook.posts.lock().unwrap().clone();
    for p in &posts {
        assert!(
            signature_valid(p, &webhook_secret),
            "bad signature on {:?}",
            p.body
        );
        assert!(!signature_valid(p, "another secret"));
    }
    let mut deliveries: Vec<&str> = posts.iter().map(|p| p.delivery.as_str()).collect();
    deliveries.sort_unstable();
    deliveries.dedup();
    assert_eq!(deliveries.len(), posts.len());
    let listed = as_who(s, &w.alice, "lockbox", &["list"]);
    assert_eq!(listed["requests"].as_array().unwrap().len(), 4);
    let mine = as_who(s, &w.ursula, "lockbox", &["list"]);
    assert!(mine["requests"].as_array().unwrap().is_empty());

    // Everything is in the transparency log: requests, approvals, grants used (with the
    // grant as the actor and as the key unwrap's justification), revocation, break-glass.
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("all.json");
    // The log publishes a checkpoint every second or so: wait until it covers the review.
    let deadline = Instant::now() + Duration::from_secs(20);
    // The public log holds commitments only: each side gets its own entries with their
    // openings, acme's guardian acme's, the root credentials the platform's.
    let bundle_as = |who: &Who, out: &std::path::Path| {
        run(vallum_as(s, &who.key, &who.secret, "log")
            .args(["bundle", "--from-server", "--key", &s.log_vkey, "--out"])
            .arg(out));
        bundle_entries(out)
    };
    let acme_entries = loop {
        let entries = bundle_as(&w.alice, &bundle);
        let reviewed = entries
            .iter()
            .any(|e| e["event"]["action"] == "lockbox_break_glass_reviewed");
        if reviewed || Instant::now() > deadline {
            break entries;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let platform_entries = bundle_as(&root(s), &tmp.path().join("platform.json"));
    // Neither sees the other's: acme's bundle names only acme's buckets, the platform's none
    // of acme's.
    for e in &acme_entries {
        if let Some(b) = e["event"]["bucket"].as_str() {
            assert!(b.starts_with("acme:"), "{e}");
        }
    }
    assert!(
        !platform_entries
            .iter()
            .any(|e| e.to_string().contains("acme:") || e["event"]["action"] == "lockbox_granted"),
        "the platform's bundle holds acme's entries"
    );
    let entries: Vec<Value> = acme_entries
        .iter()
        .chain(platform_entries.iter())
        .cloned()
        .collect();
    let admin_actions: Vec<&str> = entries
        .iter()
        .filter_map(|e| e["event"]["action"].as_str())
        .collect();
    for want in [
        "tenant_created",
        "user_created",
        "user_policy_set",
        "operator_created",
        "charter_proposed",
        "charter_signed",
        "charter_activated",
        "lockbox_request_filed",
        "lockbox_approval",
        "lockbox_granted",
        "lockbox_credential_claimed",
        "lockbox_revoked",
        "lockbox_break_glass",
        "lockbox_break_glass_reviewed",
        "lockbox_expired",
    ] {
        assert!(
            admin_actions.contains(&want),
            "{want} missing from {admin_actions:?}"
        );
    }
    let grant_reads: Vec<&Value> = entries
        .iter()
        .filter(|e| e["event"]["type"] == "object_read" || e["type"] == "object_read")
        .filter(|e| {
            e["actor"]
                .as_str()
                .unwrap_or("")
                .contains(&format!("grant:{id}"))
        })
        .collect();
    assert!(!grant_reads.is_empty(), "no read attributed to grant {id}");
    let unwraps: Vec<&Value> = entries
        .iter()
        .filter(|e| e["event"]["justification"] == format!("lockbox:{id}").as_str())
        .collect();
    assert!(
        !unwraps.is_empty(),
        "no key unwrap justified by lockbox:{id}"
    );
    let _ = (tool("aws"), vallum_admin(s, "site"), Instant::now());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_policies_from_aws_examples_are_enforced() {
    let w = world().await;
    let s = &w.server;
    let admin = &w.acme_admin;
    let tmp = tempfile::tempdir().unwrap();
    let put_policy = |doc: &str| -> std::process::Output {
        let f = tmp.path().join("p.json");
        std::fs::write(&f, doc).unwrap();
        aws_as(s, &admin.key, &admin.secret)
            .args([
                "s3api",
                "put-bucket-policy",
                "--bucket",
                "records",
                "--policy",
            ])
            .arg(format!("file://{}", f.display()))
            .output()
            .unwrap()
    };
    let stderr = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();

    // AWS example: "Granting read-only permission to a public anonymous user". Refused while
    // the bucket blocks public policies (the default), accepted once the block is lifted.
    let public = r#"{"Version":"2012-10-17","Statement":[{"Sid":"PublicRead","Effect":"Allow","Principal":"*","Action":["s3:GetObject","s3:GetObjectVersion"],"Resource":["arn:aws:s3:::records/logs/*"]}]}"#;
    let o = put_policy(public);
    assert!(
        !o.status.success() && stderr(&o).contains("AccessDenied"),
        "{}",
        stderr(&o)
    );
    let block = json(&run(aws_as(s, &admin.key, &admin.secret).args([
        "s3api",
        "get-public-access-block",
        "--bucket",
        "records",
    ])));
    assert_eq!(
        block["PublicAccessBlockConfiguration"]["BlockPublicPolicy"],
        true
    );
    run(aws_as(s, &admin.key, &admin.secret).args([
        "s3api", "put-public-access-block", "--bucket", "records",
        "--public-access-block-configuration",
        "BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=false,RestrictPublicBuckets=false",
    ]));
    let o = put_policy(public);
    assert!(o.status.success(), "{}", stderr(&o));
    let status = json(&run(aws_as(s, &admin.key, &admin.secret).args([
        "s3api",
        "get-bucket-policy-status",
        "--bucket",
        "records",
    ])));
    assert_eq!(status["PolicyStatus"]["IsPublic"], true);
    let curl = |path: &str| -> String {
        run(std::process::Command::new("curl").args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("{}/{path}", s.endpoint),
        ]))
    };
    assert_eq!(curl("acme:records/logs/a.txt"), "200");
    assert_eq!(curl("acme:records/secret/b.txt"), "403");
    // Other tenants' users are not "everyone": tenant isolation holds under a public policy.
    assert!(
        s3(s, &w.globex_admin, Op::Get, "acme:records", "logs/a.txt")
            .await
            .is_err()
    );
    let got = json(&run(aws_as(s, &admin.key, &admin.secret).args([
        "s3api",
        "get-bucket-policy",
        "--bucket",
        "records",
    ])));
    let doc: Value = serde_json::from_str(got["Policy"].as_str().unwrap()).unwrap();
    assert_eq!(doc["Statement"][0]["Sid"], "PublicRead");

    // AWS example: "Restricting access to specific IP addresses" — a Deny with NotIpAddress
    // wins over the tenant admin's own permissions.
    let ip = |cidr: &str| {
        format!(
            r#"{{"Version":"2012-10-17","Id":"S3PolicyId1","Statement":[{{"Sid":"IPAllow","Effect":"Deny","Principal":"*","Action":"s3:*","Resource":["arn:aws:s3:::records/*"],"Condition":{{"NotIpAddress":{{"aws:SourceIp":"{cidr}"}}}}}}]}}"#
        )
    };
    assert!(put_policy(&ip("192.0.2.0/24")).status.success());
    assert_eq!(
        s3(s, admin, Op::Get, "records", "logs/a.txt").await,
        Err("AccessDenied".into())
    );
    assert!(put_policy(&ip("127.0.0.0/8")).status.success());
    assert_eq!(s3(s, admin, Op::Get, "records", "logs/a.txt").await, Ok(()));

    // AWS example: "Enforce encryption in transit" (aws:SecureTransport false → Deny).
    let tls = r#"{"Version":"2012-10-17","Statement":[{"Sid":"AllowSSLRequestsOnly","Action":"s3:*","Effect":"Deny","Resource":["arn:aws:s3:::records/*"],"Principal":"*","Condition":{"Bool":{"aws:SecureTransport":"false"}}}]}"#;
    assert!(put_policy(tls).status.success());
    assert_eq!(
        s3(s, admin, Op::Get, "records", "logs/a.txt").await,
        Err("AccessDenied".into())
    );

    // AWS example: a user's "home folder" through s3:prefix (StringLike) on ListBucket.
    let home = r#"{"Version":"2012-10-17","Statement":[{"Sid":"AllowListingOfUserFolder","Action":["s3:ListBucket"],"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::acme:user/bob"},"Resource":["arn:aws:s3:::records"],"Condition":{"StringLike":{"s3:prefix":["home/bob/*"]}}}]}"#;
    assert!(put_policy(home).status.success());
    assert_eq!(
        s3(s, &w.bob, Op::List, "records", "home/bob/").await,
        Ok(())
    );
    assert_eq!(
        s3(s, &w.bob, Op::List, "records", "home/").await,
        Err("AccessDenied".into())
    );

    // aws:CurrentTime: allowed until a date (in the future), denied after one (in the past).
    let until = |op: &str, date: &str| {
        format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::acme:user/bob"}},"Action":"s3:GetObject","Resource":"arn:aws:s3:::records/secret/*","Condition":{{"{op}":{{"aws:CurrentTime":"{date}"}}}}}}]}}"#
        )
    };
    assert!(
        put_policy(&until("DateLessThan", "2099-01-01T00:00:00Z"))
            .status
            .success()
    );
    assert_eq!(
        s3(s, &w.bob, Op::Get, "records", "secret/b.txt").await,
        Ok(())
    );
    assert!(
        put_policy(&until("DateLessThan", "2020-01-01T00:00:00Z"))
            .status
            .success()
    );
    assert_eq!(
        s3(s, &w.bob, Op::Get, "records", "secret/b.txt").await,
        Err("AccessDenied".into())
    );

    // Presigned URLs carry their signer's permissions, policy included.
    assert!(
        put_policy(&until("DateLessThan", "2099-01-01T00:00:00Z"))
            .status
            .success()
    );
    let presign = |key: &str| {
        run(aws_as(s, &w.bob.key, &w.bob.secret).args([
            "s3",
            "presign",
            &format!("s3://records/{key}"),
            "--expires-in",
            "300",
        ]))
        .trim()
        .to_owned()
    };
    let fetch = |url: &str| {
        run(std::process::Command::new("curl").args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            url,
        ]))
    };
    assert_eq!(fetch(&presign("secret/b.txt")), "200");
    assert_eq!(fetch(&presign("logs/a.txt")), "200"); // bob's identity policy
    assert!(
        put_policy(&until("DateLessThan", "2020-01-01T00:00:00Z"))
            .status
            .success()
    );
    assert_eq!(fetch(&presign("secret/b.txt")), "403");

    // Malformed policies get MalformedPolicy with the reason; the stored one stays.
    for (bad, why) in [
        ("{not json", "not JSON"),
        (
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:Fly","Resource":"arn:aws:s3:::records/*"}]}"#,
            "invalid action",
        ),
        (
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::other/*"}]}"#,
            "not in bucket",
        ),
        (
            r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::globex:user/x"},"Action":"s3:GetObject","Resource":"arn:aws:s3:::records/*"}]}"#,
            "another tenant",
        ),
    ] {
        let o = put_policy(bad);
        let e = stderr(&o);
        assert!(
            !o.status.success() && e.contains("MalformedPolicy") && e.contains(why),
            "{bad}: {e}"
        );
    }
    run(aws_as(s, &admin.key, &admin.secret).args([
        "s3api",
        "delete-bucket-policy",
        "--bucket",
        "records",
    ]));
    let o = aws_as(s, &admin.key, &admin.secret)
        .args(["s3api", "get-bucket-policy", "--bucket", "records"])
        .output()
        .unwrap();
    assert!(stderr(&o).contains("NoSuchBucketPolicy"), "{}", stderr(&o));
    // Bob (no bucket permission) cannot change the policy.
    let o = aws_as(s, &w.bob.key, &w.bob.secret)
        .args(["s3api", "delete-bucket-policy", "--bucket", "records"])
        .output()
        .unwrap();
    assert!(stderr(&o).contains("AccessDenied"), "{}", stderr(&o));
}

/// Median duration of `n` runs of `f`.
async fn median<F, Fut>(n: usize, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f().await;
        times.push(t.elapsed());
    }
    times.sort();
    times[n / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_answer_reveals_another_tenants_bucket() {
    let w = world().await;
    let s = &w.server;
    let g = s.client_with(&w.globex_admin.key, &w.globex_admin.secret);
    // Listing shows only the tenant's own buckets, with bare names.
    let names: Vec<String> = g
        .list_buckets()
        .send()
        .await
        .unwrap()
        .buckets()
        .iter()
        .filter_map(|b| b.name().map(str::to_owned))
        .collect();
    assert_eq!(names, ["records"]);
    let root_names: Vec<String> = s
        .client()
        .list_buckets()
        .send()
        .await
        .unwrap()
        .buckets()
        .iter()
        .filter_map(|b| b.name().map(str::to_owned))
        .collect();
    assert!(root_names.is_empty(), "{root_names:?}");
    // An existing foreign bucket and a missing one answer alike: status, code, message.
    let probe = |bucket: &'static str| {
        let g = g.clone();
        async move {
            let head = g.head_bucket().bucket(bucket).send().await.unwrap_err();
            let head_status = head.raw_response().map(|r| r.status().as_u16());
            let get = g
                .get_object()
                .bucket(bucket)
                .key("logs/a.txt")
                .send()
                .await
                .unwrap_err();
            let put = g
                .put_object()
                .bucket(bucket)
                .key("x")
                .body(ByteStream::from_static(b"x"))
                .send()
                .await
                .unwrap_err();
            (
                head_status,
                get.code().map(str::to_owned),
                get.message().map(str::to_owned),
                put.code().map(str::to_owned),
                put.message().map(str::to_owned),
            )
        }
    };
    let existing = probe("acme:records").await;
    let missing = probe("acme:nothing-here").await;
    let no_tenant = probe("nosuchtenant:records").await;
    assert_eq!(existing, missing);
    assert_eq!(existing, no_tenant);
    assert_eq!(existing.0, Some(403));
    assert_eq!(existing.1.as_deref(), Some("AccessDenied"));
    // Anonymous requests too (raw bodies, RequestId aside).
    let body = |path: &str| -> String {
        let out =
            run(std::process::Command::new("curl").args(["-s", &format!("{}/{path}", s.endpoint)]));
        out.split("<RequestId>").next().unwrap().to_owned()
    };
    assert_eq!(
        body("acme:records/logs/a.txt"),
        body("acme:nothing-here/logs/a.txt")
    );
    // And no timing difference: medians of HEAD on each within 30% (or 2 ms) of each other.
    for _ in 0..10 {
        let _ = g.head_bucket().bucket("acme:records").send().await;
    }
    let head = |bucket: &'static str| {
        let g = g.clone();
        move || {
            let g = g.clone();
            async move {
                let _ = g.head_bucket().bucket(bucket).send().await;
            }
        }
    };
    let a = median(61, head("acme:records")).await;
    let b = median(61, head("acme:nothing-here")).await;
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    assert!(
        hi - lo <= Duration::from_millis(2) || hi.as_secs_f64() <= lo.as_secs_f64() * 1.3,
        "existing {a:?} vs missing {b:?}"
    );
    // Names are scoped: globex creating another name acme uses works, and each sees its own.
    run(aws_as(s, &w.acme_admin.key, &w.acme_admin.secret).args(["s3", "mb", "s3://shared-name"]));
    run(
        aws_as(s, &w.globex_admin.key, &w.globex_admin.secret).args([
            "s3",
            "mb",
            "s3://shared-name",
        ]),
    );
    // A disabled tenant's keys stop working.
    run(vallum_admin(s, "tenant").args(["disable", "globex"]));
    let e = s3(s, &w.globex_admin, Op::ListBuckets, "", "").await;
    assert!(matches!(e, Err(ref c) if c == "AccessDenied"), "{e:?}");
    run(vallum_admin(s, "tenant").args(["enable", "globex"]));
    assert_eq!(
        s3(s, &w.globex_admin, Op::ListBuckets, "", "").await,
        Ok(())
    );
    // A tenant with buckets cannot be deleted; its keys rotate (the old secret stops).
    let e = run_failing(vallum_admin(s, "tenant").args(["delete", "globex"]));
    assert!(e.contains("still has buckets"), "{e}");
    let rotated = as_who(
        s,
        &w.globex_admin,
        "access-key",
        &["rotate", &w.globex_admin.key],
    );
    assert_eq!(
        s3(s, &w.globex_admin, Op::ListBuckets, "", "").await,
        Err("SignatureDoesNotMatch".into())
    );
    let fresh = keypair("globex-admin", &rotated);
    assert_eq!(s3(s, &fresh, Op::ListBuckets, "", "").await, Ok(()));
    let _ = (&w.alice, &w.gina, &w.olga, &w.ursula, &w.bob);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_bad_input_is_refused_with_the_reason() {
    let server = Server::start();
    let r = root(&server);
    let s = &server;
    for (args, want) in [
        (vec!["tenant", "create", "Bad_Id"], "tenant id"),
        (vec!["tenant", "create", "default"], "always exists"),
        (
            vec!["tenant", "create", "acme", "--guardian-webhook", "ftp://x"],
            "https://",
        ),
        (
            vec![
                "operator",
                "create",
                "olga",
                "--role",
                "sre",
                "--citizenship",
                "France",
            ],
            "ISO 3166",
        ),
        (vec!["tenant", "show", "nobody"], "no such tenant"),
    ] {
        let e = run_failing(vallum_as(s, &r.key, &r.secret, args[0]).args(&args[1..]));
        assert!(e.contains(want), "{args:?}: {e}");
    }
    let acme = as_who(s, &r, "tenant", &["create", "acme"]);
    let admin = keypair("admin", &acme);
    let e = as_who_fails(s, &r, "tenant", &["create", "acme"]);
    assert!(e.contains("already exists"), "{e}");
    let e = as_who_fails(s, &admin, "user", &["--tenant", "acme", "create", "admin"]);
    assert!(e.contains("already exists"), "{e}");
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("charter.json");
    std::fs::write(&bad, r#"{"roles":[],"access":{},"max_grant_secs":1,"approvals_required":1,"audit_frequency_days":1}"#).unwrap();
    let e = as_who_fails(
        s,
        &admin,
        "charter",
        &["--tenant", "acme", "propose", bad.to_str().unwrap()],
    );
    assert!(e.contains("roles lists at least one"), "{e}");
    std::fs::write(&bad, r#"{"roles":["sre"],"access":{},"max_grant_secs":1,"approvals_required":1,"audit_frequency_days":1,"extra":1}"#).unwrap();
    let e = as_who_fails(
        s,
        &admin,
        "charter",
        &["--tenant", "acme", "propose", bad.to_str().unwrap()],
    );
    assert!(e.contains("unknown field"), "{e}");
    // No charter in force: no operator access at all.
    as_who(s, &r, "operator", &["create", "olga", "--role", "sre"]);
    let olga = keypair(
        "olga",
        &as_who(s, &r, "access-key", &["create", "--operator", "olga"]),
    );
    let e = as_who_fails(
        s,
        &olga,
        "lockbox",
        &[
            "request",
            "--tenant",
            "acme",
            "--bucket",
            "b1",
            "--operation",
            "read",
            "--purpose",
            "p",
            "--ticket",
            "t",
        ],
    );
    assert!(e.contains("no charter in force"), "{e}");
    let e = as_who_fails(
        s,
        &olga,
        "lockbox",
        &[
            "request",
            "--tenant",
            "acme",
            "--bucket",
            "b1",
            "--operation",
            "teleport",
            "--purpose",
            "p",
            "--ticket",
            "t",
        ],
    );
    assert!(e.contains("not one of read, list, write, delete"), "{e}");
    // Unknown and disabled keys.
    let e = run_failing(vallum_as(s, "VANOTAKEY000000000000", "x", "site").arg("list"));
    assert!(e.contains("not known"), "{e}");
    as_who(s, &admin, "access-key", &["disable", &admin.key]);
    let e = as_who_fails(s, &admin, "user", &["--tenant", "acme", "list"]);
    assert!(e.contains("disabled"), "{e}");
    // Secrets never appear in listings.
    let listed = as_who(s, &r, "access-key", &["list", "--operator", "olga"]);
    assert!(!listed.to_string().contains(&olga.secret));
    assert!(listed["access_keys"][0]["id"] == olga.key.as_str());
}

/// `lockbox request` arguments for acme's records/logs/, as `who`.
fn request_args(secs: &str) -> Vec<&str> {
    vec![
        "request",
        "--tenant",
        "acme",
        "--bucket",
        "records",
        "--prefix",
        "logs/",
        "--operation",
        "read",
        "--purpose",
        "p",
        "--ticket",
        "INC-9",
        "--duration-secs",
        secs,
    ]
}

/// The attacker's view of the field report: the root credentials try every way around acme's
/// guardians, and each is refused, ended or told to the guardians.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_platform_admin_cannot_stand_in_for_the_guardians() {
    use Op::Get;
    let w = world().await;
    let s = &w.server;
    let r = root(s);
    let hook = webhook(w._tmp.path(), 0);
    as_who(
        s,
        &w.acme_admin,
        "tenant",
        &["update", "acme", "--guardian-webhook", &hook.url],
    );

    // An operator the platform invents, with exactly the attributes acme's charter asks for,
    // is not attested by acme: no request, no break-glass.
    as_who(
        s,
        &r,
        "operator",
        &[
            "create",
            "mallory",
            "--role",
            "sre",
            "--citizenship",
            "FR",
            "--residency",
            "FR",
            "--clearance",
            "secret",
            "--location",
            "par-1",
        ],
    );
    let mallory = keypair(
        "mallory",
        &as_who(s, &r, "access-key", &["create", "--operator", "mallory"]),
    );
    let e = as_who_fails(s, &mallory, "lockbox", &request_args("600"));
    assert!(
        e.contains("not attested by the guardians of tenant acme"),
        "{e}"
    );
    let mut glass = request_args("600");
    glass[0] = "break-glass";
    let e = as_who_fails(s, &mallory, "lockbox", &glass);
    assert!(e.contains("not attested"), "{e}");

    // A second key the platform makes for an attested operator files nothing, and the
    // guardians hear that it appeared.
    let platform_key = keypair(
        "olga-by-root",
        &as_who(s, &r, "access-key", &["create", "--operator", "olga"]),
    );
    let e = as_who_fails(s, &platform_key, "lockbox", &request_args("600"));
    assert!(e.contains("which they have not attested"), "{e}");
    let heard = hook.wait_for("operator_credentials_changed").await;
    assert!(
        heard
            .iter()
            .any(|h| h.contains("operator_credentials_changed")),
        "{heard:?}"
    );

    // A grant the guardians approved for olga: the platform's key cannot claim it.
    let filed = as_who(s, &w.olga, "lockbox", &request_args("600"));
    let id = filed["id"].as_str().unwrap().to_owned();
    assert_eq!(filed["requested_with"], w.olga.key.as_str());
    approve_twice(&w, &id);
    let e = as_who_fails(s, &platform_key, "lockbox", &["credential", &id]);
    assert!(e.contains("filed with another access key"), "{e}");
    let grant = claim(&w, &w.olga, &id);
    assert_eq!(s3(s, &grant, Get, "records", "logs/a.txt").await, Ok(()));

    // The platform rotates olga's key to learn its secret: the grant ends at once (claimed
    // credential included), the guardians hear it, and the rotated key files nothing until
    // they attest it again.
    let rotated = as_who(s, &r, "access-key", &["rotate", &w.olga.key]);
    let taken = Who {
        name: "olga-rotated-by-root",
        key: w.olga.key.clone(),
        secret: rotated["secret_key"].as_str().unwrap().to_owned(),
    };
    assert!(s3(s, &grant, Get, "records", "logs/a.txt").await.is_err());
    let ended = as_who(s, &w.alice, "lockbox", &["show", &id]);
    assert_eq!(ended["status"], "revoked", "{ended}");
    let e = as_who_fails(s, &taken, "lockbox", &["credential", &id]);
    assert!(e.contains("revoked"), "{e}");
    let e = as_who_fails(s, &taken, "lockbox", &request_args("600"));
    assert!(e.contains("changed (rotated"), "{e}");
    let e = as_who_fails(s, &taken, "lockbox", &glass);
    assert!(e.contains("changed (rotated"), "{e}");
    let heard = hook.wait_for("lockbox_ended").await;
    assert!(
        heard.contains(&format!("\"lockbox_ended\" {id}")),
        "{heard:?}"
    );

    // The guardians attest the rotated key (the real olga shows it to them): access again,
    // until the operator is disabled, which ends the grant.
    as_who(
        s,
        &w.alice,
        "operator",
        &[
            "attest-for",
            "olga",
            "--tenant",
            "acme",
            "--access-key",
            &taken.key,
            "--role",
            "sre",
            "--citizenship",
            "FR",
            "--residency",
            "FR",
            "--clearance",
            "secret",
            "--location",
            "par-1",
        ],
    );
    let again = as_who(s, &taken, "lockbox", &request_args("600"));
    let again_id = again["id"].as_str().unwrap().to_owned();
    approve_twice(&w, &again_id);
    let grant = claim(&w, &taken, &again_id);
    assert_eq!(s3(s, &grant, Get, "records", "logs/a.txt").await, Ok(()));
    // A disabled tenant's grants stop, and come back with it (the grant is still live).
    run(vallum_admin(s, "tenant").args(["disable", "acme"]));
    assert!(s3(s, &grant, Get, "records", "logs/a.txt").await.is_err());
    run(vallum_admin(s, "tenant").args(["enable", "acme"]));
    assert_eq!(s3(s, &grant, Get, "records", "logs/a.txt").await, Ok(()));
    // A disabled operator's grants end for good.
    as_who(s, &r, "operator", &["disable", "olga"]);
    assert!(s3(s, &grant, Get, "records", "logs/a.txt").await.is_err());
    as_who(s, &r, "operator", &["enable", "olga"]);
    assert!(s3(s, &grant, Get, "records", "logs/a.txt").await.is_err());
    let ended = as_who(s, &w.alice, "lockbox", &["show", &again_id]);
    assert_eq!(ended["status"], "revoked", "{ended}");

    // A guardian withdraws the attestation: no more requests.
    as_who(
        s,
        &w.gina,
        "operator",
        &["withdraw", "olga", "--tenant", "acme"],
    );
    let e = as_who_fails(s, &taken, "lockbox", &request_args("600"));
    assert!(e.contains("not attested"), "{e}");
    // Root itself is no guardian and attests nothing.
    let e = as_who_fails(
        s,
        &r,
        "operator",
        &[
            "attest-for",
            "mallory",
            "--tenant",
            "acme",
            "--access-key",
            &mallory.key,
            "--role",
            "sre",
        ],
    );
    assert!(e.contains("AccessDenied"), "{e}");
}

/// Webhook targets: HTTPS only, no internal addresses, never the gateway itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guardian_webhooks_refuse_plain_http_and_internal_targets() {
    let server = Server::start();
    let r = root(&server);
    let acme = as_who(&server, &r, "tenant", &["create", "acme"]);
    let admin = keypair("acme-admin", &acme);
    for (url, want) in [
        ("http://guardians.example/hook", "https:// only"),
        ("https://127.0.0.1:8443/hook", "loopback"),
        ("https://localhost/hook", "loopback"),
        ("https://169.254.169.254/latest/meta-data/", "link-local"),
        ("https://[::1]/hook", "loopback"),
    ] {
        let e = as_who_fails(
            &server,
            &admin,
            "tenant",
            &["update", "acme", "--guardian-webhook", url],
        );
        assert!(e.contains(want), "{url}: {e}");
    }
    let ok = as_who(
        &server,
        &admin,
        "tenant",
        &[
            "update",
            "acme",
            "--guardian-webhook",
            "https://guardians.acme.example/hook",
        ],
    );
    assert_eq!(ok["webhook_secret"].as_str().unwrap().len(), 40);
    let again = as_who(&server, &admin, "tenant", &["webhook-secret", "acme"]);
    assert_ne!(again["webhook_secret"], ok["webhook_secret"]);
}

/// Guardians sign their approvals with keys of their own: once a guardian registered one, an
/// unsigned approval, or one signed by another key, is refused; the grant keeps every
/// signature, for the key services.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guardians_sign_their_approvals_with_their_own_keys() {
    let w = world().await;
    let s = &w.server;
    let dir = tempfile::tempdir().unwrap();
    let key_of = |name: &str| dir.path().join(format!("{name}.skey"));
    for g in [&w.alice, &w.gina] {
        let user = as_who(
            s,
            g,
            "user",
            &[
                "--tenant",
                "acme",
                "approval-key",
                g.name,
                "--signing-key-out",
            ]
            .iter()
            .copied()
            .chain([key_of(g.name).to_str().unwrap()])
            .collect::<Vec<_>>(),
        );
        assert!(
            user["approval_key"]
                .as_str()
                .unwrap()
                .starts_with(&format!("acme/{}+", g.name)),
            "{user}"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(key_of(g.name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Nobody registers a key for a guardian but the guardian: not root, not the tenant admin.
    for who in [&root(s), &w.acme_admin, &w.gina] {
        let e = as_who_fails(
            s,
            who,
            "user",
            &[
                "--tenant",
                "acme",
                "approval-key",
                "alice",
                "--signing-key-out",
                dir.path()
                    .join(format!("x-{}.skey", who.name))
                    .to_str()
                    .unwrap(),
            ],
        );
        assert!(e.contains("AccessDenied"), "{}: {e}", who.name);
    }

    let filed = request(&w, &w.olga, "logs/", "read", "600");
    let id = filed["id"].as_str().unwrap().to_owned();
    let e = as_who_fails(s, &w.alice, "lockbox", &["approve", &id]);
    assert!(e.contains("must be signed"), "{e}");
    let gina_key = key_of("gina");
    let e = as_who_fails(
        s,
        &w.alice,
        "lockbox",
        &["approve", &id, "--signing-key", gina_key.to_str().unwrap()],
    );
    assert!(e.contains("is not acme/alice's"), "{e}");
    let alice_key = key_of("alice");
    let one = as_who(
        s,
        &w.alice,
        "lockbox",
        &["approve", &id, "--signing-key", alice_key.to_str().unwrap()],
    );
    assert_eq!(one["status"], "pending");
    let two = as_who(
        s,
        &w.gina,
        "lockbox",
        &["approve", &id, "--signing-key", gina_key.to_str().unwrap()],
    );
    assert_eq!(two["status"], "active", "{two}");
    let sigs = two["approval_signatures"].as_array().unwrap();
    assert_eq!(sigs.len(), 2);
    assert!(
        sigs[0]
            .as_str()
            .unwrap()
            .starts_with("\u{2014} acme/alice ")
    );
    assert!(sigs[1].as_str().unwrap().starts_with("\u{2014} acme/gina "));
}
