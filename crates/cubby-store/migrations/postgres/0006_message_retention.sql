-- How long a family's undelivered messages are kept (days); NULL: the server's default.
ALTER TABLE families ADD COLUMN message_retention_days BIGINT;
