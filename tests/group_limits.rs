//! Issue 24's limits on groups and queues in the core, natively: the real
//! [`Group`] over its store and the real [`Mailbox`] over a user's log, both
//! through `rusqlite`.
//!
//! - a group send draws from the user's one send bucket, whatever the path
//!   (a chat, a v1 `group` frame, an HTTP call through their object), and a
//!   page of a group's history from their read bucket;
//! - a member's typing reaches the group at the 1:1 typing rate;
//! - a group history cursor past every seq reads from the newest;
//! - the offline queue counts only what waits in it: group entries, edits
//!   and deletes never fill it (a property over random interleavings).
//!
//! `PROPTEST_CASES` raises the number of cases (default 256).

mod support;

use edge_chat::group::calls::{Call, Request};
use edge_chat::group::store::Store;
use edge_chat::group::{Actor, Config as GroupConfig, Effect as GroupEffect, Group, GroupError, GroupId};
use edge_chat::internal::{Delivery, Outcome};
use edge_chat::limits::Limits;
use edge_chat::mailbox::{Appended, Config, DeliverStep, GroupLimit, GroupRefused, Io, LegacyStep, Mailbox, V1Step};
use edge_chat::message::{new_id, Kind};
use edge_chat::ratelimit::Rate;
use proptest::prelude::*;
use rusqlite::Connection;
use serde_json::{json, Map, Value};
use support::sqlite::Lite;
use support::uid;
use support::user::User;

const T0: u64 = 1_800_000_000_000;

fn gid() -> GroupId {
    GroupId::parse("gteam").unwrap()
}

fn text(t: &str) -> Map<String, Value> {
    json!({ "message": t }).as_object().unwrap().clone()
}

/// A group created by alice with bob and carol, and `sends` messages of alice's.
fn group(sends: u64) -> Group<Lite> {
    let store = Store::open(Lite(Connection::open_in_memory().unwrap())).unwrap();
    let mut g = Group::open(store, GroupConfig::default()).unwrap();
    assert_eq!(g.create(gid(), &Actor::User(uid("alice")), uid("alice"), &[uid("bob"), uid("carol")], "c1", T0), Ok(1));
    for n in 0..sends {
        g.send(&uid("alice"), None, text(&format!("m{n}")), &format!("s{n}"), T0).unwrap();
    }
    g.take_effects();
    g
}

#[test]
fn a_group_history_cursor_past_every_seq_reads_from_the_newest() {
    let g = group(3);
    let seqs =
        |before| -> Vec<u64> { g.page(&Actor::User(uid("bob")), before, 10).unwrap().iter().map(|e| e.seq).collect() };
    assert_eq!(seqs(None), vec![4, 3, 2, 1]);
    for before in [1 << 53, 1 << 63, u64::MAX] {
        assert_eq!(seqs(Some(before)), vec![4, 3, 2, 1], "before={before}");
    }
    assert_eq!(seqs(Some(3)), vec![2, 1], "an ordinary cursor still pages");
}

#[test]
fn a_members_typing_reaches_the_group_at_the_one_to_one_rate() {
    let mut g = group(0);
    let relayed =
        |g: &mut Group<Lite>, now: u64| (0..20).filter(|i| g.typing_at(&uid("bob"), i % 2 == 0, now).unwrap()).count();
    assert_eq!(relayed(&mut g, T0), 3, "a burst of 20 lets 3 through");
    let typing = g.take_effects().iter().filter(|e| matches!(e, GroupEffect::Typing { .. })).count();
    assert_eq!(typing, 3, "only those fan out");
    assert_eq!(relayed(&mut g, T0 + 1000), 3, "3 per second");
    assert!(g.typing_at(&uid("carol"), true, T0).unwrap(), "each member has a bucket of their own");
    assert_eq!(g.typing_at(&uid("mallory"), true, T0), Err(GroupError::NotMember));
}

impl User {
    fn new(id: &str, limits: Limits, online: bool) -> User {
        User::start(id, Config::new(limits, 500, 1000), online, T0)
    }

    fn frame(&mut self, text: &str) -> V1Step {
        let io = Io { log: &self.log, sockets: &self.device, now: self.now };
        self.mb.v1_frame(&io, "phone", u64::MAX, text).unwrap()
    }

    /// A delivery from `peer` of `kind` (`None`: the backend's system message).
    fn deliver(&mut self, peer: Option<&str>, kind: Kind, id: &str, body: Value) -> Outcome {
        let d = Delivery {
            owner: self.id.clone(),
            kind,
            id: id.into(),
            time_ms: self.now,
            peer: peer.map(uid),
            dedup: false,
            backend: peer.is_none(),
            key: None,
        };
        let io = Io { log: &self.log, sockets: &self.device, now: self.now };
        match self.mb.deliver(&io, d, body.to_string()).unwrap() {
            DeliverStep::Answer(a) => a.outcome,
            DeliverStep::Append(entry) => match self.mb.append(&io, entry) {
                Appended::Now(stored) => {
                    self.mb.cooled();
                    Mailbox::delivered(stored.ok()).outcome
                }
                Appended::Wait { .. } => panic!("the log was idle"),
            },
        }
    }

    fn chat(&mut self, peer: &str, id: &str) -> Outcome {
        self.deliver(Some(peer), Kind::Received, id, json!({"message": "hi", "id": id}))
    }

    fn edit(&mut self, peer: &str, target: &str, n: u64) -> Outcome {
        let body = json!({"target": target, "body": {"message": format!("v{n}"), "id": target, "edit_version": n}});
        self.deliver(Some(peer), Kind::EditIn, &new_id(n, 77), body)
    }

    /// Group entries `from..=to` of gteam, sent by `sender`.
    fn group_entries(&mut self, sender: &str, from: u64, to: u64) {
        use edge_chat::group::{Answer, Delivery, EntryKind, GroupEntry};
        let entries = (from..=to)
            .map(|s| GroupEntry {
                seq: s,
                id: format!("g{s}"),
                kind: EntryKind::Message,
                sender: Some(uid(sender)),
                time_ms: self.now,
                body: json!({"group": "gteam", "group_seq": s, "fromUser": sender, "message": format!("m{s}")})
                    .to_string(),
            })
            .collect();
        let d = Delivery { group: gid(), member: self.id.clone(), flight: 1, since: from - 1, entries };
        let io = Io { log: &self.log, sockets: &self.device, now: self.now };
        assert_eq!(self.mb.group_delivery(&io, &d).unwrap(), Some(Answer::Applied(to)));
    }
}

fn request(by: &str, call: Call) -> String {
    Request { group: gid(), by: Actor::User(uid(by)), call }.encode()
}

fn send_call() -> Call {
    Call::Send { cmid: None, fields: text("hi") }
}

#[test]
fn a_group_send_draws_from_the_one_send_bucket_on_every_path() {
    let limits = Limits { send_rate: Rate { per_second: 1, burst: 4 }, ..Limits::default() };
    let mut amy = User::new("amy", limits, true);
    let now = amy.now;
    // A legacy chat takes a token…
    let chat = r#"{"fromUser":"amy","toUser":"bob","message":"hi"}"#;
    assert!(matches!(amy.mb.legacy_frame(&uid("amy"), u64::MAX, chat, now), LegacyStep::Send(_)));
    // …a v1 group frame another…
    let frame = json!({"op": "group", "id": 1, "call": "send", "group": "gteam", "body": {"message": "hi"}});
    assert!(matches!(amy.frame(&frame.to_string()), V1Step::Group { .. }));
    // …and HTTP group sends (through the user's object) the rest.
    for _ in 0..2 {
        assert!(amy.mb.group_call(&uid("amy"), &request("amy", send_call()), now).is_ok());
    }
    let refused = amy.mb.group_call(&uid("amy"), &request("amy", send_call()), now);
    let Err(GroupRefused::Limit(limit @ GroupLimit::Send { retry_after_ms })) = refused else { panic!("{refused:?}") };
    assert!(retry_after_ms > 0 && retry_after_ms <= 1000);
    let (status, body) = limit.http();
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((status, body["code"].as_str()), (429, Some("rate_limited")));
    // The v1 frame is refused too now, and so is a chat: one bucket.
    let V1Step::Reply(reply) = amy.frame(&frame.to_string()) else { panic!() };
    assert_eq!(serde_json::from_str::<Value>(&reply).unwrap()["code"], "rate_limited");
    assert!(matches!(amy.mb.legacy_frame(&uid("amy"), u64::MAX, chat, now), LegacyStep::Reply(_)));
    // Other calls pass; a request in another user's name never does.
    let info = amy.mb.group_call(&uid("amy"), &request("amy", Call::Info), now);
    assert_eq!(info.map(|r| r.call), Ok(Call::Info));
    assert_eq!(amy.mb.group_call(&uid("amy"), &request("bob", Call::Info), now), Err(GroupRefused::Bad));
    assert_eq!(amy.mb.group_call(&uid("amy"), "{", now), Err(GroupRefused::Bad));
}

#[test]
fn a_page_of_group_history_draws_from_the_read_bucket() {
    let limits = Limits { read_rate: Rate { per_second: 1, burst: 2 }, ..Limits::default() };
    let mut amy = User::new("amy", limits, true);
    let now = amy.now;
    let page = || request("amy", Call::Page { before: None, limit: 10 });
    assert!(amy.mb.group_call(&uid("amy"), &page(), now).is_ok());
    let frame = json!({"op": "group", "id": 1, "call": "history", "group": "gteam"}).to_string();
    assert!(matches!(amy.frame(&frame), V1Step::Group { .. }));
    let refused = amy.mb.group_call(&uid("amy"), &page(), now);
    assert!(matches!(refused, Err(GroupRefused::Limit(GroupLimit::Read { .. }))), "{refused:?}");
    assert_eq!(refused.unwrap_err().http().0, 429);
    let V1Step::Reply(reply) = amy.frame(&frame) else { panic!() };
    assert_eq!(serde_json::from_str::<Value>(&reply).unwrap()["code"], "rate_limited");
    // A send still has its own bucket.
    assert!(amy.mb.group_call(&uid("amy"), &request("amy", send_call()), now).is_ok());
}

#[test]
fn group_entries_and_edits_never_fill_an_offline_users_queue() {
    let limits = Limits { queue_max: 40, queue_per_sender: 10, ..Limits::default() };
    let mut vic = User::new("vic", limits, false);
    let first = new_id(1, 1);
    assert_eq!(vic.chat("mallory", &first), Outcome::Stored { pushed: false });
    vic.group_entries("mallory", 1, 45);
    for n in 1..=45 {
        assert_eq!(vic.edit("mallory", &first, n), Outcome::Stored { pushed: false });
    }
    // Everyone else still gets in, and the backend too.
    assert_eq!(vic.chat("alice", &new_id(2, 2)), Outcome::Stored { pushed: false });
    let sys = vic.deliver(None, Kind::System, &new_id(3, 3), json!({"message": "sys"}));
    assert_eq!(sys, Outcome::Stored { pushed: false });
    // The bound still holds for what does wait: 3 queued, 37 more fit.
    for n in 0..37 {
        assert_eq!(vic.chat(&format!("s{}", n / 10), &new_id(10 + n, 4)), Outcome::Stored { pushed: false });
    }
    assert_eq!(vic.chat("zed", &new_id(99, 4)), Outcome::Full);
}

/// What happens to an offline user's log, one step at a time.
#[derive(Clone, Debug)]
enum Step {
    /// A chat from sender `i`.
    Chat(usize),
    /// A system message of the backend's.
    System,
    /// `n` group entries.
    Group(u64),
    /// Sender `i` edits their newest chat.
    Edit(usize),
    /// The object is evicted: the next event reloads the log.
    Wake,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..4usize).prop_map(Step::Chat),
        1 => Just(Step::System),
        2 => (1..8u64).prop_map(Step::Group),
        2 => (0..4usize).prop_map(Step::Edit),
        1 => Just(Step::Wake),
    ]
}

proptest! {
    /// Whatever else arrives in between, a chat or system message is
    /// refused exactly when `QUEUE_MAX` entries wait in the queue, or (a
    /// chat) when its sender has `QUEUE_PER_SENDER` of them there.
    #[test]
    fn only_what_waits_in_the_queue_counts_against_its_bounds(steps in prop::collection::vec(step(), 1..120)) {
        let (max, per_sender) = (12u64, 5u64);
        let limits = Limits { queue_max: max, queue_per_sender: per_sender, ..Limits::default() };
        let mut u = User::new("vic", limits, false);
        let (mut queued, mut by_sender, mut newest) = (0u64, [0u64; 4], [None, None, None, None]);
        let (mut group_seq, mut n) = (0u64, 0u64);
        for s in steps {
            n += 1;
            u.now += 1;
            match s {
                Step::Chat(i) => {
                    let id = new_id(n, i as u64);
                    let full = queued >= max || by_sender[i] >= per_sender;
                    let got = u.chat(&format!("s{i}"), &id);
                    prop_assert_eq!(got == Outcome::Full, full, "chat {} of s{}: {:?}", n, i, got);
                    if !full {
                        queued += 1;
                        by_sender[i] += 1;
                        newest[i] = Some(id);
                    }
                }
                Step::System => {
                    let got = u.deliver(None, Kind::System, &new_id(n, 9), json!({"message": "sys"}));
                    prop_assert_eq!(got == Outcome::Full, queued >= max);
                    if queued < max {
                        queued += 1;
                    }
                }
                Step::Group(k) => {
                    u.group_entries("s0", group_seq + 1, group_seq + k);
                    group_seq += k;
                }
                Step::Edit(i) => {
                    if let Some(target) = newest[i].clone() {
                        prop_assert_eq!(u.edit(&format!("s{i}"), &target, n), Outcome::Stored { pushed: false });
                    }
                }
                Step::Wake => {
                    u.mb = Mailbox::new(*u.mb.config());
                    u.load();
                }
            }
        }
    }
}
