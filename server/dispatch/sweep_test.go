package dispatch

import (
	"testing"
	"time"

	"plane"
)

// A drone silent for the unreachable limit is marked unreachable and its
// backends are left as they are; one silent for the lost limit is marked
// lost and its live backends terminated as lost; fresh drones and their
// backends, and drones already lost, are left alone.
func TestSweep(t *testing.T) {
	t.Parallel()
	drone := func(id string, silent time.Duration, status plane.DroneStatus) *plane.Drone {
		return &plane.Drone{ID: id, Status: status, LastHeartbeat: t0.Add(-silent)}
	}
	st := newStore([]*plane.Backend{
		{ID: "fresh1", DroneID: "fresh", Status: plane.StatusReady},
		{ID: "stale1", DroneID: "stale", Status: plane.StatusReady},
		{ID: "lost1", DroneID: "lost", Status: plane.StatusReady},
		{ID: "lost2", DroneID: "lost", Status: plane.StatusScheduled},
		{ID: "lost3", DroneID: "lost", Status: plane.StatusTerminated, TerminationReason: plane.ReasonIdle},
		{ID: "gone1", DroneID: "gone", Status: plane.StatusReady},
		{ID: "away1", DroneID: "away", Status: plane.StatusReady},
		{ID: "away2", DroneID: "away-draining", Status: plane.StatusReady},
	}, []*plane.Drone{
		drone("fresh", time.Second, plane.DroneReady),
		drone("stale", plane.DroneStaleAfter, plane.DroneReady),                              // unreachable: no new backends, but not lost
		drone("away", plane.DefaultDroneUnreachableAfter, plane.DroneReady),                  // unreachable, not dead
		drone("away-draining", plane.DefaultDroneLostAfter-time.Second, plane.DroneDraining), // just before lost
		drone("lost", plane.DefaultDroneLostAfter, plane.DroneUnreachable),                   // silent exactly long enough
		drone("gone", 2*plane.DefaultDroneLostAfter, plane.DroneLost),                        // swept before
		drone("stopped", 2*plane.DefaultDroneLostAfter, plane.DroneStopped),                  // said goodbye, then went silent
	})
	d, _ := newDispatcher(st, nil)
	var notified []string
	d.Applier = notifier{st, func(b *plane.Backend) { notified = append(notified, b.ID) }}
	d.stats.add(plane.BackendStats{BackendID: "lost1"}, t0)

	if err := d.Sweep(t.Context()); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]plane.DroneStatus{
		"fresh": plane.DroneReady, "stale": plane.DroneReady, "lost": plane.DroneLost,
		"away": plane.DroneUnreachable, "away-draining": plane.DroneUnreachable,
		"gone": plane.DroneLost, "stopped": plane.DroneLost,
	} {
		if got := st.drone(t, id).Status; got != want {
			t.Errorf("drone %s is %s, want %s", id, got, want)
		}
	}
	for id, want := range map[string]plane.BackendStatus{
		"fresh1": plane.StatusReady, "stale1": plane.StatusReady, "gone1": plane.StatusReady,
		"away1": plane.StatusReady, "away2": plane.StatusReady,
		"lost1": plane.StatusTerminated, "lost2": plane.StatusTerminated, "lost3": plane.StatusTerminated,
	} {
		b := st.backend(t, id)
		if b.Status != want {
			t.Errorf("backend %s is %s, want %s", id, b.Status, want)
		}
	}
	for _, id := range []string{"lost1", "lost2"} {
		if b := st.backend(t, id); b.TerminationReason != plane.ReasonLost || b.Error == "" {
			t.Errorf("backend %s: reason %q, error %q; want lost, with the drone named", id, b.TerminationReason, b.Error)
		}
	}
	if b := st.backend(t, "lost3"); b.TerminationReason != plane.ReasonIdle {
		t.Errorf("a backend terminated before the sweep changed reason to %s", b.TerminationReason)
	}
	if len(notified) != 2 {
		t.Errorf("applied changes to %v, want lost1 and lost2", notified)
	}
	if _, ok := d.Stats("lost1"); ok {
		t.Error("a lost backend kept its stats")
	}

	// A second pass finds nothing more to do.
	notified = nil
	if err := d.Sweep(t.Context()); err != nil {
		t.Fatal(err)
	}
	if len(notified) != 0 {
		t.Errorf("second sweep changed %v", notified)
	}
}
