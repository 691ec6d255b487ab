package dispatch

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"plane"
)

func heartbeat(drone string) plane.Heartbeat {
	return plane.Heartbeat{
		ProtocolVersion: plane.ProtocolVersion, DroneID: drone, Address: "10.0.0.1", ProxyAddress: "10.0.0.1:443",
		Version: "v1", Capacity: 10, CPUPercent: 12.5, MemoryBytes: 1 << 30, Images: []string{"nginx"},
		Time: t0.Add(-time.Hour), // the drone's clock: the record must not use it
	}
}

func TestHeartbeat(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		edit   func(*plane.Heartbeat)
		raw    string // sent instead of the heartbeat when set
		stored bool
		status plane.DroneStatus
	}{
		{name: "ready", stored: true, status: plane.DroneReady},
		{name: "draining", edit: func(h *plane.Heartbeat) { h.Draining = true }, stored: true, status: plane.DroneDraining},
		{name: "stopping", edit: func(h *plane.Heartbeat) { h.Stopping, h.Draining = true, true }, stored: true, status: plane.DroneStopped},
		{name: "previous protocol", edit: func(h *plane.Heartbeat) { h.ProtocolVersion = plane.MinProtocolVersion }, stored: true, status: plane.DroneReady},
		{name: "older protocol", edit: func(h *plane.Heartbeat) { h.ProtocolVersion = plane.MinProtocolVersion - 1 }},
		{name: "newer protocol", edit: func(h *plane.Heartbeat) { h.ProtocolVersion = plane.ProtocolVersion + 1 }},
		{name: "bad drone id", edit: func(h *plane.Heartbeat) { h.DroneID = "Bad ID" }},
		{name: "negative capacity", edit: func(h *plane.Heartbeat) { h.Capacity = -1 }},
		{name: "malformed", raw: `{"drone_id": 7`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := newStore(nil, nil)
			d, _ := newDispatcher(st, nil)
			hb := heartbeat("d1")
			if tc.edit != nil {
				tc.edit(&hb)
			}
			m := msg(t, hb)
			if tc.raw != "" {
				m = msg(t, tc.raw)
			}
			d.handleHeartbeat(m)
			got, err := st.FindDroneByID(t.Context(), "d1")
			if !tc.stored {
				if err == nil {
					t.Fatalf("heartbeat stored: %+v", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Status != tc.status || got.Draining != hb.Draining {
				t.Errorf("status %s, draining %v; want %s, %v", got.Status, got.Draining, tc.status, hb.Draining)
			}
			if !got.LastHeartbeat.Equal(t0) {
				t.Errorf("last heartbeat %v, want the controller's clock %v", got.LastHeartbeat, t0)
			}
			if got.Address != hb.Address || got.ProxyAddress != hb.ProxyAddress || got.Capacity != hb.Capacity ||
				got.ProtocolVersion != hb.ProtocolVersion || got.Version != hb.Version || len(got.Images) != 1 {
				t.Errorf("record %+v does not carry heartbeat %+v", got, hb)
			}
		})
	}
}

func TestHeartbeatCountsLiveBackends(t *testing.T) {
	t.Parallel()
	st := newStore([]*plane.Backend{
		{ID: "a", DroneID: "d1", Status: plane.StatusReady},
		{ID: "b", DroneID: "d1", Status: plane.StatusStarting},
	}, nil)
	d, _ := newDispatcher(st, nil)
	hb := heartbeat("d1")
	hb.LiveBackends = []string{"a", "b"}
	d.handleHeartbeat(msg(t, hb))
	if got := st.drone(t, "d1").Backends; got != 2 {
		t.Errorf("backends = %d, want 2", got)
	}
}

// A drone on the previous protocol is served, and logged once for each
// version it speaks.
func TestHeartbeatNotesPreviousProtocolOnce(t *testing.T) {
	t.Parallel()
	st := newStore(nil, nil)
	d, logs := newDispatcher(st, nil)
	old := heartbeat("d1")
	old.ProtocolVersion = plane.MinProtocolVersion
	for _, hb := range []plane.Heartbeat{old, old, heartbeat("d1"), old, heartbeat("d2")} {
		d.handleHeartbeat(msg(t, hb))
	}
	if n := strings.Count(logs.String(), "previous protocol version"); n != 2 {
		t.Errorf("logged the previous protocol %d times, want 2 (first beat, and after the upgrade was undone):\n%s", n, logs)
	}
}

// busRecorder is an event bus that keeps what is published.
type busRecorder struct {
	mu     sync.Mutex
	events []plane.Event
}

func (b *busRecorder) Publish(_ context.Context, e plane.Event) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.events = append(b.events, e)
	return nil
}

func (b *busRecorder) Subscribe(string) (<-chan plane.Event, func()) { return nil, func() {} }

// drones lists the drone events published, as "id status".
func (b *busRecorder) drones() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, e := range b.events {
		if e.Kind == plane.EventDrone {
			out = append(out, e.Drone.ID+" "+string(e.Drone.Status))
		}
	}
	return out
}

// The live views hear of a drone's changes: each heartbeat, and the
// sweep's verdicts, announced once for the cluster by the lease holder.
func TestDroneChangesAnnounced(t *testing.T) {
	t.Parallel()
	st := newStore(nil, []*plane.Drone{
		{ID: "away", Status: plane.DroneReady, LastHeartbeat: t0.Add(-plane.DefaultDroneUnreachableAfter)},
		{ID: "gone", Status: plane.DroneUnreachable, LastHeartbeat: t0.Add(-plane.DefaultDroneLostAfter)},
	})
	d, _ := newDispatcher(st, nil)
	rec := &busRecorder{}
	d.Bus = rec
	d.handleHeartbeat(msg(t, heartbeat("d1")))
	if err := d.Sweep(t.Context()); err != nil {
		t.Fatal(err)
	}
	want := []string{"d1 ready", "away unreachable", "gone lost"}
	if got := rec.drones(); !slices.Equal(got, want) {
		t.Errorf("announced %q, want %q", got, want)
	}

	// A controller that does not hold the lease records the heartbeat but
	// leaves the announcement to the holder.
	d.leasing = true
	d.handleHeartbeat(msg(t, heartbeat("d2")))
	if got := rec.drones(); len(got) != len(want) {
		t.Errorf("a controller without the lease announced %q", got[len(want):])
	}
	if _, err := st.FindDroneByID(t.Context(), "d2"); err != nil {
		t.Errorf("a controller without the lease did not record the heartbeat: %v", err)
	}
}
