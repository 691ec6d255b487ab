package dispatch

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"plane"
)

// A drone that runs a backend the store holds terminated (or does not know)
// is told to stop it; backends the store holds live are left alone.
func TestHeartbeatStopsUnknownBackends(t *testing.T) {
	t.Parallel()
	nc := startNATS(t)
	st := newStore([]*plane.Backend{
		{ID: "live", DroneID: "d1", Status: plane.StatusReady},
		{ID: "gone", DroneID: "d1", Status: plane.StatusTerminated, TerminationReason: plane.ReasonLost},
		{ID: "moved", DroneID: "d2", Status: plane.StatusReady},
	}, nil)
	d, _ := newDispatcher(st, nc)

	got := terminateRequests(t, nc, "d1")

	hb := heartbeat("d1")
	hb.LiveBackends = []string{"live", "gone", "moved", "unknown"}
	d.handleHeartbeat(msg(t, hb))

	stopped := map[string]bool{}
	for range 2 {
		req := wait(t, got, "terminate request")
		if !req.Hard || req.Reason != plane.ReasonLost {
			t.Errorf("request %+v: want hard, reason lost", req)
		}
		stopped[req.BackendID] = true
	}
	if !stopped["gone"] || !stopped["unknown"] {
		t.Errorf("stopped %v, want gone and unknown", stopped)
	}
	// Nothing else follows: a heartbeat without strays sends nothing, and
	// that request round-trips after any stray one would have.
	hb.LiveBackends = []string{"live"}
	hb.Time = hb.Time.Add(plane.HeartbeatInterval)
	d.handleHeartbeat(msg(t, hb))
	if err := d.Terminate(t.Context(), "d1", plane.TerminateRequest{BackendID: "marker", Reason: plane.ReasonRequested}); err != nil {
		t.Fatal(err)
	}
	if req := wait(t, got, "marker"); req.BackendID != "marker" {
		t.Errorf("unexpected terminate request for %s", req.BackendID)
	}
}

// A drone back from a partition delivers its queued heartbeats at once:
// each zombie is asked to stop once, not once a heartbeat; again only after
// zombieRetry, if it still runs. A heartbeat older than one seen before is
// ignored.
func TestZombiesAskedOnce(t *testing.T) {
	t.Parallel()
	nc := startNATS(t)
	st := newStore([]*plane.Backend{
		{ID: "gone", DroneID: "d1", Status: plane.StatusTerminated, TerminationReason: plane.ReasonLost},
	}, nil)
	d, logs := newDispatcher(st, nc)
	now := t0
	d.Now = func() time.Time { return now }
	got := terminateRequests(t, nc, "d1")
	hb := heartbeat("d1")
	hb.LiveBackends = []string{"gone"}
	for i := range 50 { // queued heartbeats, each a little newer
		hb.Time = t0.Add(time.Duration(i) * time.Millisecond)
		d.handleHeartbeat(msg(t, hb))
	}
	old := hb
	old.Time = t0.Add(-time.Minute)
	d.handleHeartbeat(msg(t, old))
	now = now.Add(zombieRetry)
	hb.Time = hb.Time.Add(zombieRetry)
	d.handleHeartbeat(msg(t, hb))
	for range 2 {
		if req := wait(t, got, "terminate request"); req.BackendID != "gone" {
			t.Fatalf("stopped %s", req.BackendID)
		}
	}
	if err := d.Terminate(t.Context(), "d1", plane.TerminateRequest{BackendID: "marker", Reason: plane.ReasonRequested}); err != nil {
		t.Fatal(err)
	}
	if req := wait(t, got, "marker"); req.BackendID != "marker" {
		t.Fatalf("a third request, for %s: want one per zombieRetry", req.BackendID)
	}
	if n := logs.count("stopping a backend"); n != 2 {
		t.Errorf("logged %d stops, want 2", n)
	}
}

// A backend live in the store that its drone's heartbeats have not listed
// for phantomAfter is terminated as lost; one listed again before is kept,
// and so is one changed recently (its spawn may still be on the way).
func TestPhantomsTerminated(t *testing.T) {
	t.Parallel()
	st := newStore([]*plane.Backend{
		{ID: "phantom", DroneID: "d1", Status: plane.StatusReady, UpdatedAt: t0.Add(-time.Hour)},
		{ID: "back", DroneID: "d1", Status: plane.StatusReady, UpdatedAt: t0.Add(-time.Hour)},
		{ID: "young", DroneID: "d1", Status: plane.StatusScheduled, UpdatedAt: t0.Add(phantomAfter)},
		{ID: "there", DroneID: "d1", Status: plane.StatusReady, UpdatedAt: t0.Add(-time.Hour)},
		{ID: "elsewhere", DroneID: "d2", Status: plane.StatusReady, UpdatedAt: t0.Add(-time.Hour)},
	}, nil)
	d, logs := newDispatcher(st, nil)
	now := t0
	d.Now = func() time.Time { return now }
	hb := heartbeat("d1")
	beat := func(at time.Duration, live ...string) {
		t.Helper()
		now, hb.Time, hb.LiveBackends = t0.Add(at), t0.Add(at), live
		d.handleHeartbeat(msg(t, hb))
	}
	beat(0, "there")
	beat(10*time.Second, "there", "back")
	beat(phantomAfter-time.Second, "there")
	for _, id := range []string{"phantom", "back", "young", "there"} {
		if s := st.backend(t, id).Status; s != plane.StatusReady && s != plane.StatusScheduled {
			t.Fatalf("%s is %s before phantomAfter", id, s)
		}
	}
	beat(phantomAfter, "there")
	beat(phantomAfter+2*time.Second, "there") // the correction is made once
	want := map[string]plane.BackendStatus{"phantom": plane.StatusTerminated, "back": plane.StatusReady,
		"young": plane.StatusScheduled, "there": plane.StatusReady, "elsewhere": plane.StatusReady}
	for id, w := range want {
		if b := st.backend(t, id); b.Status != w {
			t.Errorf("%s is %s, want %s", id, b.Status, w)
		}
	}
	if b := st.backend(t, "phantom"); b.TerminationReason != plane.ReasonLost || b.Error == "" {
		t.Errorf("phantom: reason %q, error %q", b.TerminationReason, b.Error)
	}
	if n := logs.count("does not run"); n != 1 {
		t.Errorf("logged the correction %d times, want once", n)
	}
}

// terminateRequests answers drone's terminate requests with success and
// passes them on.
func terminateRequests(t *testing.T, nc *nats.Conn, drone string) <-chan plane.TerminateRequest {
	t.Helper()
	sub := connect(t, nc.ConnectedUrl())
	got := make(chan plane.TerminateRequest, 100)
	if _, err := sub.Subscribe(plane.SubjectTerminate(drone), func(m *nats.Msg) {
		req, err := plane.Decode[plane.TerminateRequest](m.Data)
		if err != nil {
			t.Error(err)
		}
		got <- req
		_ = m.Respond(msg(t, plane.ReplyOf(nil)).Data)
	}); err != nil {
		t.Fatal(err)
	}
	if err := sub.Flush(); err != nil {
		t.Fatal(err)
	}
	return got
}

// A zombie whose drone did not answer the stop is asked again at the next
// heartbeat, not only after zombieRetry.
func TestZombieAskedAgainWhenUnanswered(t *testing.T) {
	t.Parallel()
	nc := startNATS(t)
	st := newStore([]*plane.Backend{
		{ID: "gone", DroneID: "d1", Status: plane.StatusTerminated, TerminationReason: plane.ReasonLost},
	}, nil)
	d, logs := newDispatcher(st, nc)
	d.RequestTimeout = 50 * time.Millisecond
	hb := heartbeat("d1")
	hb.LiveBackends = []string{"gone"}
	d.handleHeartbeat(msg(t, hb)) // nobody answers for d1 yet
	deadline := time.Now().Add(5 * time.Second)
	for logs.count("stop backend") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the unanswered stop was not logged")
		}
		time.Sleep(5 * time.Millisecond) // the request runs on a goroutine of its own
	}
	got := terminateRequests(t, nc, "d1")
	hb.Time = hb.Time.Add(plane.HeartbeatInterval)
	d.handleHeartbeat(msg(t, hb)) // same controller clock: well within zombieRetry
	if req := wait(t, got, "the second terminate request"); req.BackendID != "gone" {
		t.Fatalf("stopped %s", req.BackendID)
	}
}

// A backend its drone lists but that has not reached ready past every
// deadline of the drone is terminated as failed: the controller's own
// deadline on the phases before ready.
func TestStuckBeforeReady(t *testing.T) {
	t.Parallel()
	st := newStore([]*plane.Backend{
		{ID: "stuck", DroneID: "d1", Status: plane.StatusLoading, UpdatedAt: t0.Add(-stuckAfter)},
		{ID: "slow", DroneID: "d1", Status: plane.StatusLoading, UpdatedAt: t0.Add(-stuckAfter + time.Minute)},
		{ID: "ready", DroneID: "d1", Status: plane.StatusReady, UpdatedAt: t0.Add(-time.Hour)},
	}, nil)
	d, _ := newDispatcher(st, nil)
	hb := heartbeat("d1")
	hb.LiveBackends = []string{"stuck", "slow", "ready"}
	d.handleHeartbeat(msg(t, hb))
	for id, want := range map[string]plane.BackendStatus{"stuck": plane.StatusTerminated, "slow": plane.StatusLoading, "ready": plane.StatusReady} {
		if b := st.backend(t, id); b.Status != want {
			t.Errorf("%s is %s, want %s", id, b.Status, want)
		}
	}
	if b := st.backend(t, "stuck"); b.TerminationReason != plane.ReasonFailed || !strings.Contains(b.Error, "stuck loading") {
		t.Errorf("stuck: reason %q, error %q", b.TerminationReason, b.Error)
	}
}
