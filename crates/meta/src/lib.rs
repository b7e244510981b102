//! `MetaStore` implementations: embedded SQLite (the default) and PostgreSQL (for several
//! gateways). Only this crate knows SQL.

mod common;
mod fault;
mod postgres;
mod put_group;
mod reader;
mod shared;
mod sqlite;
mod versions;

pub use fault::{FaultInjectingMetaStore, MetaFault, MetaFaultPlan};
pub use postgres::{PG_SCHEMA_VERSION, PgMetaStore};
pub use sqlite::{SCHEMA_VERSION, SqliteMetaStore};
