package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"plane"
	"plane/auth"
	"plane/server/sqlite"
)

// mustStoreWithProjects makes the store of the data folder dir holding the
// named projects.
func mustStoreWithProjects(t *testing.T, dir string, names ...string) {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(dir, "controller.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, n := range names {
		if err := db.CreateProject(context.Background(), &plane.Project{Name: n}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestAdminBackupRestore(t *testing.T) {
	t.Setenv("PLANE_STORE", "") // sqlite in the data folder
	ctx := context.Background()
	data := t.TempDir()
	mustStoreWithProjects(t, data, "web", "api")
	backup := filepath.Join(t.TempDir(), "plane.db")

	var out, errOut bytes.Buffer
	if err := runAdminBackup(ctx, []string{"--data", data, "--to", backup}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(backup)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("backed up %s to %s (%d bytes)\n", filepath.Join(data, "controller.db"), backup, fi.Size())
	if out.String() != want {
		t.Fatalf("output %q, want %q", out.String(), want)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup has mode %o, want 600", fi.Mode().Perm())
	}

	// A new machine: a data folder that does not exist yet.
	restored := filepath.Join(t.TempDir(), "new")
	out.Reset()
	if err := runAdminRestore(ctx, []string{"--data", restored, "--from", backup}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(restored, "controller.db")
	if want := fmt.Sprintf("restored %s to %s\n", backup, dst); out.String() != want {
		t.Fatalf("output %q, want %q", out.String(), want)
	}
	if !strings.Contains(errOut.String(), auth.KeyFileName) {
		t.Errorf("no note about the missing signing key: %q", errOut.String())
	}
	if fi, err := os.Stat(restored); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("data folder: %v, mode %o; want 700", err, fi.Mode().Perm())
	}
	db, err := sqlite.Open(ctx, dst)
	if err != nil {
		t.Fatal(err)
	}
	ps, err := db.FindProjects(ctx)
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range ps {
		names = append(names, p.Name)
	}
	if strings.Join(names, ",") != "web,api" && strings.Join(names, ",") != "api,web" {
		t.Fatalf("restored projects %q, want web and api", names)
	}

	t.Run("signing key kept", func(t *testing.T) {
		data := t.TempDir()
		if _, err := auth.LoadOrCreateKey(data); err != nil {
			t.Fatal(err)
		}
		var out, errOut bytes.Buffer
		if err := runAdminRestore(ctx, []string{"--data", data, "--from", backup}, &out, &errOut); err != nil {
			t.Fatal(err)
		}
		if errOut.Len() > 0 {
			t.Fatalf("unexpected note: %q", errOut.String())
		}
	})
}

func TestAdminBackupRestoreRefuses(t *testing.T) {
	t.Setenv("PLANE_STORE", "") // sqlite in the data folder
	ctx := context.Background()
	data := t.TempDir()
	mustStoreWithProjects(t, data, "web")
	store := filepath.Join(data, "controller.db")
	files := t.TempDir()
	backup := filepath.Join(files, "plane.db")
	if err := sqlite.Backup(ctx, store, backup); err != nil {
		t.Fatal(err)
	}
	junk := filepath.Join(files, "notes.txt")
	if err := os.WriteFile(junk, []byte(strings.Repeat("not a database\n", 100)), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := t.TempDir()

	tests := []struct {
		name      string
		cmd       func(context.Context, []string, io.Writer, io.Writer) error
		args      []string
		want      string // in the error
		wantUsage bool
	}{
		{"backup without --to", runAdminBackup, []string{"--data", data}, "--to is required", true},
		{"backup with an argument", runAdminBackup, []string{"--data", data, "--to", filepath.Join(files, "b.db"), "extra"}, "takes no arguments", true},
		{"backup over a file", runAdminBackup, []string{"--data", data, "--to", backup}, backup + " already exists", false},
		{"backup without a store", runAdminBackup, []string{"--data", empty, "--to", filepath.Join(files, "c.db")}, "no such file", false},
		{"restore without --from", runAdminRestore, []string{"--data", empty}, "--from is required", true},
		{"restore with an argument", runAdminRestore, []string{"--data", empty, "--from", backup, "extra"}, "takes no arguments", true},
		{"restore over a store", runAdminRestore, []string{"--data", data, "--from", backup}, "stop the controller and move " + store + " away first", false},
		{"restore a text file", runAdminRestore, []string{"--data", empty, "--from", junk}, junk + ": not a sqlite database", false},
		{"backup of a Postgres store", runAdminBackup, []string{"--data", data, "--to", filepath.Join(files, "d.db")}, "PLANE_STORE names a Postgres store", true},
		{"restore of a Postgres store", runAdminRestore, []string{"--data", empty, "--from", backup}, "PLANE_STORE names a Postgres store", true},
		{"restore a missing file", runAdminRestore, []string{"--data", empty, "--from", filepath.Join(files, "missing.db")}, "no such file", false},
		{"restore a text file into a new folder", runAdminRestore, []string{"--data", filepath.Join(empty, "new"), "--from", junk}, "not a sqlite database", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if strings.Contains(tt.name, "Postgres") {
				t.Setenv("PLANE_STORE", "postgres://plane@127.0.0.1/plane")
			}
			var out bytes.Buffer
			err := tt.cmd(ctx, tt.args, &out, &out)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one saying %q", err, tt.want)
			}
			if got := errors.As(err, new(usageError)); got != tt.wantUsage {
				t.Errorf("usage error: %v, want %v (%v)", got, tt.wantUsage, err)
			}
			if out.Len() > 0 {
				t.Errorf("output %q on failure", out.String())
			}
		})
	}
	for _, p := range []string{filepath.Join(empty, "controller.db"), filepath.Join(empty, "new"), filepath.Join(files, "b.db"), filepath.Join(files, "c.db"), filepath.Join(files, "d.db")} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s was made by a refused command: %v", p, err)
		}
	}
	// The store a refused restore met is untouched: it opens with its project.
	db, err := sqlite.Open(ctx, store)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.FindProjectByName(ctx, "web"); err != nil {
		t.Fatal(err)
	}
}
