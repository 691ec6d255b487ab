-- Failed logins, per key (an email address, a client address), so that
-- every controller of a cluster counts the same ones. Rows older than the
-- limiter's window are deleted as new ones come.

-- +goose Up
CREATE TABLE login_failures (
    key     TEXT    NOT NULL,
    time_ms INTEGER NOT NULL
);

CREATE INDEX login_failures_key_time ON login_failures (key, time_ms);
CREATE INDEX login_failures_time ON login_failures (time_ms);

-- +goose Down
DROP TABLE login_failures;
