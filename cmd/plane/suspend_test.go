package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"plane"
)

// Suspend on idle, on real Docker: a backend idle for max_idle_seconds is
// paused (docker inspect says so) and shown suspended, still ready; a
// request through the proxy wakes it and gets the app's answer; a
// WebSocket opened to it while suspended works; suspended for
// suspend_seconds, it ends terminated (idle).
func TestSuspendOnIdleDocker(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	client := c.proxyClient()
	_, b := c.spawn(map[string]any{"image": "demo", "max_idle_seconds": 2, "suspend_seconds": 20, "wait": true})
	if b.Status != plane.StatusReady || b.SuspendSeconds != 20 {
		t.Fatalf("spawn: %s with suspend_seconds %d, want ready with 20", b.Status, b.SuspendSeconds)
	}
	tok := c.connectToken(b.ID, "alice", time.Hour)
	waitSuspended := func(what string) backendOut {
		t.Helper()
		eventually(t, 15*time.Second, what, func() bool { return inspect(t, b.ID).Paused })
		var got backendOut
		eventually(t, 5*time.Second, "the API to show it suspended", func() bool {
			got = c.get(b.ID)
			return got.Suspended
		})
		if got.Status != plane.StatusReady || got.SuspendedAt == nil {
			t.Fatalf("suspended backend in the API: %s, suspended_at %v; want ready with a time", got.Status, got.SuspendedAt)
		}
		return got
	}

	// 1. Idle: paused, shown suspended.
	waitSuspended("the container to be paused after max_idle_seconds")

	// 2. A request wakes it and gets the app's answer.
	start := time.Now()
	resp, body := c.proxyGet(t, client, c.hostURL(b.ID, "/"), tokenCookie(tok))
	took := time.Since(start)
	if resp.StatusCode != 200 || !strings.Contains(string(body), b.ID) {
		t.Fatalf("request to the suspended backend: %d %.200s", resp.StatusCode, body)
	}
	t.Logf("first request to the suspended backend answered in %s", took.Round(time.Millisecond))
	if inspect(t, b.ID).Paused {
		t.Fatal("the container is still paused after a request")
	}
	eventually(t, 5*time.Second, "the API to show it resumed", func() bool {
		got := c.get(b.ID)
		return !got.Suspended && got.ResumedAt != nil
	})

	// 3. Idle again; a WebSocket opened while it is suspended works.
	waitSuspended("the container to be paused again")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ws := c.dialWS(ctx, t, client, b.ID, tok)
	if err := ws.Write(ctx, websocket.MessageText, []byte("ping")); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := ws.Read(ctx); err != nil || string(msg) != "ping" {
		t.Fatalf("WebSocket echo from the woken backend: %q, %v", msg, err)
	}
	ws.Close(websocket.StatusNormalClosure, "")

	// 4. Suspended for suspend_seconds: terminated as idle.
	suspended := waitSuspended("the container to be paused a third time")
	got := c.waitStatus(b.ID, plane.StatusTerminated, 40*time.Second)
	if got.TerminationReason != plane.ReasonIdle {
		t.Fatalf("ended %q, want idle", got.TerminationReason)
	}
	var terminating time.Time
	for _, h := range got.StatusHistory {
		if h.Status == plane.StatusTerminating {
			terminating = h.Time
		}
	}
	if d := terminating.Sub(*suspended.SuspendedAt); d < 20*time.Second {
		t.Errorf("terminated %s after its suspension, before suspend_seconds", d)
	}
}
