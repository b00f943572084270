//! The store suite: the same scenarios against SQLite and a real PostgreSQL server.

use std::collections::HashSet;
use std::sync::Arc;

use cubby_core::{DeviceId, FamilyId};
use cubby_store::{
    Append, Appended, AuditStore, AuditTail, EpochChange, FamilyRow, FamilyStore, GroupRow, KeyOwner, KeyStore,
    MessageKind, MessagingStore, NewAuditRow, NewKeyPackage, NewMessage, QueuedMessage, Rewrap, SqlStore, Store,
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

/// Runs a raw `SELECT COUNT(*) …` on a separate connection, to see rows the API hides.
async fn raw_count(url: &str, sql: &'static str) -> Result<i64, sqlx::Error> {
    if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await?;
        sqlx::query_scalar(sql).fetch_one(&mut conn).await
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await?;
        sqlx::query_scalar(sql).fetch_one(&mut conn).await
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

async fn only_paired_unrevoked_devices_are_active(h: Harness) -> TestResult {
    use cubby_store::DeviceStore;
    let (f, devices) = family_with_devices(&h, 1, 3).await?;
    let (a, revoked, c) = (devices[0], devices[1], devices[2]);
    assert!(h.store.revoke_device(f.id, revoked, 50).await?);
    // Over one statement's worth of ids, most of them unknown.
    let mut asked: Vec<DeviceId> = (0..600).map(|_| DeviceId::random()).collect();
    asked.splice(250..250, [a, revoked]);
    asked.push(c);
    let mut active = h.store.active_devices_among(&asked).await?;
    active.sort();
    let mut expected = vec![a, c];
    expected.sort();
    assert_eq!(active, expected);
    assert!(h.store.active_devices_among(&[]).await?.is_empty());
    Ok(())
}

async fn a_node_learns_when_schedules_were_set(h: Harness) -> TestResult {
    use cubby_core::ChildId;
    use cubby_store::{ChildRow, FamilyStore, ScheduleStore};
    let f = family(&[7]);
    h.store.create_family(&f, &key(KeyOwner::Family(f.id), "m1", b"k"), None).await?;
    let mut children = Vec::new();
    for n in 0..3 {
        let child = ChildRow { id: ChildId::random(), family_id: f.id, created_at: 1, nickname_sealed: vec![n], age_band_sealed: vec![n] };
        h.store.create_child(&child, &key(KeyOwner::Child(child.id), "m1", b"k")).await?;
        children.push(child.id);
    }
    let (bedtime, reset, none) = (children[0], children[1], children[2]);
    assert!(h.store.set_quiet_hours(f.id, bedtime, b"sealed", 100).await?);
    assert!(h.store.set_quiet_hours(f.id, reset, b"sealed", 100).await?);
    assert!(h.store.set_quiet_hours(f.id, reset, b"sealed again", 250).await?);
    // Over one statement's worth of ids, most of them unknown.
    let mut asked: Vec<ChildId> = (0..600).map(|_| ChildId::random()).collect();
    asked.splice(300..300, [bedtime, none]);
    asked.push(reset);
    let mut set_at = h.store.quiet_hours_set_at(&asked).await?;
    set_at.sort();
    let mut expected = vec![(bedtime, 100), (reset, 250)];
    expected.sort();
    assert_eq!(set_at, expected);
    assert!(h.store.delete_quiet_hours(f.id, bedtime).await?);
    assert_eq!(h.store.quiet_hours_set_at(&[bedtime, reset]).await?, [(reset, 250)]);
    assert!(h.store.quiet_hours_set_at(&[]).await?.is_empty());
    Ok(())
}

/// A family with `count` paired devices; `seed` keeps their codes and keys unique.
async fn family_with_devices(
    h: &Harness,
    seed: u8,
    count: u8,
) -> Result<(FamilyRow, Vec<DeviceId>), Box<dyn std::error::Error + Send + Sync>> {
    use cubby_store::{Approval, DeviceRow, DeviceStore, PairingRow};
    let f = family(&[seed]);
    h.store.create_family(&f, &key(KeyOwner::Family(f.id), "m1", b"k"), None).await?;
    let mut devices = Vec::new();
    for n in seed..seed + count {
        let pairing = PairingRow {
            device_code_hash: vec![n; 32],
            user_code_index: vec![n; 32],
            public_key: vec![n; 32],
            kind: "toy".to_owned(),
            software_version: "1.0".to_owned(),
            created_at: 10,
            expires_at: 1_000,
            last_poll_at: 0,
            status: "pending".to_owned(),
            approval: None,
        };
        h.store.create_pairing(&pairing).await?;
        let id = DeviceId::random();
        let approval = Approval { device_id: id, family_id: f.id, child_id: None, account_id: None, name_sealed: vec![n] };
        assert!(h.store.decide_pairing(&[n; 32], Some(&approval), 20).await?);
        let device = DeviceRow {
            id,
            family_id: f.id,
            child_id: None,
            account_id: None,
            kind: "toy".to_owned(),
            public_key: vec![n; 32],
            name_sealed: vec![n],
            software_version: "1.0".to_owned(),
            paired_at: 30 + i64::from(n),
            last_seen_at: None,
            revoked_at: None,
            wipe_requested_at: None,
        };
        assert!(h.store.complete_pairing(&[n; 32], &device).await?);
        devices.push(id);
    }
    Ok((f, devices))
}

fn group_row(id: u8, family: FamilyId) -> GroupRow {
    GroupRow { id: vec![id; 16], family_id: family, epoch: 0, public_state: b"state-0".to_vec(), created_at: 100 }
}

fn message(group: &GroupRow, kind: MessageKind, payload: &[u8], recipients: &[DeviceId], expires_at: i64) -> NewMessage {
    NewMessage {
        group_id: group.id.clone(),
        sender: None,
        kind,
        payload: payload.to_vec(),
        urgent: false,
        created_at: 200,
        expires_at,
        recipients: recipients.to_vec(),
    }
}

fn commit(group: &GroupRow, from_epoch: i64, members: &[DeviceId], payload: &[u8], recipients: &[DeviceId]) -> Append {
    Append {
        epoch_change: Some(EpochChange {
            group_id: group.id.clone(),
            from_epoch,
            to_epoch: from_epoch + 1,
            public_state: [b"state-".as_slice(), payload].concat(),
            members: members.to_vec(),
        }),
        messages: vec![message(group, MessageKind::Commit, payload, recipients, 10_000)],
    }
}

fn sorted(mut ids: Vec<DeviceId>) -> Vec<DeviceId> {
    ids.sort_by_key(|id| id.to_string());
    ids
}

async fn payloads_for(h: &Harness, device: DeviceId) -> Result<Vec<Vec<u8>>, StoreError> {
    Ok(h.store.queued_for(device, 0, 100).await?.into_iter().map(|m| m.payload).collect())
}

async fn key_packages_are_claimed_once_and_the_last_resort_is_kept(h: Harness) -> TestResult {
    let (_, devices) = family_with_devices(&h, 1, 2).await?;
    let (d, other) = (devices[0], devices[1]);
    let ordinary = |n: u8| NewKeyPackage { package: vec![n; 3], last_resort: false };
    let last_resort = |n: u8| NewKeyPackage { package: vec![n; 3], last_resort: true };
    assert_eq!(h.store.claim_key_package(d).await?, None, "nothing uploaded yet");
    h.store.add_key_packages(d, &[ordinary(1), ordinary(2), last_resort(100)]).await?;
    h.store.add_key_packages(d, &[ordinary(3)]).await?;
    h.store.add_key_packages(other, &[ordinary(50)]).await?;
    assert_eq!(h.store.key_packages_left(d).await?, 3);
    for n in 1..=3 {
        assert_eq!(h.store.claim_key_package(d).await?, Some(vec![n; 3]), "the oldest first, once");
    }
    assert_eq!(h.store.key_packages_left(d).await?, 0);
    for _ in 0..2 {
        assert_eq!(h.store.claim_key_package(d).await?, Some(vec![100; 3]), "the last resort is kept");
    }
    h.store.add_key_packages(d, &[last_resort(101)]).await?;
    assert_eq!(h.store.claim_key_package(d).await?, Some(vec![101; 3]));
    assert_eq!(raw_count(&h.url, "SELECT COUNT(*) FROM key_packages WHERE last_resort = TRUE").await?, 1, "replaced");
    assert_eq!(h.store.key_packages_left(other).await?, 1, "other devices' packages are untouched");

    // Concurrent claims (several rounds, to meet the race): each ordinary package goes to
    // exactly one of them, and the others get the last resort, never nothing.
    for round in 0..5u8 {
        let uploaded: Vec<Vec<u8>> = (0..5).map(|n| vec![10 + round * 5 + n; 3]).collect();
        let packages: Vec<_> = uploaded.iter().map(|p| NewKeyPackage { package: p.clone(), last_resort: false }).collect();
        h.store.add_key_packages(d, &packages).await?;
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let store = h.store.clone();
            tasks.push(tokio::spawn(async move { store.claim_key_package(d).await }));
        }
        let mut claimed = Vec::new();
        for task in tasks {
            claimed.push(task.await??.ok_or("a claim found nothing")?);
        }
        let (last, ordinary): (Vec<_>, Vec<_>) = claimed.into_iter().partition(|p| *p == vec![101; 3]);
        assert_eq!(last.len(), 3, "round {round}");
        assert_eq!(ordinary.iter().collect::<HashSet<_>>(), uploaded.iter().collect(), "round {round}");
        assert_eq!(h.store.key_packages_left(d).await?, 0);
    }
    Ok(())
}

async fn a_commit_moves_its_group_on_once(h: Harness) -> TestResult {
    let (f, devices) = family_with_devices(&h, 1, 3).await?;
    let (a, b, c) = (devices[0], devices[1], devices[2]);
    let group = group_row(7, f.id);
    assert!(h.store.create_group(&group, &[a, b]).await?);
    let taken = GroupRow { public_state: b"other".to_vec(), ..group.clone() };
    assert!(!h.store.create_group(&taken, &[c]).await?, "a group id is taken once");
    assert_eq!(h.store.group(&group.id).await?, Some(group.clone()));
    assert_eq!(h.store.group(&[0; 16]).await?, None);
    assert_eq!(h.store.group_members(&group.id).await?, sorted(vec![a, b]));
    assert_eq!(h.store.device_groups(a).await?, vec![group.clone()]);
    assert_eq!(h.store.device_groups(c).await?, vec![]);

    // Two commits to epoch 0 in one batch: the first wins, the second writes nothing.
    let outcomes = h
        .store
        .append(&[commit(&group, 0, &[a, b, c], b"add-c", &[b, c]), commit(&group, 0, &[a], b"rival", &[b])])
        .await?;
    assert!(matches!(&outcomes[..], [Appended::Stored(ids), Appended::StaleEpoch] if ids.len() == 1), "{outcomes:?}");
    let moved = h.store.group(&group.id).await?.ok_or("no group")?;
    assert_eq!((moved.epoch, moved.public_state), (1, b"state-add-c".to_vec()));
    assert_eq!(h.store.group_members(&group.id).await?, sorted(vec![a, b, c]));
    assert_eq!(h.store.device_groups(c).await?.len(), 1);

    // And in a later batch.
    let late = h.store.append(&[commit(&group, 0, &[a], b"late", &[b, c])]).await?;
    assert_eq!(late, vec![Appended::StaleEpoch]);
    assert_eq!(payloads_for(&h, b).await?, vec![b"add-c".to_vec()], "a stale commit queues nothing");
    assert_eq!(payloads_for(&h, c).await?, vec![b"add-c".to_vec()]);
    assert_eq!(h.store.group_members(&group.id).await?, sorted(vec![a, b, c]));

    let next = h.store.append(&[commit(&group, 1, &[a, c], b"remove-b", &[c])]).await?;
    assert!(matches!(&next[..], [Appended::Stored(_)]), "{next:?}");
    assert_eq!(h.store.group(&group.id).await?.map(|g| g.epoch), Some(2));
    assert_eq!(h.store.group_members(&group.id).await?, sorted(vec![a, c]));
    assert_eq!(h.store.device_groups(b).await?, vec![]);
    // The relay's one read agrees with the group and its members.
    let routing = h.store.group_routing(&group.id).await?.ok_or("no routing")?;
    assert_eq!((routing.family_id, routing.epoch, routing.members), (f.id, 2, sorted(vec![a, c])));
    assert_eq!(h.store.group_routing(&[0; 16]).await?, None);

    // A change that keeps the epoch (the server's proposal) records the state only.
    let mut proposal = commit(&group, 2, &[a, c], b"proposal", &[a, c]);
    if let Some(change) = proposal.epoch_change.as_mut() {
        change.to_epoch = 2;
    }
    assert!(matches!(&h.store.append(&[proposal]).await?[..], [Appended::Stored(_)]));
    let kept = h.store.group(&group.id).await?.ok_or("no group")?;
    assert_eq!((kept.epoch, kept.public_state), (2, b"state-proposal".to_vec()));
    assert_eq!(h.store.append(&[commit(&group, 1, &[a], b"stale", &[a])]).await?, vec![Appended::StaleEpoch]);
    Ok(())
}

async fn queues_are_per_device_and_a_message_goes_when_all_acknowledged(h: Harness) -> TestResult {
    use cubby_store::DeviceStore;
    let (f, devices) = family_with_devices(&h, 1, 4).await?;
    let (a, b, c, revoked) = (devices[0], devices[1], devices[2], devices[3]);
    let group = group_row(9, f.id);
    assert!(h.store.create_group(&group, &devices).await?);
    assert!(h.store.revoke_device(f.id, revoked, 50).await?);

    let urgent = NewMessage { sender: Some(a), urgent: true, ..message(&group, MessageKind::Application, b"m2", &[b, c], 10_000) };
    let outcomes = h
        .store
        .append(&[Append {
            epoch_change: None,
            messages: vec![
                message(&group, MessageKind::Application, b"m1", &[b, c, revoked], 10_000),
                urgent,
                message(&group, MessageKind::Proposal, b"m3", &[b], 10_000),
            ],
        }])
        .await?;
    let [Appended::Stored(ids)] = &outcomes[..] else { return Err(format!("{outcomes:?}").into()) };
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids in order: {ids:?}");
    let queued = h.store.queued_for(b, 0, 100).await?;
    assert_eq!(queued.iter().map(|m| m.id).collect::<Vec<_>>(), *ids);
    assert_eq!(
        queued[1],
        QueuedMessage {
            id: ids[1],
            group_id: group.id.clone(),
            sender: Some(a),
            kind: MessageKind::Application,
            payload: b"m2".to_vec(),
            urgent: true,
            created_at: 200,
        }
    );
    assert_eq!((queued[0].sender, queued[0].urgent, queued[2].kind), (None, false, MessageKind::Proposal));
    assert_eq!(h.store.queued_for(b, ids[0], 100).await?.len(), 2);
    assert_eq!(h.store.queued_for(b, 0, 1).await?.len(), 1);
    assert_eq!(payloads_for(&h, c).await?, vec![b"m1".to_vec(), b"m2".to_vec()]);
    assert_eq!(payloads_for(&h, revoked).await?, Vec::<Vec<u8>>::new(), "a revoked device gets nothing");
    assert_eq!(raw_count(&h.url, "SELECT COUNT(*) FROM deliveries").await?, 5);

    // Acknowledged by one device: gone from its queue only; the row stays for the other.
    assert_eq!(h.store.acknowledge(b, &[ids[0], ids[0], 999_999]).await?, 1);
    assert_eq!(payloads_for(&h, b).await?, vec![b"m2".to_vec(), b"m3".to_vec()]);
    assert_eq!(payloads_for(&h, c).await?, vec![b"m1".to_vec(), b"m2".to_vec()]);
    assert_eq!(raw_count(&h.url, "SELECT COUNT(*) FROM messages").await?, 3);
    assert_eq!(h.store.acknowledge(c, &[ids[0]]).await?, 1);
    assert_eq!(raw_count(&h.url, "SELECT COUNT(*) FROM messages").await?, 2, "acknowledged by all: deleted");
    assert_eq!(h.store.acknowledge(c, &[ids[0]]).await?, 0);

    // The batch says who each message was queued for: never a revoked device.
    let written = h
        .store
        .write_batch(vec![Append { epoch_change: None, messages: vec![message(&group, MessageKind::Application, b"y", &[b, revoked], 10_000)] }], Vec::new())
        .await?;
    let [Appended::Stored(y)] = &written.appended[..] else { return Err(format!("{:?}", written.appended).into()) };
    assert_eq!(written.queued, vec![(b, y[0])]);
    assert_eq!(h.store.acknowledge(b, y).await?, 1);

    // A message for revoked devices only is not kept.
    let unread = h.store.append(&[Append { epoch_change: None, messages: vec![message(&group, MessageKind::Application, b"x", &[revoked], 10_000)] }]).await?;
    assert!(matches!(&unread[..], [Appended::Stored(ids)] if ids.len() == 1));
    assert_eq!(raw_count(&h.url, "SELECT COUNT(*) FROM messages").await?, 2);

    // Expiry.
    h.store
        .append(&[Append {
            epoch_change: None,
            messages: vec![
                message(&group, MessageKind::Application, b"short", &[b, c], 500),
                message(&group, MessageKind::Application, b"m5", &[b, c], 5_000),
            ],
        }])
        .await?;
    assert_eq!(h.store.expire_messages(499).await?, 0);
    assert_eq!(h.store.expire_messages(500).await?, 1);
    assert_eq!(payloads_for(&h, b).await?, vec![b"m2".to_vec(), b"m3".to_vec(), b"m5".to_vec()]);
    assert_eq!(payloads_for(&h, c).await?, vec![b"m2".to_vec(), b"m5".to_vec()]);
    assert_eq!(raw_count(&h.url, "SELECT COUNT(*) FROM deliveries").await?, 5, "its queue entries went with it");

    // Dropping a queue: messages still awaited elsewhere stay.
    assert_eq!(h.store.drop_queue(c).await?, 2);
    assert_eq!(payloads_for(&h, c).await?, Vec::<Vec<u8>>::new());
    assert_eq!(payloads_for(&h, b).await?.len(), 3);
    assert_eq!(raw_count(&h.url, "SELECT COUNT(*) FROM messages").await?, 3);
    assert_eq!(h.store.drop_queue(b).await?, 3);
    assert_eq!(raw_count(&h.url, "SELECT COUNT(*) FROM messages").await?, 0);
    assert_eq!(h.store.drop_queue(b).await?, 0);
    Ok(())
}

/// A batch larger than one statement's rows: every append gets back its own messages'
/// ids, and acknowledgements of several devices in one batch each remove their own.
async fn a_large_batch_gives_each_append_its_own_ids(h: Harness) -> TestResult {
    let (f, devices) = family_with_devices(&h, 1, 3).await?;
    let (b, c) = (devices[1], devices[2]);
    let group = group_row(11, f.id);
    assert!(h.store.create_group(&group, &devices).await?);
    // 150 messages (over one insert's 100) to two devices each (300 queue entries, over
    // one insert's 250), with a message for nobody in the middle.
    let mut batch: Vec<Append> = (0..150)
        .map(|n| Append {
            epoch_change: None,
            messages: vec![message(&group, MessageKind::Application, format!("m{n}").as_bytes(), &[b, c], 10_000)],
        })
        .collect();
    batch.insert(70, Append { epoch_change: None, messages: vec![message(&group, MessageKind::Application, b"none", &[], 10_000)] });
    let outcomes = h.store.append(&batch).await?;
    let ids: Vec<i64> = outcomes
        .iter()
        .map(|outcome| match outcome {
            Appended::Stored(ids) if ids.len() == 1 => Ok(ids[0]),
            other => Err(format!("{other:?}")),
        })
        .collect::<Result<_, _>>()?;
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids in batch order");
    let queued = h.store.queued_for(b, 0, 1_000).await?;
    assert_eq!(queued.len(), 150);
    for message in &queued {
        let at = ids.iter().position(|id| *id == message.id).ok_or("a queued id no append got")?;
        assert_eq!(message.payload, batch[at].messages[0].payload, "append {at} got another message's id");
    }
    assert_eq!(raw_count(&h.url, "SELECT COUNT(*) FROM messages").await?, 150, "the message for nobody is not kept");

    // One batch acknowledges all of b's and half of c's, with ids never queued and more
    // ids than one statement binds.
    let queued_ids: Vec<i64> = queued.iter().map(|m| m.id).collect();
    let mut c_ids: Vec<i64> = queued_ids[..75].to_vec();
    c_ids.extend(1_000_000..1_000_600);
    let written = h.store.write_batch(Vec::new(), vec![(b, queued_ids.clone()), (c, c_ids)]).await?;
    assert_eq!(written.acknowledged, 225);
    assert!(h.store.queued_for(b, 0, 1_000).await?.is_empty());
    let left: Vec<i64> = h.store.queued_for(c, 0, 1_000).await?.iter().map(|m| m.id).collect();
    assert_eq!(left, queued_ids[75..]);
    assert_eq!(raw_count(&h.url, "SELECT COUNT(*) FROM messages").await?, 75, "messages acknowledged by all go");
    Ok(())
}

async fn deleting_a_family_deletes_its_groups_queues_and_key_packages(h: Harness) -> TestResult {
    let (f, devices) = family_with_devices(&h, 1, 2).await?;
    let (other, other_devices) = family_with_devices(&h, 10, 1).await?;
    for (family, devices, id) in [(&f, &devices, 1), (&other, &other_devices, 2)] {
        let group = group_row(id, family.id);
        assert!(h.store.create_group(&group, devices).await?);
        for device in devices.iter() {
            let packages = [
                NewKeyPackage { package: vec![id], last_resort: false },
                NewKeyPackage { package: vec![id], last_resort: true },
            ];
            h.store.add_key_packages(*device, &packages).await?;
        }
        let batch = [Append {
            epoch_change: None,
            messages: vec![message(&group, MessageKind::Application, b"m", devices, 10_000)],
        }];
        h.store.append(&batch).await?;
    }
    assert!(h.store.delete_family(f.id).await?);
    for (sql, left) in [
        ("SELECT COUNT(*) FROM key_packages", 2),
        ("SELECT COUNT(*) FROM mls_groups", 1),
        ("SELECT COUNT(*) FROM group_members", 1),
        ("SELECT COUNT(*) FROM messages", 1),
        ("SELECT COUNT(*) FROM deliveries", 1),
    ] {
        assert_eq!(raw_count(&h.url, sql).await?, left, "{sql}: only the other family's rows remain");
    }
    assert_eq!(payloads_for(&h, other_devices[0]).await?, vec![b"m".to_vec()]);

    // A send routed just before the deletion: its append alone is refused, the rest of
    // the batch is written.
    let (gone, kept) = (group_row(1, f.id), group_row(2, other.id));
    let outcomes = h
        .store
        .append(&[
            Append { epoch_change: None, messages: vec![message(&gone, MessageKind::Application, b"late", &devices, 10_000)] },
            Append { epoch_change: None, messages: vec![message(&kept, MessageKind::Application, b"m2", &other_devices, 10_000)] },
        ])
        .await?;
    assert!(matches!(&outcomes[..], [Appended::GroupGone, Appended::Stored(ids)] if ids.len() == 1), "{outcomes:?}");
    assert_eq!(payloads_for(&h, other_devices[0]).await?, vec![b"m".to_vec(), b"m2".to_vec()]);
    assert_eq!(raw_count(&h.url, "SELECT COUNT(*) FROM messages").await?, 2);
    Ok(())
}

/// The message writer checks what it writes itself (SQLite's foreign-key checks are off on
/// its connection): a device that does not exist is neither queued for nor made a member,
/// a group deleted refuses its append, and acknowledged messages go without a cascade.
async fn the_writer_leaves_nothing_dangling(h: Harness) -> TestResult {
    let (f, devices) = family_with_devices(&h, 1, 2).await?;
    let (a, b) = (devices[0], devices[1]);
    let unknown = DeviceId::random();
    let group = group_row(3, f.id);
    assert!(h.store.create_group(&group, &[a, b]).await?);
    let outcomes = h
        .store
        .append(&[
            commit(&group, 0, &[a, b, unknown], b"add-unknown", &[b, unknown]),
            Append { epoch_change: None, messages: vec![message(&group, MessageKind::Application, b"hi", &[a, unknown], 10_000)] },
            Append { epoch_change: None, messages: vec![message(&group_row(4, f.id), MessageKind::Application, b"no group", &[a], 10_000)] },
        ])
        .await?;
    assert!(matches!(&outcomes[..], [Appended::Stored(_), Appended::Stored(_), Appended::GroupGone]), "{outcomes:?}");
    assert_eq!(h.store.group_members(&group.id).await?, sorted(vec![a, b]));
    assert_eq!(payloads_for(&h, a).await?, vec![b"hi".to_vec()]);
    assert_eq!(payloads_for(&h, b).await?, vec![b"add-unknown".to_vec()]);
    assert_eq!(payloads_for(&h, unknown).await?, Vec::<Vec<u8>>::new());
    for device in [a, b] {
        let ids: Vec<i64> = h.store.queued_for(device, 0, 100).await?.iter().map(|m| m.id).collect();
        h.store.acknowledge(device, &ids).await?;
    }
    for (sql, expected) in [
        ("SELECT COUNT(*) FROM messages", 0),
        ("SELECT COUNT(*) FROM deliveries", 0),
        ("SELECT COUNT(*) FROM group_members WHERE device_id NOT IN (SELECT id FROM devices)", 0),
        ("SELECT COUNT(*) FROM deliveries WHERE message_id NOT IN (SELECT id FROM messages)", 0),
        ("SELECT COUNT(*) FROM messages WHERE group_key NOT IN (SELECT group_key FROM group_keys)", 0),
        ("SELECT COUNT(*) FROM deliveries WHERE queue NOT IN (SELECT queue FROM device_queues)", 0),
        ("SELECT COUNT(*) FROM device_queues WHERE device_id NOT IN (SELECT id FROM devices)", 0),
        ("SELECT COUNT(*) FROM group_keys WHERE group_id NOT IN (SELECT id FROM mls_groups)", 0),
    ] {
        assert_eq!(raw_count(&h.url, sql).await?, expected, "{sql}");
    }
    if h.url.starts_with("sqlite:") {
        assert_eq!(raw_count(&h.url, "SELECT COUNT(*) FROM pragma_foreign_key_check").await?, 0, "SQLite's own check");
    }
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
    only_paired_unrevoked_devices_are_active,
    a_node_learns_when_schedules_were_set,
    key_packages_are_claimed_once_and_the_last_resort_is_kept,
    a_commit_moves_its_group_on_once,
    queues_are_per_device_and_a_message_goes_when_all_acknowledged,
    a_large_batch_gives_each_append_its_own_ids,
    deleting_a_family_deletes_its_groups_queues_and_key_packages,
    the_writer_leaves_nothing_dangling,
);

/// SQLite only: a new database is made with the page size the group commit was measured
/// with (see `connect.rs`); sqlx must set it before it turns on WAL, or it is ignored.
#[tokio::test]
async fn a_new_sqlite_database_has_8_kib_pages() -> TestResult {
    let h = sqlite().await?;
    assert_eq!(raw_count(&h.url, "PRAGMA page_size").await?, 8192);
    assert_eq!(raw_count(&h.url, "SELECT COUNT(*) FROM pragma_journal_mode WHERE journal_mode = 'wal'").await?, 1);
    h.store.close().await;
    Ok(())
}

/// SQLite only: the queue table is its own primary key (WITHOUT ROWID), as measured in
/// migration 10: a rowid table would be one more b-tree for the writer to change per entry.
#[tokio::test]
async fn sqlite_s_queue_table_is_its_primary_key() -> TestResult {
    let h = sqlite().await?;
    let sql = "SELECT COUNT(*) FROM pragma_table_list WHERE name = 'deliveries' AND wr = 1";
    assert_eq!(raw_count(&h.url, sql).await?, 1);
    h.store.close().await;
    Ok(())
}

// ---- media ---------------------------------------------------------------------------------
// Scenarios of their own module (the same `store_suite!` expansion), so that this section
// is appended without touching the list above.

mod media_suite {
    use super::*;
    use cubby_store::{ChunkOutcome, DeviceStore, MediaChunk, MediaId, MediaStore, NewMedia};

    fn media_id(n: u8) -> MediaId {
        MediaId::from_random([n; 16])
    }

    fn new_media(id: &MediaId, group: &GroupRow, uploader: DeviceId, size: i64, created_at: i64, expires_at: i64) -> NewMedia {
        NewMedia { id: id.clone(), family_id: group.family_id, group_id: group.id.clone(), uploader, size, created_at, expires_at }
    }

    fn chunk(id: &MediaId, start: i64, length: i64) -> MediaChunk {
        MediaChunk { start, length, object_key: format!("media/{id}/{start:020}") }
    }

    /// A complete blob of `size` bytes in one chunk.
    async fn complete(h: &Harness, id: &MediaId, group: &GroupRow, uploader: DeviceId, expires_at: i64) -> TestResult {
        h.store.create_media(&new_media(id, group, uploader, 8, 100, expires_at)).await?;
        let stored = h.store.add_media_chunk(id, &chunk(id, 0, 8), 150).await?;
        assert_eq!(stored, ChunkOutcome::Stored { received: 8, completed: true });
        Ok(())
    }

    pub(super) async fn uploads_resume_at_their_offset_and_completion_fixes_the_recipients(h: Harness) -> TestResult {
        let (f, devices) = family_with_devices(&h, 1, 4).await?;
        let (a, b, c, outsider) = (devices[0], devices[1], devices[2], devices[3]);
        let group = group_row(1, f.id);
        assert!(h.store.create_group(&group, &[a, b, c]).await?);
        let id = media_id(1);
        h.store.create_media(&new_media(&id, &group, a, 10, 100, 10_000)).await?;
        assert_eq!(h.store.open_uploads(a).await?, 1);
        assert!(h.store.media(&id).await?.is_some_and(|m| m.received == 0 && m.completed_at.is_none()));

        let store = &h.store;
        assert_eq!(store.add_media_chunk(&id, &chunk(&id, 0, 4), 110).await?, ChunkOutcome::Stored { received: 4, completed: false });
        // A retry of the same chunk, a gap, and a chunk past the declared size: all refused.
        assert_eq!(store.add_media_chunk(&id, &chunk(&id, 0, 4), 111).await?, ChunkOutcome::WrongOffset { received: 4 });
        assert_eq!(store.add_media_chunk(&id, &chunk(&id, 6, 4), 112).await?, ChunkOutcome::WrongOffset { received: 4 });
        assert_eq!(store.add_media_chunk(&id, &chunk(&id, 4, 7), 113).await?, ChunkOutcome::WrongOffset { received: 4 });
        assert!(!store.is_media_recipient(&id, b).await?, "recipients are fixed when the upload completes");
        assert_eq!(store.add_media_chunk(&id, &chunk(&id, 4, 6), 120).await?, ChunkOutcome::Stored { received: 10, completed: true });
        assert_eq!(store.add_media_chunk(&id, &chunk(&id, 10, 1), 121).await?, ChunkOutcome::WrongOffset { received: 10 });
        assert_eq!(store.add_media_chunk(&media_id(9), &chunk(&media_id(9), 0, 1), 121).await?, ChunkOutcome::Gone);

        let row = store.media(&id).await?.ok_or("the blob is gone")?;
        assert_eq!((row.received, row.completed_at, row.uploader, row.family_id), (10, Some(120), Some(a), f.id));
        let chunks = store.media_chunks(&id).await?;
        assert_eq!(chunks, vec![chunk(&id, 0, 4), chunk(&id, 4, 6)]);
        assert_eq!(store.open_uploads(a).await?, 0);
        for (device, expected) in [(a, false), (b, true), (c, true), (outsider, false)] {
            assert_eq!(store.is_media_recipient(&id, device).await?, expected, "{device}");
        }
        assert_eq!(store.media(&media_id(9)).await?, None);
        Ok(())
    }

    pub(super) async fn a_blob_is_due_when_all_fetched_expired_or_abandoned(h: Harness) -> TestResult {
        let (f, devices) = family_with_devices(&h, 1, 3).await?;
        let (a, b, c) = (devices[0], devices[1], devices[2]);
        let group = group_row(1, f.id);
        assert!(h.store.create_group(&group, &[a, b, c]).await?);
        let store = &h.store;

        let fetched = media_id(1);
        complete(&h, &fetched, &group, a, 10_000).await?;
        assert!(store.due_media(200, 0, 10).await?.is_empty());
        assert!(!store.record_media_fetch(&fetched, b, 300).await?, "c still waits");
        assert!(!store.record_media_fetch(&fetched, b, 301).await?, "fetching twice counts once");
        assert!(!store.record_media_fetch(&fetched, a, 302).await?, "the uploader is no recipient");
        assert!(store.is_media_recipient(&fetched, b).await?, "a recipient may fetch again until the blob goes");
        assert!(store.record_media_fetch(&fetched, c, 303).await?, "everyone fetched it");
        assert_eq!(store.due_media(400, 0, 10).await?, vec![fetched.clone()]);
        assert!(store.delete_media(&fetched).await?);
        assert!(!store.delete_media(&fetched).await?);

        let expiring = media_id(2);
        complete(&h, &expiring, &group, a, 500).await?;
        assert!(store.due_media(499, 0, 10).await?.is_empty());
        assert_eq!(store.due_media(500, 0, 10).await?, vec![expiring.clone()]);
        assert!(store.delete_media(&expiring).await?);

        let abandoned = media_id(3);
        store.create_media(&new_media(&abandoned, &group, a, 8, 100, 10_000)).await?;
        assert!(store.due_media(200, 100, 10).await?.is_empty(), "an upload may take its time");
        assert_eq!(store.due_media(200, 101, 10).await?, vec![abandoned.clone()]);
        assert!(store.delete_media(&abandoned).await?);

        // A recipient that can no longer fetch (revoked) is waited for by no one.
        let orphaned = media_id(4);
        complete(&h, &orphaned, &group, a, 10_000).await?;
        assert!(!store.record_media_fetch(&orphaned, b, 300).await?);
        assert!(h.store.revoke_device(f.id, c, 310).await?);
        assert_eq!(store.due_media(400, 0, 10).await?, vec![orphaned.clone()]);
        assert!(store.delete_media(&orphaned).await?);
        for sql in ["SELECT COUNT(*) FROM media", "SELECT COUNT(*) FROM media_chunks", "SELECT COUNT(*) FROM media_recipients"] {
            assert_eq!(raw_count(&h.url, sql).await?, 0, "{sql}: deleting a blob deletes its rows");
        }
        Ok(())
    }

    pub(super) async fn deleting_a_family_deletes_its_media_rows(h: Harness) -> TestResult {
        let (f, devices) = family_with_devices(&h, 1, 2).await?;
        let (other, other_devices) = family_with_devices(&h, 10, 2).await?;
        let (group, other_group) = (group_row(1, f.id), group_row(2, other.id));
        assert!(h.store.create_group(&group, &devices).await?);
        assert!(h.store.create_group(&other_group, &other_devices).await?);
        complete(&h, &media_id(1), &group, devices[0], 10_000).await?;
        complete(&h, &media_id(2), &other_group, other_devices[0], 10_000).await?;
        assert!(h.store.delete_family(f.id).await?);
        assert_eq!(h.store.media(&media_id(1)).await?, None);
        assert!(h.store.media(&media_id(2)).await?.is_some());
        for (sql, left) in [
            ("SELECT COUNT(*) FROM media", 1),
            ("SELECT COUNT(*) FROM media_chunks", 1),
            ("SELECT COUNT(*) FROM media_recipients", 1),
        ] {
            assert_eq!(raw_count(&h.url, sql).await?, left, "{sql}: only the other family's rows remain");
        }
        Ok(())
    }

    store_suite!(
        uploads_resume_at_their_offset_and_completion_fixes_the_recipients,
        a_blob_is_due_when_all_fetched_expired_or_abandoned,
        deleting_a_family_deletes_its_media_rows,
    );
}

// ---- content store ---------------------------------------------------------------------------

mod content_suite {
    use super::*;
    use cubby_core::ChildId;
    use cubby_store::{
        ChildRow, ContentStore, DownloadRow, FileStored, NewApproval, NewPackage, PublisherRow, Submitted,
    };

    fn publisher(id: &str) -> PublisherRow {
        PublisherRow { id: id.to_owned(), name: format!("{id} name"), public_key: vec![7; 32], created_at: 1 }
    }

    fn package(publisher: &str, id: &str, (major, minor, patch): (i64, i64, i64), files: usize) -> NewPackage {
        NewPackage {
            package_id: id.to_owned(),
            version: format!("{major}.{minor}.{patch}"),
            major,
            minor,
            patch,
            publisher_id: publisher.to_owned(),
            kind: "content".to_owned(),
            manifest: format!("manifest of {id} {major}.{minor}.{patch}").into_bytes(),
            signature: vec![1; 64],
            files: (0..files).map(|i| (10, format!("{i:064x}"))).collect(),
            created_at: 5,
        }
    }

    async fn child(h: &Harness, family: FamilyId) -> Result<ChildId, Box<dyn std::error::Error + Send + Sync>> {
        let id = ChildId::random();
        let row = ChildRow { id, family_id: family, created_at: 1, nickname_sealed: vec![1], age_band_sealed: vec![2] };
        h.store.create_child(&row, &key(KeyOwner::Child(id), "m1", b"k")).await?;
        Ok(id)
    }

    pub(super) async fn packages_need_newer_versions_and_publish_with_their_last_file(h: Harness) -> TestResult {
        let store = &h.store;
        assert!(store.add_publisher(&publisher("books")).await?);
        assert!(!store.add_publisher(&publisher("books")).await?, "a publisher is registered once");
        assert!(store.add_publisher(&publisher("squatter")).await?);
        assert_eq!(store.publisher("books").await?.map(|p| p.name), Some("books name".to_owned()));

        assert_eq!(store.submit_package(&package("books", "org.a", (1, 9, 0), 2)).await?, Submitted::Created);
        // Not newer than the pending 1.9.0 (compared as numbers), or the same version again.
        for version in [(1, 9, 0), (1, 8, 99), (0, 99, 99)] {
            assert_eq!(store.submit_package(&package("books", "org.a", version, 1)).await?, Submitted::NotNewer, "{version:?}");
        }
        assert_eq!(store.submit_package(&package("squatter", "org.a", (9, 0, 0), 1)).await?, Submitted::OtherPublisher);
        assert_eq!(raw_count(&h.url, "SELECT COUNT(*) FROM packages").await?, 1, "refusals store nothing");
        assert_eq!(raw_count(&h.url, "SELECT COUNT(*) FROM package_files").await?, 2);

        assert_eq!(store.missing_files("org.a", "1.9.0").await?, vec![0, 1]);
        assert_eq!(store.record_file("org.a", "1.9.0", 1, 10).await?, FileStored::Recorded { published: false });
        assert_eq!(store.record_file("org.a", "1.9.0", 1, 11).await?, FileStored::AlreadyStored);
        assert_eq!(store.record_file("org.a", "1.9.0", 2, 11).await?, FileStored::Unknown);
        assert!(store.published_packages().await?.is_empty());
        assert_eq!(store.record_file("org.a", "1.9.0", 0, 12).await?, FileStored::Recorded { published: true });
        let published = store.published_packages().await?;
        assert_eq!(published.len(), 1);
        assert_eq!((published[0].published_at, published[0].publisher_name.as_str()), (Some(12), "books name"));
        assert_eq!(store.submit_package(&package("books", "org.a", (1, 10, 0), 1)).await?, Submitted::Created);
        Ok(())
    }

    pub(super) async fn approvals_and_downloads_are_family_data_and_counts_are_not(h: Harness) -> TestResult {
        let store = &h.store;
        let (f, devices) = family_with_devices(&h, 1, 1).await?;
        let kid = child(&h, f.id).await?;
        store.add_publisher(&publisher("books")).await?;
        store.submit_package(&package("books", "org.a", (1, 0, 0), 1)).await?;
        store.record_file("org.a", "1.0.0", 0, 10).await?;
        let approval = NewApproval {
            family_id: f.id,
            child_id: kid,
            package_id: "org.a".to_owned(),
            version: "1.0.0".to_owned(),
            publisher_id: "books".to_owned(),
            price_cents: None,
            currency: None,
            at: 20,
        };
        let first = store.approve_title(&approval).await?;
        assert_eq!((first.approved_at, first.granted_at), (20, Some(20)));
        let again = store.approve_title(&NewApproval { at: 30, ..approval.clone() }).await?;
        assert_eq!(again.approved_at, 20, "approving twice keeps the first approval");
        assert_eq!(store.child_approvals(f.id, kid).await?.len(), 1);
        let download = DownloadRow {
            family_id: f.id,
            child_id: Some(kid),
            device_id: devices[0],
            package_id: "org.a".to_owned(),
            version: "1.0.0".to_owned(),
            publisher_id: "books".to_owned(),
            at: 40,
        };
        assert!(store.record_download(&download).await?);
        assert!(!store.record_download(&DownloadRow { at: 41, ..download.clone() }).await?, "counted once per device");
        assert_eq!(store.family_downloads(f.id).await?, vec![download]);
        let counts = |s: &[cubby_store::PublisherStat]| s.iter().map(|s| (s.downloads, s.approvals)).collect::<Vec<_>>();
        assert_eq!(counts(&store.publisher_stats().await?), vec![(1, 1)]);

        assert!(!store.withdraw_title(f.id, ChildId::random(), "org.a").await?);
        assert!(store.withdraw_title(f.id, kid, "org.a").await?);
        assert!(store.child_approvals(f.id, kid).await?.is_empty());
        store.approve_title(&approval).await?;
        assert!(store.delete_family(f.id).await?);
        for sql in [
            "SELECT COUNT(*) FROM title_approvals",
            "SELECT COUNT(*) FROM title_entitlements",
            "SELECT COUNT(*) FROM package_downloads",
        ] {
            assert_eq!(raw_count(&h.url, sql).await?, 0, "{sql}: the family's rows go with it");
        }
        assert_eq!(counts(&store.publisher_stats().await?), vec![(1, 2)], "the publisher's counts stay");
        Ok(())
    }

    store_suite!(
        packages_need_newer_versions_and_publish_with_their_last_file,
        approvals_and_downloads_are_family_data_and_counts_are_not,
    );
}

/// A database made before queue keys (migration 10): its queues, their messages and the
/// order of message ids must come through the migration whole, on either engine.
async fn queues_come_through_the_queue_keys_migration(url: &str) -> TestResult {
    let a = DeviceId::random();
    let b = DeviceId::random();
    let family = FamilyId::random();
    {
        let migrations = if url.starts_with("sqlite:") { sqlx::migrate!("./migrations/sqlite") } else { sqlx::migrate!("./migrations/postgres") };
        let before_keys = sqlx::migrate::Migrator {
            migrations: migrations.migrations.iter().filter(|m| m.version < 10).cloned().collect(),
            ..migrations
        };
        // Blobs are spelt differently by each engine; everything else is the same SQL.
        let blob = |hex: &str| if url.starts_with("sqlite:") { format!("X'{hex}'") } else { format!("'\\x{hex}'::bytea") };
        let group = blob(&"07".repeat(16));
        let mut statements = vec![
            format!("INSERT INTO families (id, created_at, name_sealed) VALUES ('{family}', 1, {})", blob("01")),
            format!("INSERT INTO mls_groups (id, family_id, epoch, public_state, created_at) VALUES ({group}, '{family}', 0, {}, 1)", blob("02")),
        ];
        for (n, device) in [a, b].iter().enumerate() {
            statements.push(format!(
                "INSERT INTO devices (id, family_id, kind, public_key, name_sealed, software_version, paired_at) \
                 VALUES ('{device}', '{family}', 'toy', {}, {}, '1', {n})",
                blob(&format!("a{n}")),
                blob("03"),
            ));
        }
        for id in 1..=3 {
            statements.push(format!(
                "INSERT INTO messages (id, group_id, sender_device, kind, payload, urgent, created_at, expires_at) \
                 VALUES ({id}, {group}, NULL, 'application', {}, FALSE, 5, 10000)",
                blob(&format!("0{id}")),
            ));
        }
        statements.extend([
            format!("INSERT INTO deliveries (device_id, message_id) VALUES ('{a}', 1), ('{a}', 2), ('{b}', 2)"),
            // The newest message went to everyone already: its id must not come back.
            "DELETE FROM messages WHERE id = 3".to_owned(),
        ]);
        if url.starts_with("sqlite:") {
            let pool = sqlx::SqlitePool::connect(&format!("{url}?mode=rwc")).await?;
            before_keys.run(&pool).await?;
            for sql in statements {
                sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await?;
            }
            pool.close().await;
        } else {
            let pool = sqlx::PgPool::connect(url).await?;
            before_keys.run(&pool).await?;
            for sql in statements {
                sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await?;
            }
            // BIGSERIAL only moves on nextval: as if the three had been inserted without ids.
            sqlx::query("SELECT setval('messages_id_seq', 3)").execute(&pool).await?;
            pool.close().await;
        }
    }

    let store = SqlStore::connect(url).await?;
    let queued = store.queued_for(a, 0, 100).await?;
    assert_eq!(queued.iter().map(|m| (m.id, m.payload.clone())).collect::<Vec<_>>(), [(1, vec![1]), (2, vec![2])]);
    assert!(queued.iter().all(|m| m.group_id == vec![7; 16]), "{queued:?}");
    assert_eq!(store.queued_for(b, 0, 100).await?.iter().map(|m| m.id).collect::<Vec<_>>(), [2]);

    let group = GroupRow { id: vec![7; 16], family_id: family, epoch: 0, public_state: vec![2], created_at: 1 };
    let outcomes = store.append(&[Append { epoch_change: None, messages: vec![message(&group, MessageKind::Application, b"new", &[b], 10_000)] }]).await?;
    let [Appended::Stored(ids)] = &outcomes[..] else { return Err(format!("{outcomes:?}").into()) };
    assert!(ids[0] > 3, "a message id came back after the migration: {ids:?}");
    assert_eq!(store.queued_for(b, 0, 100).await?.iter().map(|m| m.id).collect::<Vec<_>>(), [2, ids[0]]);

    // Acknowledged by both, message 2 goes; a device's queue goes with the device.
    store.acknowledge(a, &[1, 2]).await?;
    store.acknowledge(b, &[2]).await?;
    assert_eq!(raw_count(url, "SELECT COUNT(*) FROM messages").await?, 1);
    assert_eq!(raw_execute(url, "DELETE FROM families").await?, 1);
    for table in ["SELECT COUNT(*) FROM device_queues", "SELECT COUNT(*) FROM group_keys", "SELECT COUNT(*) FROM messages", "SELECT COUNT(*) FROM deliveries"] {
        assert_eq!(raw_count(url, table).await?, 0, "{table}");
    }
    Ok(())
}

#[tokio::test]
async fn queues_come_through_the_queue_keys_migration_on_sqlite() -> TestResult {
    let dir = tempfile::tempdir()?;
    queues_come_through_the_queue_keys_migration(&format!("sqlite://{}", dir.path().join("cubby.db").display())).await
}

#[tokio::test]
async fn queues_come_through_the_queue_keys_migration_on_postgres() -> TestResult {
    queues_come_through_the_queue_keys_migration(&cubby_store::testing::fresh_postgres_database().await?).await
}
