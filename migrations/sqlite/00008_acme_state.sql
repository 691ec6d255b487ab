-- The controllers' side of certificate ordering (plane.ACMEState: the
-- ordering lease and the DNS-01 TXT values), so that every controller of a
-- cluster grants the same lease and serves the same values. One JSON row.

-- +goose Up
CREATE TABLE acme_state (
    one  INTEGER PRIMARY KEY CHECK (one = 1),
    data TEXT    NOT NULL
);

-- +goose Down
DROP TABLE acme_state;
