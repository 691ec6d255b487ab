-- A drone's certificate health: as migrations/sqlite/00003.

-- +goose Up
ALTER TABLE drones ADD COLUMN cert_not_after BIGINT;
ALTER TABLE drones ADD COLUMN cert_error TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE drones DROP COLUMN cert_error;
ALTER TABLE drones DROP COLUMN cert_not_after;
