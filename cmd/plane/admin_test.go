package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"plane/auth"
	"plane/server/sqlite"
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
	for _, tt := range []struct {
		args    []string
		want    string // the output, or the error's text
		wantErr bool
	}{
		{[]string{"--name", " web "}, "1\n", false},
		{nil, "--name is required", true},
		{[]string{"--name", "  "}, "--name is required", true},
	} {
		out, err := create(tt.args...)
		if tt.wantErr != (err != nil) || (err != nil && !strings.Contains(err.Error(), tt.want)) || (err == nil && out != tt.want) {
			t.Errorf("create %q: output %q, err %v; want %q", tt.args, out, err, tt.want)
		}
	}
	db, err := sqlite.Open(ctx, filepath.Join(data, "controller.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if p, err := db.FindProjectByName(ctx, "web"); err != nil || p.ID != 1 {
		t.Fatalf("project web: %+v, %v", p, err)
	}
}
