package drone_test

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"plane"
	"plane/drone"
	"plane/drone/proxy"
)

// The drone asks for the connect-token keys until it has them, then again
// every KeyRefresh: a rotation of the controllers' signing key (a key added
// to the accepted ones, then dropped) reaches its proxy without a restart.
func TestConnectKeysRefreshed(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	cur, _, _ := ed25519.GenerateKey(nil)
	next, _, _ := ed25519.GenerateKey(nil)
	var mu sync.Mutex
	answer := plane.ConnectKey{PublicKey: cur}
	asks := 0
	sub, err := h.nc.Subscribe(plane.SubjectConnectKey, func(m *nats.Msg) {
		mu.Lock()
		defer mu.Unlock()
		asks++
		if asks == 1 {
			return // the controller is not there yet: the drone asks again
		}
		data, _ := json.Marshal(answer)
		_ = m.Respond(data)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := h.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	p := proxy.New(proxy.Config{Domain: "plane.test", Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(func() { _ = p.Close() })
	h.start(func(c *drone.Config) { c.Proxy, c.KeyRefresh = p, 20*time.Millisecond })

	received := func(n int) func() bool {
		return func() bool {
			return strings.Count(h.logs.String(), "connect-token keys received") >= n
		}
	}
	waitUntil(t, "the first keys", received(1))
	mu.Lock()
	answer.Accepted = [][]byte{next} // a rotation begins
	mu.Unlock()
	waitUntil(t, "the keys with the accepted one", received(2))
	if !strings.Contains(h.logs.String(), "keys=2") {
		t.Errorf("the drone did not log the two keys:\n%s", h.logs.String())
	}
	// Unchanged answers are not applied again.
	mu.Lock()
	before := asks
	mu.Unlock()
	waitUntil(t, "more asks", func() bool { mu.Lock(); defer mu.Unlock(); return asks >= before+3 })
	if n := strings.Count(h.logs.String(), "connect-token keys received"); n != 2 {
		t.Errorf("keys applied %d times, want 2 (one per change)", n)
	}
}

// waitUntil polls cond until it holds, failing the test after 10 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A backend the drone has accepted is routed before the drone answers the
// spawn: a user who follows its URL at once waits at the proxy for it to be
// ready, instead of a 503 "the drone is starting" (seen in CI when the
// request beat the backend's first status change).
func TestRoutedWhenAccepted(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.rt.BlockPull(testImage) // the backend stays in loading, or before it
	t.Cleanup(func() { h.rt.ReleasePull(testImage, nil) })
	p := proxy.New(proxy.Config{Domain: "plane.test", Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(func() { _ = p.Close() })
	h.start(func(c *drone.Config) { c.Proxy = p })
	for i := range 20 {
		id := fmt.Sprintf("routed%d", i)
		h.mustSpawn(plane.SpawnSpec{BackendID: id, ImageRef: testImage, PullPolicy: plane.PullAlways, Port: 8080})
		if _, last := p.Activity(id); last.IsZero() {
			t.Fatalf("backend %s accepted but not routed", id)
		}
	}
}
