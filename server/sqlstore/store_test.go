package sqlstore_test

import (
	"context"
	"flag"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"plane"
	"plane/server/postgres"
	"plane/server/postgres/pgtest"
	"plane/server/sqlite"
	"plane/server/sqlstore"
)

// The store's contract: every test of this package runs on each store
// (eachStore), sqlite in a file of the test's temporary folder and Postgres
// in a database of its own (pgtest: PLANE_TEST_POSTGRES, or a throw-away
// cluster started for the test process). What only one of them does (a
// file's mode, goose's sqlite history) is tested in its own package.

// TestMain runs up to parallel tests at once unless -parallel says
// otherwise, as paralleltest.Main does: go test's default, GOMAXPROCS, is 2
// on the machines this project is built on, and the tests wait on their
// stores more than they work. Fewer than paralleltest's 16: each test holds
// connections to the Postgres server, which CI's other packages share. It
// then stops the throw-away Postgres cluster, if one was started.
func TestMain(m *testing.M) {
	flag.Parse()
	explicit := false
	flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "test.parallel" })
	if !explicit {
		_ = flag.Set("test.parallel", strconv.Itoa(parallel))
	}
	pgtest.Main(m)
}

// parallel is how many tests run at once unless -parallel says: beyond 8
// the tests take no less time on 2 cores.
const parallel = 8

// store is one implementation under test.
type store struct {
	name string
	// fresh returns where a new, empty store is: a file path or a database
	// URL. Postgres's database is a copy of one open has migrated: what
	// open does to a new database is done once rather than for each test.
	fresh func(tb testing.TB) string
	// blank returns where a new store is before any migration, for a test
	// that migrates it itself.
	blank func(tb testing.TB) string
	open  func(ctx context.Context, where string) (*sqlstore.DB, error)
}

var stores = []store{
	{"sqlite", sqlitePath, sqlitePath, sqlite.Open},
	{"postgres", migratedPostgres.DSN, pgtest.DSN, postgres.Open},
}

func sqlitePath(tb testing.TB) string { return filepath.Join(tb.TempDir(), "plane.db") }

// migratedPostgres is a new database that postgres.Open has migrated.
var migratedPostgres = pgtest.NewTemplate(func(ctx context.Context, dsn string) error {
	db, err := postgres.Open(ctx, dsn)
	if err != nil {
		return err
	}
	return db.Close()
})

// eachStore runs test on every store, as a subtest named after the store.
// The test and its subtests run in parallel with the package's other
// tests: each has a store of its own, and most of their time is spent
// waiting on the store.
func eachStore(t *testing.T, test func(*testing.T, store)) {
	t.Helper()
	t.Parallel()
	for _, s := range stores {
		t.Run(s.name, func(t *testing.T) {
			t.Parallel()
			test(t, s)
		})
	}
}

// eachStoreAlone is eachStore for a test that loads its store with many
// concurrent serializable transactions, which Postgres fails on conflicts
// and the store runs again for up to 5 s: it runs before the package's
// parallel tests and beside none of them, whose load would stretch those
// retries past their bound (it did under -race).
func eachStoreAlone(t *testing.T, test func(*testing.T, store)) {
	t.Helper()
	for _, s := range stores {
		t.Run(s.name, func(t *testing.T) { test(t, s) })
	}
}

// MustOpen opens a fresh store, closed when the test ends.
func (s store) MustOpen(tb testing.TB) *sqlstore.DB {
	tb.Helper()
	return s.mustOpenAt(tb, s.fresh(tb))
}

// mustOpenAt opens the store at where (from fresh), closed when the test
// ends.
func (s store) mustOpenAt(tb testing.TB, where string) *sqlstore.DB {
	tb.Helper()
	db, err := s.open(context.Background(), where)
	if err != nil {
		tb.Fatalf("open %s store: %v", s.name, err)
	}
	tb.Cleanup(func() {
		if err := db.Close(); err != nil {
			tb.Errorf("close %s store: %v", s.name, err)
		}
	})
	return db
}

// MustCreateProject stores a project of its own team.
func MustCreateProject(tb testing.TB, db *sqlstore.DB, name string) *plane.Project {
	tb.Helper()
	p := &plane.Project{Name: name}
	if err := db.CreateProject(context.Background(), p); err != nil {
		tb.Fatalf("create project %q: %v", name, err)
	}
	return p
}

// wantCode fails the test unless err carries code ("" for no error).
func wantCode(tb testing.TB, err error, code plane.ErrorCode) {
	tb.Helper()
	if got := plane.ErrorCodeOf(err); got != code {
		tb.Fatalf("error code %q (err %v), want %q", got, err, code)
	}
}

// wantField fails the test unless err is a *plane.Error about field.
func wantField(tb testing.TB, err error, field string) {
	tb.Helper()
	e, ok := err.(*plane.Error)
	if !ok || e.Field != field {
		tb.Fatalf("error %v, want one about field %q", err, field)
	}
}

// ms returns a time at the store's precision, as the store returns it.
func ms(v int64) time.Time { return time.UnixMilli(v).UTC() }

func ptr[T any](v T) *T { return &v }
