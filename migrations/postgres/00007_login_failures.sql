-- Failed logins: as migrations/sqlite/00007.

-- +goose Up
CREATE TABLE login_failures (
    key     TEXT   NOT NULL,
    time_ms BIGINT NOT NULL
);

CREATE INDEX login_failures_key_time ON login_failures (key, time_ms);
CREATE INDEX login_failures_time ON login_failures (time_ms);

-- +goose Down
DROP TABLE login_failures;
