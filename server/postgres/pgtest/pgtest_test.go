package pgtest_test

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"plane/server/postgres/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func connect(tb testing.TB, dsn string) *pgx.Conn {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		tb.Fatalf("connect %s: %v", dsn, err)
	}
	return conn
}

// dbName is the database a DSN names.
func dbName(tb testing.TB, dsn string) string {
	tb.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		tb.Fatalf("parse %s: %v", dsn, err)
	}
	return strings.TrimPrefix(u.Path, "/")
}

func TestDSNGivesAWorkingEmptyDatabase(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dsn := pgtest.DSN(t)
	if !strings.HasPrefix(dsn, "postgres://") && !strings.HasPrefix(dsn, "postgresql://") {
		t.Fatalf("DSN = %q, want a postgres:// URL", dsn)
	}
	conn := connect(t, dsn)
	defer conn.Close(context.Background())

	var current string
	if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&current); err != nil {
		t.Fatal(err)
	}
	if want := dbName(t, dsn); current != want || !strings.HasPrefix(current, "plane_test_") {
		t.Fatalf("current_database() = %q, want %q starting with plane_test_", current, want)
	}

	var tables int
	if err := conn.QueryRow(ctx,
		"SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')").Scan(&tables); err != nil {
		t.Fatal(err)
	}
	if tables != 0 {
		t.Fatalf("new database has %d tables, want none", tables)
	}

	if _, err := conn.Exec(ctx, "CREATE TABLE things (id bigint PRIMARY KEY, name text NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "INSERT INTO things (id, name) VALUES ($1, $2), ($3, $4)", 1, "one", 2, "two"); err != nil {
		t.Fatal(err)
	}
	rows, err := conn.Query(ctx, "SELECT name FROM things ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(names, ","); got != "one,two" {
		t.Fatalf("names = %q, want %q", got, "one,two")
	}
}

func TestDSNGivesEachCallItsOwnDatabase(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	a, b := pgtest.DSN(t), pgtest.DSN(t)
	if dbName(t, a) == dbName(t, b) {
		t.Fatalf("two DSN calls gave the same database: %s and %s", a, b)
	}

	ca, cb := connect(t, a), connect(t, b)
	defer ca.Close(context.Background())
	defer cb.Close(context.Background())
	if _, err := ca.Exec(ctx, "CREATE TABLE only_in_a (id int)"); err != nil {
		t.Fatal(err)
	}
	var seen bool
	if err := cb.QueryRow(ctx, "SELECT to_regclass('only_in_a') IS NOT NULL").Scan(&seen); err != nil {
		t.Fatal(err)
	}
	if seen {
		t.Fatal("a table made in one database is visible in the other")
	}
}

func TestDSNDropsTheDatabaseAtCleanup(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	// pg_database is shared by all databases of a server: another
	// database of the same server can watch the subtest's go.
	watcher := connect(t, pgtest.DSN(t))
	defer watcher.Close(context.Background())
	exists := func(name string) bool {
		t.Helper()
		var n int
		if err := watcher.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname = $1", name).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	}

	var name string
	var leftOpen *pgx.Conn
	t.Run("sub", func(t *testing.T) {
		dsn := pgtest.DSN(t)
		name = dbName(t, dsn)
		if !exists(name) {
			t.Fatalf("database %s does not exist during its test", name)
		}
		// A connection the test forgets to close must not keep the
		// database alive.
		leftOpen = connect(t, dsn)
		if _, err := leftOpen.Exec(ctx, "CREATE TABLE t (id int)"); err != nil {
			t.Fatal(err)
		}
	})
	if leftOpen != nil {
		// Closing a connection the server ended may report an error:
		// what matters is that the drop did not wait for it.
		defer leftOpen.Close(context.Background())
	}
	if name == "" {
		t.Fatal("subtest did not get a database")
	}
	if exists(name) {
		t.Fatalf("database %s still exists after its test's cleanup", name)
	}
}

// A template is set up once, however many tests copy it at once (Postgres
// copies one source for several CREATE DATABASE at a time); each copy holds
// what the setup made, and is a database of its own, dropped at its test's
// end like any other.
func TestTemplateCopies(t *testing.T) {
	t.Parallel()
	var setups atomic.Int32
	var templateDSN string
	tmpl := pgtest.NewTemplate(func(ctx context.Context, dsn string) error {
		setups.Add(1)
		templateDSN = dsn
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return err
		}
		defer conn.Close(context.Background())
		_, err = conn.Exec(ctx, "CREATE TABLE things (id int PRIMARY KEY); INSERT INTO things VALUES (1)")
		return err
	})
	const copies = 8
	names := make([]string, copies)
	t.Run("copies", func(t *testing.T) {
		for i := range copies {
			t.Run(fmt.Sprint(i), func(t *testing.T) {
				t.Parallel()
				ctx := t.Context()
				dsn := tmpl.DSN(t)
				names[i] = dbName(t, dsn)
				conn := connect(t, dsn)
				defer conn.Close(context.Background())
				if _, err := conn.Exec(ctx, "INSERT INTO things VALUES ($1)", i+2); err != nil {
					t.Fatal(err)
				}
				rows, err := conn.Query(ctx, "SELECT id FROM things ORDER BY id")
				if err != nil {
					t.Fatal(err)
				}
				ids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
				if err != nil {
					t.Fatal(err)
				}
				if want := []int32{1, int32(i + 2)}; !slices.Equal(ids, want) {
					t.Fatalf("copy %d holds %v, want the setup's row and its own: %v", i, ids, want)
				}
			})
		}
	})
	if n := setups.Load(); n != 1 {
		t.Fatalf("set up %d times, want once", n)
	}
	template := dbName(t, templateDSN)
	watcher := connect(t, pgtest.DSN(t))
	defer watcher.Close(context.Background())
	seen := map[string]bool{template: true}
	for i, name := range names {
		if !strings.HasPrefix(name, "plane_test_") || seen[name] {
			t.Errorf("copy %d is database %q: want a plane_test_ database of its own, not the template %s or another copy", i, name, template)
		}
		seen[name] = true
		var n int
		if err := watcher.QueryRow(t.Context(), "SELECT count(*) FROM pg_database WHERE datname = $1", name).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("copy %d, %s, still exists after its test", i, name)
		}
	}
}
