-- Contacts between families, supervision and reports.
--
-- A contact row is one family's approval: "this child of ours may talk with that person".
-- An adult contact is one row; a child-to-child contact is two, one per family, and
-- counts only when both say approved. Nothing here names anyone in clear: the other
-- side is an id, and what a report quotes is sealed with the reporting child's key.

CREATE TABLE contacts (
    id             TEXT PRIMARY KEY,
    family_id      TEXT NOT NULL REFERENCES families (id) ON DELETE CASCADE,
    child_id       TEXT NOT NULL REFERENCES children (id) ON DELETE CASCADE,
    other_account  TEXT REFERENCES accounts (id) ON DELETE CASCADE,
    other_child    TEXT REFERENCES children (id) ON DELETE CASCADE,
    status         TEXT NOT NULL CHECK (status IN ('requested', 'approved', 'blocked')),
    created_at     BIGINT NOT NULL,
    decided_at     BIGINT,
    CHECK ((other_account IS NULL) <> (other_child IS NULL))
);

CREATE UNIQUE INDEX contacts_by_child_account ON contacts (child_id, other_account) WHERE other_account IS NOT NULL;
CREATE UNIQUE INDEX contacts_by_child_child ON contacts (child_id, other_child) WHERE other_child IS NOT NULL;
CREATE INDEX contacts_by_other_child ON contacts (other_child);
CREATE INDEX contacts_by_other_account ON contacts (other_account);
CREATE INDEX contacts_by_family ON contacts (family_id);

-- One-time codes a guardian shares with another family's guardian (child to child).
CREATE TABLE contact_codes (
    code_hash   BYTEA PRIMARY KEY,          -- SHA-256 of the code; the code itself is shown once
    family_id   TEXT NOT NULL REFERENCES families (id) ON DELETE CASCADE,
    child_id    TEXT NOT NULL REFERENCES children (id) ON DELETE CASCADE,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);

-- An adult invited by email; only the account with that address may accept.
CREATE TABLE contact_invites (
    token_hash   BYTEA PRIMARY KEY,
    family_id    TEXT NOT NULL REFERENCES families (id) ON DELETE CASCADE,
    child_id     TEXT NOT NULL REFERENCES children (id) ON DELETE CASCADE,
    email_index  BYTEA NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL
);

-- Guardian oversight: the family's guardians' devices join every conversation of the child.
ALTER TABLE children ADD COLUMN supervised BOOLEAN NOT NULL DEFAULT FALSE;

-- Reports from a child to its guardians. The content is what the child's device chose to
-- send, sealed with the child's data key (shredded with the child). It expires with the
-- family's retention like the conversation it came from.
CREATE TABLE reports (
    id              TEXT PRIMARY KEY,
    family_id       TEXT NOT NULL REFERENCES families (id) ON DELETE CASCADE,
    child_id        TEXT NOT NULL REFERENCES children (id) ON DELETE CASCADE,
    group_id        BYTEA,                 -- the conversation; kept after the group is gone
    content_sealed  BYTEA NOT NULL,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    escalated_at    BIGINT               -- the guardians sent it on to the operator
);

CREATE INDEX reports_by_family ON reports (family_id);
CREATE INDEX reports_by_expiry ON reports (expires_at);

-- Whether the family's devices keep a history of the messages they have shown.
ALTER TABLE families ADD COLUMN keep_history BOOLEAN NOT NULL DEFAULT TRUE;
