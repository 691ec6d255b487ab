-- The controller's store. Times are unix milliseconds (INTEGER) so that they
-- sort and compare as numbers and keep the status history's precision.
-- Maps (env) and lists (images, scopes) are JSON text: they are only ever
-- read and written whole.

-- +goose Up
CREATE TABLE teams (
    id         INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);

-- Users sign in to the dashboard; the rest of their record comes with it.
CREATE TABLE users (
    id         INTEGER PRIMARY KEY,
    email      TEXT    NOT NULL UNIQUE COLLATE NOCASE,
    created_at INTEGER NOT NULL
);

CREATE TABLE projects (
    id         INTEGER PRIMARY KEY,
    team_id    INTEGER NOT NULL REFERENCES teams (id),
    name       TEXT    NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);

CREATE INDEX projects_team_id ON projects (team_id);

CREATE TABLE images (
    id               INTEGER PRIMARY KEY,
    project_id       INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name             TEXT    NOT NULL,
    ref              TEXT    NOT NULL,
    port             INTEGER NOT NULL,
    pull_policy      TEXT    NOT NULL,
    public           INTEGER NOT NULL DEFAULT 0,
    env              TEXT    NOT NULL DEFAULT '{}',
    max_idle_seconds INTEGER NOT NULL DEFAULT 0,
    lifetime_seconds INTEGER NOT NULL DEFAULT 0,
    cpu_millis       INTEGER NOT NULL DEFAULT 0,
    memory_mb        INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    UNIQUE (project_id, name)
);

-- A backend keeps its image's name and reference rather than a foreign key:
-- deleting or changing an image must not touch backends started from it.
-- drone_id is no foreign key either: a backend is stored before it is
-- placed, and drones are only records of heartbeats.
CREATE TABLE backends (
    id                 TEXT    PRIMARY KEY,
    project_id         INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    image              TEXT    NOT NULL,
    image_ref          TEXT    NOT NULL,
    key                TEXT    NOT NULL DEFAULT '',
    drone_id           TEXT    NOT NULL DEFAULT '',
    status             TEXT    NOT NULL,
    termination_reason TEXT    NOT NULL DEFAULT '',
    exit_code          INTEGER,
    error              TEXT    NOT NULL DEFAULT '',
    address            TEXT    NOT NULL DEFAULT '',
    env                TEXT    NOT NULL DEFAULT '{}',
    user               TEXT    NOT NULL DEFAULT '',
    max_idle_seconds   INTEGER NOT NULL DEFAULT 0,
    lifetime_seconds   INTEGER NOT NULL DEFAULT 0,
    cpu_millis         INTEGER NOT NULL DEFAULT 0,
    memory_mb          INTEGER NOT NULL DEFAULT 0,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
);

-- One live backend per key and project, even under concurrent spawns: the
-- store relies on this index, not on a read before the insert.
CREATE UNIQUE INDEX backends_live_key ON backends (project_id, key)
    WHERE key <> '' AND status <> 'terminated';

-- Listings are newest first, per project or cluster-wide.
CREATE INDEX backends_project_created ON backends (project_id, created_at);
CREATE INDEX backends_created ON backends (created_at);

-- Placement and the drone page count live backends per drone.
CREATE INDEX backends_live_drone ON backends (drone_id)
    WHERE status <> 'terminated';

-- Statuses only move forward, so each one is reached at most once.
CREATE TABLE backend_status_history (
    backend_id TEXT    NOT NULL REFERENCES backends (id) ON DELETE CASCADE,
    status     TEXT    NOT NULL,
    time_ms    INTEGER NOT NULL,
    PRIMARY KEY (backend_id, status)
);

CREATE TABLE drones (
    id               TEXT    PRIMARY KEY,
    address          TEXT    NOT NULL DEFAULT '',
    proxy_address    TEXT    NOT NULL DEFAULT '',
    version          TEXT    NOT NULL DEFAULT '',
    protocol_version INTEGER NOT NULL DEFAULT 0,
    status           TEXT    NOT NULL,
    draining         INTEGER NOT NULL DEFAULT 0,
    capacity         INTEGER NOT NULL DEFAULT 0,
    backends         INTEGER NOT NULL DEFAULT 0,
    cpu_percent      REAL    NOT NULL DEFAULT 0,
    memory_bytes     INTEGER NOT NULL DEFAULT 0,
    images           TEXT    NOT NULL DEFAULT '[]',
    last_heartbeat   INTEGER NOT NULL,
    created_at       INTEGER NOT NULL
);

-- Only a token's record: the signed token is shown once and never stored.
CREATE TABLE api_tokens (
    id           TEXT    PRIMARY KEY,
    project_id   INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name         TEXT    NOT NULL,
    scopes       TEXT    NOT NULL DEFAULT '[]',
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    last_used_at INTEGER,
    revoked_at   INTEGER
);

CREATE INDEX api_tokens_project_id ON api_tokens (project_id);

-- +goose Down
DROP TABLE api_tokens;
DROP TABLE drones;
DROP TABLE backend_status_history;
DROP TABLE backends;
DROP TABLE images;
DROP TABLE projects;
DROP TABLE users;
DROP TABLE teams;
