//! Test support shared by the native test crates. Each crate uses a part of
//! it, so what one does not use is no dead code.
#![allow(dead_code)]

pub mod device;
pub mod sqlite;
pub mod user;

use edge_chat::mailbox::{Effect, Mailbox, Notice};
use edge_chat::presence::Presence;
use edge_chat::user::UserId;

/// A user id the test knows is valid.
pub fn uid(s: &str) -> UserId {
    UserId::parse(s).expect("a valid user id")
}

/// The presence notices `mb` asked for since the last call, as (watcher,
/// presence); its other effects are dropped.
pub fn presence_told(mb: &mut Mailbox) -> Vec<(String, Presence)> {
    mb.take_effects()
        .into_iter()
        .filter_map(|e| match e {
            Effect::Notify(Notice::Presence(p)) => Some((p.owner.to_string(), p.presence)),
            _ => None,
        })
        .collect()
}
