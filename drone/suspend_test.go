package drone_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"plane"
	"plane/drone"
	"plane/drone/docker"
	"plane/drone/dronetest"
)

// Suspend on idle: a backend idle for max_idle_seconds is paused and
// reported suspended, still ready; a request (the proxy's Resume) unpauses
// it and reports the resume, and its idle clock starts again; suspended for
// suspend_seconds, it is unpaused and terminated as idle, without a resume
// reported.
func TestSuspendOnIdle(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	const id = "s1"
	a := h.start()
	s := spec(id)
	s.MaxIdleSeconds, s.SuspendSeconds = 1, 2
	h.mustSpawn(s)
	f := h.statusOf(id)
	isSuspension := func(want bool) func(plane.BackendEvent) bool {
		return func(e plane.BackendEvent) bool { return e.Suspended != nil && *e.Suspended == want }
	}

	ready := h.waitStatus(id, plane.StatusReady)
	susp, i := f.next(t, 0, isSuspension(true))
	if susp.Status != plane.StatusReady || susp.Time.Sub(ready.Time) < time.Second {
		t.Fatalf("suspension %+v, %s after ready: want ready, after max_idle_seconds", susp, susp.Time.Sub(ready.Time))
	}
	c := h.rt.Container(id)
	if !c.Paused() {
		t.Fatal("suspended, but the container is not paused")
	}

	if err := a.Resume(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	if c.Paused() {
		t.Fatal("resumed, but the container is still paused")
	}
	resumed, j := f.next(t, i+1, isSuspension(false))
	if !resumed.Time.After(susp.Time) {
		t.Errorf("resumed at %s, before its suspension at %s", resumed.Time, susp.Time)
	}
	if err := a.Resume(context.Background(), id); err != nil { // awake already: nothing to do
		t.Fatal(err)
	}

	// Idle again: suspended again, then ended once suspended for 2 s.
	again, k := f.next(t, j+1, isSuspension(true))
	if d := again.Time.Sub(resumed.Time); d < time.Second {
		t.Errorf("suspended again %s after the resume, before max_idle_seconds", d)
	}
	end, _ := f.next(t, k+1, func(e plane.BackendEvent) bool { return e.Status == plane.StatusTerminated })
	if end.Reason != plane.ReasonIdle {
		t.Errorf("ended with reason %q, want idle", end.Reason)
	}
	if d := end.Time.Sub(again.Time); d < 2*time.Second {
		t.Errorf("ended %s after its suspension, before suspend_seconds", d)
	}
	for _, e := range f.items()[k+1:] {
		if e.Suspended != nil {
			t.Errorf("a suspension event after the last suspension: %+v", e)
		}
	}
	// Unpaused before the stop, so that the app gets its SIGTERM.
	var ops []dronetest.Op
	for _, call := range h.rt.CallsFor(id, dronetest.OpPause, dronetest.OpUnpause, dronetest.OpStop) {
		ops = append(ops, call.Op)
	}
	want := []dronetest.Op{dronetest.OpPause, dronetest.OpUnpause, dronetest.OpPause, dronetest.OpUnpause, dronetest.OpStop}
	if !slices.Equal(ops, want) {
		t.Errorf("runtime calls %v, want %v", ops, want)
	}
}

// Without suspend_seconds an idle backend is terminated, as before.
func TestIdleWithoutSuspend(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.start()
	s := spec("i1")
	s.MaxIdleSeconds = 1
	h.mustSpawn(s)
	for _, e := range h.lifecycle("i1") {
		if e.Suspended != nil {
			t.Fatalf("suspension event without suspend_seconds: %+v", e)
		}
	}
	if calls := h.rt.CallsFor("i1", dronetest.OpPause); len(calls) != 0 {
		t.Errorf("paused %d times without suspend_seconds", len(calls))
	}
}

// Past the memory budget of suspended backends, the longest-suspended is
// terminated as idle; the others stay suspended.
func TestSuspendMemoryBudget(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	for _, id := range []string{"m1", "m2"} {
		h.rt.Script(id, dronetest.Behavior{Stats: docker.Stats{MemoryBytes: 100 << 20}})
	}
	h.start(func(c *drone.Config) { c.SuspendMemoryBytes = 150 << 20 })
	first := spec("m1")
	first.MaxIdleSeconds, first.SuspendSeconds = 1, 3600
	h.mustSpawn(first)
	h.statusOf("m1").next(t, 0, func(e plane.BackendEvent) bool { return e.Suspended != nil && *e.Suspended })
	second := spec("m2")
	second.MaxIdleSeconds, second.SuspendSeconds = 1, 3600
	h.mustSpawn(second)

	events := h.lifecycle("m1")
	if end := events[len(events)-1]; end.Reason != plane.ReasonIdle {
		t.Errorf("m1 ended %q, want idle", end.Reason)
	}
	h.statusOf("m2").next(t, 0, func(e plane.BackendEvent) bool { return e.Suspended != nil && *e.Suspended })
	if c := h.rt.Container("m2"); c == nil || !c.Paused() {
		t.Error("m2, within the budget alone, is not suspended")
	}
}
