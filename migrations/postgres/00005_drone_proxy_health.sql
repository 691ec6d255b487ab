-- A drone's proxy health: as migrations/sqlite/00005.

-- +goose Up
ALTER TABLE drones ADD COLUMN proxy_error TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE drones DROP COLUMN proxy_error;
