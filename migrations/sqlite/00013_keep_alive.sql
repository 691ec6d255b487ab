-- Keep alive: until when (unix ms, NULL for never asked) a backend's idle
-- stop is held off on purpose, and who asked (a token's or a user's name).

-- +goose Up
ALTER TABLE backends ADD COLUMN keep_alive_until INTEGER;
ALTER TABLE backends ADD COLUMN keep_alive_by TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE backends DROP COLUMN keep_alive_by;
ALTER TABLE backends DROP COLUMN keep_alive_until;
