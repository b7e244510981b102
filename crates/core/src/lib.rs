//! Vallum's domain layer. It knows buckets, objects, multipart uploads, listing and garbage
//! collection, and talks to storage only through two traits:
//!
//! * [`MetaStore`](meta::MetaStore): buckets, object records, uploads, the blob trash. Every
//!   mutation is one atomic transaction.
//! * [`BlobStore`](blob::BlobStore): immutable blobs of object data named by opaque ids.
//!
//! It knows no HTTP, XML or SQL (DESIGN.md invariant 4). The [`service::ObjectService`] is the
//! entry point the server calls.

pub mod blob;
pub mod clock;
pub mod context;
pub mod cors;
pub mod crypt;
pub mod digest;
pub mod error;
pub mod gc;
pub mod iam;
pub mod jobs;
pub mod journal;
pub mod keyadmin;
pub mod lifecycle;
pub mod list;
pub mod meta;
pub mod multipart;
pub mod records;
pub mod residency;
pub mod service;
pub mod versioning;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use error::{Error, Result};
