//! Groups and the features around them, natively (issue 24's group items):
//! pushes of group messages (at once when no device was online, and the
//! user's unread total counting groups), backend moderation of a group
//! message (the op entry, its fan-out, the members' logs and the group's
//! history), and read positions hidden by `hide_presence`.
//!
//! Members are real mailboxes over the log's own SQL (run by `rusqlite`),
//! groups the real [`Group`] over its real store.

mod support;

use edge_chat::edits::EditOp;
use edge_chat::group::calls::{self, Call, Request};
use edge_chat::group::store::Store;
use edge_chat::group::{
    Actor, Answer, Delivery, Effect as GroupEffect, EntryKind, Group, GroupEntry, GroupError, GroupId,
};
use edge_chat::limits::Limits;
use edge_chat::mailbox::{Appended, Config, DeliverStep, Effect, Io, Mailbox};
use edge_chat::message::Kind;
use edge_chat::user::UserId;
use rusqlite::Connection;
use serde_json::{json, Value};
use support::sqlite::Lite;
use support::uid;
use support::user::User;

impl User {
    /// A member: a mailbox that pushes (30 s delay), with a v1 device online or not.
    fn new(id: &str, online: bool) -> User {
        let mut config = Config::new(Limits::default(), 500, 1000);
        config.push = Some(edge_chat::push::PushConfig { delay_ms: 30_000, ttl_ms: 3_600_000, preview_chars: 0 });
        User::start(id, config, online, 1_000_000)
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
            key: None,
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
    assert_eq!(calls[0]["conversations"][0]["peer"], "g:team");
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
    assert_eq!(calls[0]["conversations"][0], json!({"peer": "g:team", "unread": 0}));
}

/// A group created by alice with bob and carol, in memory.
fn team() -> Group<Lite> {
    let store = Store::open(Lite(Connection::open_in_memory().unwrap())).unwrap();
    let mut g = Group::open(store, edge_chat::group::Config::default()).unwrap();
    let members = [uid("bob"), uid("carol")];
    g.create(gid(), &Actor::User(uid("alice")), uid("alice"), &members, "c1", 1_000_000).unwrap();
    g
}

/// Carries the group's deliveries to `user` (others' are answered as
/// applied) until nothing is owed.
fn fan_out(g: &mut Group<Lite>, user: &mut User) {
    loop {
        let deliveries: Vec<Delivery> = g
            .take_effects()
            .into_iter()
            .filter_map(|e| match e {
                GroupEffect::Deliver(d) => Some(d),
                _ => None,
            })
            .collect();
        if deliveries.is_empty() {
            return;
        }
        for d in deliveries {
            let answer = if d.member == user.id {
                let io = Io { log: &user.log, sockets: &user.device, now: user.now };
                user.mb.group_delivery(&io, &d).unwrap().expect("well formed")
            } else {
                Answer::Applied(d.entries.last().map_or(d.since, |e| e.seq))
            };
            g.answered(&d.member, d.flight, answer, user.now).unwrap();
        }
    }
}

fn body(s: &str) -> Value {
    serde_json::from_str(s).unwrap()
}

#[test]
fn the_backend_deletes_a_group_message_for_every_member_and_history_shows_the_tombstone() {
    let mut g = team();
    let mut bob = User::new("bob", true);
    let text = |t: &str| json!({ "message": t }).as_object().unwrap().clone();
    let sent = g.send(&uid("alice"), Some("k1"), text("spam"), "mspam", 1_000_000).unwrap();
    g.send(&uid("carol"), None, text("hello"), "mhello", 1_000_000).unwrap();
    fan_out(&mut g, &mut bob);
    // The sender, when named, must be the message's; a change is no message.
    let delete = || EditOp::Delete { everyone: true };
    assert_eq!(g.moderate("mspam", Some(&uid("carol")), delete(), "op1", 2_000_000), Err(GroupError::NoSuchEntry));
    assert_eq!(g.moderate("c1", None, delete(), "op1", 2_000_000), Err(GroupError::NoSuchEntry));
    let before = g.store().sql().0.total_changes();
    let done = g.moderate("mspam", Some(&uid("alice")), delete(), "op1", 2_000_000).unwrap();
    let written = g.store().sql().0.total_changes() - before;
    assert_eq!(written, 2, "the group writes the op and the message's new body");
    assert_eq!((done.seq, done.duplicate), (4, false));
    // A repeat of the idempotent call answers the same op and stores nothing.
    let again = g.moderate("mspam", None, delete(), "op1", 2_000_001).unwrap();
    assert_eq!((again.seq, again.duplicate, g.head()), (4, true, 4));
    assert_eq!(g.moderate("mspam", None, delete(), "op2", 2_000_002), Err(GroupError::Deleted));
    // The group's history shows the tombstone in the message's place, no op item.
    let page = g.page(&Actor::User(uid("bob")), None, 10).unwrap();
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 2, 1]);
    let tomb = body(&page[1].body);
    assert!(tomb.get("message").is_none() && tomb["deleted_at"].is_string(), "{tomb}");
    assert_eq!((tomb["group"].as_str(), tomb["group_seq"].as_u64()), (Some("g:team"), Some(sent.seq)));
    // Bob's device gets the op as a chat's delete is sent, and his log's copy
    // of the message becomes the tombstone.
    bob.device.0.borrow_mut().clear();
    let before = bob.log.sql().0.total_changes();
    fan_out(&mut g, &mut bob);
    let written = bob.log.sql().0.total_changes() - before;
    assert_eq!(written, 3, "a member writes the op, its copy's new body and its cursor of the group");
    let frames = bob.device.0.borrow().clone();
    assert_eq!(frames.len(), 1, "{frames:?}");
    let f = &frames[0];
    assert_eq!((f["op"].as_str(), f["kind"].as_str(), f["mid"].as_str()), (Some("msg"), Some("delete"), Some("op1")));
    assert!(f["peer"].is_null());
    assert_eq!((f["body"]["target"].as_str(), f["body"]["for"].as_str()), (Some("mspam"), Some("everyone")));
    assert_eq!(f["body"]["body"], tomb);
    let mut copy = None;
    bob.log
        .entries_after(0, |e| {
            if e.id == "mspam" {
                copy = Some(body(&e.body));
            }
            true
        })
        .unwrap();
    assert_eq!(copy, Some(tomb), "the member's log holds the current state");
    // Nothing of it goes to D1 from the member, even on a reader's pass.
    let io = Io { log: &bob.log, sockets: &bob.device, now: bob.now };
    let batch = bob.mb.archive_next(&io, true).unwrap().expect("a batch");
    assert!(
        batch.handoffs.iter().all(|h| h.rows == "[]"),
        "{:?}",
        batch.handoffs.iter().map(|h| &h.rows).collect::<Vec<_>>()
    );
    // The deleted message is no longer unread; carol's still is.
    assert_eq!(bob.log.group_unread("gteam").unwrap(), 1);
    let reads = bob.push_round();
    assert_eq!(reads.len(), 1, "{reads:?}");
    assert_eq!(reads[0]["conversations"][0], json!({"peer": "g:team", "unread": 1}), "the app learns the new count");
    // A wake: the cursor holds the op, so a repeat delivery stores nothing.
    let mut config = Config::new(Limits::default(), 500, 1000);
    config.push = None;
    bob.mb = Mailbox::new(config);
    let io = Io { log: &bob.log, sockets: &bob.device, now: bob.now };
    bob.mb.load(&io, &bob.id).unwrap();
    let entries = g.store().entries(4, 4, 10).unwrap();
    let d = Delivery { group: gid(), member: bob.id.clone(), flight: 9, since: 3, entries };
    assert_eq!(bob.mb.group_delivery(&io, &d).unwrap(), Some(Answer::Applied(4)));
    let mut ops = 0;
    bob.log
        .entries_after(0, |e| {
            ops += usize::from(e.kind == Kind::DeleteIn);
            true
        })
        .unwrap();
    assert_eq!(ops, 1, "applied once");
}

#[test]
fn the_backend_edits_a_group_message_keeping_its_group_and_place() {
    let mut g = team();
    let mut bob = User::new("bob", true);
    let text = |t: &str| json!({ "message": t }).as_object().unwrap().clone();
    g.send(&uid("alice"), None, text("typo"), "mtypo", 1_000_000).unwrap();
    fan_out(&mut g, &mut bob);
    let edit = EditOp::Edit(text("fixed"));
    let done = g.moderate("mtypo", None, edit, "op1", 2_000_000).unwrap();
    assert_eq!(done.seq, 3);
    assert_eq!(g.moderate("mtypo", None, EditOp::Edit(Default::default()), "op2", 1), Err(GroupError::EmptyMessage));
    bob.device.0.borrow_mut().clear();
    fan_out(&mut g, &mut bob);
    let f = bob.device.0.borrow()[0].clone();
    assert_eq!((f["kind"].as_str(), f["body"]["target"].as_str()), (Some("edit"), Some("mtypo")));
    let new = &f["body"]["body"];
    assert_eq!((new["message"].as_str(), new["edit_version"].as_u64()), (Some("fixed"), Some(1)));
    assert_eq!(
        (new["group"].as_str(), new["group_seq"].as_u64(), new["fromUser"].as_str()),
        (Some("g:team"), Some(2), Some("alice"))
    );
    let page = g.page(&Actor::Backend, None, 10).unwrap();
    assert_eq!(body(&page[0].body), *new, "history shows the edit");
}

/// `GET /v1/groups/gteam` as `by`: each member's read position.
fn reads_seen_by(g: &mut Group<Lite>, by: &str) -> Vec<(String, u64)> {
    let req = Request { group: gid(), by: Actor::User(uid(by)), call: Call::Info };
    let reply = calls::handle(g, req, "unused", 3_000_000);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let v = body(&reply.body);
    v["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["user"].as_str().unwrap().to_owned(), m["read"].as_u64().unwrap()))
        .collect()
}

/// `user` reads the group up to `up_to`, hiding their presence or not (as their object says).
fn read(g: &mut Group<Lite>, user: &str, up_to: u64, hidden: bool) {
    let req = Request { group: gid(), by: Actor::User(uid(user)), call: Call::Read { up_to, hidden } };
    assert_eq!(calls::handle(g, req, "unused", 3_000_000).status, 200);
}

#[test]
fn a_member_who_hides_their_presence_shows_no_read_position_but_to_themself() {
    let mut g = team();
    let text = json!({ "message": "hi" }).as_object().unwrap().clone();
    g.send(&uid("alice"), None, text, "m1", 1_000_000).unwrap();
    read(&mut g, "bob", 2, true);
    let before = g.store().sql().0.total_changes();
    read(&mut g, "bob", 2, true);
    assert_eq!(g.store().sql().0.total_changes(), before, "a read that says what the group knows writes nothing");
    read(&mut g, "carol", 2, false);
    let want = |bob: u64| vec![("alice".to_owned(), 0), ("bob".to_owned(), bob), ("carol".to_owned(), 2)];
    assert_eq!(reads_seen_by(&mut g, "alice"), want(0), "hidden from the others");
    assert_eq!(reads_seen_by(&mut g, "bob"), want(2), "bob sees his own");
    // Read counts still count bob, as a chat's read receipt would.
    assert_eq!(g.read_by(&Actor::User(uid("alice")), 2).unwrap().read, 2);
    // Kept across a restart of the group's object.
    let mut g =
        Group::open(Store::open(g.into_store().into_sql()).unwrap(), edge_chat::group::Config::default()).unwrap();
    assert_eq!(reads_seen_by(&mut g, "carol"), want(0));
    // Shown again once bob stops hiding (a read up to 0 says so and moves nothing).
    read(&mut g, "bob", 0, false);
    assert_eq!(reads_seen_by(&mut g, "carol"), want(2));
}

#[test]
fn a_change_of_hide_presence_is_told_to_every_group_of_the_user() {
    let mut bob = User::new("bob", true);
    bob.group(0, vec![message(1, "alice")]);
    let io = Io { log: &bob.log, sockets: &bob.device, now: bob.now };
    bob.mb.take_effects();
    bob.mb.change_settings(&io, true).unwrap();
    let told: Vec<_> = bob.mb.take_effects().into_iter().filter(|e| matches!(e, Effect::HideReads { .. })).collect();
    assert_eq!(told, [Effect::HideReads { owner: uid("bob"), groups: vec![gid()], hidden: true }]);
}

#[test]
fn a_moderation_call_naming_the_sender_of_a_group_message_goes_to_its_group() {
    use edge_chat::internal::{ApiEdit, Outcome};
    use edge_chat::mailbox::ApiEditStep;
    let mut bob = User::new("bob", false);
    bob.group(0, vec![message(1, "alice"), message(2, "bob")]);
    let io = Io { log: &bob.log, sockets: &bob.device, now: bob.now };
    let call =
        |target: &str| ApiEdit { uid: uid("bob"), target: target.into(), id: "op1".into(), cmid: None, delete: true };
    let step = bob.mb.api_edit(&io, &call("gm2"), "").unwrap();
    assert_eq!(step, ApiEditStep::Group { group: gid(), op: EditOp::Delete { everyone: true } });
    let step = bob.mb.api_edit(&io, &call("gm1"), "").unwrap();
    assert_eq!(step, ApiEditStep::Answer(Outcome::NotFound), "alice's message, not bob's");
}
