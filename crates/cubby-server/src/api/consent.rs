//! Verifiable parental consent, before any child data: the versioned privacy notice,
//! consent by a pluggable method ("email plus" ships; card or ID checks plug in as
//! [`ConsentMethod`]s), withdrawal, and the separate, off-by-default consent to disclosure
//! to third parties.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use cubby_core::audit::Actor;
use cubby_core::policy::Action;
use cubby_core::privacy_notice::PrivacyNotice;
use cubby_core::{AccountId, ConsentId, ErrorCode, FamilyId};
use cubby_crypto::token_hash;
use cubby_store::ConsentRow;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::accounts::invalid_token;
use super::families::allowed;
use super::support::{Accepted, HOUR_MS, accepted, audit, email_token, send_mail};
use crate::http::auth::Guardian;
use crate::http::{ApiError, ApiJson, AppState, ErrorBody};
use crate::vault::now_millis;

pub const COLLECTION: &str = "collection";
pub const THIRD_PARTY: &str = "third_party";
const CONFIRM_CONSENT: &str = "confirm_consent";

/// A way for a guardian to prove they may consent. `begin` starts it; methods that finish
/// later (a link, a card check) call [`record_consent`] when they succeed.
#[async_trait]
pub trait ConsentMethod: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    async fn begin(&self, state: &AppState, guardian: AccountId, family: FamilyId, notice_version: u32)
    -> Result<(), ApiError>;
}

/// The consent methods this server offers, by name.
pub struct ConsentMethods(BTreeMap<&'static str, Arc<dyn ConsentMethod>>);

impl ConsentMethods {
    pub fn with(methods: Vec<Arc<dyn ConsentMethod>>) -> Self {
        Self(methods.into_iter().map(|m| (m.name(), m)).collect())
    }

    pub fn names(&self) -> Vec<String> {
        self.0.keys().map(|k| (*k).to_owned()).collect()
    }
}

impl Default for ConsentMethods {
    fn default() -> Self {
        Self::with(vec![Arc::new(EmailPlus)])
    }
}

/// "Email plus": a confirmation link to the guardian's verified address; once followed,
/// a second message confirms the consent and says how to withdraw it.
pub struct EmailPlus;

#[async_trait]
impl ConsentMethod for EmailPlus {
    fn name(&self) -> &'static str {
        "email_plus"
    }

    async fn begin(&self, state: &AppState, guardian: AccountId, family: FamilyId, notice_version: u32) -> Result<(), ApiError> {
        let email = guardian_email(state, guardian).await?;
        let detail = format!(r#"{{"notice_version":{notice_version},"method":"email_plus"}}"#);
        let token = email_token(state, CONFIRM_CONSENT, guardian, Some(family), detail, 24 * HOUR_MS).await?;
        let link = format!("{}/confirm-consent?token={token}", state.config.public_url);
        let body = format!(
            "You asked to give parental consent on Cubby, under version {notice_version} of the privacy notice \
             ({}/api/v1/privacy-notice).\n\nTo confirm that you are the child's parent or guardian and consent, \
             open this link within 24 hours:\n{link}\n\n(or send the token {token} to POST /api/v1/consent/confirm)\n\n\
             If you did not ask for this, ignore this message: no consent is recorded.\n",
            state.config.public_url
        );
        send_mail(state, &email, "Confirm your parental consent", body).await
    }
}

async fn guardian_email(state: &AppState, account: AccountId) -> Result<String, ApiError> {
    let row = state.vault.store().account(account).await?.ok_or_else(ApiError::not_found)?;
    state.vault.account_email(&row).await?.ok_or_else(ApiError::not_found)
}

/// The current privacy notice: what is collected, why, for how long, who sees it,
/// parents' rights, and the operator's contact.
#[utoipa::path(get, path = "/api/v1/privacy-notice", tag = "consent",
    responses(
        (status = 200, description = "The notice", content_type = "application/json"),
        (status = 404, description = "Never: listed for the error shape", body = ErrorBody),
    ))]
pub async fn privacy_notice(State(state): State<AppState>) -> ApiJson<PrivacyNotice> {
    ApiJson(state.config.privacy_notice.clone())
}

#[derive(Serialize, ToSchema)]
pub struct ConsentRecord {
    #[schema(value_type = String)]
    pub id: ConsentId,
    #[schema(value_type = String)]
    pub given_by: AccountId,
    pub notice_version: String,
    pub method: String,
    pub given_at: i64,
    pub withdrawn_at: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct ConsentStatus {
    /// True when consent to collection covers the current notice: children may be added.
    pub collection_valid: bool,
    /// True when disclosure to third parties is consented to (off by default).
    pub third_party: bool,
    pub current_notice_version: u32,
    pub methods: Vec<String>,
    /// Every consent record, given and withdrawn.
    pub records: Vec<ConsentRecordWithKind>,
}

#[derive(Serialize, ToSchema)]
pub struct ConsentRecordWithKind {
    pub kind: String,
    #[serde(flatten)]
    pub record: ConsentRecord,
}

fn is_active_for(row: &ConsentRow, kind: &str, notice: &PrivacyNotice) -> bool {
    row.kind == kind && row.withdrawn_at.is_none() && row.notice_version.parse().is_ok_and(|v| notice.covers(v))
}

pub async fn consent_status(state: &AppState, family: FamilyId) -> Result<ConsentStatus, ApiError> {
    let rows = state.vault.store().consents(family).await?;
    let notice = &state.config.privacy_notice;
    Ok(ConsentStatus {
        collection_valid: rows.iter().any(|r| is_active_for(r, COLLECTION, notice)),
        third_party: rows.iter().any(|r| is_active_for(r, THIRD_PARTY, notice)),
        current_notice_version: notice.version,
        methods: consent_methods().names(),
        records: rows
            .into_iter()
            .map(|r| ConsentRecordWithKind {
                kind: r.kind,
                record: ConsentRecord {
                    id: r.id,
                    given_by: r.account_id,
                    notice_version: r.notice_version,
                    method: r.method,
                    given_at: r.given_at,
                    withdrawn_at: r.withdrawn_at,
                },
            })
            .collect(),
    })
}

fn consent_methods() -> ConsentMethods {
    ConsentMethods::default()
}

/// Refuses with `consent_required` unless consent to collection covers the current notice.
pub async fn require_consent(state: &AppState, family: FamilyId) -> Result<(), ApiError> {
    if consent_status(state, family).await?.collection_valid {
        return Ok(());
    }
    Err(ApiError::new(
        ErrorCode::ConsentRequired,
        "a guardian must first consent to the current privacy notice (POST …/consent)",
    ))
}

/// The family's consent status and records.
#[utoipa::path(get, path = "/api/v1/families/{family_id}/consent", tag = "consent",
    params(("family_id" = String, Path)),
    responses(
        (status = 200, body = ConsentStatus),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such family of mine", body = ErrorBody),
    ))]
pub async fn get_consent(
    State(state): State<AppState>,
    guardian: Guardian,
    Path(family): Path<String>,
) -> Result<ApiJson<ConsentStatus>, ApiError> {
    let family = allowed(&guardian, &family, Action::Read)?;
    Ok(ApiJson(consent_status(&state, family).await?))
}

#[derive(Deserialize, ToSchema)]
pub struct GiveConsent {
    /// The notice version the guardian read (must be the current one).
    pub notice_version: u32,
    /// One of the server's methods, e.g. `email_plus`.
    #[schema(example = "email_plus")]
    pub method: String,
}

/// Start giving consent to collection under the current notice, by the chosen method.
#[utoipa::path(post, path = "/api/v1/families/{family_id}/consent", tag = "consent", request_body = GiveConsent,
    params(("family_id" = String, Path)),
    responses(
        (status = 202, description = "Follow the method's next step (for email_plus: the emailed link)", body = Accepted),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such family of mine", body = ErrorBody),
        (status = 409, description = "Not the current notice version", body = ErrorBody),
        (status = 501, description = "Method not offered here", body = ErrorBody),
    ))]
pub async fn give_consent(
    State(state): State<AppState>,
    guardian: Guardian,
    Path(family): Path<String>,
    ApiJson(body): ApiJson<GiveConsent>,
) -> Result<(StatusCode, ApiJson<Accepted>), ApiError> {
    let family = allowed(&guardian, &family, Action::Change)?;
    if body.notice_version != state.config.privacy_notice.version {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "the privacy notice has changed: read the current version and consent to that",
        ));
    }
    let methods = consent_methods();
    let method = methods.0.get(body.method.as_str()).ok_or_else(|| {
        ApiError::new(ErrorCode::MethodUnavailable, format!("this server offers: {}", methods.names().join(", ")))
    })?;
    method.begin(&state, guardian.account, family, body.notice_version).await?;
    audit(&state, Actor::Account(guardian.account), "consent.requested", Some(family), format!(r#"{{"method":"{}"}}"#, method.name()))
        .await?;
    Ok((StatusCode::ACCEPTED, ApiJson(accepted("follow the link we emailed you to confirm"))))
}

#[derive(Deserialize, ToSchema)]
pub struct ConfirmConsent {
    pub token: String,
}

#[derive(Deserialize)]
struct PendingConsent {
    notice_version: u32,
    method: String,
}

/// Confirm consent with the single-use token from the emailed link.
#[utoipa::path(post, path = "/api/v1/consent/confirm", tag = "consent", request_body = ConfirmConsent,
    responses(
        (status = 204, description = "Consent recorded"),
        (status = 400, description = "Unknown, used or expired token", body = ErrorBody),
    ))]
pub async fn confirm_consent(State(state): State<AppState>, ApiJson(body): ApiJson<ConfirmConsent>) -> Result<StatusCode, ApiError> {
    let token = state
        .vault
        .store()
        .take_email_token(&token_hash(&body.token), CONFIRM_CONSENT, now_millis())
        .await?
        .ok_or_else(invalid_token)?;
    let family = token.family_id.ok_or_else(invalid_token)?;
    let pending: PendingConsent = serde_json::from_str(&token.detail).map_err(|_| invalid_token())?;
    record_consent(&state, token.account_id, family, COLLECTION, pending.notice_version, &pending.method).await?;
    let email = guardian_email(&state, token.account_id).await?;
    let body = format!(
        "Your parental consent on Cubby is recorded (privacy notice version {}).\n\nYou can withdraw it at any time \
         in the portal or with DELETE /api/v1/families/{family}/consent: collection then stops.\n",
        pending.notice_version
    );
    send_mail(&state, &email, "Your parental consent is recorded", body).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Records a consent that a method has verified.
pub async fn record_consent(
    state: &AppState,
    account: AccountId,
    family: FamilyId,
    kind: &str,
    notice_version: u32,
    method: &str,
) -> Result<(), ApiError> {
    // Only a current guardian's consent counts: one who left since asking cannot confirm.
    let guardians = state.vault.store().guardians(family).await?;
    if !guardians.iter().any(|g| g.account_id == account) {
        return Err(invalid_token());
    }
    let row = ConsentRow {
        id: ConsentId::random(),
        family_id: family,
        account_id: account,
        kind: kind.to_owned(),
        notice_version: notice_version.to_string(),
        method: method.to_owned(),
        given_at: now_millis(),
        withdrawn_at: None,
    };
    state.vault.store().add_consent(&row).await?;
    let detail = format!(r#"{{"kind":"{kind}","notice_version":{notice_version},"method":"{method}"}}"#);
    audit(state, Actor::Account(account), "consent.given", Some(family), detail).await
}

/// Withdraw consent: collection stops (no new child data; devices stop syncing), and
/// consent to third-party disclosure goes with it.
#[utoipa::path(delete, path = "/api/v1/families/{family_id}/consent", tag = "consent",
    params(("family_id" = String, Path)),
    responses(
        (status = 204, description = "Withdrawn"),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such family of mine", body = ErrorBody),
    ))]
pub async fn withdraw_consent(
    State(state): State<AppState>,
    guardian: Guardian,
    Path(family): Path<String>,
) -> Result<StatusCode, ApiError> {
    let family = allowed(&guardian, &family, Action::Change)?;
    let store = state.vault.store();
    let now = now_millis();
    store.withdraw_consents(family, COLLECTION, now).await?;
    store.withdraw_consents(family, THIRD_PARTY, now).await?;
    audit(&state, Actor::Account(guardian.account), "consent.withdrawn", Some(family), "{}".to_owned()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
pub struct ThirdPartyConsent {
    pub enabled: bool,
}

/// Consent, separately, to disclosure to third parties (off by default).
#[utoipa::path(put, path = "/api/v1/families/{family_id}/third-party-consent", tag = "consent",
    request_body = ThirdPartyConsent, params(("family_id" = String, Path)),
    responses(
        (status = 204, description = "Saved"),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Consent to collection is needed first", body = ErrorBody),
        (status = 404, description = "No such family of mine", body = ErrorBody),
    ))]
pub async fn set_third_party(
    State(state): State<AppState>,
    guardian: Guardian,
    Path(family): Path<String>,
    ApiJson(body): ApiJson<ThirdPartyConsent>,
) -> Result<StatusCode, ApiError> {
    let family = allowed(&guardian, &family, Action::Change)?;
    if body.enabled {
        require_consent(&state, family).await?;
        if !consent_status(&state, family).await?.third_party {
            let version = state.config.privacy_notice.version;
            record_consent(&state, guardian.account, family, THIRD_PARTY, version, "signed_in_guardian").await?;
        }
    } else {
        state.vault.store().withdraw_consents(family, THIRD_PARTY, now_millis()).await?;
        audit(&state, Actor::Account(guardian.account), "consent.third_party_withdrawn", Some(family), "{}".to_owned())
            .await?;
    }
    Ok(StatusCode::NO_CONTENT)
}
