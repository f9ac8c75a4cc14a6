-- Rejected payloads are kept up to a cap (a prefix), with the size and SHA-256 of what was
-- received, so a flood of large malformed bodies cannot fill the disk. Rows from before keep
-- their whole payload and have neither column set. The index serves the retention purge.
ALTER TABLE rejections ADD COLUMN raw_bytes INTEGER;
ALTER TABLE rejections ADD COLUMN raw_sha256 TEXT;
CREATE INDEX rejections_received_at ON rejections (received_at);
