//! Who may put a user in a group (sans-IO): the user's `group_adds` setting,
//! their block list and their contacts decide, in the added user's own
//! object, at the moment a group is created with them or they are added.
//!
//! A contact is someone the user sent a 1:1 message to: a sent chat to them
//! in the user's log, or (once such entries were pruned) a conversation
//! whose peer received one of the user's messages. Messages received do not
//! count: a stranger who writes first is no contact.
//!
//! A refusal looks the same whatever its reason, so it tells the adder
//! nothing about a block (`docs/protocol.md`, "Who may add me to groups").

use std::fmt;

/// The `group_adds` setting: who may add this user to a group.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GroupAdds {
    Everyone,
    /// The default: only contacts.
    #[default]
    Contacts,
    Nobody,
}

/// A value that is not a `group_adds` setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidGroupAdds;

impl fmt::Display for InvalidGroupAdds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("group_adds must be everyone, contacts or nobody")
    }
}

impl std::error::Error for InvalidGroupAdds {}

impl GroupAdds {
    pub fn as_str(self) -> &'static str {
        match self {
            GroupAdds::Everyone => "everyone",
            GroupAdds::Contacts => "contacts",
            GroupAdds::Nobody => "nobody",
        }
    }

    pub fn parse(s: &str) -> Result<GroupAdds, InvalidGroupAdds> {
        match s {
            "everyone" => Ok(GroupAdds::Everyone),
            "contacts" => Ok(GroupAdds::Contacts),
            "nobody" => Ok(GroupAdds::Nobody),
            _ => Err(InvalidGroupAdds),
        }
    }
}

impl fmt::Display for GroupAdds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for GroupAdds {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// What the adder is to the user being added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Adder {
    /// The user blocked them.
    pub blocked: bool,
    /// The user sent them a 1:1 message (see the module doc).
    pub contact: bool,
}

/// Whether a user with `setting` accepts being put in a group by `adder`:
/// never by someone they blocked, whatever the setting.
pub fn may_add(setting: GroupAdds, adder: Adder) -> bool {
    if adder.blocked {
        return false;
    }
    match setting {
        GroupAdds::Everyone => true,
        GroupAdds::Contacts => adder.contact,
        GroupAdds::Nobody => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRANGER: Adder = Adder { blocked: false, contact: false };
    const CONTACT: Adder = Adder { blocked: false, contact: true };
    const BLOCKED: Adder = Adder { blocked: true, contact: false };
    const BLOCKED_CONTACT: Adder = Adder { blocked: true, contact: true };

    #[test]
    fn contacts_by_default() {
        assert_eq!(GroupAdds::default(), GroupAdds::Contacts);
        assert!(may_add(GroupAdds::default(), CONTACT));
        assert!(!may_add(GroupAdds::default(), STRANGER));
    }

    #[test]
    fn a_blocked_adder_is_refused_whatever_the_setting() {
        for s in [GroupAdds::Everyone, GroupAdds::Contacts, GroupAdds::Nobody] {
            assert!(!may_add(s, BLOCKED), "{s}");
            assert!(!may_add(s, BLOCKED_CONTACT), "{s}");
        }
    }

    #[test]
    fn each_setting() {
        assert!(may_add(GroupAdds::Everyone, STRANGER));
        assert!(may_add(GroupAdds::Everyone, CONTACT));
        assert!(!may_add(GroupAdds::Contacts, STRANGER));
        assert!(may_add(GroupAdds::Contacts, CONTACT));
        assert!(!may_add(GroupAdds::Nobody, CONTACT));
        assert!(!may_add(GroupAdds::Nobody, STRANGER));
    }

    #[test]
    fn names_round_trip() {
        for s in [GroupAdds::Everyone, GroupAdds::Contacts, GroupAdds::Nobody] {
            assert_eq!(GroupAdds::parse(s.as_str()), Ok(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
        assert_eq!(GroupAdds::parse("Everyone"), Err(InvalidGroupAdds));
    }
}
