-- The ACME state: as migrations/sqlite/00008.

-- +goose Up
CREATE TABLE acme_state (
    one  INTEGER PRIMARY KEY CHECK (one = 1),
    data TEXT    NOT NULL
);

-- +goose Down
DROP TABLE acme_state;
