-- The cluster's identity: as migrations/sqlite/00006. One row.

-- +goose Up
CREATE TABLE cluster (
    one        INTEGER PRIMARY KEY CHECK (one = 1),
    id         TEXT    NOT NULL,
    created_at BIGINT  NOT NULL
);

-- +goose Down
DROP TABLE cluster;
