-- Accounts for the dashboard: users sign in with a password (bcrypt hash),
-- belong to teams with a role, join through one-time invites, and stay signed
-- in through sessions. Sessions and invites store only the hash of their
-- secret, so a copy of the file signs no one in. Project names stay globally
-- unique: backend hostnames are built from them.
--
-- Each project keeps an activity log. Its actor is copied (user id, token id,
-- name) rather than referenced, so entries outlive the user or token.

-- +goose Up
ALTER TABLE users ADD COLUMN name TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN password_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN admin INTEGER NOT NULL DEFAULT 0;

CREATE TABLE team_members (
    team_id    INTEGER NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role       TEXT    NOT NULL CHECK (role IN ('owner', 'member')),
    created_at INTEGER NOT NULL,
    PRIMARY KEY (team_id, user_id)
);

-- The team switcher lists a user's teams on every page.
CREATE INDEX team_members_user_id ON team_members (user_id);

-- created_by and used_by are records, like the activity's actor: no foreign
-- keys, so that an invite's history does not hold a user back.
CREATE TABLE invites (
    id         INTEGER PRIMARY KEY,
    team_id    INTEGER NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    token_hash TEXT    NOT NULL UNIQUE,
    role       TEXT    NOT NULL CHECK (role IN ('owner', 'member')),
    created_by INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER,
    used_by    INTEGER
);

CREATE TABLE sessions (
    id         TEXT    PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);

CREATE INDEX sessions_user_id ON sessions (user_id);

-- actor_user_id is NULL for an API token's entries.
CREATE TABLE activity (
    id             INTEGER PRIMARY KEY,
    project_id     INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    time_ms        INTEGER NOT NULL,
    actor_user_id  INTEGER,
    actor_token_id TEXT    NOT NULL DEFAULT '',
    actor_name     TEXT    NOT NULL,
    action         TEXT    NOT NULL,
    target         TEXT    NOT NULL DEFAULT '',
    detail         TEXT    NOT NULL DEFAULT ''
);

-- The log is read newest first, per project.
CREATE INDEX activity_project_time ON activity (project_id, time_ms);

-- +goose Down
DROP TABLE activity;
DROP TABLE sessions;
DROP TABLE invites;
DROP TABLE team_members;
ALTER TABLE users DROP COLUMN admin;
ALTER TABLE users DROP COLUMN password_hash;
ALTER TABLE users DROP COLUMN name;
