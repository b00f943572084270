//! What a child's quiet hours decide for a queued message at a given moment. The live
//! connection asks this with the current time; the tests ask with any time they like.

use std::time::Duration;

use cubby_core::quiet_hours::QuietHours;
use cubby_store::{MessageKind, QueuedMessage};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Deliver,
    /// Keep it queued until this moment (ms since the Unix epoch), when the window ends.
    HoldUntil(i64),
}

/// Quiet hours hold back application messages that are not a guardian's urgent ones.
/// Group changes always go through: a toy must stay able to read its conversations.
pub fn decide(schedule: Option<&QuietHours>, message: &QueuedMessage, now: i64) -> Decision {
    if message.kind != MessageKind::Application || message.urgent {
        return Decision::Deliver;
    }
    match schedule.and_then(|s| s.quiet_until(now)) {
        Some(until) => Decision::HoldUntil(until),
        None => Decision::Deliver,
    }
}

/// How long until held messages may go.
pub fn release_in(held_until: i64, now: i64) -> Duration {
    Duration::from_millis(u64::try_from(held_until - now).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use cubby_core::quiet_hours::Window;

    use super::*;

    const HOUR: i64 = 3_600_000;
    /// 2026-11-30 00:00 UTC.
    const MIDNIGHT: i64 = 1_796_083_200_000;

    fn bedtime() -> QuietHours {
        QuietHours {
            time_zone: "UTC".into(),
            windows: vec![Window { start: "19:30".into(), end: "07:00".into(), days: vec![] }],
            daily_limit: None,
        }
    }

    fn message(kind: MessageKind, urgent: bool) -> QueuedMessage {
        QueuedMessage { id: 1, group_id: vec![1], sender: None, kind, payload: vec![], urgent, created_at: 0 }
    }

    #[test]
    fn a_message_is_held_through_bedtime_and_released_at_its_end() {
        let schedule = bedtime();
        let text = message(MessageKind::Application, false);
        let morning = MIDNIGHT + 7 * HOUR;
        // 22:00: held until 07:00, and the connection wakes then.
        assert_eq!(decide(Some(&schedule), &text, MIDNIGHT - 2 * HOUR), Decision::HoldUntil(morning));
        assert_eq!(release_in(morning, MIDNIGHT - 2 * HOUR), Duration::from_secs(9 * 3600));
        // 06:59:59.999: still held. 07:00: released.
        assert_eq!(decide(Some(&schedule), &text, morning - 1), Decision::HoldUntil(morning));
        assert_eq!(decide(Some(&schedule), &text, morning), Decision::Deliver);
        assert_eq!(release_in(morning, morning + 5), Duration::ZERO);
    }

    #[test]
    fn urgent_messages_and_group_changes_pass_quiet_hours() {
        let schedule = bedtime();
        let night = MIDNIGHT + HOUR;
        assert_eq!(decide(Some(&schedule), &message(MessageKind::Application, true), night), Decision::Deliver);
        for kind in [MessageKind::Commit, MessageKind::Proposal, MessageKind::Welcome] {
            assert_eq!(decide(Some(&schedule), &message(kind, false), night), Decision::Deliver);
        }
        assert_eq!(decide(None, &message(MessageKind::Application, false), night), Decision::Deliver);
    }
}
