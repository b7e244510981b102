//! CORS: a bucket's configuration through the S3 API, a browser's preflight (unauthenticated
//! OPTIONS) and the Access-Control headers of its actual requests, with curl as the browser.

use crate::common;

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CorsConfiguration, CorsRule};
use common::{Server, run};

/// `curl -i` with `args`: the status line and headers, lower-cased.
fn curl_head(args: &[&str]) -> String {
    run(std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-D", "-"])
        .args(args))
    .to_ascii_lowercase()
}

#[tokio::test]
async fn browsers_get_what_the_bucket_cors_configuration_allows() {
    let server = Server::start();
    let s3 = server.client();
    s3.create_bucket().bucket("site").send().await.unwrap();
    s3.put_object()
        .bucket("site")
        .key("app.js")
        .body(ByteStream::from_static(b"console.log(1)"))
        .send()
        .await
        .unwrap();
    let e = s3
        .get_bucket_cors()
        .bucket("site")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(e.code(), Some("NoSuchCORSConfiguration"));
    let url = format!("{}/site/app.js", server.endpoint);
    // Without a configuration a preflight is refused.
    let head = curl_head(&[
        "-X",
        "OPTIONS",
        "-H",
        "Origin: https://app.example.eu",
        "-H",
        "Access-Control-Request-Method: GET",
        &url,
    ]);
    assert!(head.starts_with("http/1.1 403"), "{head}");

    let rule = CorsRule::builder()
        .allowed_origins("https://*.example.eu")
        .allowed_methods("GET")
        .allowed_methods("HEAD")
        .allowed_headers("x-amz-meta-*")
        .expose_headers("ETag")
        .max_age_seconds(600)
        .build()
        .unwrap();
    s3.put_bucket_cors()
        .bucket("site")
        .cors_configuration(
            CorsConfiguration::builder()
                .cors_rules(rule)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let got = s3.get_bucket_cors().bucket("site").send().await.unwrap();
    let rules = got.cors_rules();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].allowed_origins(), ["https://*.example.eu"]);
    assert_eq!(rules[0].allowed_methods(), ["GET", "HEAD"]);
    assert_eq!(rules[0].max_age_seconds(), Some(600));

    // The preflight: allowed, with what the rule allows.
    let head = curl_head(&[
        "-X",
        "OPTIONS",
        "-H",
        "Origin: https://app.example.eu",
        "-H",
        "Access-Control-Request-Method: GET",
        "-H",
        "Access-Control-Request-Headers: X-Amz-Meta-Colour",
        &url,
    ]);
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        head.contains("access-control-allow-origin: https://app.example.eu"),
        "{head}"
    );
    assert!(
        head.contains("access-control-allow-methods: get, head"),
        "{head}"
    );
    assert!(
        head.contains("access-control-allow-headers: x-amz-meta-colour"),
        "{head}"
    );
    assert!(
        head.contains("access-control-expose-headers: etag"),
        "{head}"
    );
    assert!(head.contains("access-control-max-age: 600"), "{head}");
    // Another origin, another method, a header not allowed: refused; no Origin: 400.
    for (origin, method, headers) in [
        ("https://evil.example.com", "GET", ""),
        ("https://app.example.eu", "PUT", ""),
        ("https://app.example.eu", "GET", "x-amz-date"),
    ] {
        let mut args = vec![
            "-X".to_owned(),
            "OPTIONS".to_owned(),
            "-H".to_owned(),
            format!("Origin: {origin}"),
            "-H".to_owned(),
            format!("Access-Control-Request-Method: {method}"),
        ];
        if !headers.is_empty() {
            args.push("-H".into());
            args.push(format!("Access-Control-Request-Headers: {headers}"));
        }
        args.push(url.clone());
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let head = curl_head(&refs);
        assert!(
            head.starts_with("http/1.1 403"),
            "{origin} {method} {headers}: {head}"
        );
        assert!(!head.contains("access-control-allow-origin"), "{head}");
    }
    let head = curl_head(&["-X", "OPTIONS", &url]);
    assert!(head.starts_with("http/1.1 400"), "{head}");

    // The actual request (signed, through a presigned URL) carries the headers for an allowed
    // origin only.
    let presigned = s3
        .get_object()
        .bucket("site")
        .key("app.js")
        .presigned(
            aws_sdk_s3::presigning::PresigningConfig::expires_in(std::time::Duration::from_secs(
                300,
            ))
            .unwrap(),
        )
        .await
        .unwrap();
    let head = curl_head(&["-H", "Origin: https://app.example.eu", presigned.uri()]);
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        head.contains("access-control-allow-origin: https://app.example.eu"),
        "{head}"
    );
    let head = curl_head(&["-H", "Origin: https://evil.example.com", presigned.uri()]);
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(!head.contains("access-control-allow-origin"), "{head}");

    // Bad configurations are refused; deleting one stops the answers.
    let bad = CorsRule::builder()
        .allowed_origins("*")
        .allowed_methods("PATCH")
        .build()
        .unwrap();
    let e = s3
        .put_bucket_cors()
        .bucket("site")
        .cors_configuration(
            CorsConfiguration::builder()
                .cors_rules(bad)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(e.code(), Some("MalformedXML"), "{e:?}");
    s3.delete_bucket_cors().bucket("site").send().await.unwrap();
    let head = curl_head(&[
        "-X",
        "OPTIONS",
        "-H",
        "Origin: https://app.example.eu",
        "-H",
        "Access-Control-Request-Method: GET",
        &url,
    ]);
    assert!(head.starts_with("http/1.1 403"), "{head}");
}
