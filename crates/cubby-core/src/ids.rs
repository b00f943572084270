//! Identifiers. Ids are random (UUID v4), never sequential, so one id says nothing
//! about how many others exist or which ones are near it.

/// Defines a UUID-backed id type that parses strictly and displays hyphenated.
macro_rules! random_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(uuid::Uuid);

        impl $name {
            pub fn random() -> Self {
                Self(uuid::Uuid::new_v4())
            }

            /// The id's bits as a number. They are random, so they spread ids evenly
            /// (over slices, shards) without hashing.
            pub fn as_u128(&self) -> u128 {
                self.0.as_u128()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.as_hyphenated().fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = crate::Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                uuid::Uuid::parse_str(s)
                    .map(Self)
                    .map_err(|_| crate::Error::new(crate::ErrorCode::InvalidId, "not a valid id"))
            }
        }
    };
}

random_id!(
    /// A family: the unit that owns children, devices, conversations and data keys.
    /// Every row that belongs to a family carries this id (the sharding key).
    FamilyId
);
random_id!(
    /// A guardian's account (an adult; children have no accounts).
    AccountId
);
random_id!(
    /// A child's profile within one family.
    ChildId
);
random_id!(
    /// A signed-in session, as shown in "my sessions" (never the secret token).
    SessionId
);
random_id!(
    /// A consent record.
    ConsentId
);
random_id!(
    /// A paired device: a child's toy or a guardian's app.
    DeviceId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_reject_garbage() {
        let id = FamilyId::random();
        assert_eq!(id.to_string().parse::<FamilyId>().ok(), Some(id));
        assert!("1 OR 1=1".parse::<FamilyId>().is_err());
        assert!("".parse::<AccountId>().is_err());
        assert_ne!(ChildId::random(), ChildId::random());
    }
}
random_id!(
    /// One family's side of a contact: a child's approval of someone outside the family.
    ContactId
);
random_id!(
    /// A message a child reported to its guardians.
    ReportId
);
