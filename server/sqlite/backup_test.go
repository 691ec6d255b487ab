package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/pressly/goose/v3"

	"plane"
	"plane/migrations"
	"plane/server/sqlite"
)

// openBackupStore opens the store at path, closed when the test ends.
func openBackupStore(tb testing.TB, path string) *sqlite.DB {
	tb.Helper()
	db, err := sqlite.Open(context.Background(), path)
	if err != nil {
		tb.Fatalf("open %s: %v", path, err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

// mustBackupStore makes a store at dir/controller.db holding the named
// projects, closes it, and returns its path.
func mustBackupStore(tb testing.TB, dir string, projects ...string) string {
	tb.Helper()
	path := filepath.Join(dir, "controller.db")
	db, err := sqlite.Open(context.Background(), path)
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	for _, name := range projects {
		if err := db.CreateProject(context.Background(), &plane.Project{Name: name}); err != nil {
			tb.Fatal(err)
		}
	}
	return path
}

// projectNames returns the names of the projects of the store at path.
func projectNames(tb testing.TB, path string) map[string]bool {
	tb.Helper()
	ps, err := openBackupStore(tb, path).FindProjects(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	names := map[string]bool{}
	for _, p := range ps {
		names[p.Name] = true
	}
	return names
}

// wantOwnerOnly fails the test unless the file at path is mode 0600.
func wantOwnerOnly(tb testing.TB, path string) {
	tb.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		tb.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		tb.Fatalf("%s has mode %o, want 600", path, fi.Mode().Perm())
	}
}

// wantNoTemp fails the test if a temporary file of Backup or Restore is
// left in dir.
func wantNoTemp(tb testing.TB, dir string) {
	tb.Helper()
	left, err := filepath.Glob(filepath.Join(dir, ".*.tmp-*"))
	if err != nil {
		tb.Fatal(err)
	}
	if len(left) > 0 {
		tb.Fatalf("temporary files left behind: %v", left)
	}
}

// mustWriteSQLite makes a sqlite file at path that is not a Plane store.
func mustWriteSQLite(tb testing.TB, path string) {
	tb.Helper()
	db, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('hello')`); err != nil {
		tb.Fatal(err)
	}
}

func TestBackupWhileWriting(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	src := filepath.Join(dir, "controller.db")
	db := openBackupStore(t, src)

	// A controller at work: projects are committed one after another,
	// before, during and after the backup.
	var committed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var writeErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := db.CreateProject(ctx, &plane.Project{Name: fmt.Sprintf("p-%d", i)}); err != nil {
				writeErr = err
				return
			}
			committed.Add(1)
		}
	}()
	for committed.Load() < 200 {
		if writeErr != nil {
			break
		}
		// Yield to the writer.
		if _, err := db.FindProjects(ctx); err != nil {
			t.Fatal(err)
		}
	}
	before := committed.Load()
	dst := filepath.Join(t.TempDir(), "backup.db")
	err := sqlite.Backup(ctx, src, dst)
	after := committed.Load()
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if writeErr != nil {
		t.Fatalf("writing alongside the backup: %v", writeErr)
	}
	if after == before {
		t.Logf("no project was committed during the backup (%d before)", before)
	}

	// Before sqlite.Open, which would narrow it.
	wantOwnerOnly(t, dst)
	wantNoTemp(t, filepath.Dir(dst))
	names := projectNames(t, dst)
	for i := range before {
		if !names[fmt.Sprintf("p-%d", i)] {
			t.Fatalf("backup lacks project p-%d, committed before the backup began", i)
		}
	}
	if int64(len(names)) > committed.Load() {
		t.Fatalf("backup holds %d projects, more than the %d committed", len(names), committed.Load())
	}
	// A snapshot: the projects it holds are the first ones, without a gap.
	for i := range int64(len(names)) {
		if !names[fmt.Sprintf("p-%d", i)] {
			t.Fatalf("backup holds %d projects but not p-%d: not a snapshot", len(names), i)
		}
	}
}

func TestBackupOfStoppedStore(t *testing.T) {
	ctx := context.Background()
	src := mustBackupStore(t, t.TempDir(), "web", "api")
	dst := filepath.Join(t.TempDir(), "backup.db")
	if err := sqlite.Backup(ctx, src, dst); err != nil {
		t.Fatal(err)
	}
	wantOwnerOnly(t, dst)
	if got := projectNames(t, dst); !got["web"] || !got["api"] {
		t.Fatalf("backup holds projects %v, want web and api", got)
	}
	// The source is left readable by its owner only.
	for _, p := range []string{src, src + "-wal", src + "-shm"} {
		if fi, err := os.Stat(p); err == nil && fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %o after the backup, want 600", p, fi.Mode().Perm())
		}
	}
}

func TestBackupRefuses(t *testing.T) {
	ctx := context.Background()
	store := mustBackupStore(t, t.TempDir(), "web")
	junk := filepath.Join(t.TempDir(), "junk.db")
	if err := os.WriteFile(junk, []byte(strings.Repeat("not a database\n", 100)), 0o600); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "other.db")
	mustWriteSQLite(t, other)

	tests := []struct {
		name     string
		src      string
		existing []byte // content of a file already at the destination, if any
		dstDir   string // the destination's folder, when not a new one
		want     string
	}{
		{"destination exists", store, []byte("keep me"), "", "backup.db already exists"},
		{"empty destination exists", store, []byte{}, "", "backup.db already exists"},
		{"no store", filepath.Join(t.TempDir(), "missing.db"), nil, "", "no such file"},
		{"store is a folder", t.TempDir(), nil, "", "is not a file"},
		{"not a database", junk, nil, "", "not a sqlite database"},
		{"not a Plane store", other, nil, "", "not a Plane store"},
		{"no destination folder", store, nil, filepath.Join(t.TempDir(), "missing"), "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := tt.dstDir
			if dir == "" {
				dir = t.TempDir()
			}
			dst := filepath.Join(dir, "backup.db")
			if tt.existing != nil {
				if err := os.WriteFile(dst, tt.existing, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			err := sqlite.Backup(ctx, tt.src, dst)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one saying %q", err, tt.want)
			}
			if tt.existing != nil {
				if got, err := os.ReadFile(dst); err != nil || string(got) != string(tt.existing) {
					t.Fatalf("destination now holds %q (%v), want %q untouched", got, err, tt.existing)
				}
				if !errors.Is(err, fs.ErrExist) {
					t.Errorf("err = %v, want one wrapping fs.ErrExist", err)
				}
			} else if _, err := os.Lstat(dst); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("a file was left at %s: %v", dst, err)
			}
			if tt.dstDir == "" {
				wantNoTemp(t, dir)
			}
		})
	}

	t.Run("canceled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(ctx)
		cancel()
		dir := t.TempDir()
		dst := filepath.Join(dir, "backup.db")
		if err := sqlite.Backup(ctx, store, dst); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		if _, err := os.Lstat(dst); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("a file was left at %s: %v", dst, err)
		}
		wantNoTemp(t, dir)
	})
}

func TestRestore(t *testing.T) {
	ctx := context.Background()
	src := mustBackupStore(t, t.TempDir(), "web", "api")
	backup := filepath.Join(t.TempDir(), "backup.db")
	if err := sqlite.Backup(ctx, src, backup); err != nil {
		t.Fatal(err)
	}

	t.Run("into a new data folder", func(t *testing.T) {
		dir := t.TempDir()
		dst := filepath.Join(dir, "controller.db")
		if err := sqlite.Restore(ctx, backup, dst); err != nil {
			t.Fatal(err)
		}
		wantOwnerOnly(t, dst)
		wantNoTemp(t, dir)
		if got := projectNames(t, dst); len(got) != 2 || !got["web"] || !got["api"] {
			t.Fatalf("restored store holds projects %v, want web and api", got)
		}
		// The store works on: a write after the restore.
		if err := openBackupStore(t, dst).CreateProject(ctx, &plane.Project{Name: "new"}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("stale files of the old store", func(t *testing.T) {
		dir := t.TempDir()
		dst := filepath.Join(dir, "controller.db")
		// What a cleanly stopped controller may leave after its store was
		// moved away: an empty log, a shared-memory index.
		for p, data := range map[string][]byte{dst + "-wal": nil, dst + "-shm": make([]byte, 32768)} {
			if err := os.WriteFile(p, data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if err := sqlite.Restore(ctx, backup, dst); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Lstat(dst + "-shm"); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("stale -shm left: %v", err)
		}
		if got := projectNames(t, dst); !got["web"] {
			t.Fatalf("restored store holds projects %v, want web", got)
		}
	})

	t.Run("backup of an older release", func(t *testing.T) {
		old := filepath.Join(t.TempDir(), "old.db")
		raw, err := sql.Open("sqlite3", "file:"+old)
		if err != nil {
			t.Fatal(err)
		}
		p, err := goose.NewProvider(goose.DialectSQLite3, raw, migrations.SQLite, goose.WithDisableGlobalRegistry(true))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.UpTo(ctx, 1); err != nil {
			t.Fatal(err)
		}
		raw.Close()
		dst := filepath.Join(t.TempDir(), "controller.db")
		if err := sqlite.Restore(ctx, old, dst); err != nil {
			t.Fatal(err)
		}
		// Open applies the later migrations.
		if err := openBackupStore(t, dst).CreateProject(ctx, &plane.Project{Name: "web"}); err != nil {
			t.Fatal(err)
		}
	})
}

func TestRestoreRefuses(t *testing.T) {
	ctx := context.Background()
	src := mustBackupStore(t, t.TempDir(), "web")
	files := t.TempDir()
	backup := filepath.Join(files, "backup.db")
	if err := sqlite.Backup(ctx, src, backup); err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte) string {
		p := filepath.Join(files, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	junk := write("junk.db", []byte(strings.Repeat("not a database\n", 100)))
	empty := write("empty.db", nil)
	other := filepath.Join(files, "other.db")
	mustWriteSQLite(t, other)
	good, err := os.ReadFile(backup)
	if err != nil {
		t.Fatal(err)
	}
	// Pages after the first overwritten: a damaged backup.
	damaged := append([]byte{}, good...)
	for i := 4096; i < len(damaged); i++ {
		damaged[i] = 0xA5
	}
	corrupt := write("corrupt.db", damaged)

	tests := []struct {
		name     string
		backup   string
		existing map[string][]byte // files already beside the destination, by suffix
		want     string
	}{
		{"store exists", backup, map[string][]byte{"": []byte("the old store")}, "controller.db already exists: stop the controller and move it away first"},
		{"log of the old store", backup, map[string][]byte{"-wal": []byte("frames")}, "-wal holds changes"},
		{"rollback journal of the old store", backup, map[string][]byte{"-journal": []byte("pages")}, "-journal holds changes"},
		{"no backup", filepath.Join(files, "missing.db"), nil, "no such file"},
		{"backup is a folder", files, nil, "is not a file"},
		{"not a database", junk, nil, "junk.db: not a sqlite database"},
		{"empty file", empty, nil, "empty.db: an empty file, not a Plane store"},
		{"not a Plane store", other, nil, "other.db: a sqlite database, but not a Plane store: it has no goose_db_version table"},
		{"corrupt", corrupt, nil, "corrupt.db: a corrupt sqlite database"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			dst := filepath.Join(dir, "controller.db")
			for suffix, data := range tt.existing {
				if err := os.WriteFile(dst+suffix, data, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			err := sqlite.Restore(ctx, tt.backup, dst)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one saying %q", err, tt.want)
			}
			if _, ok := tt.existing[""]; !ok {
				if _, err := os.Lstat(dst); !errors.Is(err, fs.ErrNotExist) {
					t.Fatalf("a file was left at %s: %v", dst, err)
				}
			}
			for suffix, data := range tt.existing {
				if got, err := os.ReadFile(dst + suffix); err != nil || string(got) != string(data) {
					t.Fatalf("%s now holds %q (%v), want %q untouched", dst+suffix, got, err, data)
				}
			}
			wantNoTemp(t, dir)
		})
	}
}
