//! `BlobStore` implementations: a local directory, or a remote object store (S3-compatible or
//! Azure) through `object_store`. Only this crate knows how bytes reach a storage backend.

mod direct;
mod fault;
mod local;
mod pack;
mod remote;

pub use fault::{Fault, FaultInjectingBlobStore, FaultPlan};
pub use local::{LAYOUT_VERSION, LocalBlobStore, free_bytes};
pub use pack::{
    PACK_FORMAT_VERSION, PACK_HEADER_BYTES, PACK_MAX_BLOB_BYTES, PACK_TARGET_BYTES, PackStats,
    RECORD_HEADER_BYTES, encode_blob_record, encode_pack_header, encode_tombstone,
};
pub use remote::{AzureSite, REMOTE_PART_BYTES, REMOTE_RETRY_TIMEOUT, RemoteBlobStore, S3Site};
