//! Identifiers. Ids are random (UUID v4), never sequential, so one id says nothing
//! about how many others exist or which ones are near it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A family: the unit that owns children, devices, conversations and data keys.
/// Every row that belongs to a family carries this id (the sharding key).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FamilyId(Uuid);

impl FamilyId {
    pub fn random() -> Self {
        Self(Uuid::new_v4())
    }
}

impl fmt::Display for FamilyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.as_hyphenated().fmt(f)
    }
}

impl FromStr for FamilyId {
    type Err = crate::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s)
            .map(Self)
            .map_err(|_| crate::Error::new(crate::ErrorCode::InvalidId, "not a valid id"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_reject_garbage() {
        let id = FamilyId::random();
        assert_eq!(id.to_string().parse::<FamilyId>().ok(), Some(id));
        assert!("1 OR 1=1".parse::<FamilyId>().is_err());
        assert!("".parse::<FamilyId>().is_err());
    }
}
