//! Virtual-hosted-style addressing (`<bucket>.<domain>`) next to path style.

use crate::common;

use std::process::Command;

use common::{Server, run, tool};

#[test]
fn virtual_hosted_and_path_style_both_work() {
    let server = Server::start_with(&[], &[("VALLUM_DOMAINS", "localhost")]);
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("aws-config");
    std::fs::write(&config, "[default]\ns3 =\n    addressing_style = virtual\n").unwrap();
    let endpoint = format!("http://localhost:{}", server.port);
    let aws = |args: &[&str]| {
        let mut cmd = Command::new(tool("aws"));
        cmd.envs(server.tool_env())
            .env("AWS_CONFIG_FILE", &config)
            .arg("--endpoint-url")
            .arg(&endpoint)
            .args(args);
        cmd
    };
    // Create with path style (the CLI talks to localhost), then address the bucket virtually.
    run(Command::new(tool("aws")).envs(server.tool_env()).args([
        "--endpoint-url",
        &server.endpoint,
        "s3",
        "mb",
        "s3://vhost",
    ]));
    let file = tmp.path().join("f.txt");
    std::fs::write(&file, "virtually hosted").unwrap();
    run(Command::new(tool("aws"))
        .envs(server.tool_env())
        .args([
            "--endpoint-url",
            &server.endpoint,
            "s3",
            "cp",
            "--only-show-errors",
        ])
        .arg(&file)
        .arg("s3://vhost/f.txt"));
    // aws-cli v1 presigns with SigV2 by default and with SigV4 when asked; both must work.
    let sigv4 = tmp.path().join("aws-config-v4");
    std::fs::write(
        &sigv4,
        "[default]\ns3 =\n    addressing_style = virtual\n    signature_version = s3v4\n",
    )
    .unwrap();
    for cfg in [&config, &sigv4] {
        let url = run(aws(&["s3", "presign", "s3://vhost/f.txt"]).env("AWS_CONFIG_FILE", cfg));
        let url = url.trim();
        assert!(
            url.starts_with(&format!("http://vhost.localhost:{}/f.txt?", server.port)),
            "{url}"
        );
        // Name resolution of *.localhost varies; route the virtual host to loopback explicitly.
        let connect_to = format!("vhost.localhost:{0}:127.0.0.1:{0}", server.port);
        let out = run(Command::new(tool("curl")).args(["-sf", "--connect-to", &connect_to, url]));
        assert_eq!(out, "virtually hosted");
    }
    // Path style through the configured domain keeps working.
    let listed = run(Command::new(tool("aws")).envs(server.tool_env()).args([
        "--endpoint-url",
        &endpoint,
        "s3",
        "ls",
        "s3://vhost/",
    ]));
    assert!(listed.contains("f.txt"), "{listed}");
}
