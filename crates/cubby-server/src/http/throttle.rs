//! Throttling of guessable actions (login, sign-up, password reset) that reveals nothing
//! about which accounts exist.
//!
//! Keys are opaque strings chosen by the caller, e.g. `account:<hex of a blind index>` or
//! `addr:<ip>`; the throttle answers the same way whether or not an account lies behind a
//! key, so it cannot be used to enumerate accounts (callers must throttle unknown accounts
//! exactly like known ones).
//!
//! The rule, with the default [`ThrottlePolicy`]: a key gets `free_failures` (5) failed
//! attempts; from then on each further failure blocks it for `base_delay` (2 s) doubled per
//! failure beyond the free ones, capped at `max_delay` (15 min). So after 5 failures within a
//! minute the 6th attempt is refused for 2 s, after the 6th failure for 4 s, then 8 s, …
//! A key's count is forgotten once it has been quiet (no failure, no granted attempt) for
//! `window` (60 s) after its block ended; a block expires by itself; a success clears the key.
//!
//! **An attempt in flight counts as a failure.** [`Throttle::check`] that returns `Ok`
//! counts the attempt straight away, and [`Throttle::record_failure`] afterwards confirms it
//! without counting it twice; [`Throttle::record_success`] clears the key. So parallel
//! requests cannot slip past the limit while earlier attempts are still being verified, and
//! an attempt whose outcome is never recorded (a dropped connection) counts as a failure.
//! Call `check` at most once per key per request, and record at most one outcome.
//!
//! Callers may choose not to call `record_success` on address keys: an attacker holding one
//! account of their own could otherwise clear their address's count by logging in to it.
//!
//! Known limits:
//! - the state is **per process**, in memory: with several `cubby serve` nodes each node
//!   throttles on its own (an attacker spreading attempts over N nodes gets N times the
//!   budget), and a restart forgets every count;
//! - the map holds at most `max_entries` keys; when full, expired entries go first, then the
//!   least recently active ones, so an attacker able to create that many keys can push a
//!   blocked key out (size `max_entries` generously; per-address keys bound this).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How many failures are free and how long the blocks after them last.
#[derive(Clone, Debug)]
pub struct ThrottlePolicy {
    /// Failures allowed before the first block.
    pub free_failures: u32,
    /// How long a key must stay quiet after its block ended for its count to be forgotten.
    pub window: Duration,
    /// The first block, doubled with each further failure.
    pub base_delay: Duration,
    /// The longest block.
    pub max_delay: Duration,
    /// The most keys remembered at once.
    pub max_entries: usize,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        Self {
            free_failures: 5,
            window: Duration::from_secs(60),
            base_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(15 * 60),
            max_entries: 100_000,
        }
    }
}

impl ThrottlePolicy {
    /// The block after `failures` failures (zero while they are free).
    fn delay(&self, failures: u32) -> Duration {
        if failures == 0 || failures < self.free_failures {
            return Duration::ZERO;
        }
        let doublings = failures - self.free_failures;
        let delay = match 1u32.checked_shl(doublings) {
            Some(factor) => self.base_delay.checked_mul(factor).unwrap_or(self.max_delay),
            None => self.max_delay,
        };
        delay.min(self.max_delay)
    }
}

/// One key's state. Times are measured from `last_event` (the latest granted attempt or
/// failure), so no `Instant` arithmetic can overflow.
#[derive(Clone, Debug)]
struct Entry {
    /// Failures plus granted attempts not yet resolved.
    failures: u32,
    /// Granted attempts whose outcome has not been recorded yet.
    pending: u32,
    last_event: Instant,
    /// How long the key is blocked from `last_event`.
    block: Duration,
}

impl Entry {
    fn new(now: Instant) -> Self {
        Self { failures: 0, pending: 0, last_event: now, block: Duration::ZERO }
    }

    fn retry_after(&self, now: Instant) -> Option<Duration> {
        let remaining = self.block.saturating_sub(now.saturating_duration_since(self.last_event));
        (!remaining.is_zero()).then_some(remaining)
    }

    fn expired(&self, now: Instant, window: Duration) -> bool {
        now.saturating_duration_since(self.last_event) >= self.block.saturating_add(window)
    }
}

/// Per-key failure counting with exponential back-off; see the module documentation.
#[derive(Debug)]
pub struct Throttle {
    policy: ThrottlePolicy,
    entries: Mutex<HashMap<String, Entry>>,
}

impl Throttle {
    pub fn new(policy: ThrottlePolicy) -> Self {
        Self { policy, entries: Mutex::new(HashMap::new()) }
    }

    pub fn policy(&self) -> &ThrottlePolicy {
        &self.policy
    }

    /// Ok if an attempt may proceed now (the attempt is then counted until its outcome is
    /// recorded); Err(retry_after) if the key is blocked.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        self.check_at(key, Instant::now())
    }

    /// Records a failed attempt (confirming one granted by [`Self::check`], or counting a
    /// new one if there is none in flight).
    pub fn record_failure(&self, key: &str) {
        self.record_failure_at(key, Instant::now());
    }

    /// Clears the key.
    pub fn record_success(&self, key: &str) {
        self.lock().remove(key);
    }

    /// Checks several keys as one attempt: refused if any is blocked, and then none is
    /// counted; otherwise each is counted (as [`Self::check`]).
    pub fn check_all(&self, keys: &[&str]) -> Result<(), Duration> {
        let now = Instant::now();
        let mut entries = self.lock();
        let mut longest: Option<Duration> = None;
        for key in keys {
            if let Some(wait) = self.entry(&mut entries, key, now).retry_after(now) {
                longest = Some(longest.map_or(wait, |l| l.max(wait)));
            }
        }
        if let Some(wait) = longest {
            return Err(wait);
        }
        for key in keys {
            let entry = self.entry(&mut entries, key, now);
            entry.failures = entry.failures.saturating_add(1);
            entry.pending = entry.pending.saturating_add(1);
            entry.last_event = now;
            entry.block = self.policy.delay(entry.failures);
        }
        Ok(())
    }

    /// Resolves a granted attempt as harmless without forgetting earlier failures: for
    /// keys (such as a client address) that one success must not reset, or an attacker
    /// could interleave logins to their own account with guesses at others.
    pub fn release(&self, key: &str) {
        let now = Instant::now();
        let mut entries = self.lock();
        let entry = self.entry(&mut entries, key, now);
        if entry.pending > 0 {
            entry.pending -= 1;
            entry.failures = entry.failures.saturating_sub(1);
            entry.block = self.policy.delay(entry.failures);
        }
    }

    /// [`Self::check`] at a given time.
    pub fn check_at(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let mut entries = self.lock();
        let entry = self.entry(&mut entries, key, now);
        if let Some(retry_after) = entry.retry_after(now) {
            return Err(retry_after);
        }
        entry.failures = entry.failures.saturating_add(1);
        entry.pending = entry.pending.saturating_add(1);
        entry.last_event = now;
        entry.block = self.policy.delay(entry.failures);
        Ok(())
    }

    /// [`Self::record_failure`] at a given time.
    pub fn record_failure_at(&self, key: &str, now: Instant) {
        let mut entries = self.lock();
        let entry = self.entry(&mut entries, key, now);
        if entry.pending > 0 {
            entry.pending -= 1;
        } else {
            entry.failures = entry.failures.saturating_add(1);
        }
        // The block runs from this failure, and never ends earlier than one already set.
        let remaining = entry.retry_after(now).unwrap_or_default();
        entry.last_event = now;
        entry.block = self.policy.delay(entry.failures).max(remaining);
    }

    /// How many keys are remembered.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // Every update leaves the map consistent, so a panic elsewhere cannot corrupt it.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The key's live entry: a fresh one if it is missing or expired, making room first
    /// if the map is full.
    fn entry<'a>(&self, entries: &'a mut HashMap<String, Entry>, key: &str, now: Instant) -> &'a mut Entry {
        if !entries.contains_key(key) {
            self.make_room(entries, now);
        }
        let entry = entries.entry(key.to_owned()).or_insert_with(|| Entry::new(now));
        if entry.expired(now, self.policy.window) {
            *entry = Entry::new(now);
        }
        entry
    }

    /// Keeps the map below `max_entries` before an insertion: drops expired entries, then,
    /// if still full, the least recently active tenth (evicting in batches keeps the cost of
    /// a flood of new keys amortised constant rather than a scan per request).
    fn make_room(&self, entries: &mut HashMap<String, Entry>, now: Instant) {
        let max = self.policy.max_entries.max(1);
        if entries.len() < max {
            return;
        }
        let window = self.policy.window;
        entries.retain(|_, entry| !entry.expired(now, window));
        if entries.len() < max {
            return;
        }
        let evict = (entries.len() + 1 - max).max(max / 10).min(entries.len());
        let mut by_age: Vec<(Instant, String)> =
            entries.iter().map(|(key, entry)| (entry.last_event, key.clone())).collect();
        by_age.select_nth_unstable_by_key(evict - 1, |(last_event, _)| *last_event);
        for (_, key) in by_age.iter().take(evict) {
            entries.remove(key);
        }
    }
}

impl Default for Throttle {
    fn default() -> Self {
        Self::new(ThrottlePolicy::default())
    }
}

#[cfg(test)]
mod check_all_tests {
    use super::*;

    #[test]
    fn a_blocked_key_refuses_the_attempt_without_counting_the_others() {
        let throttle = Throttle::default();
        for _ in 0..5 {
            assert!(throttle.check_all(&["addr", "acct-a"]).is_ok());
            throttle.record_failure("addr");
            throttle.record_failure("acct-a");
        }
        // The address is blocked: attempts on another account are refused and not counted.
        for _ in 0..10 {
            assert!(throttle.check_all(&["acct-b", "addr"]).is_err());
        }
        assert!(throttle.check_all(&["acct-b"]).is_ok(), "acct-b never failed");
    }

    #[test]
    fn a_released_success_does_not_reset_earlier_failures() {
        let throttle = Throttle::default();
        for _ in 0..4 {
            assert!(throttle.check_all(&["addr"]).is_ok());
            throttle.record_failure("addr");
        }
        for _ in 0..3 {
            assert!(throttle.check_all(&["addr"]).is_ok());
            throttle.release("addr");
        }
        assert!(throttle.check_all(&["addr"]).is_ok(), "the fifth failure is still free");
        throttle.record_failure("addr");
        assert!(throttle.check_all(&["addr"]).is_err(), "the sixth attempt is refused");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    const KEY: &str = "account:00ff";

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    /// One failed attempt the way a handler makes it: check, then record the failure.
    fn fail(throttle: &Throttle, key: &str, now: Instant) -> Result<(), Duration> {
        throttle.check_at(key, now)?;
        throttle.record_failure_at(key, now);
        Ok(())
    }

    #[test]
    fn five_failures_are_allowed_then_the_sixth_attempt_is_refused() -> TestResult {
        let throttle = Throttle::default();
        let start = Instant::now();
        for i in 0..5 {
            fail(&throttle, KEY, start + secs(i)).map_err(|d| format!("attempt {} refused for {d:?}", i + 1))?;
        }
        let retry_after = throttle.check_at(KEY, start + secs(5)).err().ok_or("6th attempt allowed")?;
        assert!(retry_after > Duration::ZERO && retry_after <= secs(2), "{retry_after:?}");
        Ok(())
    }

    #[test]
    fn failures_recorded_without_checks_count_the_same() -> TestResult {
        let throttle = Throttle::default();
        let now = Instant::now();
        for _ in 0..5 {
            throttle.record_failure_at(KEY, now);
        }
        assert_eq!(throttle.check_at(KEY, now), Err(secs(2)));
        Ok(())
    }

    #[test]
    fn retry_after_doubles_with_each_further_failure_and_is_capped() -> TestResult {
        let throttle = Throttle::default();
        let mut now = Instant::now();
        for _ in 0..5 {
            fail(&throttle, KEY, now).map_err(|d| format!("refused for {d:?}"))?;
        }
        let mut seen = Vec::new();
        for _ in 0..15 {
            let retry_after = throttle.check_at(KEY, now).err().ok_or("not blocked")?;
            seen.push(retry_after.as_secs());
            now += retry_after;
            fail(&throttle, KEY, now).map_err(|d| format!("refused after waiting: {d:?}"))?;
        }
        assert_eq!(seen, [2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900, 900, 900, 900, 900]);
        Ok(())
    }

    #[test]
    fn huge_failure_counts_and_delays_do_not_overflow() -> TestResult {
        let policy = ThrottlePolicy { max_delay: Duration::MAX, ..ThrottlePolicy::default() };
        assert_eq!(policy.delay(u32::MAX), Duration::MAX);
        assert_eq!(policy.delay(5 + 40), Duration::MAX);
        let throttle = Throttle::new(policy);
        let now = Instant::now();
        for _ in 0..100 {
            throttle.record_failure_at(KEY, now);
        }
        assert_eq!(throttle.check_at(KEY, now + secs(3600)), Err(Duration::MAX - secs(3600)));
        Ok(())
    }

    #[test]
    fn success_clears_the_key() -> TestResult {
        let throttle = Throttle::default();
        let now = Instant::now();
        for _ in 0..7 {
            throttle.record_failure_at(KEY, now);
        }
        assert!(throttle.check_at(KEY, now).is_err());
        throttle.record_success(KEY);
        for _ in 0..5 {
            fail(&throttle, KEY, now).map_err(|d| format!("refused after success: {d:?}"))?;
        }
        assert!(throttle.check_at(KEY, now).is_err(), "the count starts again from zero");
        Ok(())
    }

    #[test]
    fn a_successful_fifth_attempt_is_not_penalised() -> TestResult {
        let throttle = Throttle::default();
        let now = Instant::now();
        for _ in 0..4 {
            fail(&throttle, KEY, now).map_err(|d| format!("refused: {d:?}"))?;
        }
        throttle.check_at(KEY, now).map_err(|d| format!("5th refused: {d:?}"))?;
        throttle.record_success(KEY);
        throttle.check_at(KEY, now).map_err(|d| format!("refused after success: {d:?}"))?;
        Ok(())
    }

    #[test]
    fn keys_are_independent() -> TestResult {
        let throttle = Throttle::default();
        let now = Instant::now();
        for _ in 0..10 {
            throttle.record_failure_at("account:aa", now);
        }
        assert!(throttle.check_at("account:aa", now).is_err());
        throttle.check_at("account:bb", now).map_err(|d| format!("other account refused: {d:?}"))?;
        throttle.check_at("addr:192.0.2.1", now).map_err(|d| format!("address refused: {d:?}"))?;
        throttle.record_success("account:bb");
        assert!(throttle.check_at("account:aa", now).is_err(), "another key's success clears nothing");
        Ok(())
    }

    #[test]
    fn blocks_expire_by_themselves_and_quiet_keys_are_forgotten() -> TestResult {
        let throttle = Throttle::default();
        let start = Instant::now();
        for _ in 0..6 {
            throttle.record_failure_at(KEY, start);
        }
        assert_eq!(throttle.check_at(KEY, start + secs(1)), Err(secs(3)));
        throttle.check_at(KEY, start + secs(4)).map_err(|d| format!("block did not expire: {d:?}"))?;
        throttle.record_failure_at(KEY, start + secs(4));
        assert_eq!(throttle.check_at(KEY, start + secs(5)), Err(secs(7)), "the count was kept");
        // Quiet for the window after the block ended: forgotten, five free failures again.
        let later = start + secs(4) + secs(8) + secs(60);
        for i in 0..5 {
            fail(&throttle, KEY, later).map_err(|d| format!("attempt {} refused: {d:?}", i + 1))?;
        }
        assert!(throttle.check_at(KEY, later).is_err());
        Ok(())
    }

    #[test]
    fn failures_spread_over_more_than_the_window_stay_free() -> TestResult {
        let throttle = Throttle::default();
        let start = Instant::now();
        for i in 0..20 {
            fail(&throttle, KEY, start + secs(61 * i)).map_err(|d| format!("attempt {} refused: {d:?}", i + 1))?;
        }
        Ok(())
    }

    #[test]
    fn parallel_attempts_in_flight_cannot_exceed_the_free_failures() -> TestResult {
        let throttle = Throttle::default();
        let now = Instant::now();
        let granted = (0..100).filter(|_| throttle.check_at(KEY, now).is_ok()).count();
        assert_eq!(granted, 5, "checks not yet resolved count as attempts");
        for _ in 0..granted {
            throttle.record_failure_at(KEY, now);
        }
        assert_eq!(throttle.check_at(KEY, now), Err(secs(2)), "confirming them does not count twice");
        Ok(())
    }

    #[test]
    fn the_map_never_exceeds_max_entries_and_evicts_expired_then_oldest() -> TestResult {
        let policy = ThrottlePolicy { max_entries: 50, ..ThrottlePolicy::default() };
        let throttle = Throttle::new(policy);
        let start = Instant::now();
        for _ in 0..10 {
            throttle.record_failure_at("account:blocked", start);
        }
        for i in 0..1000u64 {
            throttle.record_failure_at(&format!("addr:{i}"), start + Duration::from_millis(i));
            assert!(throttle.len() <= 50, "{} entries", throttle.len());
        }
        // The oldest entry went first, although it was blocked.
        throttle.check_at("account:blocked", start + secs(2)).map_err(|d| format!("not evicted: {d:?}"))?;
        // The newest entries are still there.
        throttle.record_failure_at("addr:999", start + secs(2));
        for _ in 0..3 {
            throttle.record_failure_at("addr:999", start + secs(2));
        }
        assert!(throttle.check_at("addr:999", start + secs(2)).is_err(), "recent key was evicted");

        // Expired entries make room before any live one is dropped.
        let throttle = Throttle::new(ThrottlePolicy { max_entries: 50, ..ThrottlePolicy::default() });
        for i in 0..25 {
            throttle.record_failure_at(&format!("old:{i}"), start);
        }
        let later = start + secs(61);
        let live: Vec<String> = (0..25).map(|i| format!("live:{i}")).collect();
        for key in &live {
            for _ in 0..6 {
                throttle.record_failure_at(key, later);
            }
        }
        assert_eq!(throttle.len(), 50);
        throttle.record_failure_at("one-more", later);
        assert_eq!(throttle.len(), 26, "only the expired entries were dropped");
        for key in &live {
            assert!(throttle.check_at(key, later).is_err(), "{key} was evicted before expired entries");
        }
        Ok(())
    }
}
