//! The server crate's in-process tests of the object service with the server's components (the
//! durable journal, key services, lifecycle, listing): one test binary, a module per area.

mod jobs;
mod journal;
mod key_deletion;
mod lifecycle;
mod list_model;
