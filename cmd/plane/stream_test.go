package main

import (
	"bufio"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"plane"
)

// sseEvent is one parsed Server-Sent Event.
type sseEvent struct {
	id, event, data string
}

// readEvents reads a whole event stream (it ends after terminated).
func readEvents(t *testing.T, c *cluster, id, lastEventID string) []sseEvent {
	t.Helper()
	var out []sseEvent
	for e := range followEvents(t, c.api, c.token, id, lastEventID).events {
		out = append(out, e)
	}
	return out
}

func TestBackendEventsAndLogs(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	_, b := c.spawn(map[string]any{"image": "demo", "lifetime_seconds": 3})

	// Live: the stream starts while the backend is starting and ends after terminated.
	done := make(chan []sseEvent)
	go func() { done <- readEvents(t, c, b.ID, "") }()

	c.waitStatus(b.ID, plane.StatusReady, 10*time.Second)
	// Make the backend log a request line.
	st := inspect(t, b.ID)
	resp, err := http.Get("http://" + st.Address + "/healthz?from=test")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	var events []sseEvent
	select {
	case events = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("event stream did not end after terminated")
	}
	if len(events) != len(plane.Statuses) {
		t.Fatalf("%d events, want %d: %+v", len(events), len(plane.Statuses), events)
	}
	for i, ev := range events {
		var se struct {
			Status plane.BackendStatus     `json:"status"`
			Reason plane.TerminationReason `json:"termination_reason"`
		}
		if err := json.Unmarshal([]byte(ev.data), &se); err != nil {
			t.Fatal(err)
		}
		if se.Status != plane.Statuses[i] || ev.id != strconv.Itoa(i+1) || ev.event != "status" {
			t.Errorf("event %d: id %s %s %s, want id %d %s", i, ev.id, ev.event, se.Status, i+1, plane.Statuses[i])
		}
		if i == len(events)-1 && se.Reason != plane.ReasonLifetime {
			t.Errorf("last event reason %q, want lifetime", se.Reason)
		}
	}

	// Replay honours Last-Event-ID.
	replay := readEvents(t, c, b.ID, "5")
	if len(replay) != 2 || replay[0].id != "6" || replay[1].id != "7" {
		t.Errorf("replay after 5: %+v", replay)
	}

	// The logs outlive the container.
	status, data := c.call(http.MethodGet, "/api/v1/backends/"+b.ID+"/logs", nil)
	if status != 200 || !strings.Contains(string(data), "from=test") {
		t.Errorf("logs: %d %s", status, data)
	}
}

func TestLogsFollowEndsWithBackend(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	_, b := c.spawn(map[string]any{"image": "demo", "wait": true})
	req, _ := http.NewRequest(http.MethodGet, c.api+"/api/v1/backends/"+b.ID+"/logs?follow=true", nil)
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := make(chan string, 100)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			var l plane.LogLine
			if json.Unmarshal(sc.Bytes(), &l) == nil {
				lines <- l.Text
			}
		}
	}()
	st := inspect(t, b.ID)
	r, err := http.Get("http://" + st.Address + "/healthz?follow-marker")
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	waitLine(t, lines, "follow-marker")
	c.call(http.MethodPost, "/api/v1/backends/"+b.ID+"/terminate", nil)
	deadline := time.After(20 * time.Second)
	for {
		select {
		case _, ok := <-lines:
			if !ok {
				return // the stream ended after the backend terminated
			}
		case <-deadline:
			t.Fatal("followed logs did not end after terminate")
		}
	}
}

func waitLine(t *testing.T, lines <-chan string, has string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("log stream ended before a line with %q", has)
			}
			if strings.Contains(l, has) {
				return
			}
		case <-deadline:
			t.Fatalf("no log line with %q", has)
		}
	}
}

// The client commands work against a running controller with PLANE_URL and
// PLANE_TOKEN.
func TestCLI(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	env := append(os.Environ(), "PLANE_URL="+c.api, "PLANE_TOKEN="+c.token)
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(planeBin, args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("plane %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	out := run("spawn", "--image", "demo", "--key", "cli-key")
	if !strings.HasPrefix(out, "spawned ") || !strings.Contains(out, "(ready)") {
		t.Fatalf("spawn printed %q", out)
	}
	id := strings.Fields(out)[1]
	if out := run("spawn", "--image", "demo", "--key", "cli-key"); !strings.HasPrefix(out, "connected to "+id) {
		t.Errorf("second spawn printed %q", out)
	}
	if out := run("ls"); !strings.Contains(out, id) || !strings.Contains(out, "cli-key") {
		t.Errorf("ls printed %q", out)
	}
	if out := run("status", id); !strings.Contains(out, "ready") || !strings.Contains(out, "waiting") {
		t.Errorf("status printed %q", out)
	}
	if out := run("images"); !strings.Contains(out, "plane-demo:latest") {
		t.Errorf("images printed %q", out)
	}
	// A warm pool set from the command line; the pool fills on the drone,
	// and a spawn then claims a member.
	if out := run("image", "--warm-pool", "1", "demo"); out != "demo  plane-demo:latest  port 8080  warm pool 1 per drone\n" {
		t.Errorf("image --warm-pool printed %q", out)
	}
	eventually(t, 30*time.Second, "the warm pool to fill", func() bool { return c.readyMembers("demo") == 1 })
	if out := run("spawn", "--image", "demo"); !strings.Contains(out, "started warm") {
		t.Errorf("spawn from the warm pool printed %q", out)
	}
	if out := run("image", "--warm-pool", "0", "demo"); !strings.HasSuffix(out, "warm pool none\n") {
		t.Errorf("image --warm-pool 0 printed %q", out)
	}
	run("terminate", id)
	c.waitStatus(id, plane.StatusTerminated, 15*time.Second)
	if out := run("logs", id); !strings.Contains(out, "listening") {
		t.Errorf("logs printed %q", out)
	}
	// Errors are one clear line, with a non-zero exit.
	cmd := exec.Command(planeBin, "status", "nosuchbackend")
	cmd.Env = env
	out2, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out2), "not found") {
		t.Errorf("status of an unknown backend: %v %q", err, out2)
	}
	cmd = exec.Command(planeBin, "spawn", "--image", "demo")
	cmd.Env = os.Environ()
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "PLANE_TOKEN") {
		t.Errorf("spawn without a token: %v %q", err, out)
	}
	if out := run("spawn", "--help"); !strings.Contains(out, "PLANE_IMAGE") {
		t.Errorf("--help does not list environment twins: %q", out)
	}
}
