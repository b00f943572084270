-- Foundation: data keys, families, the audit log.
-- Every row that belongs to a family carries family_id (the future sharding key).
-- Times are milliseconds since the Unix epoch, set by the server.

-- The system data key, wrapped by the master key (which never enters the database).
CREATE TABLE system_keys (
    owner          TEXT PRIMARY KEY,
    master_key_id  TEXT NOT NULL,
    wrapped_key    BYTEA NOT NULL,
    created_at     BIGINT NOT NULL
);

CREATE TABLE families (
    id          TEXT PRIMARY KEY,
    created_at  BIGINT NOT NULL,
    -- sealed with the family's data key, bound to (families, name, id)
    name_sealed BYTEA NOT NULL
);

-- One data key per family, wrapped by the master key. Deleting the row shreds every
-- value sealed with it; backups made before still hold the wrapped key until the master
-- key is rotated (cubby admin rotate-keys), which retires the key they need.
CREATE TABLE family_keys (
    family_id      TEXT PRIMARY KEY REFERENCES families (id) ON DELETE CASCADE,
    master_key_id  TEXT NOT NULL,
    wrapped_key    BYTEA NOT NULL,
    created_at     BIGINT NOT NULL
);

CREATE INDEX family_keys_by_master ON family_keys (master_key_id);

-- Append-only, hash-chained (HMAC with a key that is not in the database).
CREATE TABLE audit_log (
    seq        BIGINT PRIMARY KEY,
    at         BIGINT NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    family_id  TEXT,
    detail     TEXT NOT NULL,
    prev_mac   BYTEA NOT NULL,
    mac        BYTEA NOT NULL
);

CREATE INDEX audit_log_by_family ON audit_log (family_id, seq);

CREATE FUNCTION audit_log_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();

CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
