//! `BlobStore` implementations: a local directory, or a remote object store (S3-compatible or
//! Azure) through `object_store`. Only this crate knows how bytes reach a storage backend.

mod fault;
mod local;
mod remote;

pub use fault::{Fault, FaultInjectingBlobStore, FaultPlan};
pub use local::{LAYOUT_VERSION, LocalBlobStore, free_bytes};
pub use remote::{AzureSite, REMOTE_PART_BYTES, REMOTE_RETRY_TIMEOUT, RemoteBlobStore, S3Site};
