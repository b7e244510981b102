//! Vallum's HTTP edge: the S3 wire protocol through `s3s`, the health and metrics endpoints,
//! configuration, credentials and start-up. Only this crate knows HTTP, XML and SigV4.

pub mod admin;
mod admin_iam;
mod admin_ops;
mod admin_residency;
pub mod authz;
pub mod bucket_names;
pub mod check;
pub mod config;
mod conn;
mod cors;
pub mod credentials;
mod error;
mod files;
mod host;
mod http_service;
pub mod jobs;
pub mod keys;
pub mod ledger;
pub mod metrics;
pub mod migrate;
mod notify;
mod precheck;
mod s3;
mod server;
pub mod sites;
pub mod tls_client;

pub use config::Config;
pub use server::{RunningServer, ServerError, start};
