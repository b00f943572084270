-- Integer keys in the two tables the message writer changes at every commit. Each message
-- carried its group's id (a 16-byte blob, indexed for the cascade) and each queue entry its
-- device's (36 characters, first in the primary key): index entries several times the size
-- of the integers, so more pages written per commit and slower comparisons. Ids stay what
-- every other table and the API use; the keys below are looked up from them and never
-- leave the store. The same change as SQLite's 0010, which has to copy the tables.

-- A device's queue; an identity is never given out twice.
CREATE TABLE device_queues (
    queue      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id  TEXT NOT NULL UNIQUE REFERENCES devices (id) ON DELETE CASCADE
);

INSERT INTO device_queues (device_id) SELECT id FROM devices ORDER BY paired_at, id;

-- A group's key in the messages table; it goes with the group, and its messages with it.
CREATE TABLE group_keys (
    group_key  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    group_id   BYTEA NOT NULL UNIQUE REFERENCES mls_groups (id) ON DELETE CASCADE
);

INSERT INTO group_keys (group_id) SELECT id FROM mls_groups ORDER BY created_at, id;

ALTER TABLE messages ADD COLUMN group_key BIGINT REFERENCES group_keys (group_key) ON DELETE CASCADE;
UPDATE messages m SET group_key = g.group_key FROM group_keys g WHERE g.group_id = m.group_id;
ALTER TABLE messages ALTER COLUMN group_key SET NOT NULL;
ALTER TABLE messages DROP COLUMN group_id;   -- and messages_by_group with it
CREATE INDEX messages_by_group ON messages (group_key);   -- for the cascade from group_keys

ALTER TABLE deliveries ADD COLUMN queue BIGINT REFERENCES device_queues (queue) ON DELETE CASCADE;
UPDATE deliveries d SET queue = q.queue FROM device_queues q WHERE q.device_id = d.device_id;
ALTER TABLE deliveries ALTER COLUMN queue SET NOT NULL;
ALTER TABLE deliveries DROP COLUMN device_id;   -- and the primary key with it
ALTER TABLE deliveries ADD PRIMARY KEY (queue, message_id);
