package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"plane"
	"plane/auth"
	"plane/server/postgres/pgtest"
)

// A rotation of the signing key, as docs/deploy.md tells it, on a real
// controller restarted at each step: API tokens signed before it keep
// working while the old key is accepted and stop once it is dropped; the
// drones are offered every accepted key.
func TestSigningKeyRotation(t *testing.T) {
	c := newCluster(t, clusterOpts{noDrone: true})
	ctx := context.Background()
	oldTok := c.token
	oldPub := c.connectPublicKey()
	next := filepath.Join(t.TempDir(), "next.key")
	var out bytes.Buffer
	if err := runAdminKeyCreate(ctx, []string{"--out", next}, &out, &out); err != nil || !strings.Contains(out.String(), "created "+next) {
		t.Fatalf("admin key create: %q, %v", out.String(), err)
	}
	nextKey, err := auth.LoadKey(next)
	if err != nil {
		t.Fatal(err)
	}
	nextPub := nextKey.Public().(ed25519.PublicKey)

	restart := func(sign string, accept ...string) {
		t.Helper()
		c.ctrl.Close()
		c.ctrlCfg.SigningKey, c.ctrlCfg.AcceptKeys = sign, accept
		c.startController()
	}
	status := func(tok string) int {
		t.Helper()
		code, _ := c.callWith(tok, http.MethodGet, "/api/v1/backends", nil)
		return code
	}
	offered := func() plane.ConnectKey {
		t.Helper()
		nc, err := nats.Connect(c.ns.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		m, err := nc.Request(plane.SubjectConnectKey, nil, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		k, err := plane.Decode[plane.ConnectKey](m.Data)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}

	// 1. Every controller accepts the new key, still signing with the old.
	restart("", next)
	if k := offered(); !oldPub.Equal(ed25519.PublicKey(k.PublicKey)) || len(k.Accepted) != 1 || !nextPub.Equal(ed25519.PublicKey(k.Accepted[0])) {
		t.Fatalf("step 1 offers %x accepting %x; want the old key accepting the new", k.PublicKey, k.Accepted)
	}
	if s := status(oldTok); s != http.StatusOK {
		t.Fatalf("step 1: the old token gets %d", s)
	}

	// 2. They sign with the new key and accept the old.
	restart(next, filepath.Join(c.ctrlCfg.DataDir, auth.KeyFileName))
	out.Reset()
	if err := runAdminTokenCreate(ctx, []string{"--data", c.ctrlCfg.DataDir, "--signing-key", next, "--name", "after"}, &out, &out); err != nil {
		t.Fatalf("admin token create --signing-key: %v", err)
	}
	newTok := strings.TrimSpace(out.String())
	if k := offered(); !nextPub.Equal(ed25519.PublicKey(k.PublicKey)) || len(k.Accepted) != 1 || !oldPub.Equal(ed25519.PublicKey(k.Accepted[0])) {
		t.Fatalf("step 2 offers %x accepting %x; want the new key accepting the old", k.PublicKey, k.Accepted)
	}
	for name, tok := range map[string]string{"old": oldTok, "new": newTok} {
		if s := status(tok); s != http.StatusOK {
			t.Errorf("step 2: the %s token gets %d", name, s)
		}
	}

	// 3. The old key is dropped.
	restart(next)
	if s := status(oldTok); s != http.StatusUnauthorized {
		t.Errorf("step 3: the old token gets %d, want 401", s)
	}
	if s := status(newTok); s != http.StatusOK {
		t.Errorf("step 3: the new token gets %d", s)
	}
	if k := offered(); len(k.Accepted) != 0 {
		t.Errorf("step 3 still offers %x", k.Accepted)
	}

	// A signing key that does not exist is a clear refusal, not a new key.
	c.ctrl.Close()
	c.ctrl = nil
	c.ctrlCfg.SigningKey = filepath.Join(t.TempDir(), "typo.key")
	if _, err := OpenController(ctx, c.ctrlCfg); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("a missing --signing-key: %v", err)
	}
}

// Two controllers on one Postgres store with keys of their own: the second
// refuses to start, saying to give it the cluster's key; given it, it
// starts.
func TestSecondControllerWithItsOwnKey(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DSN(t)
	ns := mustStartNATS(t)
	cfg := func(data string) ControllerConfig {
		return ControllerConfig{DataDir: data, Store: dsn, HTTPAddr: "127.0.0.1:0", NATSURL: ns.ClientURL(),
			Domain: "plane.localhost", BackendURL: "http://{id}.plane.localhost/", Logger: testLogger(t, "controller")}
	}
	first, err := OpenController(ctx, cfg(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	second := cfg(t.TempDir()) // a new signing.key is made there
	if c, err := OpenController(ctx, second); err == nil {
		c.Close()
		t.Fatal("a controller with a key of its own started on the cluster's store")
	} else if !strings.Contains(err.Error(), "--signing-key") {
		t.Fatalf("refusal %q does not say what to do", err)
	}
	second.SigningKey = filepath.Join(first.cfg.DataDir, auth.KeyFileName)
	c, err := OpenController(ctx, second)
	if err != nil {
		t.Fatalf("with the cluster's key: %v", err)
	}
	c.Close()
}
