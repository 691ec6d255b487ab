-- Project events and webhooks.
--
-- project_events is each project's ordered event log (backend.status,
-- backend.user_joined, backend.user_left), appended in the transaction of
-- the change it announces. AUTOINCREMENT: an id is never used twice, even
-- after the newest rows were deleted, so that a reader's "after id N"
-- never skips a new event. The store keeps a project's latest
-- plane.MaxProjectEvents (server/sqlstore/event.go says when it cuts).
--
-- backend_connections holds who is connected to a backend: a row per user,
-- joined_at NULL once they left (kept, with the time of the leave in
-- changed_at, so that a join redelivered after its leave changes nothing),
-- all deleted when the backend is no longer ready.
--
-- A webhook's deliveries are made with the event, in the same transaction;
-- each carries its body (payload), so that cutting the event log never
-- loses one. A claim (claim, locked_until) leases a delivery to one
-- controller's sender; webhook_attempts logs every try.

-- +goose Up
CREATE TABLE project_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    type       TEXT    NOT NULL,
    backend_id TEXT    NOT NULL DEFAULT '',
    data       TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE INDEX project_events_project ON project_events (project_id, id);
CREATE INDEX project_events_backend ON project_events (backend_id, id);

CREATE TABLE backend_connections (
    backend_id TEXT    NOT NULL REFERENCES backends (id) ON DELETE CASCADE,
    "user"     TEXT    NOT NULL,
    joined_at  INTEGER,
    changed_at INTEGER NOT NULL,
    PRIMARY KEY (backend_id, "user")
);

-- events: the types it gets as ",a,b," ('' for all).
CREATE TABLE webhooks (
    id              INTEGER PRIMARY KEY,
    project_id      INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    url             TEXT    NOT NULL,
    events          TEXT    NOT NULL DEFAULT '',
    secret          TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    failing_since   INTEGER,
    disabled_at     INTEGER,
    disabled_reason TEXT    NOT NULL DEFAULT ''
);

CREATE INDEX webhooks_project ON webhooks (project_id);

-- since: the start of the current round of tries (created, or retried by
-- hand); next_attempt_at is set while pending.
CREATE TABLE webhook_deliveries (
    id              INTEGER PRIMARY KEY,
    webhook_id      INTEGER NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_id        INTEGER NOT NULL,
    event_type      TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    since           INTEGER NOT NULL,
    next_attempt_at INTEGER,
    locked_until    INTEGER,
    claim           TEXT    NOT NULL DEFAULT '',
    UNIQUE (webhook_id, event_id)
);

CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries (webhook_id, id);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_created ON webhook_deliveries (created_at) WHERE status <> 'pending';

CREATE TABLE webhook_attempts (
    id          INTEGER PRIMARY KEY,
    delivery_id INTEGER NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    time_ms     INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    status_code INTEGER NOT NULL DEFAULT 0,
    error       TEXT    NOT NULL DEFAULT ''
);

CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, id);

-- +goose Down
DROP TABLE webhook_attempts;
DROP TABLE webhook_deliveries;
DROP TABLE webhooks;
DROP TABLE backend_connections;
DROP TABLE project_events;
