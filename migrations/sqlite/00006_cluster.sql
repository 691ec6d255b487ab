-- The cluster's identity: made at random by the first controller that opens
-- the store, and claimed in NATS (bucket PLANE_CLUSTER) before a controller
-- touches anything there, so that a controller with another store refuses to
-- start instead of reconciling this cluster's drones against it. One row.

-- +goose Up
CREATE TABLE cluster (
    one        INTEGER PRIMARY KEY CHECK (one = 1),
    id         TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);

-- +goose Down
DROP TABLE cluster;
