package drone_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"plane"
	"plane/drone"
	"plane/drone/dronetest"
)

// wantErr checks that err is a plane error of code whose message holds has.
func wantErr(t *testing.T, err error, code plane.ErrorCode, has string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %s error holding %q", code, has)
	}
	if got := plane.ErrorCodeOf(err); got != code || !strings.Contains(plane.ErrorMessageOf(err), has) {
		t.Fatalf("error = %v (%s), want %s error holding %q", err, got, code, has)
	}
}

// wantNoBackend checks that the drone knows nothing of backend id: no record,
// no runtime call.
func wantNoBackend(t *testing.T, h *harness, id string) {
	t.Helper()
	if _, err := h.st.FindBackend(context.Background(), id); plane.ErrorCodeOf(err) != plane.ENOTFOUND {
		t.Errorf("record of %s: err = %v, want not found", id, err)
	}
	if calls := h.rt.CallsFor(id); len(calls) != 0 {
		t.Errorf("runtime calls for %s: %+v, want none", id, calls)
	}
}

func TestSpawnRefusedAtCapacity(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.start(func(c *drone.Config) { c.Capacity = 1 })
	h.mustSpawn(spec("a"))
	h.waitStatus("a", plane.StatusReady)

	wantErr(t, h.spawn(spec("b")), plane.EUNAVAILABLE, "drone d1 is full (1 backends)")
	wantNoBackend(t, h, "b")

	// A terminated backend frees its place.
	h.mustTerminate("a", true)
	h.lifecycle("a")
	h.waitRemoved("a")
	h.mustSpawn(spec("b"))
	h.waitStatus("b", plane.StatusReady)
}

func TestSpawnRefusedWhileDraining(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.start()
	h.mustSpawn(spec("a"))
	h.waitStatus("a", plane.StatusReady)

	if err := h.request(plane.SubjectDrain(droneID), plane.DrainRequest{Draining: true}); err != nil {
		t.Fatal(err)
	}
	wantErr(t, h.spawn(spec("b")), plane.EUNAVAILABLE, "drone d1 is draining")
	wantNoBackend(t, h, "b")
	if draining, err := h.st.Draining(context.Background()); err != nil || !draining {
		t.Errorf("stored drain flag = %v, %v; want true", draining, err)
	}

	// Draining keeps what runs: a is still ready and can be terminated.
	if st := h.record("a").Status; st != plane.StatusReady {
		t.Errorf("a is %s while draining, want ready", st)
	}
	// Even a retried spawn of a live backend is answered as before.
	if err := h.spawn(spec("a")); err != nil {
		t.Errorf("retried spawn of a live backend while draining: %v", err)
	}

	// The flag outlives a restart.
	h.stop()
	h.start()
	wantErr(t, h.spawn(spec("b")), plane.EUNAVAILABLE, "draining")

	if err := h.request(plane.SubjectDrain(droneID), plane.DrainRequest{Draining: false}); err != nil {
		t.Fatal(err)
	}
	h.mustSpawn(spec("b"))
	h.waitStatus("b", plane.StatusReady)
	h.mustTerminate("a", false)
	if got := statuses(h.lifecycle("a")); !slices.Equal(got, readyAndStop) {
		t.Errorf("a: statuses = %v, want %v", got, readyAndStop)
	}
}

// TestSpawnIdempotent: a spawn request sent again (a retry, a controller
// replaying its work) starts nothing new, whatever became of the backend.
func TestSpawnIdempotent(t *testing.T) {
	t.Parallel()
	t.Run("while starting", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		h.rt.Script("a", dronetest.Behavior{NotReady: true})
		h.start()
		h.mustSpawn(spec("a"))
		h.mustSpawn(spec("a"))
		h.waitStatus("a", plane.StatusWaiting)
		h.mustSpawn(spec("a"))
		h.rt.Container("a").Serve()
		h.waitStatus("a", plane.StatusReady)
		h.mustSpawn(spec("a"))
		h.mustTerminate("a", true)
		if got := statuses(h.lifecycle("a")); !slices.Equal(got, readyAndStop) {
			t.Errorf("statuses = %v, want %v", got, readyAndStop)
		}
		for _, op := range []dronetest.Op{dronetest.OpEnsureImage, dronetest.OpStart} {
			if n := len(h.rt.Calls(op)); n != 1 {
				t.Errorf("%d %s calls, want 1", n, op)
			}
		}
	})
	t.Run("once terminated", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		h.start()
		h.mustSpawn(spec("a"))
		h.waitStatus("a", plane.StatusReady)
		h.mustTerminate("a", true)
		h.lifecycle("a")

		if err := h.spawn(spec("a")); err != nil {
			t.Errorf("spawn of a terminated backend again: %v", err)
		}
		// The reply follows the record's write: a backend brought back to
		// life would show here.
		if rec := h.record("a"); rec.Status != plane.StatusTerminated || rec.Reason != plane.ReasonRequested {
			t.Fatalf("record after a second spawn = %s (%s), want terminated (requested)", rec.Status, rec.Reason)
		}
		if hb := h.stop(); len(hb.LiveBackends) != 0 {
			t.Errorf("live backends = %v, want none", hb.LiveBackends)
		}
		if n := len(h.rt.Calls(dronetest.OpStart)); n != 1 {
			t.Errorf("%d Start calls, want 1", n)
		}
	})
}

func TestTerminate(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.start()

	wantErr(t, h.terminate("nosuch", false), plane.ENOTFOUND, `backend "nosuch" not found`)
	wantNoBackend(t, h, "nosuch")

	// Terminating twice, and again once terminated, is no error.
	h.rt.Script("a", dronetest.Behavior{IgnoreSIGTERM: true})
	h.mustSpawn(spec("a"))
	h.waitStatus("a", plane.StatusReady)
	h.mustTerminate("a", false)
	h.waitStatus("a", plane.StatusTerminating)
	h.mustTerminate("a", false)
	h.mustTerminate("a", true)
	events := h.lifecycle("a")
	if got := statuses(events); !slices.Equal(got, readyAndStop) {
		t.Errorf("statuses = %v, want %v", got, readyAndStop)
	}
	h.mustTerminate("a", true)
	h.mustTerminate("a", false)
}

// TestMalformedRequests: every request that does not parse or validate gets
// an invalid error and changes nothing.
func TestMalformedRequests(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.start()
	valid := spec("a")
	withSpec := func(f func(*plane.SpawnSpec)) plane.SpawnSpec {
		s := valid
		f(&s)
		return s
	}
	tests := []struct {
		name    string
		subject string
		msg     any
		has     string
	}{
		{"spawn: not JSON", plane.SubjectSpawn(droneID), []byte("spawn a please"), "malformed message"},
		{"spawn: empty", plane.SubjectSpawn(droneID), []byte(""), "malformed message"},
		{"spawn: wrong type", plane.SubjectSpawn(droneID), []byte(`{"backend_id":"a","port":"8080"}`), "malformed message"},
		{"spawn: no backend", plane.SubjectSpawn(droneID), []byte(`{}`), "id: is required"},
		{"spawn: bad backend ID", plane.SubjectSpawn(droneID), withSpec(func(s *plane.SpawnSpec) { s.BackendID = "../A" }), "id:"},
		{"spawn: bad image", plane.SubjectSpawn(droneID), withSpec(func(s *plane.SpawnSpec) { s.ImageRef = "Not An Image" }), "ref:"},
		{"spawn: bad pull policy", plane.SubjectSpawn(droneID), withSpec(func(s *plane.SpawnSpec) { s.PullPolicy = "sometimes" }), "pull_policy:"},
		{"spawn: bad port", plane.SubjectSpawn(droneID), withSpec(func(s *plane.SpawnSpec) { s.Port = 70000 }), "port:"},
		{"spawn: bad env name", plane.SubjectSpawn(droneID), withSpec(func(s *plane.SpawnSpec) { s.Env = map[string]string{"1BAD": "x"} }), "env"},
		{"spawn: negative idle", plane.SubjectSpawn(droneID), withSpec(func(s *plane.SpawnSpec) { s.MaxIdleSeconds = -1 }), "max_idle_seconds:"},
		{"spawn: tiny memory", plane.SubjectSpawn(droneID), withSpec(func(s *plane.SpawnSpec) { s.MemoryMB = 1 }), "memory_mb:"},
		{"terminate: not JSON", plane.SubjectTerminate(droneID), []byte("{"), "malformed message"},
		{"terminate: no backend", plane.SubjectTerminate(droneID), []byte(`{"reason":"requested"}`), "id: is required"},
		{"terminate: bad reason", plane.SubjectTerminate(droneID), plane.TerminateRequest{BackendID: "a", Reason: "bored"}, "reason:"},
		{"drain: not JSON", plane.SubjectDrain(droneID), []byte("yes"), "malformed message"},
		{"drain: wrong type", plane.SubjectDrain(droneID), []byte(`{"draining":"yes"}`), "malformed message"},
		{"pull: not JSON", plane.SubjectPull(droneID), []byte("demo"), "malformed message"},
		{"pull: bad image", plane.SubjectPull(droneID), plane.PullRequest{ImageRef: "no such thing!"}, "ref:"},
	}
	// Sent without a reply subject, they are dropped. Each subject's
	// messages are handled in order, so the requests below are answered
	// only once these are handled.
	for _, tt := range tests {
		data, ok := tt.msg.([]byte)
		if !ok {
			continue
		}
		if err := h.nc.Publish(tt.subject, data); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantErr(t, h.request(tt.subject, tt.msg), plane.EINVALID, tt.has)
		})
	}
	// Nothing changed: no backend, no runtime work, not draining.
	wantNoBackend(t, h, "a")
	if calls := h.rt.Calls(dronetest.OpEnsureImage, dronetest.OpStart, dronetest.OpStop, dronetest.OpRemove); len(calls) != 0 {
		t.Errorf("runtime calls: %+v, want none", calls)
	}
	if live, err := h.st.LiveBackends(context.Background()); err != nil || len(live) != 0 {
		t.Errorf("live backends = %v, %v; want none", live, err)
	}
	if hb := h.stop(); hb.Draining || len(hb.LiveBackends) != 0 {
		t.Errorf("last heartbeat = %+v, want no backend and not draining", hb)
	}
}

func TestPull(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.rt.FailPull("broken:1", plane.Errorf(plane.EUNAVAILABLE, `pull image "broken:1": manifest unknown`))
	h.start()

	if err := h.request(plane.SubjectPull(droneID), plane.PullRequest{ImageRef: "other:2"}); err != nil {
		t.Fatal(err)
	}
	pulls := h.rt.Calls(dronetest.OpEnsureImage)
	if len(pulls) != 1 || pulls[0].Ref != "other:2" || pulls[0].Policy != plane.PullAlways {
		t.Errorf("pulls = %+v, want other:2 pulled with policy always", pulls)
	}
	wantErr(t, h.request(plane.SubjectPull(droneID), plane.PullRequest{ImageRef: "broken:1"}), plane.EUNAVAILABLE, "manifest unknown")
}

// TestNew checks the configuration New refuses.
func TestNew(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	good := drone.Config{ID: droneID, NATS: h.nc, Store: h.st, Runtime: h.rt}
	tests := []struct {
		name string
		cfg  func(*drone.Config)
		has  string
	}{
		{"no ID", func(c *drone.Config) { c.ID = "" }, "drone_id"},
		{"bad ID", func(c *drone.Config) { c.ID = "D 1" }, "drone_id"},
		{"no NATS", func(c *drone.Config) { c.NATS = nil }, "required"},
		{"no store", func(c *drone.Config) { c.Store = nil }, "required"},
		{"no runtime", func(c *drone.Config) { c.Runtime = nil }, "required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good
			tt.cfg(&cfg)
			_, err := drone.New(cfg)
			if err == nil || !strings.Contains(err.Error(), tt.has) {
				t.Errorf("New: err = %v, want one holding %q", err, tt.has)
			}
		})
	}
	if _, err := drone.New(good); err != nil {
		t.Errorf("New(minimal config): %v", err)
	}
}

// TestRunFailsWithoutRuntime: a drone that cannot list its containers does
// not start, since it could not know which backends still run.
func TestRunFailsWithoutRuntime(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.rt.FailList(errors.New("cannot connect to the Docker daemon"))
	cfg := h.cfg
	cfg.NATS, cfg.Store, cfg.Runtime = h.nc, h.st, h.rt
	cfg.Logger = slog.New(slog.NewTextHandler(h.logs, nil))
	a, err := drone.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	err = a.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "cannot connect to the Docker daemon") {
		t.Fatalf("Run: err = %v, want the runtime's error", err)
	}
	if ctx.Err() != nil {
		t.Fatal("Run waited for its context's end")
	}
}
