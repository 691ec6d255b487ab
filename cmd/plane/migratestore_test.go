package main

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"plane"
	"plane/server/postgres"
	"plane/server/postgres/pgtest"
	"plane/server/sqlite"
	"plane/server/sqlstore"
)

// clearMigrateStoreEnv keeps the environment twins of migrate-store's flags
// out of its tests.
func clearMigrateStoreEnv(t *testing.T) {
	t.Helper()
	for _, f := range []string{"from", "to", "data"} {
		t.Setenv(envName(f), "")
	}
}

// mustSqliteStoreWithData makes a sqlite store at path holding a user, a
// project with an image, a backend with its history, and the cluster's
// identity.
func mustSqliteStoreWithData(t *testing.T, path string) {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	u := &plane.User{Email: "ada@example.com", Name: "Ada", PasswordHash: "hash"}
	if err := db.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	p := &plane.Project{Name: "web"}
	if err := db.CreateProject(ctx, p); err != nil {
		t.Fatal(err)
	}
	img := &plane.Image{ProjectID: p.ID, Name: "site", Ref: "site:1", Port: 8080, PullPolicy: plane.PullAlways, Public: true}
	if err := db.CreateImage(ctx, img); err != nil {
		t.Fatal(err)
	}
	b, _, err := db.CreateBackend(ctx, &plane.Backend{ProjectID: p.ID, Image: "site", ImageRef: "site:1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := db.ApplyBackendEvent(ctx, plane.BackendEvent{BackendID: b.ID, DroneID: "d1", Status: plane.StatusReady, Time: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ClusterIdentity(ctx); err != nil {
		t.Fatal(err)
	}
}

// storeContents is what a test compares between a store and its copy.
type storeContents struct {
	Users    []*plane.User
	Projects []*plane.Project
	Images   []*plane.Image
	Backends []*plane.Backend
	Cluster  plane.ClusterIdentity
	Counts   []sqlstore.TableCount
}

func mustReadStore(t *testing.T, open func(context.Context, string) (*sqlstore.DB, error), where string) storeContents {
	t.Helper()
	ctx := context.Background()
	db, err := open(ctx, where)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var c storeContents
	var errs [6]error
	c.Users, errs[0] = db.FindUsers(ctx)
	c.Projects, errs[1] = db.FindProjects(ctx)
	if len(c.Projects) > 0 {
		c.Images, errs[2] = db.FindImages(ctx, c.Projects[0].ID)
	}
	c.Backends, errs[3] = db.FindBackends(ctx, plane.BackendFilter{})
	c.Cluster, errs[4] = db.ClusterIdentity(ctx)
	c.Counts, errs[5] = db.CountRows(ctx)
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// A sqlite store goes to Postgres and back into a new sqlite file, the
// second time through --data; each copy says what it moved.
func TestAdminMigrateStore(t *testing.T) {
	clearMigrateStoreEnv(t)
	ctx := context.Background()
	src := filepath.Join(t.TempDir(), "controller.db")
	mustSqliteStoreWithData(t, src)
	want := mustReadStore(t, sqlite.Open, src)
	dsn := pgtest.DSN(t)

	var out, errOut bytes.Buffer
	if err := runAdminMigrateStore(ctx, []string{"--from", src, "--to", dsn}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	line := out.String()
	if !strings.HasPrefix(line, "copied sqlite "+src+" to "+redactURL(dsn)+": ") || strings.Count(line, "\n") != 1 {
		t.Errorf("output %q, want one line from sqlite %s to %s", line, src, redactURL(dsn))
	}
	var total int64
	for _, c := range want.Counts {
		total += c.Rows
		if part := fmt.Sprintf("%s %d", c.Table, c.Rows); !strings.Contains(line, part) {
			t.Errorf("output %q lacks %q", line, part)
		}
	}
	if !strings.Contains(line, fmt.Sprintf(": %d rows (", total)) {
		t.Errorf("output %q lacks the total, %d rows", line, total)
	}
	if u, err := url.Parse(dsn); err == nil {
		if pw, ok := u.User.Password(); ok && strings.Contains(line, pw) {
			t.Errorf("output %q shows the password", line)
		}
	}
	if got := mustReadStore(t, postgres.Open, dsn); !reflect.DeepEqual(got, want) {
		t.Errorf("Postgres holds %+v, want %+v", got, want)
	}

	data := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := runAdminMigrateStore(ctx, []string{"--from", dsn, "--data", data}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	back := filepath.Join(data, "controller.db")
	if !strings.HasPrefix(out.String(), "copied "+redactURL(dsn)+" to sqlite "+back+": ") {
		t.Errorf("output %q, want a copy to sqlite %s", out.String(), back)
	}
	if got := mustReadStore(t, sqlite.Open, back); !reflect.DeepEqual(got, want) {
		t.Errorf("the sqlite copy holds %+v, want %+v", got, want)
	}
	if fi, err := os.Stat(back); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the new sqlite file: %v, mode %v; want 600", err, fi.Mode().Perm())
	}
}

func TestAdminMigrateStoreRefuses(t *testing.T) {
	clearMigrateStoreEnv(t)
	ctx := context.Background()
	dir := t.TempDir()
	src := filepath.Join(dir, "controller.db")
	mustSqliteStoreWithData(t, src)
	other := t.TempDir()
	mustStoreWithProjects(t, other, "taken")
	full := filepath.Join(other, "controller.db")
	missing := filepath.Join(dir, "missing.db")
	fresh := filepath.Join(t.TempDir(), "fresh.db")

	tests := []struct {
		name  string
		args  []string
		want  string
		usage bool
	}{
		{"no flags", nil, "--from and --to are required", true},
		{"no destination", []string{"--from", src}, "--to is required", true},
		{"no source", []string{"--to", fresh}, "--from is required", true},
		{"an argument", []string{"--from", src, "--to", fresh, "extra"}, "takes no arguments", true},
		{"the same file", []string{"--from", src, "--to", filepath.Join(dir, ".", "x", "..", "controller.db")}, "the same store", true},
		{"the same file through --data", []string{"--from", src, "--data", dir}, "the same store", true},
		{"the same database", []string{"--from", "postgres://a:1@db.example/plane", "--to", "postgres://b@DB.example:5432/plane"}, "the same store", true},
		{"another database", []string{"--from", "mysql://root:s3cret@db/plane", "--to", fresh}, "want a postgres:// URL", true},
		{"a folder", []string{"--from", src, "--to", dir}, "is a folder", true},
		{"a missing source", []string{"--from", missing, "--to", fresh}, "does not exist", false},
		{"a destination with data", []string{"--from", src, "--to", full}, "not empty", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := runAdminMigrateStore(ctx, tt.args, &out, &errOut)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one saying %q", err, tt.want)
			}
			if _, usage := err.(usageError); usage != tt.usage {
				t.Errorf("usage error %v, want %v", usage, tt.usage)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error %q shows a password", err)
			}
			if out.Len() > 0 {
				t.Errorf("output %q after a refusal", out.String())
			}
		})
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Errorf("a refused copy made the missing source: %v", err)
	}
	if got := mustReadStore(t, sqlite.Open, full); len(got.Projects) != 1 || len(got.Users) != 0 {
		t.Errorf("a refused copy changed the destination: %+v", got)
	}
}
