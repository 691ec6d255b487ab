-- A drone's HTTPS certificate health, from its heartbeats: the expiry of the
-- certificate it serves (NULL: none yet) and its last certificate error.

-- +goose Up
ALTER TABLE drones ADD COLUMN cert_not_after INTEGER;
ALTER TABLE drones ADD COLUMN cert_error TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE drones DROP COLUMN cert_error;
ALTER TABLE drones DROP COLUMN cert_not_after;
