//! History page parameters read from decoded query strings (`limit`,
//! `before`, `after`, `peer`). The internal requests have their own target.
//!
//! Invariants: nothing panics; an accepted page has a limit of at least one
//! and within the page bound, and a valid peer.
#![no_main]

use edge_chat::history::PageQuery;
use edge_chat::query;
use edge_chat::user::UserId;
use libfuzzer_sys::fuzz_target;

fn borrowed(p: &[(String, String)]) -> impl Iterator<Item = (&str, &str)> {
    p.iter().map(|(k, v)| (k.as_str(), v.as_str()))
}

fuzz_target!(|data: &[u8]| {
    let pairs = query::parse(data);

    let page = PageQuery::parse(borrowed(&pairs));
    if let Ok(q) = &page {
        assert!(q.limit >= 1);
        if let Some(p) = &q.peer {
            assert!(UserId::parse(p.as_str()).is_ok());
        }
    }
    for max in [1, 7, 200] {
        if let Ok(q) = PageQuery::parse_within(borrowed(&pairs), max) {
            assert!(q.limit >= 1 && q.limit <= max);
            // Within a bound, the same page as unbounded, but for the default size.
            let unbounded = page.as_ref().expect("accepted within a bound, so accepted without");
            assert_eq!((&q.before, &q.after, &q.peer), (&unbounded.before, &unbounded.after, &unbounded.peer));
        }
    }
});
