//! Who a child may talk with: the rule every conversation is checked against, on every
//! change, by the server (DESIGN.md non-negotiable 5; Messenger Kids 2019 is the failure
//! it prevents).
//!
//! A child may share a conversation with someone only when a guardian of that child
//! approved them. Its own family (guardians, siblings, its own toys) needs no approval.
//! An adult outside the family needs a contact approved by the child's guardian; another
//! family's child needs one approved by a guardian of *each* child. The guardians of an
//! approved child may be there too, supervising their own child, but only while that
//! child is in the conversation. The rule holds for *every* child in the conversation
//! against *every* other member, so a friend of a friend never slips in.

use crate::{AccountId, ChildId, FamilyId};

/// The person behind a device: a child (its toys) or an adult (their apps).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Person {
    Child(ChildId),
    Adult(AccountId),
}

/// A conversation member as the rule sees it: the person behind the device, and the family
/// the device was paired into (an adult's device belongs to a family they are a guardian of).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Participant {
    pub family: FamilyId,
    pub person: Person,
}

/// The approved contacts the rule consults.
pub trait ContactBook {
    /// Whether `child` may talk with `other` by an approved contact: for an adult, approved
    /// by a guardian of `child`; for another child, approved by a guardian of each.
    fn approved(&self, child: ChildId, other: Person) -> bool;
}

/// Whether `child` (of `child_family`) may share a conversation whose members are `group`
/// with `other`.
pub fn may_meet(child: ChildId, child_family: FamilyId, other: &Participant, group: &[Participant], book: &impl ContactBook) -> bool {
    if other.family == child_family || other.person == Person::Child(child) {
        return true;
    }
    if book.approved(child, other.person) {
        return true;
    }
    // A guardian of an approved child, in the conversation with that child.
    matches!(other.person, Person::Adult(_))
        && group.iter().any(|p| match p.person {
            Person::Child(friend) => p.family == other.family && book.approved(child, Person::Child(friend)),
            Person::Adult(_) => false,
        })
}

/// Every (child, member) pair of the conversation that breaks the rule; empty when the
/// conversation is allowed.
pub fn violations(group: &[Participant], book: &impl ContactBook) -> Vec<(ChildId, Participant)> {
    let mut found = Vec::new();
    for member in group {
        let Person::Child(child) = member.person else { continue };
        for other in group {
            if !may_meet(child, member.family, other, group, book) && !found.contains(&(child, *other)) {
                found.push((child, *other));
            }
        }
    }
    found
}

/// Adults from outside the conversation's owning family who are there for no child: each
/// must be an approved contact of (or a supervising guardian alongside) some child in it.
/// Cubby carries conversations around children, not between strangers.
pub fn strangers(group: &[Participant], owner: FamilyId, book: &impl ContactBook) -> Vec<Participant> {
    group
        .iter()
        .filter(|p| matches!(p.person, Person::Adult(_)) && p.family != owner)
        .filter(|adult| {
            !group.iter().any(|c| match c.person {
                Person::Child(child) => may_meet(child, c.family, adult, group, book),
                Person::Adult(_) => false,
            })
        })
        .copied()
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// Contacts as (child, other) pairs; a child-to-child contact is approved only when
    /// both directions are present (one per family's guardian).
    #[derive(Default)]
    struct Book(HashSet<(ChildId, Person)>);

    impl Book {
        fn adult(mut self, child: ChildId, adult: AccountId) -> Self {
            self.0.insert((child, Person::Adult(adult)));
            self
        }
        fn one_side(mut self, child: ChildId, other: ChildId) -> Self {
            self.0.insert((child, Person::Child(other)));
            self
        }
        fn friends(self, a: ChildId, b: ChildId) -> Self {
            self.one_side(a, b).one_side(b, a)
        }
    }

    impl ContactBook for Book {
        fn approved(&self, child: ChildId, other: Person) -> bool {
            match other {
                Person::Adult(_) => self.0.contains(&(child, other)),
                Person::Child(friend) => {
                    self.0.contains(&(child, other)) && self.0.contains(&(friend, Person::Child(child)))
                }
            }
        }
    }

    struct Family {
        id: FamilyId,
    }

    impl Family {
        fn new() -> Self {
            Self { id: FamilyId::random() }
        }
        fn child(&self) -> (ChildId, Participant) {
            let id = ChildId::random();
            (id, Participant { family: self.id, person: Person::Child(id) })
        }
        fn adult(&self) -> (AccountId, Participant) {
            let id = AccountId::random();
            (id, Participant { family: self.id, person: Person::Adult(id) })
        }
    }

    #[test]
    fn a_family_talks_among_itself_without_approvals() {
        let family = Family::new();
        let (_, child) = family.child();
        let (_, sibling) = family.child();
        let (_, parent) = family.adult();
        assert!(violations(&[child, sibling, parent], &Book::default()).is_empty());
    }

    #[test]
    fn an_adult_needs_the_childs_guardians_approval() {
        let (kids, grandparents) = (Family::new(), Family::new());
        let (child, child_p) = kids.child();
        let (grandma, grandma_p) = grandparents.adult();
        assert_eq!(violations(&[child_p, grandma_p], &Book::default()), vec![(child, grandma_p)]);
        assert!(violations(&[child_p, grandma_p], &Book::default().adult(child, grandma)).is_empty());
    }

    #[test]
    fn children_of_two_families_need_a_guardian_of_each() {
        let (a_family, b_family) = (Family::new(), Family::new());
        let (a, a_p) = a_family.child();
        let (b, b_p) = b_family.child();
        assert!(!violations(&[a_p, b_p], &Book::default().one_side(a, b)).is_empty());
        assert!(!violations(&[a_p, b_p], &Book::default().one_side(b, a)).is_empty());
        assert!(violations(&[a_p, b_p], &Book::default().friends(a, b)).is_empty());
    }

    /// Messenger Kids 2019: A's approved friend B brings in B's approved friend C, whom A's
    /// guardians never approved.
    #[test]
    fn a_friend_of_a_friend_is_refused() {
        let (fa, fb, fc) = (Family::new(), Family::new(), Family::new());
        let (a, a_p) = fa.child();
        let (b, b_p) = fb.child();
        let (c, c_p) = fc.child();
        let book = Book::default().friends(a, b).friends(b, c);
        let found = violations(&[a_p, b_p, c_p], &book);
        assert!(found.contains(&(a, c_p)) && found.contains(&(c, a_p)), "{found:?}");
        assert!(!found.iter().any(|(child, other)| *child == b || *other == b_p));
    }

    /// An adult approved for one child is not thereby approved for another child of the
    /// conversation, not even a sibling of the first.
    #[test]
    fn an_adult_contact_is_approved_child_by_child() {
        let (kids, other) = (Family::new(), Family::new());
        let (a, a_p) = kids.child();
        let (_, sibling_p) = kids.child();
        let (uncle, uncle_p) = other.adult();
        let book = Book::default().adult(a, uncle);
        let found = violations(&[a_p, sibling_p, uncle_p], &book);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].1, uncle_p);
    }

    #[test]
    fn adults_of_other_families_come_only_for_a_child() {
        let (owner, other) = (Family::new(), Family::new());
        let (_, parent) = owner.adult();
        let (_, stranger) = other.adult();
        assert_eq!(strangers(&[parent, stranger], owner.id, &Book::default()), vec![stranger]);
        let (child, child_p) = owner.child();
        let (grandma, grandma_p) = other.adult();
        let book = Book::default().adult(child, grandma);
        assert!(strangers(&[parent, child_p, grandma_p], owner.id, &book).is_empty());
    }

    #[test]
    fn a_friends_guardian_may_supervise_only_alongside_their_child() {
        let (fa, fb) = (Family::new(), Family::new());
        let (a, a_p) = fa.child();
        let (b, b_p) = fb.child();
        let (_, b_parent) = fb.adult();
        let book = Book::default().friends(a, b);
        assert!(violations(&[a_p, b_p, b_parent], &book).is_empty());
        assert_eq!(violations(&[a_p, b_parent], &book), vec![(a, b_parent)]);
    }
}
