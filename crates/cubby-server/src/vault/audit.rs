//! The audit log: append-only, each entry chained to the one before by an HMAC whose key
//! is derived from the system key (so it is never in the database). Verification walks
//! the whole log and names the first entry that is missing, edited or out of chain.

use std::fmt;
use std::sync::Arc;

use cubby_core::audit::AuditEvent;
use cubby_crypto::AuditChainKey;
use cubby_crypto::audit_chain::GENESIS;
use cubby_store::{AuditRow, NewAuditRow, Store, StoreError};

use super::now_millis;

pub struct AuditLog {
    store: Arc<dyn Store>,
    key: AuditChainKey,
}

/// The first thing wrong with the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuditProblem {
    /// Entry `seq` is not there (deleted), though later ones are.
    Missing { seq: i64 },
    /// Entry `seq`'s contents do not match its MAC (edited).
    Edited { seq: i64 },
    /// Entry `seq` does not chain to the entry before it (re-ordered or spliced).
    BrokenChain { seq: i64 },
}

impl fmt::Display for AuditProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing { seq } => write!(f, "entry {seq} is missing (deleted)"),
            Self::Edited { seq } => write!(f, "entry {seq} was edited: its contents do not match its MAC"),
            Self::BrokenChain { seq } => write!(f, "entry {seq} does not chain to the entry before it"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditReport {
    /// Entries checked.
    pub entries: u64,
    /// The first problem found, if any.
    pub problem: Option<AuditProblem>,
}

const PAGE: i64 = 1000;

impl AuditLog {
    pub(super) fn new(store: Arc<dyn Store>, key: AuditChainKey) -> Self {
        Self { store, key }
    }

    /// Appends an event and returns its sequence number.
    pub async fn append(&self, event: &AuditEvent) -> Result<i64, StoreError> {
        let at = now_millis();
        let actor = event.actor.as_string();
        let family_id = event.family_id.map(|id| id.to_string());
        let row = self
            .store
            .append_audit(&|tail| {
                let previous: [u8; 32] =
                    tail.mac.as_deref().and_then(|m| m.try_into().ok()).unwrap_or(GENESIS);
                let entry = EntryFields {
                    seq: tail.seq + 1,
                    at,
                    actor: &actor,
                    action: event.action,
                    family_id: family_id.as_deref(),
                    detail: &event.detail,
                };
                NewAuditRow {
                    at,
                    actor: actor.clone(),
                    action: event.action.to_owned(),
                    family_id: event.family_id,
                    detail: event.detail.clone(),
                    prev_mac: previous.to_vec(),
                    mac: self.key.link(&previous, &entry.canonical_bytes()).to_vec(),
                }
            })
            .await?;
        Ok(row.seq)
    }

    /// Checks every entry in order; stops at the first problem.
    pub async fn verify(&self) -> Result<AuditReport, StoreError> {
        let mut expected_seq = 1;
        let mut previous_mac = GENESIS.to_vec();
        let mut entries = 0;
        loop {
            let page = self.store.audit_entries(expected_seq - 1, PAGE).await?;
            if page.is_empty() {
                return Ok(AuditReport { entries, problem: None });
            }
            for row in &page {
                if let Some(problem) = self.check(row, expected_seq, &previous_mac) {
                    return Ok(AuditReport { entries, problem: Some(problem) });
                }
                entries += 1;
                expected_seq += 1;
                previous_mac.clone_from(&row.mac);
            }
        }
    }

    fn check(&self, row: &AuditRow, expected_seq: i64, previous_mac: &[u8]) -> Option<AuditProblem> {
        if row.seq != expected_seq {
            return Some(AuditProblem::Missing { seq: expected_seq });
        }
        if row.prev_mac != previous_mac {
            return Some(AuditProblem::BrokenChain { seq: row.seq });
        }
        let previous: [u8; 32] = previous_mac.try_into().ok()?;
        let entry = EntryFields {
            seq: row.seq,
            at: row.at,
            actor: &row.actor,
            action: &row.action,
            family_id: row.family_id.as_deref(),
            detail: &row.detail,
        };
        if !self.key.verify(&previous, &entry.canonical_bytes(), &row.mac) {
            return Some(AuditProblem::Edited { seq: row.seq });
        }
        None
    }
}

/// The fields an entry's MAC covers.
struct EntryFields<'a> {
    seq: i64,
    at: i64,
    actor: &'a str,
    action: &'a str,
    family_id: Option<&'a str>,
    detail: &'a str,
}

impl EntryFields<'_> {
    /// Fixed-width numbers and length-prefixed strings: no two entries encode alike.
    fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.detail.len());
        out.extend_from_slice(b"cubby/v1/audit");
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.at.to_be_bytes());
        let family = self.family_id.unwrap_or("");
        out.push(u8::from(self.family_id.is_some()));
        for field in [self.actor, self.action, family, self.detail] {
            out.extend_from_slice(&(field.len() as u64).to_be_bytes());
            out.extend_from_slice(field.as_bytes());
        }
        out
    }
}
