//! `MetaStore` implementations. Only this crate knows SQL.

mod sqlite;

pub use sqlite::{SCHEMA_VERSION, SqliteMetaStore};
