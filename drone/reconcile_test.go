package drone_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"plane"
	"plane/drone"
	"plane/drone/dronetest"
)

// TestReconcile stops the drone with a backend in some state, changes the
// world while it is down, starts it again on the same store and runtime, and
// checks how the backend ends.
func TestReconcile(t *testing.T) {
	t.Parallel()
	const id = "b1"
	tests := []struct {
		name      string
		behavior  dronetest.Behavior
		blockPull bool // the image's pull hangs
		spec      func(*plane.SpawnSpec)
		// before brings the backend to some state under the first agent;
		// down acts while no agent runs; after acts under the second agent.
		before func(h *harness)
		down   func(h *harness)
		after  func(h *harness)
		cfg    func(*drone.Config) // of the second agent
		want   []plane.BackendStatus
		reason plane.TerminationReason
		exit   *int
		errHas string
		// adopted: the second agent reattached to the container (no new one)
		adopted bool
		check   func(t *testing.T, h *harness, events []plane.BackendEvent, restarted time.Time)
	}{
		{
			name:   "running ready backend is adopted",
			before: func(h *harness) { h.waitStatus(id, plane.StatusReady) },
			after: func(h *harness) {
				h.wantLive(id)
				h.mustTerminate(id, false)
			},
			want: readyAndStop, reason: plane.ReasonRequested, exit: ptr(dronetest.ExitSIGTERM), adopted: true,
		},
		{
			name:   "adopted backend exits by itself",
			before: func(h *harness) { h.waitStatus(id, plane.StatusReady) },
			after: func(h *harness) {
				h.wantLive(id)
				h.rt.Container(id).Exit(4)
			},
			want:   append(slices.Clone(toReady), plane.StatusTerminated),
			reason: plane.ReasonExited, exit: ptr(4), adopted: true,
		},
		{
			name:     "waiting backend is adopted and becomes ready",
			behavior: dronetest.Behavior{NotReady: true},
			before:   func(h *harness) { h.waitStatus(id, plane.StatusWaiting) },
			down:     func(h *harness) { h.rt.Container(id).Serve() },
			after: func(h *harness) {
				h.waitStatus(id, plane.StatusReady)
				h.mustTerminate(id, true)
			},
			want: readyAndStop, reason: plane.ReasonRequested, exit: ptr(dronetest.ExitSIGKILL), adopted: true,
		},
		{
			name:     "adopted waiting backend still has a start timeout",
			behavior: dronetest.Behavior{NotReady: true},
			before:   func(h *harness) { h.waitStatus(id, plane.StatusWaiting) },
			cfg:      func(c *drone.Config) { c.StartTimeout = 50 * time.Millisecond },
			want:     []plane.BackendStatus{plane.StatusLoading, plane.StatusStarting, plane.StatusWaiting, plane.StatusTerminated},
			reason:   plane.ReasonFailed, errHas: "start timeout", adopted: true,
		},
		{
			name:   "adopted backend's idle clock restarts",
			spec:   func(s *plane.SpawnSpec) { s.MaxIdleSeconds = 1 },
			before: func(h *harness) { h.waitStatus(id, plane.StatusReady) },
			want:   readyAndStop, reason: plane.ReasonIdle, exit: ptr(dronetest.ExitSIGTERM), adopted: true,
			check: func(t *testing.T, h *harness, events []plane.BackendEvent, restarted time.Time) {
				// Nobody could connect while the drone was down.
				if d := events[4].Time.Sub(restarted); d < time.Second-time.Millisecond {
					t.Errorf("idle %s after the restart, before max_idle_seconds", d)
				}
			},
		},
		{
			name:   "ready backend exited while the drone was down",
			before: func(h *harness) { h.waitStatus(id, plane.StatusReady) },
			down:   func(h *harness) { h.rt.Container(id).Exit(3) },
			want:   append(slices.Clone(toReady), plane.StatusTerminated),
			reason: plane.ReasonExited, exit: ptr(3),
		},
		{
			name:     "waiting backend crashed while the drone was down",
			behavior: dronetest.Behavior{NotReady: true},
			before:   func(h *harness) { h.waitStatus(id, plane.StatusWaiting) },
			down:     func(h *harness) { h.rt.Container(id).Exit(1) },
			want:     []plane.BackendStatus{plane.StatusLoading, plane.StatusStarting, plane.StatusWaiting, plane.StatusTerminated},
			reason:   plane.ReasonFailed, exit: ptr(1), errHas: "process exited with code 1 before answering HTTP on port 8080",
		},
		{
			name:     "container created but never started while the drone was down",
			behavior: dronetest.Behavior{NotReady: true},
			before:   func(h *harness) { h.waitStatus(id, plane.StatusWaiting) },
			down:     func(h *harness) { h.rt.Container(id).NeverStarted() },
			want:     []plane.BackendStatus{plane.StatusLoading, plane.StatusStarting, plane.StatusWaiting, plane.StatusTerminated},
			reason:   plane.ReasonFailed, errHas: "the drone stopped before the container started (status was waiting)",
		},
		{
			name:     "terminating backend exited while the drone was down",
			behavior: dronetest.Behavior{IgnoreSIGTERM: true},
			before: func(h *harness) {
				h.waitStatus(id, plane.StatusReady)
				h.mustTerminate(id, false) // the grace is long: it is still terminating when the drone stops
				h.waitStatus(id, plane.StatusTerminating)
			},
			down:   func(h *harness) { h.rt.Container(id).Exit(dronetest.ExitSIGTERM) },
			want:   readyAndStop,
			reason: plane.ReasonRequested, exit: ptr(dronetest.ExitSIGTERM),
		},
		{
			name:     "terminating backend is stopped by the restarted drone",
			behavior: dronetest.Behavior{IgnoreSIGTERM: true},
			before: func(h *harness) {
				h.waitStatus(id, plane.StatusReady)
				h.mustTerminate(id, false)
				h.waitStatus(id, plane.StatusTerminating)
			},
			cfg:    func(c *drone.Config) { c.StopGrace = 20 * time.Millisecond },
			want:   readyAndStop,
			reason: plane.ReasonRequested, exit: ptr(dronetest.ExitSIGKILL), adopted: true,
		},
		{
			name:   "container vanished while the drone was down",
			before: func(h *harness) { h.waitStatus(id, plane.StatusReady) },
			down:   func(h *harness) { h.rt.Vanish(id) },
			want:   append(slices.Clone(toReady), plane.StatusTerminated),
			reason: plane.ReasonFailed, errHas: "container disappeared while the drone was down (status was ready)",
		},
		{
			name:      "drone stopped while the image was loading",
			blockPull: true,
			before:    func(h *harness) { h.waitStatus(id, plane.StatusLoading) },
			want:      []plane.BackendStatus{plane.StatusLoading, plane.StatusTerminated},
			reason:    plane.ReasonFailed, errHas: "(status was loading)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			h.rt.Script(id, tt.behavior)
			if tt.blockPull {
				h.rt.BlockPull(testImage)
			}
			// The first agent neither ends a stop nor checks idleness: the
			// backend is in the state before leaves it in when it stops.
			h.start(func(c *drone.Config) { c.StopGrace, c.IdleCheckInterval = time.Hour, time.Hour })
			s := spec(id)
			if tt.spec != nil {
				tt.spec(&s)
			}
			h.mustSpawn(s)
			tt.before(h)
			h.stop()
			first := h.rt.Container(id)
			if tt.down != nil {
				tt.down(h)
			}
			restarted := time.Now()
			h.start(func(c *drone.Config) {
				if tt.cfg != nil {
					tt.cfg(c)
				}
			})
			if tt.after != nil {
				tt.after(h)
			}
			events := h.lifecycle(id)
			if got := statuses(events); !slices.Equal(got, tt.want) {
				t.Fatalf("statuses = %v, want %v\nevents: %s", got, tt.want, dump(events))
			}
			checkEvents(t, id, events)
			last := events[len(events)-1]
			if last.Reason != tt.reason || !intPtrEqual(last.ExitCode, tt.exit) {
				t.Errorf("terminated: reason %q, exit code %s; want %q, %s", last.Reason, fmtIntPtr(last.ExitCode), tt.reason, fmtIntPtr(tt.exit))
			}
			if tt.errHas == "" && last.Error != "" || !strings.Contains(last.Error, tt.errHas) {
				t.Errorf("error = %q, want one holding %q", last.Error, tt.errHas)
			}
			if rec := h.record(id); rec.Status != plane.StatusTerminated || rec.Reason != tt.reason {
				t.Errorf("record: %s (%s), want terminated (%s)", rec.Status, rec.Reason, tt.reason)
			}
			// The drone never starts a second container for a backend: an
			// adopted one is watched, one that exited is removed.
			if n := len(h.rt.CallsFor(id, dronetest.OpStart)); n > 1 {
				t.Errorf("%d Start calls, want at most 1", n)
			}
			if first != nil {
				h.rt.WaitCall(t, func(c dronetest.Call) bool { return c.Op == dronetest.OpRemove && c.ID == first.ID })
			}
			waits := 0
			for _, c := range h.rt.CallsFor(id, dronetest.OpWait) {
				if first != nil && c.ID == first.ID {
					waits++
				}
			}
			if adopted := waits == 2; adopted != tt.adopted {
				t.Errorf("adopted = %v (%d waits on the container), want %v", adopted, waits, tt.adopted)
			}
			if tt.check != nil {
				tt.check(t, h, events, restarted)
			}
		})
	}
}

// wantLive checks that the running drone lists backend id as live.
func (h *harness) wantLive(id string) {
	h.t.Helper()
	h.beats.next(h.t, h.beats.len(), func(hb plane.Heartbeat) bool { return slices.Contains(hb.LiveBackends, id) })
}

// TestReconcileStrays: containers of this drone that no live backend owns
// are stopped and removed; other drones' containers are left alone.
func TestReconcileStrays(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	// A backend that terminated, but whose container was not removed (the
	// drone stopped in between).
	h.start()
	h.mustSpawn(spec("done"))
	h.waitStatus("done", plane.StatusReady)
	h.mustTerminate("done", true)
	h.lifecycle("done")
	h.stop()

	leftover := h.rt.AddContainer(t, droneID, "done", false, 0)
	running := h.rt.AddContainer(t, droneID, "unknown1", true, 0)
	exited := h.rt.AddContainer(t, droneID, "unknown2", false, 2)
	theirs := h.rt.AddContainer(t, "d2", "theirs", true, 0)
	h.start()

	for _, c := range []*dronetest.Container{leftover, running, exited} {
		h.rt.WaitCall(t, func(call dronetest.Call) bool { return call.Op == dronetest.OpRemove && call.ID == c.ID })
		if !c.Removed() || c.Running() {
			t.Errorf("container of %s: removed %v, running %v; want removed and stopped", c.BackendID, c.Removed(), c.Running())
		}
	}
	// The running stray was killed first, not left to Remove's force.
	stops := h.rt.CallsFor("unknown1", dronetest.OpStop)
	if len(stops) != 1 || stops[0].Grace != 0 {
		t.Errorf("Stop calls of the running stray = %+v, want one kill", stops)
	}
	if theirs.Removed() || !theirs.Running() {
		t.Error("another drone's container was touched")
	}
	for _, c := range h.rt.Calls() {
		if c.ID == theirs.ID {
			t.Errorf("runtime call on another drone's container: %+v", c)
		}
	}
	// Strays are no backends: no record, no event, not live.
	for _, id := range []string{"unknown1", "unknown2"} {
		if _, err := h.st.FindBackend(context.Background(), id); plane.ErrorCodeOf(err) != plane.ENOTFOUND {
			t.Errorf("record of stray %s: %v", id, err)
		}
	}
	if hb := h.stop(); len(hb.LiveBackends) != 0 {
		t.Errorf("live backends = %v, want none", hb.LiveBackends)
	}
	if got := statuses(h.statusOf("done").items()); !slices.Equal(got, readyAndStop) {
		t.Errorf("done: statuses = %v, want %v", got, readyAndStop)
	}
}

// TestOutbox: status events wait in the drone's outbox while the stream
// cannot take them, and reach it in order, once, when it can.
func TestOutbox(t *testing.T) {
	t.Parallel()
	t.Run("until the stream exists", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, withoutStreams())
		h.start()
		h.mustSpawn(spec("a"))
		// The container answers long before the events can go anywhere.
		h.rt.WaitCall(t, func(c dronetest.Call) bool { return c.Op == dronetest.OpStart })
		h.waitPending(len(toReady))

		// A drone restart loses none of them, and they go out once the
		// controller has created its streams.
		h.stop()
		dronetest.CreateStreams(t, h.js)
		h.start()
		if got := statuses(h.statusOfN("a", len(toReady))); !slices.Equal(got, toReady) {
			t.Errorf("statuses = %v, want %v", got, toReady)
		}
		h.waitPending(0)
		h.mustTerminate("a", false)
		if got := statuses(h.lifecycle("a")); !slices.Equal(got, readyAndStop) {
			t.Errorf("statuses = %v, want %v", got, readyAndStop)
		}
	})
	t.Run("without a restart", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, withoutStreams())
		h.start()
		h.mustSpawn(spec("a"))
		h.waitPending(len(toReady))
		dronetest.CreateStreams(t, h.js)
		// The next status change wakes the outbox, which sends all in order.
		h.mustTerminate("a", true)
		if got := statuses(h.lifecycle("a")); !slices.Equal(got, readyAndStop) {
			t.Errorf("statuses = %v, want %v", got, readyAndStop)
		}
		h.waitPending(0)
	})
	t.Run("log lines wait with them, status changes first", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, withoutStreams())
		h.start()
		h.mustSpawn(spec("a"))
		h.waitPending(len(toReady))
		c := h.rt.Container("a")
		for _, line := range []string{"one", "two", "three"} {
			c.Log("stdout", line)
		}
		h.waitPending(len(toReady) + 3)
		dronetest.CreateStreams(t, h.js)
		h.mustTerminate("a", true)
		if got := statuses(h.lifecycle("a")); !slices.Equal(got, readyAndStop) {
			t.Errorf("statuses = %v, want %v", got, readyAndStop)
		}
		for i, l := range h.logLines("a", 3) {
			if want := []string{"one", "two", "three"}[i]; l.Text != want {
				t.Errorf("log line %d = %q, want %q", i, l.Text, want)
			}
		}
		h.waitPending(0)
	})
	t.Run("sent again after a lost acknowledgement", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		h.start()
		h.mustSpawn(spec("a"))
		ready := h.waitStatus("a", plane.StatusReady)
		h.stop()
		// The drone published ready but stopped before it saw the stream's
		// acknowledgement: the message is still in its outbox.
		data, err := json.Marshal(ready)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.st.Enqueue(context.Background(), plane.SubjectBackendStatus("a"), "a."+string(plane.StatusReady), data); err != nil {
			t.Fatal(err)
		}
		h.start()
		h.waitPending(0)
		h.mustTerminate("a", true)
		if got := statuses(h.lifecycle("a")); !slices.Equal(got, readyAndStop) {
			t.Errorf("statuses = %v, want %v: the stream must drop the copy", got, readyAndStop)
		}
		if n := h.streamCount(plane.SubjectBackendStatus("a")); n != uint64(len(readyAndStop)) {
			t.Errorf("%d messages in the stream, want %d", n, len(readyAndStop))
		}
	})
}

// waitPending polls the drone's outbox until it holds n messages: nothing
// announces that the outbox changed.
func (h *harness) waitPending(n int) {
	h.t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		msgs, err := h.st.Pending(context.Background(), 0)
		if err != nil {
			h.t.Fatal(err)
		}
		if len(msgs) == n {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("%d messages in the outbox, want %d", len(msgs), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// statusOfN waits for backend id's first n status events.
func (h *harness) statusOfN(id string, n int) []plane.BackendEvent {
	h.t.Helper()
	f := h.statusOf(id)
	f.next(h.t, n-1, func(plane.BackendEvent) bool { return true })
	return f.items()[:n]
}

// streamCount is the number of messages on subject in the status stream.
func (h *harness) streamCount(subject string) uint64 {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	s, err := h.js.Stream(ctx, plane.StreamStatus)
	if err != nil {
		h.t.Fatal(err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		h.t.Fatal(err)
	}
	return info.State.Subjects[subject]
}
