//! Test support shared by the native test crates.
pub mod sqlite;
