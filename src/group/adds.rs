//! Consent to be put in a group (sans-IO): which users' objects the group's
//! object asks before a create or an add ([`consent_needed`]), and what the
//! request becomes with their answers ([`handle_consented`]).
//!
//! Each user's own object decides ([`crate::consent::may_add`]: their
//! `group_adds` setting, their blocks, their contacts). An add that a user
//! refuses is refused with the code `add_refused`, the same whatever the
//! reason, so it never reveals a block; a create goes ahead with those who
//! accept and lists the others in `refused`. The backend (API key) acts for
//! the operator and is not asked about.

use serde_json::Value;

use super::calls::{handle, Call, Reply, Request};
use super::{Actor, Group, GroupError, Op, Role};
use crate::log::Sql;
use crate::user::UserId;

/// The users whose consent `req` needs, each to be asked once by their
/// object, before [`handle_consented`]. Only a request that could
/// otherwise succeed asks (a stranger cannot probe anyone's settings): a
/// user creating a group that does not exist yet, within the size limit,
/// or an owner or admin adding a user who is not a member.
pub fn consent_needed<S: Sql>(g: &Group<S>, req: &Request) -> Vec<UserId> {
    let Actor::User(by) = &req.by else { return Vec::new() };
    match &req.call {
        Call::Create { owner, members } => {
            if g.id().is_some() || owner != by {
                return Vec::new();
            }
            let mut others: Vec<UserId> = members.iter().filter(|u| *u != owner).cloned().collect();
            others.sort();
            others.dedup();
            if others.len() + 1 > g.max_members() as usize {
                return Vec::new();
            }
            others
        }
        Call::Change(Op::Add { user, .. }) => {
            let Ok(members) = g.members() else { return Vec::new() };
            let manages = members.iter().any(|m| m.user == *by && matches!(m.role, Role::Owner | Role::Admin));
            if !manages || user == by || members.iter().any(|m| m.user == *user) {
                return Vec::new();
            }
            vec![user.clone()]
        }
        _ => Vec::new(),
    }
}

/// What a user's object answered: `Some(true)` accepts, `Some(false)`
/// refuses, `None`: no answer (the hop failed).
pub type Consent = (UserId, Option<bool>);

/// Carries out `req` given the answers to [`consent_needed`]: an add the
/// user refused is refused (`add_refused`, 403); an add with no answer is
/// unavailable (503, retry); a create leaves out every member who did not
/// accept (no answer counts as no: nobody is put in a group unasked) and
/// names them in `refused` (absent when everyone accepted).
pub fn handle_consented<S: Sql>(
    g: &mut Group<S>,
    mut req: Request,
    answers: &[Consent],
    new_id: &str,
    now: u64,
) -> Reply {
    let refused: Vec<&UserId> = answers.iter().filter(|(_, a)| *a != Some(true)).map(|(u, _)| u).collect();
    match &mut req.call {
        Call::Change(Op::Add { user, .. }) => match answers.iter().find(|(u, _)| u == user) {
            Some((_, Some(false))) => return Reply::refused(&GroupError::AddRefused),
            Some((_, None)) => return Reply::refused(&GroupError::Store(crate::log::StoreError("no answer".into()))),
            _ => {}
        },
        Call::Create { members, .. } if !refused.is_empty() => {
            members.retain(|m| !refused.contains(&m));
            let mut reply = handle(g, req, new_id, now);
            if reply.status == 201 {
                if let Ok(Value::Object(mut body)) = serde_json::from_str::<Value>(&reply.body) {
                    let names = refused.iter().map(|u| Value::from(u.as_str())).collect();
                    body.insert("refused".into(), Value::Array(names));
                    reply.body = Value::Object(body).to_string();
                }
            }
            return reply;
        }
        _ => {}
    }
    handle(g, req, new_id, now)
}
