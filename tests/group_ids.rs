//! Group ids and their namespace, natively: `g:team` and `gteam` name the
//! same group; a member's log holding entries of both forms (written
//! before and after the namespace) is one conversation with one cursor,
//! shown and pushed under `g:team`, which no user id can be; a group is
//! muted by either form.

mod support;

use edge_chat::group::{Answer, Delivery, EntryKind, GroupEntry, GroupId};
use edge_chat::limits::Limits;
use edge_chat::log::Log;
use edge_chat::mailbox::{Config, Io, Mailbox, V1Step};
use edge_chat::user::UserId;
use serde_json::{json, Value};
use support::device::Device;
use support::sqlite::Lite;
use support::uid;

/// Entries `from..=to` of alice's messages, their bodies naming the group as `written`.
fn delivery(group: &str, written: &str, since: u64, from: u64, to: u64) -> Delivery {
    let entries = (from..=to)
        .map(|s| GroupEntry {
            seq: s,
            id: format!("e{s}"),
            kind: EntryKind::Message,
            sender: Some(uid("alice")),
            time_ms: 5,
            body: json!({"group": written, "group_seq": s, "fromUser": "alice", "message": format!("m{s}")})
                .to_string(),
        })
        .collect();
    Delivery { group: GroupId::parse(group).unwrap(), member: uid("bob"), flight: 1, since, entries }
}

#[test]
fn both_forms_name_one_group_and_no_user_id_is_a_group_id() {
    let (new, old) = (GroupId::parse("g:team").unwrap(), GroupId::parse("gteam").unwrap());
    assert_eq!(new, old);
    assert_eq!(new.as_str(), "gteam", "the object name and storage key are the old form");
    assert_eq!((new.wire(), new.to_string()), ("g:team".to_owned(), "g:team".to_owned()));
    assert!(UserId::parse("g:team").is_err());
    assert!(UserId::parse("gteam").is_ok(), "the old form is also a valid user id: the ambiguity the namespace ends");
    assert_eq!(GroupId::mute_peer("g:team"), Some(uid("gteam")));
    assert_eq!(GroupId::mute_peer("gteam"), Some(uid("gteam")));
    assert_eq!(GroupId::mute_peer("g:"), None);
}

#[test]
fn a_log_with_entries_of_both_forms_is_one_group_conversation_with_one_cursor() {
    let log: Log<Lite> = Lite::log();
    let device = Device::online();
    let bob = uid("bob");
    let io = Io { log: &log, sockets: &device, now: 1_000_000 };
    let mut mb = Mailbox::new(Config::new(Limits::default(), 500, 1000));
    mb.load(&io, &bob).unwrap();
    mb.connect_v1(&io, &(), "phone", None).unwrap();
    // Entries the group wrote before the namespace, then after it.
    assert_eq!(mb.group_delivery(&io, &delivery("gteam", "gteam", 0, 1, 2)).unwrap(), Some(Answer::Applied(2)));
    assert_eq!(mb.group_delivery(&io, &delivery("g:team", "g:team", 2, 3, 4)).unwrap(), Some(Answer::Applied(4)));

    // A wake: the cursor recounted from the entries covers both forms.
    let mut woken = Mailbox::new(Config::new(Limits::default(), 500, 1000));
    woken.load(&io, &bob).unwrap();
    assert_eq!(woken.group_delivery(&io, &delivery("g:team", "g:team", 0, 1, 4)).unwrap(), Some(Answer::Applied(4)));
    assert_eq!(woken.group_delivery(&io, &delivery("gteam", "g:team", 4, 5, 5)).unwrap(), Some(Answer::Applied(5)));

    let convs = log.conversations(&bob, u64::MAX >> 11, 10).unwrap();
    let groups: Vec<(String, u64, u64)> =
        convs.iter().filter(|c| c.group).map(|c| (c.peer.clone(), c.unread, c.last_seq)).collect();
    assert_eq!(groups, [("g:team".to_owned(), 5, 5)], "one conversation, named in the new form");
    let pushed: Vec<Option<String>> = log.push_candidates(&bob, 0, 10).unwrap().into_iter().map(|c| c.peer).collect();
    assert_eq!(pushed, vec![Some("g:team".to_owned()); 5], "a push names the group as no user can be named");

    // The archive pass stores one cursor for the group, under its object name.
    let batch = woken.archive_next(&io, false).unwrap().expect("a batch");
    assert!(woken.archived(&io, batch).unwrap());
    assert_eq!(log.group_applied(&GroupId::parse("g:team").unwrap()).unwrap(), 5);

    // Muting the group by its new id lists it under the object name.
    let step = woken.v1_frame(&io, "phone", u64::MAX, r#"{"op":"mute","id":1,"peer":"g:team"}"#).unwrap();
    let V1Step::Reply(r) = step else { panic!("a reply") };
    assert_eq!(serde_json::from_str::<Value>(&r).unwrap()["op"], "ok");
    assert!(woken.muted(&uid("gteam"), 1_000_000));
}
