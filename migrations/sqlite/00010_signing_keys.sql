-- The IDs (auth.KeyID) of the keys the cluster's controllers sign tokens
-- with or accept: a controller started with a key of its own (a new
-- signing.key in its data folder) refuses to start instead of issuing
-- tokens the others reject.

-- +goose Up
CREATE TABLE signing_keys (
    id         TEXT    PRIMARY KEY,
    created_at INTEGER NOT NULL
);

-- +goose Down
DROP TABLE signing_keys;
