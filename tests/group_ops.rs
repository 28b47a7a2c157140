//! Groups and the features around them, natively (issue 24's group items):
//! pushes of group messages (at once when no device was online, and the
//! user's unread total counting groups), backend moderation of a group
//! message (the op entry, its fan-out, the members' logs and the group's
//! history), and read positions hidden by `hide_presence`.
//!
//! Members are real mailboxes over the log's own SQL (run by `rusqlite`),
//! groups the real [`Group`] over its real store.

mod support;

use std::cell::RefCell;

use edge_chat::group::{Delivery, EntryKind, GroupEntry, GroupId};
use edge_chat::limits::Limits;
use edge_chat::log::Log;
use edge_chat::mailbox::{Appended, Config, DeliverStep, Io, Mailbox, Mode, Sockets};
use edge_chat::message::Kind;
use edge_chat::user::UserId;
use serde_json::{json, Value};
use support::sqlite::Lite;

/// One v1 socket that keeps every frame (none when offline).
struct Device(RefCell<Vec<Value>>, bool);

impl Sockets for Device {
    type Socket = ();
    fn open(&self, mode: Mode) -> Vec<()> {
        if mode == Mode::V1 && self.1 {
            vec![()]
        } else {
            Vec::new()
        }
    }
    fn count(&self) -> usize {
        self.1 as usize
    }
    fn send(&self, _: &(), text: &str) -> bool {
        self.0.borrow_mut().push(serde_json::from_str(text).expect("frames are JSON"));
        true
    }
}

/// A member: a mailbox that pushes (30 s delay), with a v1 device online or not.
struct User {
    log: Log<Lite>,
    mb: Mailbox,
    device: Device,
    id: UserId,
    now: u64,
}

impl User {
    fn new(id: &str, online: bool) -> User {
        let mut config = Config::new(Limits::default(), 500, 1000);
        config.push = Some(edge_chat::push::PushConfig { delay_ms: 30_000, ttl_ms: 3_600_000, preview_chars: 0 });
        let mut u = User {
            log: Lite::log(),
            mb: Mailbox::new(config),
            device: Device(RefCell::new(Vec::new()), online),
            id: UserId::parse(id).unwrap(),
            now: 1_000_000,
        };
        let (log, dev, id) = (&u.log, &u.device, u.id.clone());
        u.mb.load(&Io { log, sockets: dev, now: u.now }, &id).unwrap();
        if online {
            u.mb.connect_v1(&Io { log, sockets: dev, now: u.now }, &(), "phone", None).unwrap();
        }
        u
    }

    /// A chat from `peer` arrives through a hop.
    fn receive(&mut self, peer: &str, mid: &str) {
        let d = edge_chat::internal::Delivery {
            owner: self.id.clone(),
            kind: Kind::Received,
            id: mid.into(),
            time_ms: self.now,
            peer: UserId::parse(peer).ok(),
            dedup: false,
            backend: false,
        };
        let io = Io { log: &self.log, sockets: &self.device, now: self.now };
        match self.mb.deliver(&io, d, json!({"message": "hi"}).to_string()).unwrap() {
            DeliverStep::Append(entry) => match self.mb.append(&io, entry) {
                Appended::Now(stored) => {
                    stored.unwrap();
                    self.mb.cooled();
                }
                Appended::Wait { .. } => panic!("the log was idle"),
            },
            DeliverStep::Answer(a) => panic!("not stored: {a:?}"),
        }
    }

    /// The group delivers `entries` (the member's cursor of it at `since`).
    fn group(&mut self, since: u64, entries: Vec<GroupEntry>) {
        let d = Delivery { group: gid(), member: self.id.clone(), flight: 1, since, entries };
        let io = Io { log: &self.log, sockets: &self.device, now: self.now };
        assert!(self.mb.group_delivery(&io, &d).unwrap().is_some(), "applied");
    }

    /// The alarm fires now: the push calls it makes, each answered 200.
    fn push_round(&mut self) -> Vec<Value> {
        let io = Io { log: &self.log, sockets: &self.device, now: self.now };
        let due = self.mb.alarm_fired(self.now);
        let mut calls = Vec::new();
        if due.push {
            while let Some(call) = self.mb.push_next(&io).unwrap() {
                calls.push(serde_json::from_str::<Value>(&call.body).unwrap());
                if !self.mb.push_done(&io, Some(200), 0.5).unwrap() {
                    break;
                }
            }
        }
        self.mb.alarm_done(self.now);
        calls
    }
}

fn gid() -> GroupId {
    GroupId::parse("gteam").unwrap()
}

/// The group message at `seq` from `from`, as the group's object delivers it.
fn message(seq: u64, from: &str) -> GroupEntry {
    GroupEntry {
        seq,
        id: format!("gm{seq}"),
        kind: EntryKind::Message,
        sender: UserId::parse(from).ok(),
        time_ms: 1_000_000,
        body: json!({"group": "gteam", "group_seq": seq, "fromUser": from, "message": format!("m{seq}"),
                     "id": format!("gm{seq}"), "time": "2001-09-09T01:46:40.000Z"})
        .to_string(),
    }
}

#[test]
fn a_group_message_for_a_member_with_no_device_online_is_pushed_at_once() {
    let mut bob = User::new("bob", false);
    bob.group(0, vec![message(1, "alice")]);
    let calls = bob.push_round();
    assert_eq!(calls.len(), 1, "no device got it: no ack to wait for");
    assert_eq!(calls[0]["conversations"][0]["peer"], "gteam");
    // With a device online the ack delay holds, as for a chat.
    let mut carol = User::new("carol", true);
    carol.group(0, vec![message(1, "alice")]);
    assert!(carol.push_round().is_empty(), "a device has it: the ack delay first");
    carol.now += 30_000;
    assert_eq!(carol.push_round().len(), 1, "not acked within the delay");
}

#[test]
fn the_unread_total_of_a_push_counts_the_groups_and_a_group_read_is_told() {
    let mut bob = User::new("bob", false);
    bob.receive("alice", "c1");
    bob.group(0, vec![message(1, "alice"), message(2, "bob"), message(3, "carol")]);
    let calls = bob.push_round();
    assert_eq!(calls.len(), 1);
    // One chat, and two of the others' group messages (bob's own is not unread).
    assert_eq!(calls[0]["unread"], 3, "{}", calls[0]);
    // Bob reads the group on a device: a silent read with the new counts.
    let io = Io { log: &bob.log, sockets: &bob.device, now: bob.now };
    bob.mb.group_read(&io, &gid(), 3).unwrap();
    let calls = bob.push_round();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0]["type"], "read");
    assert_eq!(calls[0]["unread"], 1, "the chat is left");
    assert_eq!(calls[0]["conversations"][0], json!({"peer": "gteam", "unread": 0}));
}
