-- Devices: pairing requests (RFC 8628 style), paired devices with their public keys,
-- single-use sign-in challenges and short-lived access tokens. No secret from which a
-- device's credential could be rebuilt is kept: only public keys and hashes of tokens.

CREATE TABLE pairing_requests (
    device_code_hash  BLOB PRIMARY KEY,         -- SHA-256 of the toy's device code
    user_code_index   BLOB NOT NULL UNIQUE,     -- HMAC of the code shown on the toy
    public_key        BLOB NOT NULL,            -- the toy's Ed25519 public key
    kind              TEXT NOT NULL,            -- toy | app
    software_version  TEXT NOT NULL,
    created_at        INTEGER NOT NULL,
    expires_at        INTEGER NOT NULL,
    last_poll_at      INTEGER NOT NULL,
    status            TEXT NOT NULL,            -- pending | approved | denied
    device_id         TEXT,                     -- set on approval
    family_id         TEXT REFERENCES families (id) ON DELETE CASCADE,
    child_id          TEXT,
    account_id        TEXT,
    name_sealed       BLOB
) STRICT;

CREATE TABLE devices (
    id                 TEXT PRIMARY KEY,
    family_id          TEXT NOT NULL REFERENCES families (id) ON DELETE CASCADE,
    child_id           TEXT REFERENCES children (id) ON DELETE CASCADE,   -- a toy's child
    account_id         TEXT REFERENCES accounts (id) ON DELETE CASCADE,   -- an app's guardian
    kind               TEXT NOT NULL,
    public_key         BLOB NOT NULL UNIQUE,
    name_sealed        BLOB NOT NULL,           -- sealed with the family's data key
    software_version   TEXT NOT NULL,
    paired_at          INTEGER NOT NULL,
    last_seen_at       INTEGER,
    revoked_at         INTEGER,
    wipe_requested_at  INTEGER
) STRICT;

CREATE INDEX devices_by_family ON devices (family_id);

CREATE TABLE device_challenges (
    challenge_hash  BLOB PRIMARY KEY,
    device_id       TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    family_id       TEXT NOT NULL,
    expires_at      INTEGER NOT NULL
) STRICT;

CREATE TABLE device_tokens (
    token_hash  BLOB PRIMARY KEY,
    device_id   TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    family_id   TEXT NOT NULL,
    expires_at  INTEGER NOT NULL
) STRICT;

CREATE INDEX device_tokens_by_device ON device_tokens (device_id);
