-- allow_bearer: as migrations/sqlite/00002.

-- +goose Up
ALTER TABLE images ADD COLUMN allow_bearer BOOLEAN NOT NULL DEFAULT FALSE;

-- +goose Down
ALTER TABLE images DROP COLUMN allow_bearer;
