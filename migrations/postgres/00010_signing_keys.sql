-- The cluster's signing key IDs: as migrations/sqlite/00010.

-- +goose Up
CREATE TABLE signing_keys (
    id         TEXT   PRIMARY KEY,
    created_at BIGINT NOT NULL
);

-- +goose Down
DROP TABLE signing_keys;
