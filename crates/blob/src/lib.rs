//! `BlobStore` implementations: a local directory, or a remote object store (S3-compatible or
//! Azure) through `object_store`. Only this crate knows how bytes reach a storage backend.

mod direct;
mod fault;
mod local;
mod pack;
mod remote;
mod remote_pack;

pub use fault::{Fault, FaultInjectingBlobStore, FaultPlan};
pub use local::{LAYOUT_VERSION, LocalBlobStore, free_bytes};
pub use pack::{
    PACK_FORMAT_VERSION, PACK_HEADER_BYTES, PACK_MAX_BLOB_BYTES, PACK_TARGET_BYTES, PackStats,
    RECORD_HEADER_BYTES, encode_blob_record, encode_pack_header, encode_tombstone,
};
pub use remote::{AzureSite, REMOTE_PART_BYTES, REMOTE_RETRY_TIMEOUT, RemoteBlobStore, S3Site};
pub use remote_pack::{
    REMOTE_GROUP_LINGER, REMOTE_MERGE_MIN_PACKS, REMOTE_PACKS_IN_FLIGHT, REMOTE_SMALL_PACK_BYTES,
    RemotePackStats,
};
