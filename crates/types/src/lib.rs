//! Leaf types shared by every Vallum crate: validated names, opaque identifiers and the
//! named limits that every edge enforces. This crate does no I/O.

pub mod ids;
pub mod jurisdiction;
pub mod limits;
pub mod names;

pub use ids::{BlobId, UploadId};
pub use names::{BucketName, NameError, ObjectKey};
