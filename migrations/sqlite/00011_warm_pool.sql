-- Warm pools: how many started, ready, unclaimed backends of an image every
-- ready drone keeps for spawns to claim; 0 for none (every spawn starts cold,
-- as before).

-- +goose Up
ALTER TABLE images ADD COLUMN warm_pool INTEGER NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE images DROP COLUMN warm_pool;
