-- Guardians' accounts, sessions, single-use email tokens, family membership, invites,
-- consent records and child profiles. Personal data is sealed (BLOB) with the owner's
-- data key; lookups go through keyed blind indexes; secrets (tokens) only as hashes.

CREATE TABLE accounts (
    id                TEXT PRIMARY KEY,
    email_index       BYTEA NOT NULL UNIQUE,   -- HMAC of the normalised email
    email_sealed      BYTEA NOT NULL,          -- sealed with the account's data key
    password_hash     TEXT NOT NULL,          -- Argon2id PHC string (salted, peppered)
    email_verified_at BIGINT,
    created_at        BIGINT NOT NULL,
    last_active_at    BIGINT NOT NULL,
    idle_warned_at    BIGINT
);

CREATE TABLE account_keys (
    account_id     TEXT PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    master_key_id  TEXT NOT NULL,
    wrapped_key    BYTEA NOT NULL,
    created_at     BIGINT NOT NULL
);

CREATE TABLE sessions (
    id            TEXT PRIMARY KEY,
    token_hash    BYTEA NOT NULL UNIQUE,       -- SHA-256 of the 256-bit token
    account_id    TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    created_at    BIGINT NOT NULL,
    last_seen_at  BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL            -- absolute expiry
);

CREATE INDEX sessions_by_account ON sessions (account_id);

CREATE TABLE email_tokens (
    token_hash  BYTEA PRIMARY KEY,
    purpose     TEXT NOT NULL,                -- verify_email | reset_password | confirm_consent
    account_id  TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    family_id   TEXT REFERENCES families (id) ON DELETE CASCADE,
    detail      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);

CREATE TABLE family_guardians (
    family_id   TEXT NOT NULL REFERENCES families (id) ON DELETE CASCADE,
    account_id  TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    joined_at   BIGINT NOT NULL,
    PRIMARY KEY (family_id, account_id)
);

CREATE INDEX family_guardians_by_account ON family_guardians (account_id);

CREATE TABLE invites (
    token_hash   BYTEA PRIMARY KEY,
    family_id    TEXT NOT NULL REFERENCES families (id) ON DELETE CASCADE,
    email_index  BYTEA NOT NULL,               -- only this address may accept
    invited_by   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL
);

CREATE TABLE consents (
    id              TEXT PRIMARY KEY,
    family_id       TEXT NOT NULL REFERENCES families (id) ON DELETE CASCADE,
    account_id      TEXT NOT NULL,
    kind            TEXT NOT NULL,            -- collection | third_party
    notice_version  TEXT NOT NULL,
    method          TEXT NOT NULL,
    given_at        BIGINT NOT NULL,
    withdrawn_at    BIGINT
);

CREATE INDEX consents_by_family ON consents (family_id);

CREATE TABLE children (
    id                TEXT PRIMARY KEY,
    family_id         TEXT NOT NULL REFERENCES families (id) ON DELETE CASCADE,
    created_at        BIGINT NOT NULL,
    nickname_sealed   BYTEA NOT NULL,          -- sealed with the child's data key
    age_band_sealed   BYTEA NOT NULL
);

CREATE INDEX children_by_family ON children (family_id);

-- One data key per child, so deleting one child shreds that child alone.
CREATE TABLE child_keys (
    child_id       TEXT PRIMARY KEY REFERENCES children (id) ON DELETE CASCADE,
    family_id      TEXT NOT NULL,
    master_key_id  TEXT NOT NULL,
    wrapped_key    BYTEA NOT NULL,
    created_at     BIGINT NOT NULL
);
