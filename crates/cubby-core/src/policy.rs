//! Authorisation, in one place: every handler asks [`authorize`] before it touches an
//! object. The answer for "not yours" is the same as for "does not exist" (404), so an id
//! can be neither confirmed nor enumerated by someone outside the family.

use crate::{AccountId, Error, ErrorCode, FamilyId};

/// Who is asking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Actor {
    /// No valid session.
    Anonymous,
    /// A signed-in guardian and the families they belong to (read fresh for each request).
    Guardian { account: AccountId, families: Vec<FamilyId> },
}

/// What they want to do to a family's object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Read,
    Change,
    Delete,
}

/// Allows `actor` to do `action` on an object owned by `family`, or says why not:
/// `unauthenticated` for nobody, `not_found` for anyone outside the family.
/// Guardians of a family are equals: each may do everything, including delete it.
pub fn authorize(actor: &Actor, family: FamilyId, _action: Action) -> Result<(), Error> {
    match actor {
        Actor::Anonymous => Err(Error::new(ErrorCode::Unauthenticated, "sign in first")),
        Actor::Guardian { families, .. } if families.contains(&family) => Ok(()),
        Actor::Guardian { .. } => Err(not_found()),
    }
}

/// The answer for a missing object and for someone else's object alike.
pub fn not_found() -> Error {
    Error::new(ErrorCode::NotFound, "there is nothing at this address")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_familys_guardians_pass_and_strangers_see_not_found() {
        let mine = FamilyId::random();
        let theirs = FamilyId::random();
        let me = Actor::Guardian { account: AccountId::random(), families: vec![mine] };
        for action in [Action::Read, Action::Change, Action::Delete] {
            assert!(authorize(&me, mine, action).is_ok());
            assert_eq!(authorize(&me, theirs, action).map_err(|e| e.code), Err(ErrorCode::NotFound));
            assert_eq!(authorize(&Actor::Anonymous, mine, action).map_err(|e| e.code), Err(ErrorCode::Unauthenticated));
        }
    }
}
