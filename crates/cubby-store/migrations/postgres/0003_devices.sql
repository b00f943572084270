-- Devices: pairing requests (RFC 8628 style), paired devices with their public keys,
-- single-use sign-in challenges and short-lived access tokens. No secret from which a
-- device's credential could be rebuilt is kept: only public keys and hashes of tokens.

CREATE TABLE pairing_requests (
    device_code_hash  BYTEA PRIMARY KEY,         -- SHA-256 of the toy's device code
    user_code_index   BYTEA NOT NULL UNIQUE,     -- HMAC of the code shown on the toy
    public_key        BYTEA NOT NULL,            -- the toy's Ed25519 public key
    kind              TEXT NOT NULL,            -- toy | app
    software_version  TEXT NOT NULL,
    created_at        BIGINT NOT NULL,
    expires_at        BIGINT NOT NULL,
    last_poll_at      BIGINT NOT NULL,
    status            TEXT NOT NULL,            -- pending | approved | denied
    device_id         TEXT,                     -- set on approval
    family_id         TEXT REFERENCES families (id) ON DELETE CASCADE,
    child_id          TEXT,
    account_id        TEXT,
    name_sealed       BYTEA
);

CREATE TABLE devices (
    id                 TEXT PRIMARY KEY,
    family_id          TEXT NOT NULL REFERENCES families (id) ON DELETE CASCADE,
    child_id           TEXT REFERENCES children (id) ON DELETE CASCADE,   -- a toy's child
    account_id         TEXT REFERENCES accounts (id) ON DELETE CASCADE,   -- an app's guardian
    kind               TEXT NOT NULL,
    public_key         BYTEA NOT NULL UNIQUE,
    name_sealed        BYTEA NOT NULL,           -- sealed with the family's data key
    software_version   TEXT NOT NULL,
    paired_at          BIGINT NOT NULL,
    last_seen_at       BIGINT,
    revoked_at         BIGINT,
    wipe_requested_at  BIGINT
);

CREATE INDEX devices_by_family ON devices (family_id);

CREATE TABLE device_challenges (
    challenge_hash  BYTEA PRIMARY KEY,
    device_id       TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    family_id       TEXT NOT NULL,
    expires_at      BIGINT NOT NULL
);

CREATE TABLE device_tokens (
    token_hash  BYTEA PRIMARY KEY,
    device_id   TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    family_id   TEXT NOT NULL,
    expires_at  BIGINT NOT NULL
);

CREATE INDEX device_tokens_by_device ON device_tokens (device_id);
