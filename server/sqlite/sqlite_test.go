package sqlite_test

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pressly/goose/v3"

	"plane"
	"plane/migrations"
	"plane/server/sqlite"
)

// MustOpenDB opens a store in a fresh file of the test's temporary folder,
// closed when the test ends.
func MustOpenDB(tb testing.TB) *sqlite.DB {
	tb.Helper()
	return mustOpenPath(tb, filepath.Join(tb.TempDir(), "plane.db"))
}

func mustOpenPath(tb testing.TB, path string) *sqlite.DB {
	tb.Helper()
	db, err := sqlite.Open(context.Background(), path)
	if err != nil {
		tb.Fatalf("open %s: %v", path, err)
	}
	tb.Cleanup(func() {
		if err := db.Close(); err != nil {
			tb.Errorf("close %s: %v", path, err)
		}
	})
	return db
}

// MustCreateProject stores a project of its own team.
func MustCreateProject(tb testing.TB, db *sqlite.DB, name string) *plane.Project {
	tb.Helper()
	p := &plane.Project{Name: name}
	if err := db.CreateProject(context.Background(), p); err != nil {
		tb.Fatalf("create project %q: %v", name, err)
	}
	return p
}

func ptr[T any](v T) *T { return &v }

// migrationVersions reads goose's record of applied migrations.
func migrationVersions(t *testing.T, path string) []int64 {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+url.PathEscape(path)+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT version_id FROM goose_db_version WHERE version_id > 0 ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var versions []int64
	for rows.Next() {
		var v int64
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		versions = append(versions, v)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return versions
}

// mustMigrateTo creates a store at path with the migrations up to version
// only, as an older release left it, and returns a plain connection to it
// and the goose provider, to roll migrations back.
func mustMigrateTo(t *testing.T, path string, version int64) (*sql.DB, *goose.Provider) {
	t.Helper()
	raw, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	p, err := goose.NewProvider(goose.DialectSQLite3, raw, migrations.SQLite, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.UpTo(context.Background(), version); err != nil {
		t.Fatal(err)
	}
	return raw, p
}

func TestOpen(t *testing.T) {
	ctx := context.Background()
	files, err := fs.Glob(migrations.SQLite, "*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("embedded migrations: %v %v", files, err)
	}

	t.Run("fresh file gets every migration", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "plane.db")
		db := mustOpenPath(t, path)
		if got := migrationVersions(t, path); len(got) != len(files) {
			t.Fatalf("applied versions %v, want %d (%v)", got, len(files), files)
		}
		if _, err := db.FindProjects(ctx); err != nil {
			t.Fatalf("schema not usable: %v", err)
		}
	})

	t.Run("reopen and migrate are no-ops and keep data", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "plane.db")
		db, err := sqlite.Open(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		p := MustCreateProject(t, db, "kept")
		b, _, err := db.CreateBackend(ctx, &plane.Backend{ProjectID: p.ID, Image: "app", ImageRef: "app:1", Key: "k"})
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		before := migrationVersions(t, path)

		if err := sqlite.Migrate(ctx, path); err != nil {
			t.Fatalf("migrate existing file: %v", err)
		}
		db = mustOpenPath(t, path)
		if after := migrationVersions(t, path); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Fatalf("versions after reopen %v, want %v", after, before)
		}
		got, err := db.FindProjectByName(ctx, "kept")
		if err != nil || got.ID != p.ID {
			t.Fatalf("project after reopen: %+v, %v", got, err)
		}
		gotB, err := db.FindBackendByID(ctx, b.ID)
		if err != nil || gotB.Key != "k" || len(gotB.StatusHistory) != 1 {
			t.Fatalf("backend after reopen: %+v, %v", gotB, err)
		}
	})

	t.Run("migrate creates a fresh file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "sub dir?#", "plane.db")
		if err := sqlite.Migrate(ctx, path); err == nil {
			t.Fatal("migrate into a missing folder: no error")
		}
		path = filepath.Join(t.TempDir(), "odd ?name#%20.db")
		if err := sqlite.Migrate(ctx, path); err != nil {
			t.Fatalf("migrate: %v", err)
		}
		if _, err := os.Stat(path); err != nil {
			t.Fatalf("escaped path: %v", err)
		}
		if got := migrationVersions(t, path); len(got) != len(files) {
			t.Fatalf("applied versions %v, want %d", got, len(files))
		}
	})

	for _, path := range []string{"", ":memory:"} {
		t.Run(fmt.Sprintf("path %q is refused", path), func(t *testing.T) {
			if db, err := sqlite.Open(ctx, path); err == nil {
				db.Close()
				t.Fatal("no error")
			}
		})
	}
}

// The store's files hold password hashes, session ids and environments:
// only their owner may read them, whether the store is new or was made by
// an older release with sqlite's default 0644.
func TestOpenFileModes(t *testing.T) {
	tests := []struct {
		name   string
		before func(t *testing.T, path string) // what is there before Open
	}{
		{"new file", func(*testing.T, string) {}},
		{"file of an older release", func(t *testing.T, path string) {
			raw, _ := mustMigrateTo(t, path, 1)
			if _, err := raw.Exec("PRAGMA journal_mode=WAL"); err != nil {
				t.Fatal(err)
			}
			if err := raw.Close(); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, 0o644); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "controller.db")
			tt.before(t, path)
			db := mustOpenPath(t, path)
			// A write makes sqlite create the -wal and -shm files.
			MustCreateProject(t, db, "p")
			for _, p := range []string{path, path + "-wal", path + "-shm"} {
				fi, err := os.Stat(p)
				if err != nil {
					t.Fatal(err)
				}
				if got := fi.Mode().Perm(); got != 0o600 {
					t.Errorf("%s: mode %v, want 0600", filepath.Base(p), got)
				}
			}
		})
	}
}

// TestConcurrentWrites checks that writers queue rather than fail with
// SQLITE_BUSY, including two stores on one file as with `plane migrate`
// next to a controller.
func TestConcurrentWrites(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "plane.db")
	dbs := []*sqlite.DB{mustOpenPath(t, path), mustOpenPath(t, path)}
	p := MustCreateProject(t, dbs[0], "busy")

	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 32 {
		wg.Go(func() {
			db := dbs[g%2]
			for i := range 10 {
				b, _, err := db.CreateBackend(ctx, &plane.Backend{ProjectID: p.ID, Image: "app", ImageRef: "app:1", Key: fmt.Sprintf("k%d-%d", g, i)})
				if err != nil {
					errs <- err
					return
				}
				for _, s := range []plane.BackendStatus{plane.StatusLoading, plane.StatusReady} {
					if _, _, err := db.ApplyBackendEvent(ctx, plane.BackendEvent{BackendID: b.ID, Status: s, Time: time.Now()}); err != nil {
						errs <- err
						return
					}
				}
				if _, err := db.FindBackends(ctx, plane.BackendFilter{ProjectID: &p.ID, Limit: 10}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	counts, err := dbs[1].FindBackends(ctx, plane.BackendFilter{Live: ptr(true), Limit: 1000})
	if err != nil || len(counts) != 320 {
		t.Fatalf("live backends: %d, %v; want 320", len(counts), err)
	}
}
