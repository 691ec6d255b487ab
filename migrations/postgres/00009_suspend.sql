-- Suspend on idle: as migrations/sqlite/00009.

-- +goose Up
ALTER TABLE images ADD COLUMN suspend_seconds BIGINT NOT NULL DEFAULT 0;
ALTER TABLE backends ADD COLUMN suspend_seconds BIGINT NOT NULL DEFAULT 0;
ALTER TABLE backends ADD COLUMN suspended_at BIGINT;
ALTER TABLE backends ADD COLUMN resumed_at BIGINT;

-- +goose Down
ALTER TABLE backends DROP COLUMN resumed_at;
ALTER TABLE backends DROP COLUMN suspended_at;
ALTER TABLE backends DROP COLUMN suspend_seconds;
ALTER TABLE images DROP COLUMN suspend_seconds;
