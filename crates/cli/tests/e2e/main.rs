//! Vallum's end-to-end tests: one test binary (one link of the whole server and its clients)
//! with a module per area. Each starts the real `vallum` binary (see [`common::Server`]) and
//! drives it with real clients: the AWS SDK, aws-cli, boto3, rclone, s3cmd, Azurite, SoftHSM2,
//! PostgreSQL. nextest runs every test in its own process, as separate binaries did.

mod common;
mod cors;

mod addressing;
mod bad_input;
mod chunked;
mod clients;
mod crash;
mod encryption;
mod gateways;
mod iam;
mod jobs;
mod keys;
mod ledger;
mod memory;
mod names;
mod operator;
mod packaging;
mod readme;
mod replication;
mod reports;
mod residency;
mod sdk;
mod sites;
mod tls;
mod versioning;
mod xks;
