package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"plane"
)

// Credentials in a NATS URL never reach a log line or an error message.
func TestRedactURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"nats://127.0.0.1:4222", "nats://127.0.0.1:4222"},
		{"nats://plane:s3cret@nats-1:4222", "nats://plane:xxxxx@nats-1:4222"},
		{"nats://s3cret@nats-1:4222", "nats://xxxxx@nats-1:4222"}, // a token
		{"nats://plane:@nats-1:4222", "nats://plane:xxxxx@nats-1:4222"},
		{"nats://plane:p%40ss@nats-1:4222", "nats://plane:xxxxx@nats-1:4222"},
		{"nats://a:s3cret@n1:4222,nats://b:s3cret@n2:4222", "nats://a:xxxxx@n1:4222,nats://b:xxxxx@n2:4222"},
		{"nats://n1:4222, nats://s3cret@n2:4222", "nats://n1:4222,nats://xxxxx@n2:4222"},
		{"nats://plane:s3cret@nats-1:bad", "nats://xxxxx@nats-1:bad"}, // url.Parse fails
		{"plane:s3cret@nats-1:4222", "xxxxx@nats-1:4222"},             // no scheme
		{"s3cret@nats-1", "xxxxx@nats-1"},
		{"nats-1:4222", "nats-1:4222"},
		{"", ""},
		// Postgres URLs (--store): libpq also reads a password from the query.
		{"postgres://plane:s3cret@db:5432/plane?sslmode=require", "postgres://plane:xxxxx@db:5432/plane?sslmode=require"},
		{"postgres://plane@db/plane?password=s3cret", "postgres://xxxxx@db/plane?password=xxxxx"}, // a user alone may be a NATS token: hidden
		{"postgres://db/plane?user=plane&password=s3cret&sslpassword=k3y", "postgres://db/plane?password=xxxxx&sslpassword=xxxxx&user=plane"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := redactURL(tt.in); got != tt.want {
				t.Errorf("redactURL(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// A URL that does not parse comes back whole in nats.Connect's error;
// connectNATS's error keeps the cause but not the password.
func TestControllerNATSErrorRedacted(t *testing.T) {
	_, err := connectNATS("nats://plane:s3cret@127.0.0.1:bad", "", "test")
	if err == nil || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "invalid port") {
		t.Fatalf("err = %v, want one about the port without the password", err)
	}
}

// The controller's data folder and store are its own: an existing folder
// is narrowed to 0700, the store is 0600, and the NATS password it was
// given is not logged.
func TestControllerDataFolder(t *testing.T) {
	ns := mustStartNATS(t)
	data := filepath.Join(t.TempDir(), "plane")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(data, 0o755); err != nil { // whatever the umask
		t.Fatal(err)
	}
	var logs syncBuffer
	// The test server wants no password; the controller sends one anyway.
	natsURL := strings.Replace(ns.ClientURL(), "nats://", "nats://plane:s3cret@", 1)
	c, err := OpenController(context.Background(), ControllerConfig{
		DataDir: data, HTTPAddr: "127.0.0.1:0", BackendURL: "http://{id}.plane.localhost/", NATSURL: natsURL,
		Domain: "plane.localhost", Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Make the store write, so that sqlite creates its -wal and -shm.
	if _, err := c.EnsureProject(context.Background(), "p"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path string
		want os.FileMode
	}{
		{data, 0o700},
		{filepath.Join(data, "controller.db"), 0o600},
		{filepath.Join(data, "controller.db-wal"), 0o600},
		{filepath.Join(data, "controller.db-shm"), 0o600},
		{filepath.Join(data, "signing.key"), 0o600},
	}
	for _, tt := range tests {
		fi, err := os.Stat(tt.path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != tt.want {
			t.Errorf("%s: mode %v, want %v", filepath.Base(tt.path), got, tt.want)
		}
	}
	if got := logs.String(); strings.Contains(got, "s3cret") || !strings.Contains(got, "plane:xxxxx@") {
		t.Errorf("log %q: want the NATS URL without its password", got)
	}
}

// --trusted-proxies takes CIDRs or addresses, from the command line or the
// environment; anything else stops the command before it starts.
func TestControllerTrustedProxiesFlag(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     string // PLANE_TRUSTED_PROXIES, when not ""
		want    string // the parsed list, or part of the error
		wantErr bool
	}{
		{"none", nil, "", "", false},
		{"CIDRs and an address", []string{"--trusted-proxies", "10.0.0.0/8, 192.168.1.7,fd00::/8"}, "", "10.0.0.0/8,192.168.1.7/32,fd00::/8", false},
		{"host bits are dropped", []string{"--trusted-proxies", "10.1.2.3/8"}, "", "10.0.0.0/8", false},
		{"from the environment", nil, "203.0.113.0/24", "203.0.113.0/24", false},
		{"flag wins over environment", []string{"--trusted-proxies", "10.0.0.1"}, "bad", "10.0.0.1/32", false},
		{"bad prefix length", []string{"--trusted-proxies", "10.0.0.0/33"}, "", `"10.0.0.0/33" is neither a CIDR`, true},
		{"not an address", []string{"--trusted-proxies", "proxy.example"}, "", `"proxy.example" is neither a CIDR`, true},
		{"bad in the environment", nil, "10.0.0.0/8,nope", `PLANE_TRUSTED_PROXIES="10.0.0.0/8,nope"`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.env != "" {
				t.Setenv("PLANE_TRUSTED_PROXIES", tt.env)
			}
			var cfg ControllerConfig
			fs := newFlagSet("controller", "", io.Discard)
			trustedProxiesFlag(fs, &cfg)
			err := parseFlags(fs, tt.args)
			if tt.wantErr {
				if !errors.As(err, new(usageError)) || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("err = %v, want a usage error with %q", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := (*prefixesFlag)(&cfg.TrustedProxies).String(); got != tt.want {
				t.Fatalf("trusted proxies %q, want %q", got, tt.want)
			}
		})
	}

	// Both commands that run a controller refuse a bad list at once.
	for name, run := range map[string]func(context.Context, []string, io.Writer, io.Writer) error{"controller": runController, "dev": runDev} {
		err := run(context.Background(), []string{"--domain", "plane.localhost", "--trusted-proxies", "10.0.0.0/99"}, io.Discard, io.Discard)
		if !errors.As(err, new(usageError)) || !strings.Contains(err.Error(), "10.0.0.0/99") {
			t.Errorf("%s: err = %v, want a usage error naming the bad CIDR", name, err)
		}
	}
}

// A fresh controller has project default before /readyz first answers, and
// /readyz says which part fails: the store here, and JetStream when it
// cannot take a write (the fault suite's quorum loss).
func TestControllerReadyz(t *testing.T) {
	ns := mustStartNATS(t)
	c, err := OpenController(context.Background(), ControllerConfig{
		DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", BackendURL: "http://{id}.plane.localhost/", NATSURL: ns.ClientURL(),
		Domain: "plane.localhost", Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.DB.FindProjectByName(context.Background(), plane.DefaultProject); err != nil {
		t.Fatalf("project default: %v", err)
	}
	readyz := func() (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + c.Server.Addr() + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := readyz(); code != http.StatusOK {
		t.Fatalf("readyz: %d %s", code, body)
	}
	if err := c.DB.Close(); err != nil {
		t.Fatal(err)
	}
	if code, body := readyz(); code != http.StatusServiceUnavailable || !strings.Contains(body, "the store does not answer") {
		t.Errorf("readyz with the store closed: %d %s", code, body)
	}
}
