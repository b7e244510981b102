//! `BlobStore` implementations. Only this crate knows how bytes reach a storage backend.

mod local;

pub use local::{LAYOUT_VERSION, LocalBlobStore};
