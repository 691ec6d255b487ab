package main

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"plane"
)

func TestSpawnLifecycle(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	status, b := c.spawn(map[string]any{"image": "demo", "key": "doc-1", "wait": true})
	if status != http.StatusCreated || !b.Spawned {
		t.Fatalf("spawn: status %d spawned %v, want 201 and true", status, b.Spawned)
	}
	if b.Status != plane.StatusReady {
		t.Fatalf("status %s (%s), want ready", b.Status, b.Error)
	}
	want := []plane.BackendStatus{plane.StatusScheduled, plane.StatusLoading, plane.StatusStarting, plane.StatusWaiting, plane.StatusReady}
	if len(b.StatusHistory) != len(want) {
		t.Fatalf("history %+v, want %v", b.StatusHistory, want)
	}
	for i, h := range b.StatusHistory {
		if h.Status != want[i] {
			t.Errorf("history[%d] = %s, want %s", i, h.Status, want[i])
		}
		if h.Time.IsZero() || i > 0 && h.Time.Before(b.StatusHistory[i-1].Time) {
			t.Errorf("history[%d] time %v out of order", i, h.Time)
		}
	}
	if b.Drone != c.droneID || b.Key != "doc-1" || !strings.Contains(b.URL, b.ID) {
		t.Errorf("drone %q key %q url %q", b.Drone, b.Key, b.URL)
	}
	// The container got the promised environment and labels.
	st := inspect(t, b.ID)
	if !st.Running || st.BackendID != b.ID {
		t.Fatalf("container %+v", st)
	}
	// The demo app's WebSocket echo answers (the proxy is tested on top of this).
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws://"+st.Address+"/ws", nil)
	if err != nil {
		t.Fatalf("websocket: %v", err)
	}
	if err := ws.Write(ctx, websocket.MessageText, []byte("ping")); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := ws.Read(ctx); err != nil || string(msg) != "ping" {
		t.Fatalf("websocket echo %q %v", msg, err)
	}
	ws.Close(websocket.StatusNormalClosure, "")
	env := getJSON(t, "http://"+st.Address+"/env")
	for k, v := range map[string]string{"PORT": "8080", "PLANE_BACKEND_ID": b.ID, "PLANE_BACKEND_KEY": "doc-1"} {
		if env[k] != v {
			t.Errorf("container env %s = %q, want %q", k, env[k], v)
		}
	}
}

func TestTermination(t *testing.T) {
	c := newCluster(t, clusterOpts{startTimeout: 2 * time.Second})
	exit := func(code string) map[string]any {
		return map[string]any{"image": "demo", "env": map[string]string{"DEMO_MODE": "exit", "DEMO_EXIT_CODE": code, "DEMO_EXIT_AFTER_MS": "300"}}
	}
	tests := []struct {
		name      string
		req       map[string]any
		terminate string // "", "soft" or "hard"
		reason    plane.TerminationReason
		exitCode  *int
		errHas    string
	}{
		{name: "exits 0", req: exit("0"), reason: plane.ReasonExited, exitCode: ptr(0)},
		{name: "exits 3", req: exit("3"), reason: plane.ReasonExited, exitCode: ptr(3)},
		{name: "image absent, pull never", req: map[string]any{"image": "missing"}, reason: plane.ReasonFailed, errHas: "plane-missing:nope"},
		{name: "never answers", req: map[string]any{"image": "demo", "env": map[string]string{"DEMO_MODE": "hang"}}, reason: plane.ReasonFailed, errHas: "start timeout"},
		{name: "soft terminate", req: map[string]any{"image": "demo"}, terminate: "soft", reason: plane.ReasonRequested, exitCode: ptr(0)},
		{name: "soft terminate ignored, killed after grace", req: map[string]any{"image": "demo", "env": map[string]string{"DEMO_IGNORE_SIGTERM": "1"}}, terminate: "soft", reason: plane.ReasonRequested, exitCode: ptr(137)},
		{name: "hard terminate", req: map[string]any{"image": "demo", "env": map[string]string{"DEMO_IGNORE_SIGTERM": "1"}}, terminate: "hard", reason: plane.ReasonRequested, exitCode: ptr(137)},
	}
	c.registerImage(c.project.ID, "missing", "plane-missing:nope", plane.PullNever)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.req["wait"] = true
			_, b := c.spawn(tt.req)
			if tt.terminate != "" {
				if b.Status != plane.StatusReady {
					t.Fatalf("status %s (%s), want ready", b.Status, b.Error)
				}
				status, data := c.call(http.MethodPost, "/api/v1/backends/"+b.ID+"/terminate", map[string]bool{"hard": tt.terminate == "hard"})
				if status != http.StatusAccepted {
					t.Fatalf("terminate: %d %s", status, data)
				}
			}
			b = c.waitStatus(b.ID, plane.StatusTerminated, 15*time.Second)
			if b.TerminationReason != tt.reason {
				t.Errorf("reason %q (%s), want %q", b.TerminationReason, b.Error, tt.reason)
			}
			switch {
			case tt.exitCode == nil && b.ExitCode != nil:
				t.Errorf("exit code %d, want none", *b.ExitCode)
			case tt.exitCode != nil && (b.ExitCode == nil || *b.ExitCode != *tt.exitCode):
				t.Errorf("exit code %v, want %d", deref(b.ExitCode), *tt.exitCode)
			}
			if !strings.Contains(b.Error, tt.errHas) {
				t.Errorf("error %q, want it to mention %q", b.Error, tt.errHas)
			}
			last := b.StatusHistory[len(b.StatusHistory)-1]
			if last.Status != plane.StatusTerminated {
				t.Errorf("history ends with %s", last.Status)
			}
			// The container is removed once terminated.
			eventually(t, 5*time.Second, "container removed", func() bool {
				_, err := c.drone.Runtime.Inspect(context.Background(), "plane-"+b.ID)
				return err != nil
			})
		})
	}
}

func TestOneBackendPerKey(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	const n = 20
	type answer struct {
		status int
		b      backendOut
	}
	answers := make(chan answer, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			status, b := c.spawn(map[string]any{"image": "demo", "key": "room-7"})
			answers <- answer{status, b}
		})
	}
	wg.Wait()
	close(answers)
	ids := map[string]int{}
	created := 0
	for a := range answers {
		ids[a.b.ID]++
		if a.status == http.StatusCreated {
			created++
			if !a.b.Spawned {
				t.Error("201 with spawned false")
			}
		} else if a.b.Spawned {
			t.Error("200 with spawned true")
		}
	}
	if created != 1 || len(ids) != 1 {
		t.Fatalf("%d created, ids %v; want one backend", created, ids)
	}
	var id string
	for k := range ids {
		id = k
	}
	_, other := c.spawn(map[string]any{"image": "demo", "key": "room-8"})
	if other.ID == id || !other.Spawned {
		t.Fatalf("another key gave %s (spawned %v), want a new backend", other.ID, other.Spawned)
	}
	status, data := c.call(http.MethodGet, "/api/v1/backends?key=room-7", nil)
	if status != http.StatusOK || strings.Count(string(data), `"id"`) != 1 {
		t.Fatalf("list by key: %d %s", status, data)
	}
}

func ptr[T any](v T) *T { return &v }

func deref(p *int) any {
	if p == nil {
		return nil
	}
	return *p
}

func getJSON(t testing.TB, url string) map[string]string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]string
	if err := jsonDecode(resp.Body, &m); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return m
}
