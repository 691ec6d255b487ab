-- allow_bearer lets non-browser clients present a backend's connect token as
-- "Authorization: Bearer" instead of the ?plane_token= query and cookie.
-- Off by default: a bearer header is easier to leak into logs and proxies.
-- INTEGER 0/1 like images.public and drones.draining.

-- +goose Up
ALTER TABLE images ADD COLUMN allow_bearer INTEGER NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE images DROP COLUMN allow_bearer;
