-- Suspend on idle: an image's (and so a backend's) suspend_seconds, 0 for
-- never (an idle backend is terminated at once, as before); and when a
-- backend was last suspended and resumed, in unix ms, NULL for never. It
-- is suspended while suspended_at is after resumed_at.

-- +goose Up
ALTER TABLE images ADD COLUMN suspend_seconds INTEGER NOT NULL DEFAULT 0;
ALTER TABLE backends ADD COLUMN suspend_seconds INTEGER NOT NULL DEFAULT 0;
ALTER TABLE backends ADD COLUMN suspended_at INTEGER;
ALTER TABLE backends ADD COLUMN resumed_at INTEGER;

-- +goose Down
ALTER TABLE backends DROP COLUMN resumed_at;
ALTER TABLE backends DROP COLUMN suspended_at;
ALTER TABLE backends DROP COLUMN suspend_seconds;
ALTER TABLE images DROP COLUMN suspend_seconds;
