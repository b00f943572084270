use async_trait::async_trait;
use cubby_core::{DeviceId, FamilyId};

use super::messaging::IDS_PER_STATEMENT;
use super::{BeginWrite, SqlStore, parse_id, parse_opt_id, push_list};
use crate::{Approval, DeviceRow, DeviceStore, PairingRow, StoreError};

type PairingTuple = (
    Vec<u8>,
    Vec<u8>,
    Vec<u8>,
    String,
    String,
    i64,
    i64,
    i64,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<Vec<u8>>,
);

macro_rules! select_pairing {
    () => {
        "SELECT device_code_hash, user_code_index, public_key, kind, software_version, created_at, expires_at, \
         last_poll_at, status, device_id, family_id, child_id, account_id, name_sealed FROM pairing_requests"
    };
}

fn pairing_from(row: PairingTuple) -> Result<PairingRow, StoreError> {
    let (device_code_hash, user_code_index, public_key, kind, software_version, created_at, expires_at, last_poll_at, status) =
        (row.0, row.1, row.2, row.3, row.4, row.5, row.6, row.7, row.8);
    let approval = match (row.9, row.10) {
        (Some(device_id), Some(family_id)) => Some(Approval {
            device_id: parse_id(&device_id)?,
            family_id: parse_id(&family_id)?,
            child_id: parse_opt_id(row.11)?,
            account_id: parse_opt_id(row.12)?,
            name_sealed: row.13.unwrap_or_default(),
        }),
        _ => None,
    };
    Ok(PairingRow {
        device_code_hash,
        user_code_index,
        public_key,
        kind,
        software_version,
        created_at,
        expires_at,
        last_poll_at,
        status,
        approval,
    })
}

type DeviceTuple = (
    String,
    String,
    Option<String>,
    Option<String>,
    String,
    Vec<u8>,
    Vec<u8>,
    String,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

macro_rules! device_columns {
    () => {
        "d.id, d.family_id, d.child_id, d.account_id, d.kind, d.public_key, d.name_sealed, d.software_version, \
         d.paired_at, d.last_seen_at, d.revoked_at, d.wipe_requested_at"
    };
}

fn device_from(row: DeviceTuple) -> Result<DeviceRow, StoreError> {
    Ok(DeviceRow {
        id: parse_id(&row.0)?,
        family_id: parse_id(&row.1)?,
        child_id: parse_opt_id(row.2)?,
        account_id: parse_opt_id(row.3)?,
        kind: row.4,
        public_key: row.5,
        name_sealed: row.6,
        software_version: row.7,
        paired_at: row.8,
        last_seen_at: row.9,
        revoked_at: row.10,
        wipe_requested_at: row.11,
    })
}

#[async_trait]
impl DeviceStore for SqlStore {
    async fn create_pairing(&self, p: &PairingRow) -> Result<(), StoreError> {
        on_pool!(&self.db, |pool| {
            sqlx::query(
                "INSERT INTO pairing_requests (device_code_hash, user_code_index, public_key, kind, software_version, \
                 created_at, expires_at, last_poll_at, status) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending')",
            )
            .bind(&p.device_code_hash)
            .bind(&p.user_code_index)
            .bind(&p.public_key)
            .bind(&p.kind)
            .bind(&p.software_version)
            .bind(p.created_at)
            .bind(p.expires_at)
            .bind(p.last_poll_at)
            .execute(pool)
            .await
            .map(|_| ())
        })
        .map_err(StoreError::from_write)
    }

    async fn pending_pairing_by_user_code(&self, index: &[u8], now: i64) -> Result<Option<PairingRow>, StoreError> {
        let row: Option<PairingTuple> = on_pool!(&self.db, |pool| {
            sqlx::query_as(concat!(select_pairing!(), " WHERE user_code_index = $1 AND status = 'pending' AND expires_at > $2"))
                .bind(index)
                .bind(now)
                .fetch_optional(pool)
                .await
        })?;
        row.map(pairing_from).transpose()
    }

    async fn decide_pairing(&self, index: &[u8], approval: Option<&Approval>, now: i64) -> Result<bool, StoreError> {
        let n = on_pool!(&self.db, |pool| {
            match approval {
                Some(a) => sqlx::query(
                    "UPDATE pairing_requests SET status = 'approved', device_id = $1, family_id = $2, child_id = $3, \
                     account_id = $4, name_sealed = $5 WHERE user_code_index = $6 AND status = 'pending' AND expires_at > $7",
                )
                .bind(a.device_id.to_string())
                .bind(a.family_id.to_string())
                .bind(a.child_id.map(|id| id.to_string()))
                .bind(a.account_id.map(|id| id.to_string()))
                .bind(&a.name_sealed)
                .bind(index)
                .bind(now)
                .execute(pool)
                .await
                .map(|r| r.rows_affected()),
                None => sqlx::query(
                    "UPDATE pairing_requests SET status = 'denied' \
                     WHERE user_code_index = $1 AND status = 'pending' AND expires_at > $2",
                )
                .bind(index)
                .bind(now)
                .execute(pool)
                .await
                .map(|r| r.rows_affected()),
            }
        })?;
        Ok(n > 0)
    }

    async fn poll_pairing(&self, device_code_hash: &[u8], now: i64) -> Result<Option<PairingRow>, StoreError> {
        let row: Option<PairingTuple> = on_pool!(&self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            let row = sqlx::query_as(concat!(select_pairing!(), " WHERE device_code_hash = $1"))
                .bind(device_code_hash)
                .fetch_optional(&mut *tx)
                .await?;
            sqlx::query("UPDATE pairing_requests SET last_poll_at = $1 WHERE device_code_hash = $2")
                .bind(now)
                .bind(device_code_hash)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(row)
        })?;
        row.map(pairing_from).transpose()
    }

    async fn complete_pairing(&self, device_code_hash: &[u8], d: &DeviceRow) -> Result<bool, StoreError> {
        let done = on_pool!(&self.db, |pool| {
            let mut tx = pool.begin_write().await.map_err(StoreError::from)?;
            let taken = sqlx::query("DELETE FROM pairing_requests WHERE device_code_hash = $1 AND status = 'approved'")
                .bind(device_code_hash)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from)?
                .rows_affected();
            if taken == 0 {
                return Ok(false);
            }
            sqlx::query(
                "INSERT INTO devices (id, family_id, child_id, account_id, kind, public_key, name_sealed, \
                 software_version, paired_at, last_seen_at, revoked_at, wipe_requested_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, NULL)",
            )
            .bind(d.id.to_string())
            .bind(d.family_id.to_string())
            .bind(d.child_id.map(|id| id.to_string()))
            .bind(d.account_id.map(|id| id.to_string()))
            .bind(&d.kind)
            .bind(&d.public_key)
            .bind(&d.name_sealed)
            .bind(&d.software_version)
            .bind(d.paired_at)
            .bind(d.last_seen_at)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from_write)?;
            sqlx::query("INSERT INTO device_queues (device_id) VALUES ($1)")
                .bind(d.id.to_string())
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from_write)?;
            tx.commit().await.map_err(StoreError::from)?;
            Ok::<_, StoreError>(true)
        })?;
        Ok(done)
    }

    async fn device(&self, id: DeviceId) -> Result<Option<DeviceRow>, StoreError> {
        let row: Option<DeviceTuple> = on_pool!(&self.db, |pool| {
            sqlx::query_as(concat!("SELECT ", device_columns!(), " FROM devices d WHERE d.id = $1"))
                .bind(id.to_string())
                .fetch_optional(pool)
                .await
        })?;
        row.map(device_from).transpose()
    }

    async fn active_devices_among(&self, ids: &[DeviceId]) -> Result<Vec<DeviceId>, StoreError> {
        let mut active = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(IDS_PER_STATEMENT) {
            let found: Vec<String> = on_pool!(&self.db, |pool| {
                let mut select = sqlx::QueryBuilder::new("SELECT id FROM devices WHERE revoked_at IS NULL AND id IN (");
                push_list(&mut select, chunk.iter().map(ToString::to_string));
                select.push(")");
                select.build_query_scalar().fetch_all(pool).await
            })?;
            for id in found {
                active.push(parse_id(&id)?);
            }
        }
        Ok(active)
    }

    async fn family_devices(&self, family: FamilyId) -> Result<Vec<DeviceRow>, StoreError> {
        let rows: Vec<DeviceTuple> = on_pool!(&self.db, |pool| {
            sqlx::query_as(concat!("SELECT ", device_columns!(), " FROM devices d WHERE d.family_id = $1 ORDER BY d.paired_at, d.id"))
                .bind(family.to_string())
                .fetch_all(pool)
                .await
        })?;
        rows.into_iter().map(device_from).collect()
    }

    async fn rename_device(&self, family: FamilyId, id: DeviceId, name_sealed: &[u8]) -> Result<bool, StoreError> {
        let n = on_pool!(&self.db, |pool| {
            sqlx::query("UPDATE devices SET name_sealed = $1 WHERE family_id = $2 AND id = $3")
                .bind(name_sealed)
                .bind(family.to_string())
                .bind(id.to_string())
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })?;
        Ok(n > 0)
    }

    async fn revoke_device(&self, family: FamilyId, id: DeviceId, at: i64) -> Result<bool, StoreError> {
        let n = on_pool!(&self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            let n = sqlx::query("UPDATE devices SET revoked_at = $1 WHERE family_id = $2 AND id = $3 AND revoked_at IS NULL")
                .bind(at)
                .bind(family.to_string())
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?
                .rows_affected();
            for sql in ["DELETE FROM device_tokens WHERE device_id = $1", "DELETE FROM device_challenges WHERE device_id = $1"] {
                sqlx::query(sql).bind(id.to_string()).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok::<_, sqlx::Error>(n)
        })?;
        Ok(n > 0)
    }

    async fn request_wipe(&self, family: FamilyId, id: DeviceId, at: i64) -> Result<bool, StoreError> {
        let n = on_pool!(&self.db, |pool| {
            sqlx::query("UPDATE devices SET wipe_requested_at = $1 WHERE family_id = $2 AND id = $3")
                .bind(at)
                .bind(family.to_string())
                .bind(id.to_string())
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })?;
        Ok(n > 0)
    }

    async fn touch_device(&self, id: DeviceId, at: i64) -> Result<(), StoreError> {
        on_pool!(&self.db, |pool| {
            sqlx::query("UPDATE devices SET last_seen_at = $1 WHERE id = $2")
                .bind(at)
                .bind(id.to_string())
                .execute(pool)
                .await
                .map(|_| ())
        })?;
        Ok(())
    }

    async fn create_challenge(&self, challenge_hash: &[u8], device: &DeviceRow, expires_at: i64) -> Result<(), StoreError> {
        on_pool!(&self.db, |pool| {
            sqlx::query("INSERT INTO device_challenges (challenge_hash, device_id, family_id, expires_at) VALUES ($1, $2, $3, $4)")
                .bind(challenge_hash)
                .bind(device.id.to_string())
                .bind(device.family_id.to_string())
                .bind(expires_at)
                .execute(pool)
                .await
                .map(|_| ())
        })
        .map_err(StoreError::from_write)
    }

    async fn take_challenge(&self, challenge_hash: &[u8], device: DeviceId, now: i64) -> Result<bool, StoreError> {
        let n = on_pool!(&self.db, |pool| {
            sqlx::query("DELETE FROM device_challenges WHERE challenge_hash = $1 AND device_id = $2 AND expires_at > $3")
                .bind(challenge_hash)
                .bind(device.to_string())
                .bind(now)
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })?;
        Ok(n > 0)
    }

    async fn create_device_token(&self, token_hash: &[u8], device: &DeviceRow, expires_at: i64) -> Result<(), StoreError> {
        on_pool!(&self.db, |pool| {
            sqlx::query("INSERT INTO device_tokens (token_hash, device_id, family_id, expires_at) VALUES ($1, $2, $3, $4)")
                .bind(token_hash)
                .bind(device.id.to_string())
                .bind(device.family_id.to_string())
                .bind(expires_at)
                .execute(pool)
                .await
                .map(|_| ())
        })
        .map_err(StoreError::from_write)
    }

    async fn device_by_token(&self, token_hash: &[u8], now: i64) -> Result<Option<DeviceRow>, StoreError> {
        let row: Option<DeviceTuple> = on_pool!(&self.db, |pool| {
            sqlx::query_as(concat!(
                "SELECT ",
                device_columns!(),
                " FROM device_tokens t JOIN devices d ON d.id = t.device_id \
                 WHERE t.token_hash = $1 AND t.expires_at > $2 AND d.revoked_at IS NULL"
            ))
            .bind(token_hash)
            .bind(now)
            .fetch_optional(pool)
            .await
        })?;
        row.map(device_from).transpose()
    }
}

impl SqlStore {
    /// A person's active devices (a child's toys, an adult's apps, in any family).
    pub(crate) async fn active_devices_of(&self, person: cubby_core::contacts::Person) -> Result<Vec<DeviceRow>, StoreError> {
        use cubby_core::contacts::Person;
        let (child, account) = match person {
            Person::Child(child) => (Some(child.to_string()), None),
            Person::Adult(account) => (None, Some(account.to_string())),
        };
        let rows: Vec<DeviceTuple> = on_pool!(&self.db, |pool| {
            sqlx::query_as(concat!(
                "SELECT ",
                device_columns!(),
                " FROM devices d WHERE (d.child_id = $1 OR d.account_id = $2) AND d.revoked_at IS NULL ORDER BY d.paired_at, d.id"
            ))
            .bind(child)
            .bind(account)
            .fetch_all(pool)
            .await
        })?;
        rows.into_iter().map(device_from).collect()
    }
}
