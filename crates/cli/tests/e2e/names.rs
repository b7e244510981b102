//! Globally unique bucket names (`global_bucket_names`): bare names across tenants, for
//! clients that cannot send `tenant:bucket`.

use crate::common;

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::PublicAccessBlockConfiguration;
use common::{Server, json, run, tool, vallum_admin};

/// A tenant's first administrator's client.
fn tenant(server: &Server, name: &str) -> aws_sdk_s3::Client {
    let t = json(&run(vallum_admin(server, "tenant").args(["create", name])));
    server.client_with(
        t["access_key"]["id"].as_str().unwrap(),
        t["secret_key"].as_str().unwrap(),
    )
}

#[tokio::test]
async fn a_bare_bucket_name_means_the_one_bucket_of_that_name_whoever_owns_it() {
    let server = Server::start_with(&[], &[("VALLUM_GLOBAL_BUCKET_NAMES", "true")]);
    let acme = tenant(&server, "acme");
    let globex = tenant(&server, "globex");
    acme.create_bucket().bucket("reports").send().await.unwrap();
    acme.put_object()
        .bucket("reports")
        .key("2026/q1.csv")
        .body(ByteStream::from_static(b"revenue,42\n"))
        .send()
        .await
        .unwrap();

    // The name is taken for every other tenant.
    let e = globex
        .create_bucket()
        .bucket("reports")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(e.code(), Some("BucketAlreadyExists"), "{e:?}");
    // Its bare name reaches acme's bucket, and the decision point refuses globex.
    let e = globex
        .get_object()
        .bucket("reports")
        .key("2026/q1.csv")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(e.code(), Some("AccessDenied"), "{e:?}");
    // Globex's own buckets are unaffected.
    globex
        .create_bucket()
        .bucket("ledgers")
        .send()
        .await
        .unwrap();
    let listed = globex.list_buckets().send().await.unwrap();
    let names: Vec<_> = listed.buckets().iter().filter_map(|b| b.name()).collect();
    assert_eq!(names, ["ledgers"]);

    // Shared with everyone by policy: an unmodified, anonymous aws CLI reads it by its bare
    // name (it refuses `acme:reports` client-side).
    acme.put_public_access_block()
        .bucket("reports")
        .public_access_block_configuration(
            PublicAccessBlockConfiguration::builder()
                .block_public_acls(true)
                .ignore_public_acls(true)
                .block_public_policy(false)
                .restrict_public_buckets(false)
                .build(),
        )
        .send()
        .await
        .unwrap();
    acme.put_bucket_policy()
        .bucket("reports")
        .policy(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::reports/*"}]}"#)
        .send()
        .await
        .unwrap();
    let out = run(std::process::Command::new(tool("aws"))
        .args([
            "s3",
            "cp",
            "s3://reports/2026/q1.csv",
            "-",
            "--no-sign-request",
        ])
        .args(["--endpoint-url", &server.endpoint])
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"));
    assert_eq!(out, "revenue,42\n");

    // Deleting the bucket frees the name.
    acme.delete_object()
        .bucket("reports")
        .key("2026/q1.csv")
        .send()
        .await
        .unwrap();
    acme.delete_bucket().bucket("reports").send().await.unwrap();
    globex
        .create_bucket()
        .bucket("reports")
        .send()
        .await
        .unwrap();
    let e = acme
        .create_bucket()
        .bucket("reports")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(e.code(), Some("BucketAlreadyExists"), "{e:?}");
}

#[test]
fn names_shared_by_tenants_keep_a_deployment_from_turning_global_names_on() {
    // Two tenants with a bucket of the same name, made while names were per tenant.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start_in(&data, "127.0.0.1:0", &[], &[]);
    for t in ["acme", "globex"] {
        let created = json(&run(vallum_admin(&server, "tenant").args(["create", t])));
        run(server
            .aws()
            .env(
                "AWS_ACCESS_KEY_ID",
                created["access_key"]["id"].as_str().unwrap(),
            )
            .env(
                "AWS_SECRET_ACCESS_KEY",
                created["secret_key"].as_str().unwrap(),
            )
            .args(["s3", "mb", "s3://archive"]));
    }
    server.kill9();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vallum"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env("VALLUM_GLOBAL_BUCKET_NAMES", "true")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unique across tenants") && stderr.contains("archive"),
        "{stderr}"
    );
}
