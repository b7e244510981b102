//! Conformance suites: every `BlobStore` and `MetaStore` implementation runs these (through
//! the `blob_conformance_tests!` / `meta_conformance_tests!` macros) and must pass them all.

pub mod blob;
pub mod meta;
