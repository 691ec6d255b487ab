package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	"plane/server/postgres"
	"plane/server/postgres/pgtest"
)

// --store picks the store of every command that opens it: plane migrate
// and the admin commands write to the Postgres database it names, not to
// the data folder; anything but a postgres:// URL is refused.
func TestStoreFlag(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DSN(t)
	data := t.TempDir()
	run := func(f func(context.Context, []string, *bytes.Buffer) error, args ...string) (string, error) {
		var out bytes.Buffer
		err := f(ctx, args, &out)
		return out.String(), err
	}
	migrate := func(ctx context.Context, args []string, out *bytes.Buffer) error {
		return runMigrate(ctx, args, out, out)
	}
	project := func(ctx context.Context, args []string, out *bytes.Buffer) error {
		return runAdminProjectCreate(ctx, args, out, out)
	}

	out, err := run(migrate, "--data", data, "--store", dsn)
	if err != nil || !strings.HasPrefix(out, "migrated postgres://") {
		t.Fatalf("migrate --store: %q, %v", out, err)
	}
	if out, err := run(project, "--data", data, "--store", dsn, "--name", "on-postgres"); err != nil || out != "1\n" {
		t.Fatalf("admin project create --store: %q, %v", out, err)
	}
	db, err := postgres.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if p, err := db.FindProjectByName(ctx, "on-postgres"); err != nil || p.ID != 1 {
		t.Fatalf("project on Postgres: %+v, %v", p, err)
	}
	if _, err := os.Stat(sqlitePath(data)); err == nil {
		t.Error("the data folder got a sqlite store although --store named Postgres")
	}

	// PLANE_STORE is the default of --store.
	t.Setenv(storeEnv, dsn)
	if out, err := run(project, "--data", data, "--name", "from-env"); err != nil || out != "2\n" {
		t.Fatalf("admin project create with %s: %q, %v", storeEnv, out, err)
	}

	for _, bad := range []string{"/var/lib/plane/controller.db", "mysql://x", "sqlite://x"} {
		if _, err := run(migrate, "--data", data, "--store", bad); err == nil || !strings.Contains(err.Error(), "postgres:// URL") {
			t.Errorf("migrate --store %q: %v, want a clear refusal", bad, err)
		}
	}
	// A password never shows in what the commands print.
	if got := describeStore("postgres://plane:s3cret@db:5432/plane", data); strings.Contains(got, "s3cret") {
		t.Errorf("describeStore shows the password: %q", got)
	}
}
