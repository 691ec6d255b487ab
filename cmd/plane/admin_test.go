package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"plane"
	"plane/auth"
	"plane/server/sqlite"
	"plane/server/sqlstore"
)

func TestAdminUserCreate(t *testing.T) {
	old := auth.BcryptCost
	auth.BcryptCost = bcrypt.MinCost
	t.Cleanup(func() { auth.BcryptCost = old })
	data := t.TempDir()
	ctx := context.Background()
	t.Setenv(passwordEnv, "from the environment")

	create := func(stdin string, args ...string) (string, error) {
		var out bytes.Buffer
		err := runAdminUserCreate(ctx, append([]string{"--data", data}, args...), strings.NewReader(stdin), &out, &out)
		return out.String(), err
	}

	tests := []struct {
		name    string
		stdin   string
		args    []string
		want    string // the output, or the error's text
		wantErr bool
	}{
		{"first user is admin", "correct horse\n", []string{"--email", "ada@example.com", "--name", "Ada", "--password-stdin"}, "created admin 1 ada@example.com\n", false},
		{"password from the environment", "", []string{"--email", "bob@example.com"}, "created user 2 bob@example.com\n", false},
		{"--admin", "correct horse\r\n", []string{"--email", "cy@example.com", "--admin", "--password-stdin"}, "created admin 3 cy@example.com\n", false},
		{"email taken", "", []string{"--email", "ADA@example.com"}, "conflict", true},
		{"no email", "", nil, "--email: enter your email address", true},
		{"bad email", "", []string{"--email", "ada"}, `--email: "ada" is not an email address`, true},
		{"short password", "short\n", []string{"--email", "dee@example.com", "--password-stdin"}, "password: use at least 8 characters", true},
		{"empty stdin", "", []string{"--email", "dee@example.com", "--password-stdin"}, "password: use at least 8 characters", true},
		{"long password", strings.Repeat("x", 200), []string{"--email", "dee@example.com", "--password-stdin"}, "password: use at most 72 bytes", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := create(tt.stdin, tt.args...)
			if tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("err = %v, want one saying %q (output %q)", err, tt.want, out)
				}
				return
			}
			if err != nil || out != tt.want {
				t.Fatalf("output %q, err %v; want %q", out, err, tt.want)
			}
		})
	}

	t.Run("no password", func(t *testing.T) {
		t.Setenv(passwordEnv, "") // restored after the test
		os.Unsetenv(passwordEnv)
		_, err := create("", "--email", "dee@example.com")
		if !errors.As(err, new(usageError)) || !strings.Contains(err.Error(), "--password-stdin") {
			t.Fatalf("err = %v, want a usage error naming --password-stdin", err)
		}
	})

	db, err := sqlite.Open(ctx, filepath.Join(data, "controller.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for email, pw := range map[string]string{"ada@example.com": "correct horse", "bob@example.com": "from the environment", "cy@example.com": "correct horse"} {
		u, err := db.FindUserByEmail(ctx, email)
		if err != nil {
			t.Fatal(err)
		}
		if !auth.CheckPassword(u.PasswordHash, pw) {
			t.Errorf("%s: stored hash does not match %q", email, pw)
		}
	}
	if users, err := db.FindUsers(ctx); err != nil || len(users) != 3 {
		t.Fatalf("%d users, %v; want 3", len(users), err)
	}
}

func TestAdminProjectCreate(t *testing.T) {
	data := t.TempDir()
	ctx := context.Background()
	create := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := runAdminProjectCreate(ctx, append([]string{"--data", data}, args...), &out, &out)
		return out.String(), err
	}
	db, err := sqlite.Open(ctx, filepath.Join(data, "controller.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// owner says who owns project name's team, "" for nobody yet.
	owner := func(name string) string {
		t.Helper()
		p, err := db.FindProjectByName(ctx, name)
		if err != nil {
			t.Fatalf("project %s: %v", name, err)
		}
		ms, err := db.FindMembers(ctx, p.TeamID)
		if err != nil {
			t.Fatal(err)
		}
		var who []string
		for _, m := range ms {
			who = append(who, m.Email+" "+string(m.Role))
		}
		return strings.Join(who, ", ")
	}
	mustUser := func(email string, admin bool) *plane.User {
		t.Helper()
		u := &plane.User{Email: email, Admin: admin, PasswordHash: "x"}
		if err := db.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		return u
	}
	step := func(want string, wantErr bool, args ...string) {
		t.Helper()
		out, err := create(args...)
		if wantErr != (err != nil) || (err != nil && !strings.Contains(err.Error(), want)) || (err == nil && out != want) {
			t.Errorf("create %q: output %q, err %v; want %q", args, out, err, want)
		}
	}

	// Before anyone signed up: a team of its own, which the first user
	// will own (as project default's).
	step("1\n", false, "--name", " web ")
	step("--name is required", true)
	step("--name is required", true, "--name", "  ")
	if got := owner("web"); got != "" {
		t.Errorf("web's team has members %q before any user", got)
	}
	ada := mustUser("ada@example.com", false) // the first user: admin, and owner of web's team
	if got := owner("web"); got != "ada@example.com owner" {
		t.Errorf("web's team: %q, want the first user as its owner", got)
	}

	// After: the first admin owns the new project's team, or --owner.
	mustUser("bob@example.com", false)
	step("2\n", false, "--name", "api")
	if got := owner("api"); got != "ada@example.com owner" {
		t.Errorf("api's team: %q, want the first admin", got)
	}
	step("3\n", false, "--name", "docs", "--owner", "BOB@example.com")
	if got := owner("docs"); got != "bob@example.com owner" {
		t.Errorf("docs' team: %q, want --owner", got)
	}
	web, err := db.FindProjectByName(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	step("4\n", false, "--name", "blog", "--team", strconv.FormatInt(web.TeamID, 10))
	if blog, err := db.FindProjectByName(ctx, "blog"); err != nil || blog.TeamID != web.TeamID {
		t.Errorf("blog: %+v, %v; want it in web's team %d", blog, err, web.TeamID)
	}

	// Refusals leave no team behind.
	teamsBefore := teamCount(t, db, ada.ID)
	step("user nobody@example.com not found", true, "--name", "x", "--owner", "nobody@example.com")
	step("already exists", true, "--name", "api")
	step("team 999 not found", true, "--name", "y", "--team", "999")
	step("exclude each other", true, "--name", "z", "--team", "1", "--owner", "ada@example.com")
	if n := teamCount(t, db, ada.ID); n != teamsBefore {
		t.Errorf("refused creations left teams behind: %d, before %d", n, teamsBefore)
	}
	if _, err := db.FindProjectByName(ctx, "x"); plane.ErrorCodeOf(err) != plane.ENOTFOUND {
		t.Errorf("a refused project exists: %v", err)
	}
}

// teamCount is how many teams userID belongs to.
func teamCount(t *testing.T, db *sqlstore.DB, userID int64) int {
	t.Helper()
	ts, err := db.FindTeamsOfUser(context.Background(), userID)
	if err != nil {
		t.Fatal(err)
	}
	return len(ts)
}

// The drones commands, end to end: an admin token made on the controller's
// machine lists, drains and undrains a real drone through the API.
func TestAdminDrones(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	ctx := context.Background()
	run := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := runAdmin(ctx, args, &out, &out)
		return out.String(), err
	}
	out, err := run("token", "create", "--data", c.ctrlCfg.DataDir, "--name", "ops", "--scopes", "admin")
	if err != nil {
		t.Fatalf("admin token create --scopes admin: %v %s", err, out)
	}
	flags := []string{"--url", c.api, "--token", strings.TrimSpace(out)}

	out, err = run(append([]string{"drones"}, flags...)...)
	if err != nil {
		t.Fatalf("admin drones: %v %s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || strings.Join(strings.Fields(lines[0]), " ") != "ID STATUS ADDRESS BACKENDS VERSION HEARTBEAT" {
		t.Fatalf("admin drones printed %q", out)
	}
	if f := strings.Fields(lines[1]); len(f) != 7 || f[0] != c.droneID || f[1] != "ready" || f[2] != "127.0.0.1" || !strings.HasPrefix(f[3], "0/") || f[6] != "ago" {
		t.Errorf("drone row %q", lines[1])
	}

	out, err = run(append(append([]string{"drones", "drain"}, flags...), c.droneID)...)
	if err != nil || out != "drained "+c.droneID+" (draining)\n" {
		t.Fatalf("admin drones drain: %q, %v", out, err)
	}
	if d, err := c.ctrl.DB.FindDroneByID(ctx, c.droneID); err != nil || !d.Draining {
		t.Fatalf("after drain: %+v, %v", d, err)
	}
	// The drone itself took it, and keeps it across a restart.
	if draining, err := c.drone.Store.Draining(ctx); err != nil || !draining {
		t.Errorf("the drone's store says draining %v, %v", draining, err)
	}
	if status, body := c.call(http.MethodPost, "/api/v1/backends", map[string]any{"image": "demo"}); status != http.StatusServiceUnavailable {
		t.Errorf("spawn on the drained drone: %d %s", status, body)
	}

	out, err = run(append(append([]string{"drones", "undrain"}, flags...), c.droneID)...)
	if err != nil || out != "undrained "+c.droneID+" (ready)\n" {
		t.Fatalf("admin drones undrain: %q, %v", out, err)
	}
	if draining, err := c.drone.Store.Draining(ctx); err != nil || draining {
		t.Errorf("after undrain the drone's store says draining %v, %v", draining, err)
	}

	// A project's token is no admin's.
	if out, err := run("drones", "--url", c.api, "--token", c.token); plane.ErrorCodeOf(err) != plane.EFORBIDDEN {
		t.Errorf("admin drones with a project token: %v %s", err, out)
	}
	if _, err := run(append(append([]string{"drones", "drain"}, flags...), "nope")...); plane.ErrorCodeOf(err) != plane.ENOTFOUND {
		t.Errorf("drain an unknown drone: %v", err)
	}
}

// The drones commands' arguments, against a fake controller: a drone ID
// may hold a '-', which a backend ID may not.
func TestAdminDronesArgs(t *testing.T) {
	var paths []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		paths = append(paths, r.Method+" "+r.URL.Path)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"id": "drone-1", "status": "draining", "draining": true}`))
	}))
	t.Cleanup(srv.Close)
	run := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := runAdmin(context.Background(), args, &out, &out)
		return out.String(), err
	}
	if out, err := run("drones", "drain", "--url", srv.URL, "--token", "x", "drone-1"); err != nil || out != "drained drone-1 (draining)\n" {
		t.Errorf("drain drone-1: %q, %v", out, err)
	}
	if len(paths) != 1 || paths[0] != "POST /api/v1/drones/drone-1/drain" {
		t.Errorf("requests %q", paths)
	}
	for _, args := range [][]string{
		{"drones", "drain", "--url", srv.URL, "--token", "x"},
		{"drones", "undrain", "--url", srv.URL, "--token", "x", "a", "b"},
		{"drones", "drain", "--url", srv.URL, "--token", "x", "Bad_ID"},
		{"drones", "--url", srv.URL, "--token", "x", "extra"},
	} {
		if _, err := run(args...); !errors.As(err, new(usageError)) {
			t.Errorf("%q: %v, want a usage error", args, err)
		}
	}
	if len(paths) != 1 {
		t.Errorf("usage errors reached the controller: %q", paths)
	}
}
