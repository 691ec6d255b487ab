-- Warm pools: as migrations/sqlite/00011.

-- +goose Up
ALTER TABLE images ADD COLUMN warm_pool INTEGER NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE images DROP COLUMN warm_pool;
