//! Internal requests read from URLs (`Internal::parse`): what the entry and
//! the objects ask of each other.
//!
//! Invariants: nothing panics; an accepted request names valid users and, for
//! a delivery or an API send, a valid message id; only a POST carries a
//! body; encoding it and parsing the URL again gives the same request,
//! whatever origin the URL had.
#![no_main]

use edge_chat::internal::Internal;
use edge_chat::message::is_id;
use edge_chat::user::UserId;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let url = String::from_utf8_lossy(data);
    let Ok(request) = Internal::parse(&url) else { return };
    assert!(UserId::parse(request.owner().as_str()).is_ok());
    match &request {
        Internal::Deliver(d) => assert!(is_id(&d.id)),
        Internal::Send(s) => assert!(is_id(&s.id)),
        Internal::Edit(e) => assert!(is_id(&e.id) && is_id(&e.target)),
        Internal::Read { page, .. } => assert!(page.limit >= 1),
        _ => {}
    }
    assert!(!request.has_body() || request.method() == "POST");
    let encoded = request.encode();
    assert_eq!(Internal::parse(&encoded).as_ref(), Ok(&request), "{encoded}");
    let elsewhere = encoded.replacen("https://user", "http://localhost:8787", 1);
    assert_eq!(Internal::parse(&elsewhere), Ok(request));
});
