-- Integer keys in the two tables the message writer changes at every commit. Each message
-- carried its group's id (a 16-byte blob, indexed for the cascade) and each queue entry its
-- device's (36 characters, first in the primary key): index entries several times the size
-- of the integers, so more pages dirtied, checksummed and copied per commit, and slower
-- comparisons. With integers the writer did a quarter less work per relayed message
-- (BENCHMARKS.md). Ids stay what every other table and the API use; the keys below are
-- looked up from them and never leave the store.

-- A device's queue. AUTOINCREMENT: a key is never given to a second device.
CREATE TABLE device_queues (
    queue      INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id  TEXT NOT NULL UNIQUE REFERENCES devices (id) ON DELETE CASCADE
) STRICT;

INSERT INTO device_queues (device_id) SELECT id FROM devices ORDER BY paired_at, id;

-- A group's key in the messages table; it goes with the group, and its messages with it.
CREATE TABLE group_keys (
    group_key  INTEGER PRIMARY KEY AUTOINCREMENT,
    group_id   BLOB NOT NULL UNIQUE REFERENCES mls_groups (id) ON DELETE CASCADE
) STRICT;

INSERT INTO group_keys (group_id) SELECT id FROM mls_groups ORDER BY created_at, id;

-- SQLite cannot change a column in place: both tables are made anew and their rows copied.
CREATE TABLE messages_keyed (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,   -- queue order; never reused (cursors)
    group_key      INTEGER NOT NULL REFERENCES group_keys (group_key) ON DELETE CASCADE,
    sender_device  TEXT,                    -- none for the server's own; the sender may be gone
    kind           TEXT NOT NULL,           -- application | commit | proposal | welcome
    payload        BLOB NOT NULL,
    urgent         INTEGER NOT NULL CHECK (urgent IN (0, 1)),   -- a boolean: passes quiet hours
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL
) STRICT;

INSERT INTO messages_keyed (id, group_key, sender_device, kind, payload, urgent, created_at, expires_at)
SELECT m.id, g.group_key, m.sender_device, m.kind, m.payload, m.urgent, m.created_at, m.expires_at
FROM messages m JOIN group_keys g ON g.group_id = m.group_id;

-- The new table goes on from the old one's last id, even if that message is gone: a
-- device's cursor must never see an id again.
INSERT INTO sqlite_sequence (name, seq)
SELECT 'messages_keyed', seq FROM sqlite_sequence WHERE name = 'messages'
AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'messages_keyed');
UPDATE sqlite_sequence SET seq = MAX(seq, (SELECT seq FROM sqlite_sequence WHERE name = 'messages'))
WHERE name = 'messages_keyed' AND EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'messages');

-- The queues: one row per message and device still to receive it. WITHOUT ROWID: the
-- primary key is the table, one b-tree fewer to change for each entry written or taken.
CREATE TABLE deliveries_keyed (
    queue       INTEGER NOT NULL REFERENCES device_queues (queue) ON DELETE CASCADE,
    message_id  INTEGER NOT NULL REFERENCES messages_keyed (id) ON DELETE CASCADE,
    PRIMARY KEY (queue, message_id)
) STRICT, WITHOUT ROWID;

INSERT INTO deliveries_keyed (queue, message_id)
SELECT q.queue, d.message_id FROM deliveries d JOIN device_queues q ON q.device_id = d.device_id;

-- Children first: nothing refers to deliveries, and once it is gone nothing to messages.
DROP TABLE deliveries;
DROP TABLE messages;
ALTER TABLE messages_keyed RENAME TO messages;
ALTER TABLE deliveries_keyed RENAME TO deliveries;

CREATE INDEX messages_by_expiry ON messages (expires_at);
CREATE INDEX messages_by_group ON messages (group_key);   -- for the cascade from group_keys
CREATE INDEX deliveries_by_message ON deliveries (message_id);
