-- Messaging: the MLS Delivery Service. KeyPackages waiting to be claimed, each group's
-- public state and members, and one queue per device. Everything here is public MLS data
-- or ciphertext the server cannot read; it all goes with the family (cascades).

-- KeyPackages a device uploaded, claimed once each so that no two groups share one; the
-- last-resort package is handed out only when none is left, and never consumed.
CREATE TABLE key_packages (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,   -- upload order: the oldest is claimed first
    device_id    TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    package      BLOB NOT NULL,                       -- TLS-serialised MlsMessage
    last_resort  INTEGER NOT NULL CHECK (last_resort IN (0, 1))   -- a boolean
) STRICT;

CREATE INDEX key_packages_by_device ON key_packages (device_id, last_resort, id);

-- The server's view of each group: its epoch (a commit applies only to the epoch it was
-- made in, first wins) and its public state (ratchet tree, context; no secrets).
CREATE TABLE mls_groups (
    id            BLOB PRIMARY KEY,      -- the MLS group id, chosen by its creator
    family_id     TEXT NOT NULL REFERENCES families (id) ON DELETE CASCADE,
    epoch         INTEGER NOT NULL,
    public_state  BLOB NOT NULL,
    created_at    INTEGER NOT NULL
) STRICT;

CREATE INDEX mls_groups_by_family ON mls_groups (family_id);

-- Who is in each group as of its epoch, replaced by each commit.
CREATE TABLE group_members (
    group_id   BLOB NOT NULL REFERENCES mls_groups (id) ON DELETE CASCADE,
    device_id  TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, device_id)
) STRICT;

CREATE INDEX group_members_by_device ON group_members (device_id);

-- Messages (ciphertext) kept until every recipient acknowledged them or they expire.
CREATE TABLE messages (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,   -- queue order; never reused (cursors)
    group_id       BLOB NOT NULL REFERENCES mls_groups (id) ON DELETE CASCADE,
    sender_device  TEXT,                    -- none for the server's own; the sender may be gone
    kind           TEXT NOT NULL,           -- application | commit | proposal | welcome
    payload        BLOB NOT NULL,
    urgent         INTEGER NOT NULL CHECK (urgent IN (0, 1)),   -- a boolean: passes quiet hours
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL
) STRICT;

CREATE INDEX messages_by_expiry ON messages (expires_at);
CREATE INDEX messages_by_group ON messages (group_id);   -- for the cascade from mls_groups

-- The queues: one row per message and device still to receive it.
CREATE TABLE deliveries (
    device_id   TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    message_id  INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    PRIMARY KEY (device_id, message_id)
) STRICT;

CREATE INDEX deliveries_by_message ON deliveries (message_id);
