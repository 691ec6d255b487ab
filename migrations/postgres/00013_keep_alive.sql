-- Keep alive: as migrations/sqlite/00013.

-- +goose Up
ALTER TABLE backends ADD COLUMN keep_alive_until BIGINT;
ALTER TABLE backends ADD COLUMN keep_alive_by TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE backends DROP COLUMN keep_alive_by;
ALTER TABLE backends DROP COLUMN keep_alive_until;
