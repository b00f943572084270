-- Quiet hours and daily limits per child. The schedule says when a child is at school
-- or asleep, so it is sealed with the family's data key like everything personal.

CREATE TABLE quiet_hours (
    child_id          TEXT PRIMARY KEY REFERENCES children (id) ON DELETE CASCADE,
    family_id         TEXT NOT NULL REFERENCES families (id) ON DELETE CASCADE,
    schedule_sealed   BYTEA NOT NULL,
    updated_at        BIGINT NOT NULL
);

-- Messages the child's toys sent per local day, for the daily limit. Only the count.
CREATE TABLE daily_sends (
    child_id   TEXT NOT NULL REFERENCES children (id) ON DELETE CASCADE,
    day_start  BIGINT NOT NULL,            -- local midnight, ms since the Unix epoch
    sent       BIGINT NOT NULL,
    PRIMARY KEY (child_id, day_start)
);
