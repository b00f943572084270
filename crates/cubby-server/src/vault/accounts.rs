//! Guardians' accounts: the email is sealed with the account's own data key and found
//! by a keyed blind index; deleting the account destroys the key.

use cubby_core::AccountId;
use cubby_crypto::{CryptoError, DataKey};
use cubby_store::{AccountRow, KeyOwner};

use super::{FieldContext, Vault, VaultError, now_millis};

const EMAIL_INDEX: &str = "accounts.email";

fn email_place(row: &str) -> FieldContext<'_> {
    FieldContext { table: "accounts", column: "email", row }
}

impl Vault {
    /// The blind index of a normalised email address.
    pub fn email_index(&self, normalised_email: &str) -> Vec<u8> {
        self.system.blind_index_key(EMAIL_INDEX).index(normalised_email.as_bytes()).to_vec()
    }

    /// Creates an account. A taken email is `StoreError::Conflict`.
    pub async fn create_account(&self, normalised_email: &str, password_hash: String) -> Result<AccountId, VaultError> {
        let id = AccountId::random();
        let key = DataKey::random()?;
        let row_id = id.to_string();
        let now = now_millis();
        let account = AccountRow {
            id,
            email_index: self.email_index(normalised_email),
            email_sealed: key.seal(email_place(&row_id), normalised_email.as_bytes())?,
            password_hash,
            email_verified_at: None,
            created_at: now,
            last_active_at: now,
            idle_warned_at: None,
        };
        let wrapped = self.wrap(&key, KeyOwner::Account(id), now)?;
        self.store.create_account(&account, &wrapped).await?;
        Ok(id)
    }

    /// The account's email address, or `None` if its key is gone.
    pub async fn account_email(&self, account: &AccountRow) -> Result<Option<String>, VaultError> {
        let Some(key) = self.data_key(KeyOwner::Account(account.id)).await? else { return Ok(None) };
        let row_id = account.id.to_string();
        let email = key.open(email_place(&row_id), &account.email_sealed)?;
        String::from_utf8(email).map(Some).map_err(|_| CryptoError::Malformed.into())
    }
}
