use async_trait::async_trait;
use cubby_core::contacts::Person;
use cubby_core::{AccountId, ChildId, ContactId, FamilyId, ReportId};

use super::{BeginWrite, SqlStore, parse_id, parse_opt_id};
use crate::{ContactRow, ContactStatus, ContactStore, DeviceRow, Redeemed, ReportRow, StoreError};

type ContactTuple = (String, String, String, Option<String>, Option<String>, String, i64, Option<i64>);

macro_rules! contact_columns {
    () => {
        "id, family_id, child_id, other_account, other_child, status, created_at, decided_at"
    };
}

fn contact_from(row: ContactTuple) -> Result<ContactRow, StoreError> {
    let other = match (parse_opt_id::<AccountId>(row.3)?, parse_opt_id::<ChildId>(row.4)?) {
        (Some(account), None) => Person::Adult(account),
        (None, Some(child)) => Person::Child(child),
        _ => return Err(StoreError::Corrupt("a contact names neither or both of an adult and a child".into())),
    };
    Ok(ContactRow {
        id: parse_id(&row.0)?,
        family_id: parse_id(&row.1)?,
        child_id: parse_id(&row.2)?,
        other,
        status: ContactStatus::parse(&row.5)?,
        created_at: row.6,
        decided_at: row.7,
    })
}

fn other_columns(other: Person) -> (Option<String>, Option<String>) {
    match other {
        Person::Adult(account) => (Some(account.to_string()), None),
        Person::Child(child) => (None, Some(child.to_string())),
    }
}

type ReportTuple = (String, String, String, Option<Vec<u8>>, Vec<u8>, i64, i64, Option<i64>);

fn report_from(row: ReportTuple) -> Result<ReportRow, StoreError> {
    Ok(ReportRow {
        id: parse_id(&row.0)?,
        family_id: parse_id(&row.1)?,
        child_id: parse_id(&row.2)?,
        group_id: row.3,
        content_sealed: row.4,
        created_at: row.5,
        expires_at: row.6,
        escalated_at: row.7,
    })
}

/// Inserts a side of a contact, or moves an existing one to `status` unless that side
/// was blocked (a block stays until a guardian removes it). Returns the row as it is now.
macro_rules! upsert_side {
    ($tx:expr, $family:expr, $child:expr, $other:expr, $status:expr, $keep_decided:expr, $now:expr) => {{
        let (account, other_child) = other_columns($other);
        // A decided side stays decided when the other family asks again; otherwise this
        // family's decision replaces a request, but never a block.
        macro_rules! insert {
            ($conflict:literal, $update:literal) => {
                concat!(
                    "INSERT INTO contacts (id, family_id, child_id, other_account, other_child, status, created_at, decided_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT ",
                    $conflict,
                    " DO UPDATE SET ",
                    $update
                )
            };
        }
        let sql = match (account.is_some(), $keep_decided) {
            (true, true) => insert!("(child_id, other_account) WHERE other_account IS NOT NULL", "status = CASE WHEN contacts.status = 'requested' THEN excluded.status ELSE contacts.status END"),
            (false, true) => insert!("(child_id, other_child) WHERE other_child IS NOT NULL", "status = CASE WHEN contacts.status = 'requested' THEN excluded.status ELSE contacts.status END"),
            (true, false) => insert!("(child_id, other_account) WHERE other_account IS NOT NULL", "status = CASE WHEN contacts.status = 'blocked' THEN contacts.status ELSE excluded.status END, decided_at = excluded.decided_at"),
            (false, false) => insert!("(child_id, other_child) WHERE other_child IS NOT NULL", "status = CASE WHEN contacts.status = 'blocked' THEN contacts.status ELSE excluded.status END, decided_at = excluded.decided_at"),
        };
        let decided = ($status != ContactStatus::Requested).then_some($now);
        sqlx::query(sql)
            .bind(ContactId::random().to_string())
            .bind($family.to_string())
            .bind($child.to_string())
            .bind(account.clone())
            .bind(other_child.clone())
            .bind($status.as_str())
            .bind($now)
            .bind(decided)
            .execute(&mut *$tx)
            .await?;
        let select = concat!("SELECT ", contact_columns!(), " FROM contacts WHERE child_id = $1 AND (other_account = $2 OR other_child = $3)");
        let row: ContactTuple =
            sqlx::query_as(select).bind($child.to_string()).bind(account).bind(other_child).fetch_one(&mut *$tx).await?;
        row
    }};
}

#[async_trait]
impl ContactStore for SqlStore {
    async fn add_contact_code(&self, code_hash: &[u8], family: FamilyId, child: ChildId, at: i64, expires_at: i64) -> Result<bool, StoreError> {
        let n = on_pool!(&self.db, |pool| {
            sqlx::query(
                "INSERT INTO contact_codes (code_hash, family_id, child_id, created_at, expires_at) \
                 SELECT $1, family_id, id, $4, $5 FROM children WHERE id = $3 AND family_id = $2",
            )
            .bind(code_hash)
            .bind(family.to_string())
            .bind(child.to_string())
            .bind(at)
            .bind(expires_at)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
        })
        .map_err(StoreError::from_write)?;
        Ok(n == 1)
    }

    async fn redeem_contact_code(&self, code_hash: &[u8], family: FamilyId, child: ChildId, now: i64) -> Result<Redeemed, StoreError> {
        on_pool!(&self.db, |pool| async {
            let mut tx = pool.begin_write().await?;
            let exists: Option<(String,)> = sqlx::query_as("SELECT id FROM children WHERE id = $1 AND family_id = $2")
                .bind(child.to_string())
                .bind(family.to_string())
                .fetch_optional(&mut *tx)
                .await?;
            if exists.is_none() {
                return Ok(Redeemed::UnknownCode);
            }
            let code: Option<(String, String, i64)> =
                sqlx::query_as("SELECT family_id, child_id, expires_at FROM contact_codes WHERE code_hash = $1")
                    .bind(code_hash)
                    .fetch_optional(&mut *tx)
                    .await?;
            let Some((code_family, code_child, expires_at)) = code else { return Ok(Redeemed::UnknownCode) };
            let (code_family, code_child): (FamilyId, ChildId) = (parse_id(&code_family)?, parse_id(&code_child)?);
            if code_family == family {
                return Ok(Redeemed::SameFamily);
            }
            sqlx::query("DELETE FROM contact_codes WHERE code_hash = $1").bind(code_hash).execute(&mut *tx).await?;
            if expires_at <= now {
                tx.commit().await?;
                return Ok(Redeemed::UnknownCode);
            }
            let ours = upsert_side!(tx, family, child, Person::Child(code_child), ContactStatus::Approved, false, now);
            let theirs = upsert_side!(tx, code_family, code_child, Person::Child(child), ContactStatus::Requested, true, now);
            tx.commit().await?;
            Ok::<_, StoreError>(Redeemed::Contact { ours: contact_from(ours)?, theirs: contact_from(theirs)? })
        }
        .await)
    }

    async fn add_contact_invite(&self, token_hash: &[u8], family: FamilyId, child: ChildId, email_index: &[u8], at: i64, expires_at: i64) -> Result<bool, StoreError> {
        let n = on_pool!(&self.db, |pool| {
            sqlx::query(
                "INSERT INTO contact_invites (token_hash, family_id, child_id, email_index, created_at, expires_at) \
                 SELECT $1, family_id, id, $4, $5, $6 FROM children WHERE id = $3 AND family_id = $2",
            )
            .bind(token_hash)
            .bind(family.to_string())
            .bind(child.to_string())
            .bind(email_index)
            .bind(at)
            .bind(expires_at)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
        })
        .map_err(StoreError::from_write)?;
        Ok(n == 1)
    }

    async fn accept_contact_invite(&self, token_hash: &[u8], email_index: &[u8], account: AccountId, now: i64) -> Result<Option<ContactRow>, StoreError> {
        let row = on_pool!(&self.db, |pool| async {
            let mut tx = pool.begin_write().await?;
            let invite: Option<(String, String, i64)> = sqlx::query_as(
                "SELECT family_id, child_id, expires_at FROM contact_invites WHERE token_hash = $1 AND email_index = $2",
            )
            .bind(token_hash)
            .bind(email_index)
            .fetch_optional(&mut *tx)
            .await?;
            let Some((family, child, expires_at)) = invite else { return Ok(None) };
            sqlx::query("DELETE FROM contact_invites WHERE token_hash = $1").bind(token_hash).execute(&mut *tx).await?;
            if expires_at <= now {
                tx.commit().await?;
                return Ok(None);
            }
            let row = upsert_side!(tx, family, child, Person::Adult(account), ContactStatus::Approved, false, now);
            tx.commit().await?;
            Ok::<_, StoreError>(Some(row))
        }
        .await)?;
        row.map(contact_from).transpose()
    }

    async fn child_contacts(&self, family: FamilyId, child: ChildId) -> Result<Vec<ContactRow>, StoreError> {
        let sql = concat!("SELECT ", contact_columns!(), " FROM contacts WHERE family_id = $1 AND child_id = $2 ORDER BY created_at, id");
        let rows: Vec<ContactTuple> = on_pool!(&self.db, |pool| {
            sqlx::query_as(sql).bind(family.to_string()).bind(child.to_string()).fetch_all(pool).await
        })?;
        rows.into_iter().map(contact_from).collect()
    }

    async fn contact(&self, family: FamilyId, id: ContactId) -> Result<Option<ContactRow>, StoreError> {
        let sql = concat!("SELECT ", contact_columns!(), " FROM contacts WHERE family_id = $1 AND id = $2");
        let row: Option<ContactTuple> = on_pool!(&self.db, |pool| {
            sqlx::query_as(sql).bind(family.to_string()).bind(id.to_string()).fetch_optional(pool).await
        })?;
        row.map(contact_from).transpose()
    }

    async fn mirror_contact(&self, row: &ContactRow) -> Result<Option<ContactRow>, StoreError> {
        let Person::Child(other) = row.other else { return Ok(None) };
        let sql = concat!("SELECT ", contact_columns!(), " FROM contacts WHERE child_id = $1 AND other_child = $2");
        let found: Option<ContactTuple> = on_pool!(&self.db, |pool| {
            sqlx::query_as(sql).bind(other.to_string()).bind(row.child_id.to_string()).fetch_optional(pool).await
        })?;
        found.map(contact_from).transpose()
    }

    async fn set_contact_status(&self, family: FamilyId, id: ContactId, status: ContactStatus, at: i64) -> Result<bool, StoreError> {
        let n = on_pool!(&self.db, |pool| {
            sqlx::query("UPDATE contacts SET status = $3, decided_at = $4 WHERE family_id = $1 AND id = $2")
                .bind(family.to_string())
                .bind(id.to_string())
                .bind(status.as_str())
                .bind(at)
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })?;
        Ok(n == 1)
    }

    async fn delete_contact(&self, family: FamilyId, id: ContactId) -> Result<Option<ContactRow>, StoreError> {
        let select = concat!("SELECT ", contact_columns!(), " FROM contacts WHERE family_id = $1 AND id = $2");
        let row = on_pool!(&self.db, |pool| async {
            let mut tx = pool.begin_write().await?;
            let row: Option<ContactTuple> =
                sqlx::query_as(select).bind(family.to_string()).bind(id.to_string()).fetch_optional(&mut *tx).await?;
            let Some(row) = row else { return Ok(None) };
            sqlx::query("DELETE FROM contacts WHERE id = $1").bind(&row.0).execute(&mut *tx).await?;
            if let Some(other_child) = &row.4 {
                sqlx::query("DELETE FROM contacts WHERE child_id = $1 AND other_child = $2")
                    .bind(other_child)
                    .bind(&row.2)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok::<_, sqlx::Error>(Some(row))
        }
        .await)?;
        row.map(contact_from).transpose()
    }

    async fn approvals_around(&self, child: ChildId) -> Result<Vec<(ChildId, Person)>, StoreError> {
        let sql = concat!("SELECT ", contact_columns!(), " FROM contacts WHERE (child_id = $1 OR other_child = $1) AND status = 'approved'");
        let rows: Vec<ContactTuple> = on_pool!(&self.db, |pool| sqlx::query_as(sql).bind(child.to_string()).fetch_all(pool).await)?;
        rows.into_iter().map(|row| contact_from(row).map(|c| (c.child_id, c.other))).collect()
    }

    async fn contacts_of_adult(&self, account: AccountId) -> Result<Vec<ContactRow>, StoreError> {
        let sql = concat!("SELECT ", contact_columns!(), " FROM contacts WHERE other_account = $1 ORDER BY created_at, id");
        let rows: Vec<ContactTuple> = on_pool!(&self.db, |pool| sqlx::query_as(sql).bind(account.to_string()).fetch_all(pool).await)?;
        rows.into_iter().map(contact_from).collect()
    }

    async fn families_linked(&self, one: FamilyId, other: FamilyId) -> Result<bool, StoreError> {
        let row: Option<(String,)> = on_pool!(&self.db, |pool| {
            sqlx::query_as(
                "SELECT c.id FROM contacts c WHERE c.status = 'approved' AND ( \
                   (c.family_id = $1 AND (c.other_child IN (SELECT id FROM children WHERE family_id = $2) \
                                          OR c.other_account IN (SELECT account_id FROM family_guardians WHERE family_id = $2))) \
                   OR (c.family_id = $2 AND (c.other_child IN (SELECT id FROM children WHERE family_id = $1) \
                                          OR c.other_account IN (SELECT account_id FROM family_guardians WHERE family_id = $1)))) \
                 LIMIT 1",
            )
            .bind(one.to_string())
            .bind(other.to_string())
            .fetch_optional(pool)
            .await
        })?;
        Ok(row.is_some())
    }

    async fn person_devices(&self, person: Person) -> Result<Vec<DeviceRow>, StoreError> {
        self.active_devices_of(person).await
    }

    async fn set_supervised(&self, family: FamilyId, child: ChildId, supervised: bool) -> Result<bool, StoreError> {
        let n = on_pool!(&self.db, |pool| {
            sqlx::query("UPDATE children SET supervised = $3 WHERE family_id = $1 AND id = $2")
                .bind(family.to_string())
                .bind(child.to_string())
                .bind(supervised)
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })?;
        Ok(n == 1)
    }

    async fn supervised(&self, child: ChildId) -> Result<bool, StoreError> {
        let row: Option<(bool,)> = on_pool!(&self.db, |pool| {
            sqlx::query_as("SELECT supervised FROM children WHERE id = $1").bind(child.to_string()).fetch_optional(pool).await
        })?;
        Ok(row.is_some_and(|(s,)| s))
    }

    async fn add_report(&self, report: &ReportRow) -> Result<bool, StoreError> {
        let n = on_pool!(&self.db, |pool| {
            sqlx::query(
                "INSERT INTO reports (id, family_id, child_id, group_id, content_sealed, created_at, expires_at, escalated_at) \
                 SELECT $1, family_id, id, $4, $5, $6, $7, $8 FROM children WHERE id = $3 AND family_id = $2",
            )
            .bind(report.id.to_string())
            .bind(report.family_id.to_string())
            .bind(report.child_id.to_string())
            .bind(report.group_id.as_deref())
            .bind(&report.content_sealed)
            .bind(report.created_at)
            .bind(report.expires_at)
            .bind(report.escalated_at)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
        })
        .map_err(StoreError::from_write)?;
        Ok(n == 1)
    }

    async fn reports(&self, family: FamilyId) -> Result<Vec<ReportRow>, StoreError> {
        let rows: Vec<ReportTuple> = on_pool!(&self.db, |pool| {
            sqlx::query_as(
                "SELECT id, family_id, child_id, group_id, content_sealed, created_at, expires_at, escalated_at \
                 FROM reports WHERE family_id = $1 ORDER BY created_at, id",
            )
            .bind(family.to_string())
            .fetch_all(pool)
            .await
        })?;
        rows.into_iter().map(report_from).collect()
    }

    async fn escalate_report(&self, family: FamilyId, id: ReportId, at: i64) -> Result<bool, StoreError> {
        let n = on_pool!(&self.db, |pool| {
            sqlx::query("UPDATE reports SET escalated_at = COALESCE(escalated_at, $3) WHERE family_id = $1 AND id = $2")
                .bind(family.to_string())
                .bind(id.to_string())
                .bind(at)
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })?;
        Ok(n == 1)
    }

    async fn delete_report(&self, family: FamilyId, id: ReportId) -> Result<bool, StoreError> {
        let n = on_pool!(&self.db, |pool| {
            sqlx::query("DELETE FROM reports WHERE family_id = $1 AND id = $2")
                .bind(family.to_string())
                .bind(id.to_string())
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })?;
        Ok(n == 1)
    }

    async fn escalated_reports(&self) -> Result<Vec<ReportRow>, StoreError> {
        let rows: Vec<ReportTuple> = on_pool!(&self.db, |pool| {
            sqlx::query_as(
                "SELECT id, family_id, child_id, group_id, content_sealed, created_at, expires_at, escalated_at \
                 FROM reports WHERE escalated_at IS NOT NULL ORDER BY escalated_at, id",
            )
            .fetch_all(pool)
            .await
        })?;
        rows.into_iter().map(report_from).collect()
    }

    async fn expire_reports(&self, now: i64) -> Result<u64, StoreError> {
        let n = on_pool!(&self.db, |pool| {
            sqlx::query("DELETE FROM reports WHERE expires_at <= $1").bind(now).execute(pool).await.map(|r| r.rows_affected())
        })?;
        Ok(n)
    }
}
