//! The people a device may talk with outside its family, and what a child can do about
//! them from its toy: block a contact, report a message to its guardians.

use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::{ConversationId, Envelope, Messenger};
use crate::ClientError;

/// Someone this device may talk with: for a toy, its child's approved contacts; for an
/// adult's app, the children who have the adult as a contact.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Contact {
    /// The toy's side of the contact (to block it); none for an adult's app.
    pub contact_id: Option<String>,
    /// `adult` or `child`.
    pub kind: String,
    pub name: String,
    /// Their devices: invite them to a conversation.
    pub devices: Vec<String>,
}

#[derive(Deserialize)]
struct GroupView {
    group_id: String,
    #[serde(default)]
    supervised: bool,
}

impl Messenger {
    pub async fn contacts(&self) -> Result<Vec<Contact>, ClientError> {
        self.call(Method::GET, "/api/v1/contacts", None, "the contacts").await
    }

    /// Blocks a contact (from a child's toy): they leave every conversation with the child
    /// and cannot come back until a guardian removes the block.
    pub async fn block(&self, contact_id: &str) -> Result<(), ClientError> {
        let _: serde_json::Value = self.call(Method::POST, &format!("/api/v1/contacts/{contact_id}/block"), None, "the block").await?;
        Ok(())
    }

    /// Reports a received message to the child's guardians: its text leaves the device, by
    /// the child's choice, sealed for the guardians; returns the report's id.
    pub async fn report(&self, conversation: &ConversationId, sender: &str, envelope: &Envelope, note: &str) -> Result<String, ClientError> {
        #[derive(Serialize)]
        struct NewReport<'a> {
            group_id: String,
            sender_device: &'a str,
            message_id: &'a str,
            content: String,
            note: &'a str,
        }
        #[derive(Deserialize)]
        struct Created {
            id: String,
        }
        let content = match &envelope.body {
            super::Body::Text { text } => text.clone(),
            other => serde_json::to_string(other).unwrap_or_default(),
        };
        let body = NewReport { group_id: conversation.to_base64(), sender_device: sender, message_id: &envelope.id, content, note };
        let created: Created = self.call(Method::POST, "/api/v1/reports", Some(&body), "the report").await?;
        Ok(created.id)
    }

    /// Whether the server marks the conversation supervised: a child in it has its
    /// guardians reading along (they are members; see [`Messenger::conversations`]).
    pub async fn is_supervised(&self, conversation: &ConversationId) -> Result<bool, ClientError> {
        let groups: Vec<GroupView> = self.call(Method::GET, "/api/v1/groups", None, "the conversations").await?;
        let id = conversation.to_base64();
        Ok(groups.iter().any(|g| g.group_id == id && g.supervised))
    }
}
