package dispatch

import (
	"testing"

	"github.com/nats-io/nats.go"

	"plane"
)

// A drone that runs a backend the store holds terminated (or does not know)
// is told to stop it; backends the store holds live are left alone.
func TestHeartbeatStopsUnknownBackends(t *testing.T) {
	nc := startNATS(t)
	st := newStore([]*plane.Backend{
		{ID: "live", DroneID: "d1", Status: plane.StatusReady},
		{ID: "gone", DroneID: "d1", Status: plane.StatusTerminated, TerminationReason: plane.ReasonLost},
		{ID: "moved", DroneID: "d2", Status: plane.StatusReady},
	}, nil)
	d, _ := newDispatcher(st, nc)

	drone := connect(t, nc.ConnectedUrl())
	got := make(chan plane.TerminateRequest, 10)
	if _, err := drone.Subscribe(plane.SubjectTerminate("d1"), func(m *nats.Msg) {
		req, err := plane.Decode[plane.TerminateRequest](m.Data)
		if err != nil {
			t.Error(err)
		}
		got <- req
		_ = m.Respond(msg(t, plane.ReplyOf(nil)).Data)
	}); err != nil {
		t.Fatal(err)
	}
	if err := drone.Flush(); err != nil {
		t.Fatal(err)
	}

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
	d.handleHeartbeat(msg(t, hb))
	if err := d.Terminate(t.Context(), "d1", plane.TerminateRequest{BackendID: "marker", Reason: plane.ReasonRequested}); err != nil {
		t.Fatal(err)
	}
	if req := wait(t, got, "marker"); req.BackendID != "marker" {
		t.Errorf("unexpected terminate request for %s", req.BackendID)
	}
}
