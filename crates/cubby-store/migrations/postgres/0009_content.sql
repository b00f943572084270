-- The learning content store: publishers sign packages (Ed25519 over the manifest's exact
-- bytes); the server keeps the signed bytes as they came, the files in the blob store under
-- packages/<id>/<version>/<index>, and which titles guardians approved for which child.
-- Approvals, entitlements and downloads are the family's data and go with the child or
-- family (cascade); the publishers' counts name no family, child or device and stay.

CREATE TABLE publishers (
    id          TEXT PRIMARY KEY,             -- [a-z0-9-]{2,40}, as in manifests
    name        TEXT NOT NULL,
    public_key  BYTEA NOT NULL CHECK (octet_length(public_key) = 32),   -- Ed25519
    created_at  BIGINT NOT NULL
);

-- A package id belongs to the publisher that first used it, so no other publisher can
-- put a newer version in front of children approved for the title.
CREATE TABLE package_owners (
    package_id    TEXT PRIMARY KEY,
    publisher_id  TEXT NOT NULL REFERENCES publishers (id)
);

CREATE TABLE packages (
    package_id    TEXT NOT NULL,
    version       TEXT NOT NULL,              -- MAJOR.MINOR.PATCH, one spelling per version
    major         BIGINT NOT NULL,           -- the parts, to compare versions numerically
    minor         BIGINT NOT NULL,
    patch         BIGINT NOT NULL,
    publisher_id  TEXT NOT NULL REFERENCES publishers (id),
    kind          TEXT NOT NULL CHECK (kind IN ('content', 'firmware')),
    manifest      BYTEA NOT NULL,              -- the exact bytes the signature covers
    signature     BYTEA NOT NULL,
    created_at    BIGINT NOT NULL,
    published_at  BIGINT,                    -- when the last file arrived; offered from then on
    PRIMARY KEY (package_id, version)
);

CREATE INDEX packages_published ON packages (published_at, package_id);
CREATE INDEX packages_by_publisher ON packages (publisher_id);

-- The files of a package, as the manifest lists them, and when each one was stored.
CREATE TABLE package_files (
    package_id  TEXT NOT NULL,
    version     TEXT NOT NULL,
    idx         BIGINT NOT NULL CHECK (idx >= 0),
    size        BIGINT NOT NULL CHECK (size >= 0),
    sha256      TEXT NOT NULL,
    stored_at   BIGINT,
    PRIMARY KEY (package_id, version, idx),
    FOREIGN KEY (package_id, version) REFERENCES packages (package_id, version) ON DELETE CASCADE
);

-- A guardian's approval of a title (every version of it) for one child.
CREATE TABLE title_approvals (
    family_id    TEXT NOT NULL REFERENCES families (id) ON DELETE CASCADE,
    child_id     TEXT NOT NULL REFERENCES children (id) ON DELETE CASCADE,
    package_id   TEXT NOT NULL,
    approved_at  BIGINT NOT NULL,
    PRIMARY KEY (child_id, package_id)
);

CREATE INDEX title_approvals_by_family ON title_approvals (family_id);

-- What the child is entitled to, and at what price (NULL: free). Kept apart from the
-- approval so that a paid title, once a payment provider exists, records its purchase here.
CREATE TABLE title_entitlements (
    family_id     TEXT NOT NULL REFERENCES families (id) ON DELETE CASCADE,
    child_id      TEXT NOT NULL REFERENCES children (id) ON DELETE CASCADE,
    package_id    TEXT NOT NULL,
    granted_at    BIGINT NOT NULL,
    price_cents   BIGINT,
    currency      TEXT,
    PRIMARY KEY (child_id, package_id)
);

CREATE INDEX title_entitlements_by_family ON title_entitlements (family_id);

-- The first download of each (device, package, version).
CREATE TABLE package_downloads (
    family_id    TEXT NOT NULL REFERENCES families (id) ON DELETE CASCADE,
    child_id     TEXT REFERENCES children (id) ON DELETE CASCADE,   -- NULL for a guardian's device
    device_id    TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    package_id   TEXT NOT NULL,
    version      TEXT NOT NULL,
    at           BIGINT NOT NULL,
    PRIMARY KEY (device_id, package_id, version)
);

CREATE INDEX package_downloads_by_family ON package_downloads (family_id);
CREATE INDEX package_downloads_by_child ON package_downloads (child_id);

-- What a publisher may know: how often each version was approved and downloaded. No
-- family, child or device here, so these stay when families go.
CREATE TABLE package_counts (
    publisher_id  TEXT NOT NULL REFERENCES publishers (id),
    package_id    TEXT NOT NULL,
    version       TEXT NOT NULL,
    downloads     BIGINT NOT NULL DEFAULT 0,
    approvals     BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (package_id, version)
);
