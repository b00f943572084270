//! Quiet hours per child (sealed by the layer above) and the daily send counts that
//! enforce a child's daily limit.

use async_trait::async_trait;
use cubby_core::{ChildId, FamilyId};

use crate::StoreError;

#[async_trait]
pub trait ScheduleStore {
    /// Sets a child's schedule; false if the child is not in this family.
    async fn set_quiet_hours(&self, family: FamilyId, child: ChildId, sealed: &[u8], at: i64) -> Result<bool, StoreError>;
    /// A child's sealed schedule, if it has one.
    async fn quiet_hours(&self, child: ChildId) -> Result<Option<Vec<u8>>, StoreError>;
    /// When each of these children's schedules was last set, for those that have one (any
    /// number of ids, in any order): a node looks for changes made elsewhere with this.
    async fn quiet_hours_set_at(&self, children: &[ChildId]) -> Result<Vec<(ChildId, i64)>, StoreError>;
    /// Removes a child's schedule; false if there was none in this family.
    async fn delete_quiet_hours(&self, family: FamilyId, child: ChildId) -> Result<bool, StoreError>;
    /// Counts one send of the child's toys on the day starting at `day_start`, unless
    /// `limit` is reached (then false, and nothing is counted). Forgets earlier days.
    async fn count_send(&self, child: ChildId, day_start: i64, limit: i64) -> Result<bool, StoreError>;
}
