-- Encrypted media (photos, voice clips). The bytes are ciphertext in the blob store, one
-- object per uploaded chunk; the key travels only inside MLS messages, never here. A blob
-- goes when every recipient fetched it, when its family's retention ends, or (unfinished)
-- a day after its upload started; and with its conversation (cascade).

CREATE TABLE media (
    id               TEXT PRIMARY KEY,    -- 128 random bits, hex: unguessable, yet no capability
    family_id        TEXT NOT NULL REFERENCES families (id) ON DELETE CASCADE,   -- the group's owner
    group_id         BLOB NOT NULL REFERENCES mls_groups (id) ON DELETE CASCADE,
    uploader_device  TEXT REFERENCES devices (id) ON DELETE SET NULL,
    size             INTEGER NOT NULL CHECK (size > 0),           -- declared ciphertext size
    received         INTEGER NOT NULL CHECK (received >= 0 AND received <= size),
    created_at       INTEGER NOT NULL,
    completed_at     INTEGER,                                     -- when the last byte arrived
    expires_at       INTEGER NOT NULL
) STRICT;

CREATE INDEX media_by_family ON media (family_id);
CREATE INDEX media_by_group ON media (group_id);        -- for the cascade from mls_groups
CREATE INDEX media_by_expiry ON media (expires_at);
CREATE INDEX media_by_uploader ON media (uploader_device, completed_at);

-- The objects that make up a blob, in order: `length` bytes from `start`.
CREATE TABLE media_chunks (
    media_id    TEXT NOT NULL REFERENCES media (id) ON DELETE CASCADE,
    start       INTEGER NOT NULL,
    length      INTEGER NOT NULL CHECK (length > 0),
    object_key  TEXT NOT NULL,
    PRIMARY KEY (media_id, start)
) STRICT;

-- The devices a complete blob is for (the group's members but the uploader, when the
-- upload completed), and when each fetched it.
CREATE TABLE media_recipients (
    media_id    TEXT NOT NULL REFERENCES media (id) ON DELETE CASCADE,
    device_id   TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    fetched_at  INTEGER,
    PRIMARY KEY (media_id, device_id)
) STRICT;

CREATE INDEX media_recipients_by_device ON media_recipients (device_id);
