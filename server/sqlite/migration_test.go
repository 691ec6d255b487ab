package sqlite_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"plane"
	"plane/server/sqlite"
)

// Upgrades of an older sqlite store keep its rows (goose history of this
// file; the Postgres schema starts at the same versions).

// oldProject stores team 1 and its project 1 in a store of any version.
const oldProject = `INSERT INTO teams (id, name, created_at) VALUES (1, 'old', 0);
	INSERT INTO projects (id, team_id, name, created_at) VALUES (1, 1, 'old', 0)`

// mustExec runs queries on a store opened with goose, in order.
func mustExec(t *testing.T, raw *sql.DB, queries ...string) {
	t.Helper()
	for _, q := range queries {
		if _, err := raw.ExecContext(context.Background(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// TestImageAllowBearerMigration upgrades a store written before allow_bearer
// existed: its images keep every field and get allow_bearer false; the
// migration also rolls back.
func TestImageAllowBearerMigration(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "plane.db")
	raw, p := mustMigrateTo(t, path, 1)
	mustExec(t, raw, oldProject,
		`INSERT INTO images (project_id, name, ref, port, pull_policy, public, created_at, updated_at)
			VALUES (1, 'legacy', 'legacy:1', 8080, 'never', 1, 0, 0)`)

	db, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	img, err := db.FindImage(ctx, 1, "legacy")
	if err != nil {
		t.Fatal(err)
	}
	if img.AllowBearer || !img.Public || img.Ref != "legacy:1" {
		t.Fatalf("upgraded image %+v, want public, allow_bearer false", img)
	}
	if img, err = db.UpdateImage(ctx, 1, "legacy", plane.ImageInput{AllowBearer: ptr(true)}); err != nil || !img.AllowBearer {
		t.Fatalf("set allow_bearer: %+v, %v", img, err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	if _, err := p.DownTo(ctx, 1); err != nil {
		t.Fatalf("roll back: %v", err)
	}
	var name string
	if err := raw.QueryRowContext(ctx, `SELECT name FROM images`).Scan(&name); err != nil || name != "legacy" {
		t.Fatalf("after roll back: %q, %v", name, err)
	}
}

// TestAccountsMigration upgrades a store written before accounts: a user
// row it holds gets an empty name and hash and no admin flag, so the next
// sign-up is not mistaken for the first; the migration also rolls back.
func TestAccountsMigration(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "plane.db")
	raw, p := mustMigrateTo(t, path, 3)
	if _, err := raw.ExecContext(ctx, `INSERT INTO users (id, email, created_at) VALUES (1, 'old@example.com', 0)`); err != nil {
		t.Fatal(err)
	}

	db, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	old, err := db.FindUserByID(ctx, 1)
	if err != nil || old.Name != "" || old.PasswordHash != "" || old.Admin {
		t.Fatalf("upgraded user %+v, %v", old, err)
	}
	u := &plane.User{Email: "new@example.com", PasswordHash: "hash"}
	if err := db.CreateUser(ctx, u); err != nil || u.Admin {
		t.Fatalf("second user: admin %v, %v; want no admin", u.Admin, err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	if _, err := p.DownTo(ctx, 3); err != nil {
		t.Fatalf("roll back: %v", err)
	}
	var n int
	if err := raw.QueryRowContext(ctx, `SELECT COUNT(*) FROM users`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("users after roll back: %d, %v", n, err)
	}
}

// TestSuspendMigration upgrades a store written before suspend on idle: its
// images and backends get suspend_seconds 0 (terminated when idle, as
// before) and no suspension; the migration also rolls back.
func TestSuspendMigration(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "plane.db")
	raw, p := mustMigrateTo(t, path, 8)
	mustExec(t, raw, oldProject,
		`INSERT INTO images (project_id, name, ref, port, pull_policy, max_idle_seconds, created_at, updated_at)
			VALUES (1, 'legacy', 'legacy:1', 8080, 'never', 60, 0, 0)`,
		`INSERT INTO backends (id, project_id, image, image_ref, status, max_idle_seconds, created_at, updated_at)
			VALUES ('old1', 1, 'legacy', 'legacy:1', 'ready', 60, 0, 0)`)

	db, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	img, err := db.FindImage(ctx, 1, "legacy")
	if err != nil || img.SuspendSeconds != 0 || img.MaxIdleSeconds != 60 {
		t.Fatalf("upgraded image %+v, %v; want suspend_seconds 0", img, err)
	}
	b, err := db.FindBackendByID(ctx, "old1")
	if err != nil || b.SuspendSeconds != 0 || b.SuspendedAt != nil || b.ResumedAt != nil || b.Suspended() {
		t.Fatalf("upgraded backend %+v, %v; want suspend_seconds 0, never suspended", b, err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	if _, err := p.DownTo(ctx, 8); err != nil {
		t.Fatalf("roll back: %v", err)
	}
	var id string
	if err := raw.QueryRowContext(ctx, `SELECT id FROM backends`).Scan(&id); err != nil || id != "old1" {
		t.Fatalf("after roll back: %q, %v", id, err)
	}
}
