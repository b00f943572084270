//! The privacy notice parents consent to. It is versioned: `version` grows with every
//! edit, `material_since` names the last version whose change was material (what is
//! collected, why, for how long, or who sees it). Consent given to an older version than
//! `material_since` no longer counts, so every family is asked again.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrivacyNotice {
    pub version: u32,
    pub material_since: u32,
    /// Who runs this server and how to reach them about data.
    pub operator_contact: String,
    pub sections: Vec<NoticeSection>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoticeSection {
    pub title: String,
    pub body: String,
}

impl PrivacyNotice {
    /// Does consent given to `consented_version` still cover this notice?
    pub fn covers(&self, consented_version: u32) -> bool {
        consented_version >= self.material_since && consented_version <= self.version
    }

    /// The notice Cubby ships with; operators replace it with `--privacy-notice FILE`.
    pub fn default_notice() -> Self {
        let section = |title: &str, body: &str| NoticeSection { title: title.to_owned(), body: body.to_owned() };
        Self {
            version: 1,
            material_since: 1,
            operator_contact: "the operator of this Cubby server (set operator_contact in the notice file)".to_owned(),
            sections: vec![
                section(
                    "What we collect",
                    "For a guardian: an email address and a password (stored only as a salted, peppered Argon2id hash). \
                     For a child: a nickname and an age band, nothing else: no birthdate, gender, address or photo of \
                     the child is ever asked for. Messages, photos and voice clips are end-to-end encrypted on the \
                     devices; this server cannot read them.",
                ),
                section(
                    "Why",
                    "To let a family's toys and phones talk to each other and to the contacts the guardians approve, \
                     and to deliver the learning content the guardians choose.",
                ),
                section(
                    "For how long",
                    "Delivered messages and media are deleted at once; undelivered ones after 30 days (a family can \
                     choose less). Accounts idle for 18 months are warned, then deleted. Deleting a child or a family \
                     destroys its encryption keys, so no backup copy can be read afterwards.",
                ),
                section(
                    "Who sees it",
                    "Only the family's guardians and the devices they pair. Nothing is shared with third parties \
                     unless a guardian gives separate consent to that, which is off by default.",
                ),
                section(
                    "Parents' rights",
                    "A guardian can see and export everything held about their family or a child, withdraw consent \
                     at any time (collection stops), and delete a child or the whole family.",
                ),
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consent_lapses_only_at_a_material_change() {
        let mut notice = PrivacyNotice::default_notice();
        assert!(notice.covers(1));
        notice.version = 2; // an edit that is not material
        assert!(notice.covers(1));
        notice.version = 3;
        notice.material_since = 3;
        assert!(!notice.covers(2));
        assert!(notice.covers(3));
        assert!(!notice.covers(4), "consent to a version that does not exist yet");
    }
}
