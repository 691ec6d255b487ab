-- A drone's proxy health, from its heartbeats: why its proxy cannot accept
-- connections ('' while it can). Such a drone takes no new backends.

-- +goose Up
ALTER TABLE drones ADD COLUMN proxy_error TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE drones DROP COLUMN proxy_error;
