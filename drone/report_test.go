package drone_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"plane"
	"plane/drone"
	"plane/drone/docker"
	"plane/drone/dronetest"
)

func TestHeartbeat(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.rt.EnsureImage(context.Background(), "alpine:3", plane.PullAlways) //nolint:errcheck // cannot fail
	certExpiry := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	from := h.beats.len()
	h.start(func(c *drone.Config) {
		c.Capacity = 3
		c.CertStatus = func() (*time.Time, string) { return &certExpiry, "rate limited" }
		// Only the first beat and those that requests cause, so that each
		// beat below is the answer to one change.
		c.HeartbeatInterval = time.Hour
	})

	// The first beat, sent once the drone is reconciled, says who it is.
	first, _ := h.beats.next(t, from, func(plane.Heartbeat) bool { return true })
	if err := first.Validate(); err != nil {
		t.Errorf("heartbeat does not validate: %v", err)
	}
	want := plane.Heartbeat{
		ProtocolVersion: plane.ProtocolVersion,
		DroneID:         droneID,
		Address:         "127.0.0.2",
		ProxyAddress:    "127.0.0.2:9090",
		Version:         "v-test",
		Capacity:        3,
		LiveBackends:    []string{},
		Images:          []string{"alpine:3", testImage}, // sorted
		CertNotAfter:    &certExpiry,
		CertError:       "rate limited",
	}
	got := first
	got.CPUPercent, got.MemoryBytes, got.Time = 0, 0, time.Time{}
	if !heartbeatsEqual(got, want) {
		t.Errorf("first heartbeat = %s\nwant %s", dump(got), dump(want))
	}
	if first.Time.IsZero() || time.Since(first.Time) > time.Minute {
		t.Errorf("heartbeat time = %s", first.Time)
	}

	// A drain request is announced at once, with the live backends,
	// whatever their state.
	h.rt.Script("b", dronetest.Behavior{NotReady: true})
	h.mustSpawn(spec("a"))
	h.mustSpawn(spec("b"))
	h.waitStatus("a", plane.StatusReady)
	h.waitStatus("b", plane.StatusWaiting)
	hb := h.drain(true)
	if !hb.Draining || !slices.Equal(sorted(hb.LiveBackends), []string{"a", "b"}) {
		t.Errorf("heartbeat after drain = %s, want draining with a and b", dump(hb))
	}

	// A terminated backend leaves the list.
	h.mustTerminate("a", true)
	h.waitRemoved("a")
	if hb := h.drain(false); hb.Draining || !slices.Equal(hb.LiveBackends, []string{"b"}) {
		t.Errorf("heartbeat after undrain = %s, want not draining, with b", dump(hb))
	}
	h.drain(true)

	// The last beat of a drone that stops says so, and that b lives on.
	last := h.stop()
	if !last.Stopping || !last.Draining || !slices.Equal(last.LiveBackends, []string{"b"}) {
		t.Errorf("last heartbeat = %s, want stopping, draining, with b", dump(last))
	}
	if c := h.rt.Container("b"); !c.Running() || c.Removed() {
		t.Error("stopping the drone stopped a backend")
	}
}

// drain sets the drone's drain flag and returns the heartbeat that follows.
func (h *harness) drain(draining bool) plane.Heartbeat {
	h.t.Helper()
	from := h.beats.len()
	if err := h.request(plane.SubjectDrain(droneID), plane.DrainRequest{Draining: draining}); err != nil {
		h.t.Fatal(err)
	}
	hb, _ := h.beats.next(h.t, from, func(plane.Heartbeat) bool { return true })
	return hb
}

func TestHeartbeatInterval(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	from := h.beats.len()
	h.start(func(c *drone.Config) { c.HeartbeatInterval = 10 * time.Millisecond })
	_, i := h.beats.next(t, from, func(plane.Heartbeat) bool { return true })
	// Beats keep coming on their own.
	_, j := h.beats.next(t, i+1, func(plane.Heartbeat) bool { return true })
	_, _ = h.beats.next(t, j+1, func(plane.Heartbeat) bool { return true })
	for _, hb := range h.beats.items()[from:] {
		if hb.Stopping {
			t.Errorf("a running drone's beat says it is stopping")
		}
	}
}

func TestStats(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	usage := docker.Stats{CPUPercent: 12.5, MemoryBytes: 3 << 20, MemoryLimit: 64 << 20}
	h.rt.Script("a", dronetest.Behavior{Stats: usage})
	h.rt.Script("b", dronetest.Behavior{NotReady: true, Stats: usage})
	stats := subscribeFeed[plane.BackendStats](t, h.nc, plane.SubjectBackendStatsAll)
	h.start()
	h.mustSpawn(spec("a"))
	h.mustSpawn(spec("b"))
	h.waitStatus("a", plane.StatusReady)
	h.waitStatus("b", plane.StatusWaiting)

	// Stats of a ready backend carry its last CPU and memory sample and,
	// without a proxy, no connection.
	s, _ := stats.next(t, 0, func(s plane.BackendStats) bool { return s.BackendID == "a" && s.CPUPercent != 0 })
	if s.CPUPercent != usage.CPUPercent || s.MemoryBytes != usage.MemoryBytes || s.MemoryLimit != usage.MemoryLimit ||
		s.Connections != 0 || !s.LastActivity.IsZero() || s.Time.IsZero() {
		t.Errorf("stats = %+v, want the runtime's sample", s)
	}
	// Only ready backends are sampled and reported.
	for _, c := range h.rt.Calls(dronetest.OpStats) {
		if c.BackendID != "a" {
			t.Errorf("stats sampled for %s, which is not ready", c.BackendID)
		}
	}
	for _, s := range stats.items() {
		if s.BackendID != "a" {
			t.Errorf("stats published for %s, which is not ready", s.BackendID)
		}
	}
}

func TestLogs(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.rt.Script("a", dronetest.Behavior{Logs: []dronetest.LogLine{
		{Stream: "stdout", Text: "listening on :8080"},
		{Stream: "stderr", Text: "warning: no config"},
	}})
	h.start()
	h.mustSpawn(spec("a"))
	h.waitStatus("a", plane.StatusReady)
	c := h.rt.Container("a")
	long := strings.Repeat("x", 20<<10)
	c.Log("stdout", long)
	c.Log("stdout", "bye")
	c.Exit(0)
	h.lifecycle("a")

	// All output reaches the logs stream, in order, before the container
	// is removed; a long line is cut.
	h.rt.WaitCall(t, func(call dronetest.Call) bool { return call.Op == dronetest.OpRemove && call.ID == c.ID })
	lines := h.logLines("a", 4)
	want := []plane.LogLine{
		{Stream: "stdout", Text: "listening on :8080"},
		{Stream: "stderr", Text: "warning: no config"},
		{Stream: "stdout", Text: long[:16<<10]},
		{Stream: "stdout", Text: "bye"},
	}
	for i, l := range lines {
		if l.BackendID != "a" || l.Stream != want[i].Stream || l.Text != want[i].Text || l.Time.IsZero() {
			t.Errorf("line %d = %s %q (%d bytes), want %s %.40q (%d bytes)", i, l.Stream, l.Text[:min(40, len(l.Text))], len(l.Text), want[i].Stream, want[i].Text, len(want[i].Text))
		}
	}
}

// logLines reads backend id's first n log lines from the logs stream.
func (h *harness) logLines(id string, n int) []plane.LogLine {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	cons, err := h.js.OrderedConsumer(ctx, plane.StreamLogs, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{plane.SubjectBackendLogs(id)},
	})
	if err != nil {
		h.t.Fatal(err)
	}
	defer h.js.DeleteConsumer(context.Background(), plane.StreamLogs, cons.CachedInfo().Name) //nolint:errcheck // cleanup
	batch, err := cons.Fetch(n, jetstream.FetchMaxWait(waitFor))
	if err != nil {
		h.t.Fatal(err)
	}
	var out []plane.LogLine
	for m := range batch.Messages() {
		var l plane.LogLine
		if err := json.Unmarshal(m.Data(), &l); err != nil {
			h.t.Fatal(err)
		}
		out = append(out, l)
	}
	if len(out) != n {
		h.t.Fatalf("%d log lines, want %d: %+v", len(out), n, out)
	}
	return out
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func heartbeatsEqual(a, b plane.Heartbeat) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

// Each status change also goes out on core NATS, at once, for the
// controller to apply while the stream may be electing a leader.
func TestLiveStatusCopies(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	got := make(chan plane.BackendEvent, 20)
	sub, err := h.nc.Subscribe(plane.SubjectBackendStatusLiveAll, func(m *nats.Msg) {
		ev, err := plane.Decode[plane.BackendEvent](m.Data)
		if err != nil {
			t.Error(err)
		}
		got <- ev
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := h.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	h.start()
	h.mustSpawn(spec("a"))
	for _, want := range toReady {
		select {
		case ev := <-got:
			if ev.BackendID != "a" || ev.Status != want {
				t.Fatalf("live copy %s %s, want a %s", ev.BackendID, ev.Status, want)
			}
		case <-time.After(waitFor):
			t.Fatalf("no live copy of %s", want)
		}
	}
}
