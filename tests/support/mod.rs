//! Test support shared by the native test crates. Each crate uses a part of
//! it, so what one does not use is no dead code.
#![allow(dead_code)]

pub mod device;
pub mod sqlite;
pub mod user;

use edge_chat::user::UserId;

/// A user id the test knows is valid.
pub fn uid(s: &str) -> UserId {
    UserId::parse(s).expect("a valid user id")
}
