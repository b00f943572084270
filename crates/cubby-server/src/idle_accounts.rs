//! Least data, shortest time: accounts nobody has used for `account_idle` are warned by
//! email, and deleted `account_idle_grace` after the warning unless they sign in again
//! (signing in clears the warning). A family whose only guardian is deleted goes too.

use std::time::Duration;

use cubby_core::audit::{Actor, AuditEvent};
use cubby_store::AccountRow;

use crate::ServerConfig;
use crate::http::Services;
use crate::mail::Email;
use crate::vault::{VaultError, now_millis};

#[derive(Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub warned: u32,
    pub deleted: u32,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

/// One pass over the idle accounts.
pub async fn sweep(services: &Services, config: &ServerConfig) -> Result<SweepReport, VaultError> {
    let now = now_millis();
    let store = services.vault.store();
    let mut report = SweepReport::default();
    let idle_before = now - millis(config.account_idle);
    for account in store.idle_accounts(idle_before, 500).await? {
        match account.idle_warned_at {
            None => {
                // Marked first, so a sign-in racing the sweep wins and no warning goes out.
                if store.mark_idle_warned(account.id, now, idle_before).await? {
                    warn(services, config, &account).await?;
                    report.warned += 1;
                }
            }
            Some(warned_at) if now - warned_at >= millis(config.account_idle_grace) => {
                delete(services, &account).await?;
                report.deleted += 1;
            }
            Some(_) => {}
        }
    }
    Ok(report)
}

async fn warn(services: &Services, config: &ServerConfig, account: &AccountRow) -> Result<(), VaultError> {
    if let Some(email) = services.vault.account_email(account).await? {
        let days = config.account_idle_grace.as_secs().div_ceil(86_400);
        let body = format!(
            "Your Cubby account has not been used for a long time. To keep only what is needed, it will be deleted, \
             with its families' data if you are their only guardian, in {days} day(s).\n\n\
             To keep it, simply sign in at {}.\n",
            config.public_url
        );
        let message = Email { to: email, subject: "Your Cubby account will be deleted".to_owned(), body };
        if let Err(error) = services.mailer.send(&message).await {
            tracing::warn!(%error, "could not send an idle-account warning");
        }
    }
    let detail = format!(r#"{{"account":"{}"}}"#, account.id);
    services.vault.audit().append(&AuditEvent::new(Actor::System, "account.idle_warned", None, detail)).await?;
    Ok(())
}

async fn delete(services: &Services, account: &AccountRow) -> Result<(), VaultError> {
    let store = services.vault.store();
    for family in store.families_of(account.id).await? {
        if store.remove_guardian(family, account.id).await? {
            let detail = format!(r#"{{"account":"{}"}}"#, account.id);
            services.vault.audit().append(&AuditEvent::new(Actor::System, "family.guardian_removed_idle", Some(family), detail)).await?;
        } else {
            store.delete_family(family).await?;
            services.vault.audit().append(&AuditEvent::new(Actor::System, "family.deleted_idle", Some(family), "{}")).await?;
        }
    }
    store.delete_account(account.id).await?;
    let detail = format!(r#"{{"account":"{}"}}"#, account.id);
    services.vault.audit().append(&AuditEvent::new(Actor::System, "account.idle_deleted", None, detail)).await?;
    Ok(())
}

/// Sweeps every `idle_sweep_every` until the task is dropped.
pub async fn run(services: Services, config: ServerConfig) {
    loop {
        match sweep(&services, &config).await {
            Ok(report) if report != SweepReport::default() => {
                tracing::info!(warned = report.warned, deleted = report.deleted, "idle accounts swept");
            }
            Ok(_) => {}
            Err(error) => tracing::error!(%error, "idle-account sweep failed"),
        }
        tokio::time::sleep(config.idle_sweep_every).await;
    }
}
