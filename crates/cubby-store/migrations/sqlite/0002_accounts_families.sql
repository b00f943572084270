-- Guardians' accounts, sessions, single-use email tokens, family membership, invites,
-- consent records and child profiles. Personal data is sealed (BLOB) with the owner's
-- data key; lookups go through keyed blind indexes; secrets (tokens) only as hashes.

CREATE TABLE accounts (
    id                TEXT PRIMARY KEY,
    email_index       BLOB NOT NULL UNIQUE,   -- HMAC of the normalised email
    email_sealed      BLOB NOT NULL,          -- sealed with the account's data key
    password_hash     TEXT NOT NULL,          -- Argon2id PHC string (salted, peppered)
    email_verified_at INTEGER,
    created_at        INTEGER NOT NULL,
    last_active_at    INTEGER NOT NULL,
    idle_warned_at    INTEGER
) STRICT;

CREATE TABLE account_keys (
    account_id     TEXT PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    master_key_id  TEXT NOT NULL,
    wrapped_key    BLOB NOT NULL,
    created_at     INTEGER NOT NULL
) STRICT;

CREATE TABLE sessions (
    id            TEXT PRIMARY KEY,
    token_hash    BLOB NOT NULL UNIQUE,       -- SHA-256 of the 256-bit token
    account_id    TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    created_at    INTEGER NOT NULL,
    last_seen_at  INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL            -- absolute expiry
) STRICT;

CREATE INDEX sessions_by_account ON sessions (account_id);

CREATE TABLE email_tokens (
    token_hash  BLOB PRIMARY KEY,
    purpose     TEXT NOT NULL,                -- verify_email | reset_password | confirm_consent
    account_id  TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    family_id   TEXT REFERENCES families (id) ON DELETE CASCADE,
    detail      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE family_guardians (
    family_id   TEXT NOT NULL REFERENCES families (id) ON DELETE CASCADE,
    account_id  TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    joined_at   INTEGER NOT NULL,
    PRIMARY KEY (family_id, account_id)
) STRICT;

CREATE INDEX family_guardians_by_account ON family_guardians (account_id);

CREATE TABLE invites (
    token_hash   BLOB PRIMARY KEY,
    family_id    TEXT NOT NULL REFERENCES families (id) ON DELETE CASCADE,
    email_index  BLOB NOT NULL,               -- only this address may accept
    invited_by   TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
) STRICT;

CREATE TABLE consents (
    id              TEXT PRIMARY KEY,
    family_id       TEXT NOT NULL REFERENCES families (id) ON DELETE CASCADE,
    account_id      TEXT NOT NULL,
    kind            TEXT NOT NULL,            -- collection | third_party
    notice_version  TEXT NOT NULL,
    method          TEXT NOT NULL,
    given_at        INTEGER NOT NULL,
    withdrawn_at    INTEGER
) STRICT;

CREATE INDEX consents_by_family ON consents (family_id);

CREATE TABLE children (
    id                TEXT PRIMARY KEY,
    family_id         TEXT NOT NULL REFERENCES families (id) ON DELETE CASCADE,
    created_at        INTEGER NOT NULL,
    nickname_sealed   BLOB NOT NULL,          -- sealed with the child's data key
    age_band_sealed   BLOB NOT NULL
) STRICT;

CREATE INDEX children_by_family ON children (family_id);

-- One data key per child, so deleting one child shreds that child alone.
CREATE TABLE child_keys (
    child_id       TEXT PRIMARY KEY REFERENCES children (id) ON DELETE CASCADE,
    family_id      TEXT NOT NULL,
    master_key_id  TEXT NOT NULL,
    wrapped_key    BLOB NOT NULL,
    created_at     INTEGER NOT NULL
) STRICT;
