package drone_test

import (
	"errors"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"plane"
	"plane/drone"
	"plane/drone/dronetest"
)

// TestLifecycle drives one backend through each path of its lifecycle and
// checks the status events the controller receives, the drone's record and
// what became of the container.
func TestLifecycle(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  func(*drone.Config)
		spec func(*plane.SpawnSpec)
		// script sets the runtime up before the spawn; drive acts after it
		// was accepted, as the backend's process, an operator or a user would.
		script func(rt *dronetest.Runtime, id string)
		drive  func(h *harness, id string)
		// what the controller must see
		want    []plane.BackendStatus
		reason  plane.TerminationReason
		exit    *int   // nil: the event carries no exit code
		errHas  string // "": the event carries no error
		started bool   // a container was started, so it must be removed at the end
		check   func(t *testing.T, h *harness, id string, events []plane.BackendEvent, sent time.Time)
	}{
		{
			name: "ready, then hard terminate",
			spec: func(s *plane.SpawnSpec) { s.CPUMillis, s.MemoryMB = 500, 64 },
			drive: func(h *harness, id string) {
				h.waitStatus(id, plane.StatusReady)
				h.mustTerminate(id, true)
			},
			want: readyAndStop, reason: plane.ReasonRequested, exit: ptr(dronetest.ExitSIGKILL), started: true,
			check: func(t *testing.T, h *harness, id string, events []plane.BackendEvent, _ time.Time) {
				starts := h.rt.CallsFor(id, dronetest.OpStart)
				if len(starts) != 1 {
					t.Fatalf("%d Start calls, want 1", len(starts))
				}
				got := starts[0].Spec
				if got.BackendID != id || got.DroneID != droneID || got.ImageRef != testImage || got.Port != 8080 || got.CPUMillis != 500 || got.MemoryMB != 64 {
					t.Errorf("container spec = %+v", got)
				}
				wantEnv := map[string]string{"GREETING": "hello", "PORT": "8080", "PLANE_BACKEND_ID": id, "PLANE_BACKEND_KEY": "key-" + id}
				if !maps.Equal(got.Env, wantEnv) {
					t.Errorf("container env = %v, want %v", got.Env, wantEnv)
				}
				addr := h.rt.Container(id).Address()
				for _, e := range events[2:] { // from waiting on, events say where the backend is
					if e.Address != addr {
						t.Errorf("%s event address = %q, want %q", e.Status, e.Address, addr)
					}
				}
				if stops := h.rt.CallsFor(id, dronetest.OpStop); len(stops) != 1 || stops[0].Grace != 0 {
					t.Errorf("Stop calls = %+v, want one with no grace (SIGKILL)", stops)
				}
			},
		},
		{
			name: "ready once the port answers",
			script: func(rt *dronetest.Runtime, id string) {
				rt.Script(id, dronetest.Behavior{NotReady: true})
			},
			drive: func(h *harness, id string) {
				h.waitStatus(id, plane.StatusWaiting)
				h.rt.Container(id).Serve()
				h.waitStatus(id, plane.StatusReady)
				h.mustTerminate(id, true)
			},
			want: readyAndStop, reason: plane.ReasonRequested, exit: ptr(dronetest.ExitSIGKILL), started: true,
		},
		{
			name: "any HTTP answer counts as ready",
			script: func(rt *dronetest.Runtime, id string) {
				rt.Script(id, dronetest.Behavior{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
					w.WriteHeader(http.StatusServiceUnavailable)
				})})
			},
			drive: func(h *harness, id string) {
				h.waitStatus(id, plane.StatusReady)
				h.mustTerminate(id, true)
			},
			want: readyAndStop, reason: plane.ReasonRequested, exit: ptr(dronetest.ExitSIGKILL), started: true,
		},
		{
			name: "image pull fails",
			spec: func(s *plane.SpawnSpec) { s.PullPolicy = plane.PullAlways },
			script: func(rt *dronetest.Runtime, _ string) {
				rt.FailPull(testImage, plane.Errorf(plane.EUNAVAILABLE, "pull image %q: registry unreachable", testImage))
			},
			want:   []plane.BackendStatus{plane.StatusLoading, plane.StatusTerminated},
			reason: plane.ReasonFailed, errHas: "registry unreachable",
		},
		{
			name:   "image absent with pull policy never",
			spec:   func(s *plane.SpawnSpec) { s.ImageRef, s.PullPolicy = "absent:1", plane.PullNever },
			want:   []plane.BackendStatus{plane.StatusLoading, plane.StatusTerminated},
			reason: plane.ReasonFailed, errHas: "pull policy is never",
		},
		{
			name:   "pull timeout",
			cfg:    func(c *drone.Config) { c.PullTimeout = 50 * time.Millisecond },
			script: func(rt *dronetest.Runtime, _ string) { rt.BlockPull(testImage) }, // never released
			want:   []plane.BackendStatus{plane.StatusLoading, plane.StatusTerminated},
			reason: plane.ReasonFailed, errHas: "loading image demo:latest",
			check: func(t *testing.T, h *harness, id string, events []plane.BackendEvent, _ time.Time) {
				if d := events[1].Time.Sub(events[0].Time); d < 50*time.Millisecond {
					t.Errorf("failed %s after loading, before the pull timeout", d)
				}
			},
		},
		{
			name: "start fails",
			script: func(rt *dronetest.Runtime, id string) {
				rt.Script(id, dronetest.Behavior{StartErr: errors.New("port is already allocated")})
			},
			want:   []plane.BackendStatus{plane.StatusLoading, plane.StatusStarting, plane.StatusTerminated},
			reason: plane.ReasonFailed, errHas: "starting container: port is already allocated",
		},
		{
			name: "crash before ready",
			script: func(rt *dronetest.Runtime, id string) {
				rt.Script(id, dronetest.Behavior{NotReady: true, Logs: []dronetest.LogLine{{Stream: "stderr", Text: "panic: no config"}}})
			},
			drive: func(h *harness, id string) {
				h.waitStatus(id, plane.StatusWaiting)
				h.rt.Container(id).Exit(2)
			},
			want:   []plane.BackendStatus{plane.StatusLoading, plane.StatusStarting, plane.StatusWaiting, plane.StatusTerminated},
			reason: plane.ReasonFailed, exit: ptr(2), errHas: "process exited with code 2 before answering HTTP on port 8080", started: true,
		},
		{
			name: "process exits as it starts",
			script: func(rt *dronetest.Runtime, id string) {
				rt.Script(id, dronetest.Behavior{ExitOnStart: ptr(127)})
			},
			want:   []plane.BackendStatus{plane.StatusLoading, plane.StatusStarting, plane.StatusWaiting, plane.StatusTerminated},
			reason: plane.ReasonFailed, exit: ptr(127), errHas: "process exited with code 127 before answering HTTP", started: true,
		},
		{
			name: "start timeout",
			cfg:  func(c *drone.Config) { c.StartTimeout = 100 * time.Millisecond },
			script: func(rt *dronetest.Runtime, id string) {
				rt.Script(id, dronetest.Behavior{NotReady: true})
			},
			want:   []plane.BackendStatus{plane.StatusLoading, plane.StatusStarting, plane.StatusWaiting, plane.StatusTerminated},
			reason: plane.ReasonFailed, errHas: "did not answer HTTP on port 8080 within 100ms (start timeout)", started: true,
			check: func(t *testing.T, h *harness, id string, events []plane.BackendEvent, _ time.Time) {
				if d := events[3].Time.Sub(events[2].Time); d < 100*time.Millisecond {
					t.Errorf("failed %s after waiting, before the start timeout", d)
				}
				if stops := h.rt.CallsFor(id, dronetest.OpStop); len(stops) != 1 || stops[0].Grace != 0 {
					t.Errorf("Stop calls = %+v, want one kill", stops)
				}
			},
		},
		{
			name: "exit after ready",
			drive: func(h *harness, id string) {
				h.waitStatus(id, plane.StatusReady)
				h.rt.Container(id).Exit(3)
			},
			want:   append(slices.Clone(toReady), plane.StatusTerminated),
			reason: plane.ReasonExited, exit: ptr(3), started: true,
			check: func(t *testing.T, h *harness, id string, _ []plane.BackendEvent, _ time.Time) {
				if stops := h.rt.CallsFor(id, dronetest.OpStop); len(stops) != 0 {
					t.Errorf("Stop calls = %+v, want none: the process had exited", stops)
				}
			},
		},
		{
			name: "exit 0 after ready",
			drive: func(h *harness, id string) {
				h.waitStatus(id, plane.StatusReady)
				h.rt.Container(id).Exit(0)
			},
			want:   append(slices.Clone(toReady), plane.StatusTerminated),
			reason: plane.ReasonExited, exit: ptr(0), started: true,
		},
		{
			name: "soft terminate",
			cfg:  func(c *drone.Config) { c.StopGrace = 3 * time.Second },
			drive: func(h *harness, id string) {
				h.waitStatus(id, plane.StatusReady)
				h.mustTerminate(id, false)
			},
			want: readyAndStop, reason: plane.ReasonRequested, exit: ptr(dronetest.ExitSIGTERM), started: true,
			check: func(t *testing.T, h *harness, id string, events []plane.BackendEvent, _ time.Time) {
				if stops := h.rt.CallsFor(id, dronetest.OpStop); len(stops) != 1 || stops[0].Grace != 3*time.Second {
					t.Errorf("Stop calls = %+v, want one with the stop grace", stops)
				}
			},
		},
		{
			name: "soft terminate, SIGTERM ignored until the grace ends",
			cfg:  func(c *drone.Config) { c.StopGrace = 50 * time.Millisecond },
			script: func(rt *dronetest.Runtime, id string) {
				rt.Script(id, dronetest.Behavior{IgnoreSIGTERM: true})
			},
			drive: func(h *harness, id string) {
				h.waitStatus(id, plane.StatusReady)
				h.mustTerminate(id, false)
			},
			want: readyAndStop, reason: plane.ReasonRequested, exit: ptr(dronetest.ExitSIGKILL), started: true,
			check: func(t *testing.T, h *harness, id string, events []plane.BackendEvent, _ time.Time) {
				if d := events[5].Time.Sub(events[4].Time); d < 50*time.Millisecond {
					t.Errorf("killed %s after terminating, before the grace ended", d)
				}
			},
		},
		{
			name: "hard terminate escalates a soft one",
			cfg:  func(c *drone.Config) { c.StopGrace = time.Hour },
			script: func(rt *dronetest.Runtime, id string) {
				rt.Script(id, dronetest.Behavior{IgnoreSIGTERM: true})
			},
			drive: func(h *harness, id string) {
				h.waitStatus(id, plane.StatusReady)
				h.mustTerminate(id, false)
				h.waitStatus(id, plane.StatusTerminating)
				h.mustTerminate(id, true)
			},
			want: readyAndStop, reason: plane.ReasonRequested, exit: ptr(dronetest.ExitSIGKILL), started: true,
			check: func(t *testing.T, h *harness, id string, _ []plane.BackendEvent, _ time.Time) {
				var graces []time.Duration
				for _, c := range h.rt.CallsFor(id, dronetest.OpStop) {
					graces = append(graces, c.Grace)
				}
				if !slices.Equal(graces, []time.Duration{time.Hour, 0}) {
					t.Errorf("Stop graces = %v, want [1h 0s]", graces)
				}
			},
		},
		{
			name: "terminate while waiting",
			script: func(rt *dronetest.Runtime, id string) {
				rt.Script(id, dronetest.Behavior{NotReady: true})
			},
			drive: func(h *harness, id string) {
				h.waitStatus(id, plane.StatusWaiting)
				h.mustTerminate(id, false)
			},
			want:   []plane.BackendStatus{plane.StatusLoading, plane.StatusStarting, plane.StatusWaiting, plane.StatusTerminating, plane.StatusTerminated},
			reason: plane.ReasonRequested, exit: ptr(dronetest.ExitSIGTERM), started: true,
		},
		{
			name:   "terminate while loading",
			script: func(rt *dronetest.Runtime, _ string) { rt.BlockPull(testImage) },
			drive: func(h *harness, id string) {
				h.waitStatus(id, plane.StatusLoading)
				h.mustTerminate(id, false)
				h.rt.ReleasePull(testImage, nil) // the pull ends after the request arrived
			},
			want:   []plane.BackendStatus{plane.StatusLoading, plane.StatusTerminated},
			reason: plane.ReasonRequested,
			check: func(t *testing.T, h *harness, id string, _ []plane.BackendEvent, _ time.Time) {
				if starts := h.rt.CallsFor(id, dronetest.OpStart); len(starts) != 0 {
					t.Errorf("Start calls = %+v, want none: it was terminated while loading", starts)
				}
			},
		},
		{
			name: "idle",
			spec: func(s *plane.SpawnSpec) { s.MaxIdleSeconds = 1 },
			want: readyAndStop, reason: plane.ReasonIdle, exit: ptr(dronetest.ExitSIGTERM), started: true,
			check: func(t *testing.T, h *harness, id string, events []plane.BackendEvent, _ time.Time) {
				if d := events[4].Time.Sub(events[3].Time); d < time.Second {
					t.Errorf("idle %s after ready, before max_idle_seconds", d)
				}
			},
		},
		{
			name: "lifetime",
			spec: func(s *plane.SpawnSpec) { s.LifetimeSeconds = 1 },
			want: readyAndStop, reason: plane.ReasonLifetime, exit: ptr(dronetest.ExitSIGTERM), started: true,
			check: func(t *testing.T, h *harness, id string, events []plane.BackendEvent, sent time.Time) {
				// The lifetime counts from the spawn request.
				if d := events[4].Time.Sub(sent); d < time.Second-time.Millisecond {
					t.Errorf("lifetime ended %s after the spawn request, before lifetime_seconds", d)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			const id = "b1"
			if tt.script != nil {
				tt.script(h.rt, id)
			}
			h.start(func(c *drone.Config) {
				if tt.cfg != nil {
					tt.cfg(c)
				}
			})
			s := spec(id)
			if tt.spec != nil {
				tt.spec(&s)
			}
			sent := time.Now()
			h.mustSpawn(s)
			if tt.drive != nil {
				tt.drive(h, id)
			}
			events := h.lifecycle(id)
			if got := statuses(events); !slices.Equal(got, tt.want) {
				t.Fatalf("statuses = %v, want %v\nevents: %s", got, tt.want, dump(events))
			}
			checkEvents(t, id, events)
			last := events[len(events)-1]
			if last.Reason != tt.reason {
				t.Errorf("reason = %q, want %q", last.Reason, tt.reason)
			}
			if !intPtrEqual(last.ExitCode, tt.exit) {
				t.Errorf("exit code = %s, want %s", fmtIntPtr(last.ExitCode), fmtIntPtr(tt.exit))
			}
			if tt.errHas == "" && last.Error != "" || !strings.Contains(last.Error, tt.errHas) {
				t.Errorf("error = %q, want one holding %q", last.Error, tt.errHas)
			}

			// The drone's record agrees with the event.
			rec := h.record(id)
			if rec.Status != plane.StatusTerminated || rec.Reason != last.Reason || !intPtrEqual(rec.ExitCode, last.ExitCode) || rec.Error != last.Error {
				t.Errorf("record = %+v, want it as the terminated event", rec)
			}
			// The container is gone, and the backend left the live set.
			if c := h.rt.Container(id); tt.started != (c != nil) {
				t.Errorf("container started = %v, want %v", c != nil, tt.started)
			} else if c != nil {
				h.waitRemoved(id)
				if c.Running() {
					t.Error("container still running")
				}
			}
			h.beats.next(t, h.beats.len(), func(hb plane.Heartbeat) bool { return !slices.Contains(hb.LiveBackends, id) })
			if tt.check != nil {
				tt.check(t, h, id, events, sent)
			}
		})
	}
}

// checkEvents checks what every sequence of status events must satisfy.
func checkEvents(t *testing.T, id string, events []plane.BackendEvent) {
	t.Helper()
	for i, e := range events {
		if e.BackendID != id || e.DroneID != droneID {
			t.Errorf("event %d is of backend %q on drone %q", i, e.BackendID, e.DroneID)
		}
		if e.Status != plane.StatusTerminated && (e.Reason != "" || e.ExitCode != nil || e.Error != "") {
			t.Errorf("%s event carries a termination: %+v", e.Status, e)
		}
		if i > 0 {
			if !events[i-1].Status.CanMoveTo(e.Status) {
				t.Errorf("%s follows %s", e.Status, events[i-1].Status)
			}
			if e.Time.Before(events[i-1].Time) {
				t.Errorf("%s at %s, before %s at %s", e.Status, e.Time, events[i-1].Status, events[i-1].Time)
			}
		}
	}
}

func intPtrEqual(a, b *int) bool {
	return a == nil && b == nil || a != nil && b != nil && *a == *b
}

func fmtIntPtr(p *int) string {
	if p == nil {
		return "none"
	}
	return strconv.Itoa(*p)
}
