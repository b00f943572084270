//! The store suite: the same scenarios against SQLite and a real PostgreSQL server.

use std::collections::HashSet;
use std::sync::Arc;

use cubby_core::FamilyId;
use cubby_store::{
    AuditStore, AuditTail, FamilyRow, FamilyStore, KeyOwner, KeyStore, NewAuditRow, Rewrap, SqlStore, Store,
    StoreError, WrappedKey,
};
use sqlx::Connection;

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// A store plus what a test needs to reach behind it (raw SQL, reopening).
struct Harness {
    store: Arc<SqlStore>,
    url: String,
    _dir: Option<tempfile::TempDir>,
}

async fn sqlite() -> Result<Harness, Box<dyn std::error::Error + Send + Sync>> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("cubby.db").display());
    Ok(Harness { store: Arc::new(SqlStore::connect(&url).await?), url, _dir: Some(dir) })
}

async fn postgres() -> Result<Harness, Box<dyn std::error::Error + Send + Sync>> {
    let url = cubby_store::testing::fresh_postgres_database().await?;
    Ok(Harness { store: Arc::new(SqlStore::connect(&url).await?), url, _dir: None })
}

/// Runs a raw statement on a separate connection, as an attacker with database access would.
async fn raw_execute(url: &str, sql: &'static str) -> Result<u64, sqlx::Error> {
    if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await?;
        Ok(sqlx::query(sql).execute(&mut conn).await?.rows_affected())
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await?;
        Ok(sqlx::query(sql).execute(&mut conn).await?.rows_affected())
    }
}

fn key(owner: KeyOwner, master: &str, bytes: &[u8]) -> WrappedKey {
    WrappedKey { owner, master_key_id: master.to_owned(), wrapped_key: bytes.to_vec(), created_at: 1 }
}

fn family(name_sealed: &[u8]) -> FamilyRow {
    FamilyRow { id: FamilyId::random(), created_at: 1_700_000_000_000, name_sealed: name_sealed.to_vec() }
}

async fn reopening_keeps_data_and_migrations_are_idempotent(h: Harness) -> TestResult {
    let f = family(b"sealed-name");
    h.store.create_family(&f, &key(KeyOwner::Family(f.id), "m1", b"wrapped"), None).await?;
    h.store.close().await;
    let reopened = SqlStore::connect(&h.url).await?;
    assert_eq!(reopened.family(f.id).await?, Some(f.clone()));
    assert_eq!(reopened.data_key(KeyOwner::Family(f.id)).await?.map(|k| k.wrapped_key), Some(b"wrapped".to_vec()));
    reopened.close().await;
    Ok(())
}

async fn families_round_trip_and_deletion_shreds_the_key(h: Harness) -> TestResult {
    let store = &h.store;
    let a = family(&[0, 1, 2, 255]);
    let b = family(b"other");
    store.create_family(&a, &key(KeyOwner::Family(a.id), "m1", b"ka"), None).await?;
    store.create_family(&b, &key(KeyOwner::Family(b.id), "m1", b"kb"), None).await?;
    assert_eq!(store.family(a.id).await?, Some(a.clone()));
    assert_eq!(store.family(FamilyId::random()).await?, None);
    assert!(store.delete_family(a.id).await?);
    assert_eq!(store.family(a.id).await?, None);
    assert_eq!(store.data_key(KeyOwner::Family(a.id)).await?, None, "deleting a family must destroy its key");
    assert!(!store.delete_family(a.id).await?);
    assert_eq!(store.family(b.id).await?, Some(b), "other families are untouched");
    Ok(())
}

async fn a_duplicate_family_is_a_conflict_and_writes_nothing(h: Harness) -> TestResult {
    let store = &h.store;
    let a = family(b"first");
    store.create_family(&a, &key(KeyOwner::Family(a.id), "m1", b"k1"), None).await?;
    let again = FamilyRow { name_sealed: b"second".to_vec(), ..a.clone() };
    let err = store.create_family(&again, &key(KeyOwner::Family(a.id), "m2", b"k2"), None).await;
    assert!(matches!(err, Err(StoreError::Conflict)), "{err:?}");
    assert_eq!(store.family(a.id).await?, Some(a.clone()));
    assert_eq!(store.data_key(KeyOwner::Family(a.id)).await?.map(|k| k.master_key_id), Some("m1".to_owned()));
    Ok(())
}

async fn the_first_system_key_wins(h: Harness) -> TestResult {
    let store = &h.store;
    assert_eq!(store.system_key().await?, None);
    let first = store.insert_system_key(&key(KeyOwner::System, "m1", b"first")).await?;
    let second = store.insert_system_key(&key(KeyOwner::System, "m1", b"second")).await?;
    assert_eq!(first.wrapped_key, b"first");
    assert_eq!(second.wrapped_key, b"first", "a second node must adopt the stored key");
    assert_eq!(store.system_key().await?, Some(first));
    Ok(())
}

async fn rewrapping_is_conditional_and_counted(h: Harness) -> TestResult {
    let store = &h.store;
    store.insert_system_key(&key(KeyOwner::System, "old", b"s")).await?;
    let mut ids = Vec::new();
    for i in 0..5u8 {
        let f = family(&[i]);
        store.create_family(&f, &key(KeyOwner::Family(f.id), "old", &[i]), None).await?;
        ids.push(f.id);
    }
    let pending = store.keys_not_wrapped_by("new", 100).await?;
    assert_eq!(pending.len(), 6);
    assert_eq!(store.keys_not_wrapped_by("new", 2).await?.len(), 2);
    let updates: Vec<Rewrap> = pending
        .iter()
        .take(3)
        .map(|k| Rewrap {
            owner: k.owner,
            old_master_key_id: k.master_key_id.clone(),
            new_master_key_id: "new".to_owned(),
            wrapped_key: b"rewrapped".to_vec(),
        })
        .collect();
    assert_eq!(store.rewrap_keys(&updates).await?, 3);
    // Applying the same batch again changes nothing: those rows no longer have the old id.
    assert_eq!(store.rewrap_keys(&updates).await?, 0);
    assert_eq!(store.keys_not_wrapped_by("new", 100).await?.len(), 3);
    assert_eq!(
        store.count_keys_by_master().await?,
        vec![("new".to_owned(), 3), ("old".to_owned(), 3)]
    );
    Ok(())
}

fn chained_entry(tail: &AuditTail, detail: String) -> NewAuditRow {
    let prev_mac = tail.mac.clone().unwrap_or_else(|| vec![0; 32]);
    let mut mac = prev_mac.clone();
    mac.extend_from_slice(&(tail.seq + 1).to_be_bytes());
    NewAuditRow {
        at: 1,
        actor: "system".to_owned(),
        action: "test.event".to_owned(),
        family_id: None,
        detail,
        prev_mac,
        mac,
    }
}

async fn concurrent_audit_appends_form_one_chain(h: Harness) -> TestResult {
    let mut tasks = Vec::new();
    for i in 0..40 {
        let store = h.store.clone();
        tasks.push(tokio::spawn(async move {
            store.append_audit(&|tail| chained_entry(tail, format!("{{\"n\":{i}}}"))).await
        }));
    }
    for task in tasks {
        task.await??;
    }
    let entries = h.store.audit_entries(0, 1000).await?;
    assert_eq!(entries.iter().map(|e| e.seq).collect::<Vec<_>>(), (1..=40).collect::<Vec<_>>());
    for pair in entries.windows(2) {
        assert_eq!(pair[1].prev_mac, pair[0].mac, "entry {} does not chain to {}", pair[1].seq, pair[0].seq);
    }
    let details: HashSet<_> = entries.iter().map(|e| e.detail.clone()).collect();
    assert_eq!(details.len(), 40, "every append is recorded once");
    assert_eq!(h.store.audit_entries(38, 10).await?.len(), 2);
    Ok(())
}

async fn the_audit_log_refuses_updates_and_deletes(h: Harness) -> TestResult {
    h.store.append_audit(&|tail| chained_entry(tail, "{}".to_owned())).await?;
    assert!(raw_execute(&h.url, "UPDATE audit_log SET action = 'edited'").await.is_err());
    assert!(raw_execute(&h.url, "DELETE FROM audit_log").await.is_err());
    assert_eq!(h.store.audit_entries(0, 10).await?.len(), 1);
    Ok(())
}

async fn hostile_text_is_stored_as_data_not_sql(h: Harness) -> TestResult {
    // (No NUL: PostgreSQL text cannot hold it, so the API refuses control characters first.)
    let hostile = "x'); DROP TABLE families; -- \" ; DELETE FROM audit_log; 😀";
    let row = h.store.append_audit(&|tail| chained_entry(tail, hostile.to_owned())).await?;
    assert_eq!(row.detail, hostile);
    let f = family(hostile.as_bytes());
    h.store.create_family(&f, &key(KeyOwner::Family(f.id), hostile, b"k"), None).await?;
    assert_eq!(h.store.family(f.id).await?.map(|f| f.name_sealed), Some(hostile.as_bytes().to_vec()));
    assert_eq!(h.store.keys_not_wrapped_by(hostile, 10).await?.len(), 0);
    assert_eq!(h.store.keys_not_wrapped_by("' OR '1'='1", 10).await?.len(), 1);
    Ok(())
}

async fn two_guardians_leaving_at_once_never_orphan_a_family(h: Harness) -> TestResult {
    use cubby_core::AccountId;
    use cubby_store::{AccountRow, AccountStore, GuardianRow};
    for round in 0..15u8 {
        let mut accounts = Vec::new();
        for n in 0..2u8 {
            let id = AccountId::random();
            let row = AccountRow {
                id,
                email_index: vec![round, n, 7],
                email_sealed: vec![1],
                password_hash: "x".to_owned(),
                email_verified_at: None,
                created_at: 1,
                last_active_at: 1,
                idle_warned_at: None,
            };
            h.store.create_account(&row, &key(KeyOwner::Account(id), "m1", b"k")).await?;
            accounts.push(id);
        }
        let f = family(&[round]);
        h.store.create_family(&f, &key(KeyOwner::Family(f.id), "m1", b"k"), Some(accounts[0])).await?;
        h.store.add_guardian(&GuardianRow { family_id: f.id, account_id: accounts[1], joined_at: 2 }).await?;
        let (a, b) = (h.store.clone(), h.store.clone());
        let (left_a, left_b) = tokio::join!(a.remove_guardian(f.id, accounts[0]), b.remove_guardian(f.id, accounts[1]));
        assert!(left_a? ^ left_b?, "exactly one of two last guardians may leave");
        assert_eq!(h.store.guardians(f.id).await?.len(), 1);
    }
    Ok(())
}

async fn a_pairing_completes_once_and_revocation_kills_tokens(h: Harness) -> TestResult {
    use cubby_core::DeviceId;
    use cubby_store::{Approval, DeviceRow, DeviceStore, PairingRow};
    let f = family(b"f");
    h.store.create_family(&f, &key(KeyOwner::Family(f.id), "m1", b"k"), None).await?;
    let pairing = PairingRow {
        device_code_hash: vec![1; 32],
        user_code_index: vec![2; 32],
        public_key: vec![3; 32],
        kind: "toy".to_owned(),
        software_version: "1.0".to_owned(),
        created_at: 10,
        expires_at: 1_000,
        last_poll_at: 0,
        status: "pending".to_owned(),
        approval: None,
    };
    h.store.create_pairing(&pairing).await?;
    assert!(h.store.pending_pairing_by_user_code(&[2; 32], 2_000).await?.is_none(), "expired");
    assert!(h.store.pending_pairing_by_user_code(&[2; 32], 20).await?.is_some());
    let device_id = DeviceId::random();
    let approval =
        Approval { device_id, family_id: f.id, child_id: None, account_id: None, name_sealed: b"sealed".to_vec() };
    assert!(h.store.decide_pairing(&[2; 32], Some(&approval), 20).await?);
    assert!(!h.store.decide_pairing(&[2; 32], None, 21).await?, "decided once");
    let polled = h.store.poll_pairing(&[1; 32], 30).await?.ok_or("no pairing")?;
    assert_eq!(polled.approval, Some(approval));
    let device = DeviceRow {
        id: device_id,
        family_id: f.id,
        child_id: None,
        account_id: None,
        kind: "toy".to_owned(),
        public_key: vec![3; 32],
        name_sealed: b"sealed".to_vec(),
        software_version: "1.0".to_owned(),
        paired_at: 30,
        last_seen_at: None,
        revoked_at: None,
        wipe_requested_at: None,
    };
    assert!(h.store.complete_pairing(&[1; 32], &device).await?);
    assert!(!h.store.complete_pairing(&[1; 32], &device).await?, "a device code pairs once");
    h.store.create_challenge(&[4; 32], &device, 100).await?;
    assert!(h.store.take_challenge(&[4; 32], device_id, 50).await?);
    assert!(!h.store.take_challenge(&[4; 32], device_id, 50).await?, "a challenge is single-use");
    h.store.create_device_token(&[5; 32], &device, 10_000).await?;
    assert_eq!(h.store.device_by_token(&[5; 32], 60).await?.map(|d| d.id), Some(device_id));
    assert!(h.store.revoke_device(f.id, device_id, 70).await?);
    assert!(h.store.device_by_token(&[5; 32], 80).await?.is_none(), "revocation kills tokens");
    assert!(h.store.device(device_id).await?.and_then(|d| d.revoked_at).is_some());
    Ok(())
}

macro_rules! store_suite {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $scenario() -> super::TestResult {
                    super::$scenario(super::sqlite().await?).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $scenario() -> super::TestResult {
                    super::$scenario(super::postgres().await?).await
                }
            )*
        }
    };
}

store_suite!(
    reopening_keeps_data_and_migrations_are_idempotent,
    families_round_trip_and_deletion_shreds_the_key,
    a_duplicate_family_is_a_conflict_and_writes_nothing,
    the_first_system_key_wins,
    rewrapping_is_conditional_and_counted,
    concurrent_audit_appends_form_one_chain,
    the_audit_log_refuses_updates_and_deletes,
    hostile_text_is_stored_as_data_not_sql,
    two_guardians_leaving_at_once_never_orphan_a_family,
    a_pairing_completes_once_and_revocation_kills_tokens,
);
