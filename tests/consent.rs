//! Consent to be put in a group, natively: the added user's object decides
//! (the real `Mailbox` over the log's own SQL: the `group_adds` setting,
//! blocks, contacts), the group's core asks only when an add could succeed
//! and carries out the answers (the real `Group` over its real store), and a
//! member's object keeps no message of a sender they blocked.

mod support;

use edge_chat::group::adds::{consent_needed, handle_consented};
use edge_chat::group::calls::{Call, Request};
use edge_chat::group::store::Store;
use edge_chat::group::{Actor, Config, Delivery, EntryKind, Group, GroupEntry, GroupId, Op, Role};
use edge_chat::internal::{Answer as HopAnswer, Outcome};
use edge_chat::limits::Limits;
use edge_chat::log::Log;
use edge_chat::mailbox::{Appended, Io, Mailbox, SendPlan, V1Step};
use edge_chat::message::Chat;
use edge_chat::user::UserId;
use rusqlite::Connection;
use serde_json::{json, Value};
use support::device::Device;
use support::sqlite::Lite;
use support::uid;

struct User {
    log: Log<Lite>,
    mb: Mailbox,
    device: Device,
    id: UserId,
    now: u64,
}

fn config() -> edge_chat::mailbox::Config {
    edge_chat::mailbox::Config::new(Limits::default(), 500, 1000)
}

impl User {
    fn new(id: &str) -> User {
        let u = User {
            log: Lite::log(),
            mb: Mailbox::new(config()),
            device: Device::online(),
            id: uid(id),
            now: 1_000_000,
        };
        let mut u = u;
        let (log, dev, id) = (&u.log, &u.device, u.id.clone());
        u.mb.load(&Io { log, sockets: dev, now: u.now }, &id).unwrap();
        u.mb.connect_v1(&Io { log, sockets: dev, now: u.now }, &(), "phone", None).unwrap();
        u
    }

    fn io(&self) -> Io<'_, Lite, Device> {
        Io { log: &self.log, sockets: &self.device, now: self.now }
    }

    fn may_add(&mut self, by: &str) -> bool {
        let (log, dev, now, me) = (&self.log, &self.device, self.now, self.id.clone());
        self.mb.may_add_to_group(&Io { log, sockets: dev, now }, &me, &uid(by)).unwrap()
    }

    fn frame(&mut self, text: &str) -> Value {
        let (log, dev, now) = (&self.log, &self.device, self.now);
        match self.mb.v1_frame(&Io { log, sockets: dev, now }, "phone", u64::MAX, text).unwrap() {
            V1Step::Reply(r) => serde_json::from_str(&r).unwrap(),
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    /// A chat of this user's to `to`, through the real send flow.
    fn send_to(&mut self, to: &str, n: u64) {
        let chat =
            Chat { from: self.id.clone(), to: uid(to), fields: json!({"message":"hi"}).as_object().unwrap().clone() };
        let mid = edge_chat::message::new_id(n, n);
        let (log, dev, now) = (&self.log, &self.device, self.now);
        let io = Io { log, sockets: dev, now };
        let Ok(SendPlan::Remote(remote)) = self.mb.plan_send(&io, chat, &mid, now, Some(&format!("c{n}")), false)
        else {
            panic!("a remote send")
        };
        let stored = HopAnswer { seq: Some(n), ..HopAnswer::of(Outcome::Stored { pushed: false }) };
        let entry = self.mb.hop_answered(remote, Some(stored)).unwrap();
        assert!(matches!(self.mb.append(&io, entry), Appended::Now(Ok(_))));
        self.mb.cooled();
    }

    /// A chat from `peer` arrives through a hop.
    fn receive_from(&mut self, peer: &str, n: u64) {
        let d = edge_chat::internal::Delivery {
            owner: self.id.clone(),
            kind: edge_chat::message::Kind::Received,
            id: edge_chat::message::new_id(n, n),
            time_ms: self.now,
            peer: Some(uid(peer)),
            dedup: false,
            backend: false,
            key: None,
        };
        let (log, dev, now) = (&self.log, &self.device, self.now);
        let io = Io { log, sockets: dev, now };
        match self.mb.deliver(&io, d, json!({"message": "hi"}).to_string()).unwrap() {
            edge_chat::mailbox::DeliverStep::Append(entry) => {
                assert!(matches!(self.mb.append(&io, entry), Appended::Now(Ok(_))));
                self.mb.cooled();
            }
            edge_chat::mailbox::DeliverStep::Answer(_) => {}
        }
    }
}

#[test]
fn only_contacts_by_default_never_whom_one_blocked_and_the_setting_holds_across_a_wake() {
    let mut bob = User::new("bob");
    assert!(!bob.may_add("mallory"), "a stranger, under the default (contacts)");
    bob.receive_from("mallory", 1);
    assert!(!bob.may_add("mallory"), "writing to bob first makes no contact");
    bob.send_to("mallory", 2);
    assert!(bob.may_add("mallory"), "bob wrote to mallory: a contact");
    assert_eq!(bob.frame(r#"{"op":"block","id":1,"user":"mallory"}"#)["op"], "ok");
    assert!(!bob.may_add("mallory"), "blocked, contact or not");
    // Everyone: strangers may, whom bob blocked still may not.
    assert_eq!(bob.frame(r#"{"op":"settings","id":2,"group_adds":"everyone"}"#), json!({"op":"ok","re":2}));
    let shown: Vec<Value> = bob.device.0.borrow().iter().filter(|f| f["op"] == "settings").cloned().collect();
    assert_eq!(shown.last().unwrap()["settings"], json!({"hide_presence": false, "group_adds": "everyone"}));
    assert!(bob.may_add("carol"));
    assert!(!bob.may_add("mallory"));
    // Nobody: not even a contact.
    bob.frame(r#"{"op":"unblock","id":3,"user":"mallory"}"#);
    bob.frame(r#"{"op":"settings","id":4,"group_adds":"nobody"}"#);
    assert!(!bob.may_add("mallory") && !bob.may_add("carol"));
    // The setting is stored: a new instance of the object reads it back.
    let mut woken = Mailbox::new(config());
    woken.load(&bob.io(), &bob.id).unwrap();
    assert_eq!(woken.settings().group_adds, edge_chat::consent::GroupAdds::Nobody);
    assert!(!woken.may_add_to_group(&bob.io(), &bob.id, &uid("mallory")).unwrap());
    let body: Value = serde_json::from_str(
        &woken.settings_request(&bob.io(), &bob.id, edge_chat::protocol::v1::SettingsChange::default()).unwrap(),
    )
    .unwrap();
    assert_eq!(body, json!({"hide_presence": false, "group_adds": "nobody"}));
}

#[test]
fn a_blocked_members_messages_are_not_kept_but_the_cursor_passes_them() {
    let mut bob = User::new("bob");
    bob.frame(r#"{"op":"block","id":1,"user":"mallory"}"#);
    let entry = |seq: u64, sender: &str, kind: EntryKind| GroupEntry {
        seq,
        id: format!("e{seq}"),
        kind,
        sender: Some(uid(sender)),
        time_ms: 5,
        body: json!({"group": "gteam", "group_seq": seq, "fromUser": sender, "message": "m"}).to_string(),
    };
    let d = Delivery {
        group: GroupId::parse("gteam").unwrap(),
        member: bob.id.clone(),
        flight: 1,
        since: 0,
        entries: vec![
            entry(1, "mallory", EntryKind::Change),
            entry(2, "mallory", EntryKind::Message),
            entry(3, "carol", EntryKind::Message),
            entry(4, "mallory", EntryKind::Message),
        ],
    };
    let (log, dev, now) = (&bob.log, &bob.device, bob.now);
    let answer = bob.mb.group_delivery(&Io { log, sockets: dev, now }, &d).unwrap();
    assert_eq!(answer, Some(edge_chat::group::Answer::Applied(4)), "the group's cursor passes them all");
    let mut kept = Vec::new();
    bob.log
        .entries_after(0, |e| {
            if e.kind == edge_chat::message::Kind::Group {
                kept.push(serde_json::from_str::<Value>(&e.body).unwrap()["group_seq"].as_u64().unwrap());
            }
            true
        })
        .unwrap();
    assert_eq!(kept, vec![1, 3], "the change mallory made is kept, mallory's messages are not");
    let msgs = bob.device.0.borrow().iter().filter(|f| f["op"] == "msg").count();
    assert_eq!(msgs, 2, "nothing of mallory's shown");
}

fn group_of(owner: &str, members: &[&str]) -> Group<Lite> {
    let store = Store::open(Lite(Connection::open_in_memory().unwrap())).unwrap();
    let mut g = Group::open(store, Config::default()).unwrap();
    let members: Vec<UserId> = members.iter().map(|m| uid(m)).collect();
    let id = GroupId::parse("gteam").unwrap();
    g.create(id, &Actor::User(uid(owner)), uid(owner), &members, "c1", 1).unwrap();
    g
}

fn request(by: Actor, call: Call) -> Request {
    Request { group: GroupId::parse("gteam").unwrap(), by, call }
}

fn add(by: &str, user: &str) -> Request {
    request(Actor::User(uid(by)), Call::Change(Op::Add { user: uid(user), role: Role::Member }))
}

#[test]
fn a_group_asks_only_when_an_add_could_succeed() {
    let empty = Group::open(Store::open(Lite(Connection::open_in_memory().unwrap())).unwrap(), Config::default());
    let empty = empty.unwrap();
    let create = |by: Actor| {
        request(
            by,
            Call::Create { owner: uid("alice"), members: vec![uid("carol"), uid("bob"), uid("alice"), uid("bob")] },
        )
    };
    assert_eq!(consent_needed(&empty, &create(Actor::User(uid("alice")))), vec![uid("bob"), uid("carol")]);
    assert!(consent_needed(&empty, &create(Actor::Backend)).is_empty(), "the backend acts for the operator");
    assert!(consent_needed(&empty, &create(Actor::User(uid("eve")))).is_empty(), "eve cannot create for alice");
    let g = group_of("alice", &["bob"]);
    assert!(consent_needed(&g, &create(Actor::User(uid("alice")))).is_empty(), "the group exists");
    assert_eq!(consent_needed(&g, &add("alice", "dave")), vec![uid("dave")]);
    assert!(consent_needed(&g, &add("bob", "dave")).is_empty(), "a plain member cannot add: nobody is asked");
    assert!(consent_needed(&g, &add("eve", "dave")).is_empty(), "nor can a stranger probe");
    assert!(consent_needed(&g, &add("alice", "bob")).is_empty(), "a member already");
}

#[test]
fn a_refused_add_stores_nothing_and_a_create_goes_ahead_without_those_who_refused() {
    let mut g = group_of("alice", &["bob"]);
    let head = g.head();
    let refused = handle_consented(&mut g, add("alice", "mallory"), &[(uid("mallory"), Some(false))], "e2", 2);
    let body: Value = serde_json::from_str(&refused.body).unwrap();
    assert_eq!((refused.status, body["code"].as_str()), (403, Some("add_refused")));
    assert_eq!(g.head(), head, "nothing stored");
    let lost = handle_consented(&mut g, add("alice", "mallory"), &[(uid("mallory"), None)], "e2", 2);
    assert_eq!(lost.status, 503, "no answer: retry");
    let ok = handle_consented(&mut g, add("alice", "dave"), &[(uid("dave"), Some(true))], "e2", 2);
    assert_eq!(ok.status, 200);
    assert!(g.members().unwrap().iter().any(|m| m.user == uid("dave")));
    // A re-add after a leave asks again.
    g.change(&Actor::User(uid("bob")), Op::Leave, "e3", 3).unwrap();
    assert_eq!(consent_needed(&g, &add("alice", "bob")), vec![uid("bob")]);

    let store = Store::open(Lite(Connection::open_in_memory().unwrap())).unwrap();
    let mut fresh = Group::open(store, Config::default()).unwrap();
    let create = request(
        Actor::User(uid("alice")),
        Call::Create { owner: uid("alice"), members: vec![uid("bob"), uid("carol"), uid("mallory")] },
    );
    let answers = [(uid("bob"), Some(true)), (uid("carol"), None), (uid("mallory"), Some(false))];
    let made = handle_consented(&mut fresh, create, &answers, "c1", 1);
    let body: Value = serde_json::from_str(&made.body).unwrap();
    assert_eq!(made.status, 201);
    assert_eq!(body["refused"], json!(["carol", "mallory"]), "no answer counts as no");
    let members: Vec<String> = fresh.members().unwrap().iter().map(|m| m.user.as_str().to_owned()).collect();
    assert_eq!(members, ["alice", "bob"]);
}
