package drone_test

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"plane"
	"plane/drone"
	"plane/drone/dronetest"
	"plane/drone/proxy"
)

// Warm pools: the drone keeps started, ready members of each pool the
// controller asks for, tells the controller of them in its heartbeat
// only, and hands one to a spawn that claims it.

const testPool = "i1"

// poolSpec is a warm pool of size members of testImage.
func poolSpec(id string, size int) plane.PoolSpec {
	p := plane.PoolSpec{
		ID: id, Image: "demo", Size: size,
		Spec: plane.SpawnSpec{ImageRef: testImage, PullPolicy: plane.PullIfNotPresent, Port: 8080,
			Env: map[string]string{"GREETING": "hello"}},
	}
	p.Hash = p.SpecHash()
	return p
}

// claimSpec is the spawn that claims member id, as the controller sends
// it: the pool's container, with a key, a user and limits of its own.
func claimSpec(id string) plane.SpawnSpec {
	s := poolSpec(testPool, 1).Spec
	s.BackendID, s.Key, s.User, s.Warm = id, "key-"+id, "alice", true
	s.MaxIdleSeconds, s.LifetimeSeconds = 600, 3600
	return s
}

// setPools sends the drone the pools it should keep.
func (h *harness) setPools(pools ...plane.PoolSpec) {
	h.t.Helper()
	if pools == nil {
		pools = []plane.PoolSpec{}
	}
	if err := h.request(plane.SubjectPools(droneID), plane.PoolsRequest{Pools: pools}); err != nil {
		h.t.Fatalf("set pools: %v", err)
	}
}

// claim sends spec, which claims a member, and returns the reply.
func (h *harness) claim(spec plane.SpawnSpec) plane.Reply {
	h.t.Helper()
	r := h.reply(plane.SubjectSpawn(droneID), spec)
	if err := r.Err(); err != nil {
		h.t.Fatalf("claim %s: %v", spec.BackendID, err)
	}
	return r
}

// poolOf returns pool id as hb reports it.
func poolOf(hb plane.Heartbeat, id string) (plane.PoolState, bool) {
	for _, p := range hb.Pools {
		if p.ID == id {
			return p, true
		}
	}
	return plane.PoolState{}, false
}

// waitBeat waits for a heartbeat made from now on (not one on its way)
// that match accepts.
func (h *harness) waitBeat(match func(plane.Heartbeat) bool) plane.Heartbeat {
	h.t.Helper()
	since := time.Now()
	hb, _ := h.beats.next(h.t, h.beats.len(), func(hb plane.Heartbeat) bool { return !hb.Time.Before(since) && match(hb) })
	return hb
}

// waitPool waits for a heartbeat in which pool id has n ready members and
// none starting, and returns their IDs.
func (h *harness) waitPool(id string, n int) []string {
	h.t.Helper()
	hb := h.waitBeat(func(hb plane.Heartbeat) bool {
		p, ok := poolOf(hb, id)
		return ok && len(p.Ready) == n && p.Starting == 0
	})
	p, _ := poolOf(hb, id)
	return p.Ready
}

// waitGone waits until the drone removed the container of every backend
// of ids.
func (h *harness) waitGone(ids ...string) {
	h.t.Helper()
	for _, id := range ids {
		h.waitRemoved(id)
	}
}

// liveIDs lists the backend IDs of the drone's containers not removed.
func (h *harness) liveIDs() []string {
	var ids []string
	for _, c := range h.rt.Live(droneID) {
		ids = append(ids, c.BackendID)
	}
	slices.Sort(ids)
	return ids
}

// liveCopies collects the status events the drone sends on core NATS.
func liveCopies(t *testing.T, h *harness) *feed[plane.BackendEvent] {
	t.Helper()
	return subscribeFeed[plane.BackendEvent](t, h.nc, plane.SubjectBackendStatusLiveAll)
}

// wantNoEvents checks that the drone sent no status event of any backend
// of ids, in the stream or on core NATS (live, from liveCopies): it
// spawns backend sentinel, whose events follow any the drone queued
// before, and looks once they have arrived.
func (h *harness) wantNoEvents(live *feed[plane.BackendEvent], sentinel string, ids ...string) {
	h.t.Helper()
	h.mustSpawn(spec(sentinel))
	h.waitStatus(sentinel, plane.StatusReady)
	live.next(h.t, 0, func(e plane.BackendEvent) bool { return e.BackendID == sentinel && e.Status == plane.StatusReady })
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	stream, err := h.js.Stream(ctx, plane.StreamStatus)
	if err != nil {
		h.t.Fatal(err)
	}
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(plane.StatusSubjects[0]))
	if err != nil {
		h.t.Fatal(err)
	}
	for _, id := range ids {
		if n := info.State.Subjects[plane.SubjectBackendStatus(id)]; n != 0 {
			h.t.Errorf("%d status events of pool member %s in the stream, want none", n, id)
		}
		for _, e := range live.items() {
			if e.BackendID == id {
				h.t.Errorf("live status copy of pool member %s: %+v", id, e)
			}
		}
	}
}

func newProxy(t *testing.T) *proxy.Proxy {
	t.Helper()
	p := proxy.New(proxy.Config{Domain: "plane.test", Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// routed reports whether the proxy has a route for backend id.
func routed(p *proxy.Proxy, id string) bool {
	_, last := p.Activity(id)
	return !last.IsZero()
}

// TestPoolFill: a pool fills to its size with members the controller
// knows of only through the heartbeat: no record, no status event, no
// route, not live.
func TestPoolFill(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	live := liveCopies(t, h)
	p := newProxy(t)
	h.start(func(c *drone.Config) { c.Proxy = p })
	want := poolSpec(testPool, 3)
	h.setPools(want)

	ids := h.waitPool(testPool, 3)
	hb := h.waitBeat(func(plane.Heartbeat) bool { return true })
	if err := hb.Validate(); err != nil {
		t.Errorf("heartbeat does not validate: %v", err)
	}
	ps, _ := poolOf(hb, testPool)
	if len(hb.Pools) != 1 || ps.Hash != want.Hash || ps.Size != 3 || !slices.Equal(ps.Ready, ids) || ps.RefillMillis <= 0 {
		t.Errorf("pools = %s, want pool %s of hash %s, size 3, with %v ready and a refill time", dump(hb.Pools), testPool, want.Hash, ids)
	}
	if len(hb.LiveBackends) != 0 {
		t.Errorf("live backends = %v, want none: members are no backends", hb.LiveBackends)
	}
	if !slices.IsSorted(ids) || len(slices.Compact(slices.Clone(ids))) != 3 {
		t.Errorf("ready = %v, want 3 IDs, sorted", ids)
	}
	for _, id := range ids {
		if err := plane.ValidateBackendID(id); err != nil {
			t.Errorf("member ID %q: %v", id, err)
		}
		c := h.rt.Container(id)
		if c == nil || !c.Running() {
			t.Fatalf("member %s has no running container", id)
		}
		wantEnv := map[string]string{"GREETING": "hello", "PORT": "8080", "PLANE_BACKEND_ID": id, "PLANE_BACKEND_KEY": ""}
		if c.Spec.Pool != "demo" || c.Spec.ImageRef != testImage || !maps.Equal(c.Spec.Env, wantEnv) {
			t.Errorf("member %s's container: pool label %q, image %s, env %v; want demo, %s, %v", id, c.Spec.Pool, c.Spec.ImageRef, c.Spec.Env, testImage, wantEnv)
		}
		if _, err := h.st.FindBackend(context.Background(), id); plane.ErrorCodeOf(err) != plane.ENOTFOUND {
			t.Errorf("record of member %s: err = %v, want not found", id, err)
		}
		if routed(p, id) {
			t.Errorf("member %s is routed in the proxy", id)
		}
	}
	h.wantNoEvents(live, "sentinel", ids...)
	if recs, err := h.st.LiveBackends(context.Background()); err != nil || len(recs) != 1 {
		t.Errorf("live records = %d, %v; want the sentinel's only", len(recs), err)
	}
	// A full pool starts nothing more.
	h.waitBeat(func(plane.Heartbeat) bool { return true })
	if n := len(h.rt.Calls(dronetest.OpStart)); n != 4 {
		t.Errorf("%d Start calls, want 3 members and the sentinel", n)
	}
}

// TestPoolClaim: a claim hands a ready member over at once: one status
// event, ready; a record and a route with the spawn's key and user; live
// from now on; and the pool refills. Its output is its start-up log.
func TestPoolClaim(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.rt.ScriptImage(testImage, dronetest.Behavior{Logs: []dronetest.LogLine{{Stream: "stdout", Text: "listening"}}})
	p := newProxy(t)
	h.start(func(c *drone.Config) { c.Proxy = p })
	h.setPools(poolSpec(testPool, 2))
	ids := h.waitPool(testPool, 2)
	id := ids[0]

	before := time.Now()
	r := h.claim(claimSpec(id))
	t.Logf("claim answered in %s", time.Since(before))
	if !r.Warm {
		t.Fatalf("claim of ready member %s: reply %+v, want warm", id, r)
	}
	// Answered once live, stored and routed.
	rec := h.record(id)
	if rec.Status != plane.StatusReady || rec.Spec.Key != "key-"+id || rec.Spec.User != "alice" || !rec.Spec.Warm ||
		rec.Spec.MaxIdleSeconds != 600 || rec.Spec.LifetimeSeconds != 3600 || rec.Address != h.rt.Container(id).Address() {
		t.Errorf("record = %+v, want ready with the claim's key, user and limits and the container's address", rec)
	}
	if rec.CreatedAt.Before(before.Truncate(time.Millisecond)) {
		t.Errorf("record created at %s, before the claim (%s): its lifetime must count from the claim", rec.CreatedAt, before)
	}
	if !routed(p, id) {
		t.Errorf("claimed backend %s is not routed", id)
	}
	ev := h.waitStatus(id, plane.StatusReady)
	if ev.Address != h.rt.Container(id).Address() || ev.DroneID != droneID {
		t.Errorf("ready event = %+v", ev)
	}

	// The next heartbeats: live, out of the pool, which refills.
	h.waitBeat(func(hb plane.Heartbeat) bool {
		ps, _ := poolOf(hb, testPool)
		return slices.Equal(hb.LiveBackends, []string{id}) && !slices.Contains(ps.Ready, id)
	})
	refilled := h.waitPool(testPool, 2)
	if slices.Contains(refilled, id) || !slices.Contains(refilled, ids[1]) {
		t.Errorf("pool after the claim = %v, want %s and a new member", refilled, ids[1])
	}

	// A retried claim is answered warm again and changes nothing.
	if r := h.claim(claimSpec(id)); !r.Warm {
		t.Errorf("retried claim: reply %+v, want warm", r)
	}
	if n := len(h.rt.CallsFor(id, dronetest.OpStart)); n != 1 {
		t.Errorf("%d Start calls for %s, want 1 (as a member)", n, id)
	}

	// It is a backend like any other: terminated on request, its whole
	// history one ready and its end.
	h.mustTerminate(id, true)
	want := []plane.BackendStatus{plane.StatusReady, plane.StatusTerminating, plane.StatusTerminated}
	if got := statuses(h.lifecycle(id)); !slices.Equal(got, want) {
		t.Errorf("statuses = %v, want %v", got, want)
	}
	h.waitRemoved(id)
	if r := h.claim(claimSpec(id)); !r.Warm {
		t.Errorf("claim retried once terminated: reply %+v, want warm", r)
	}
	if rec := h.record(id); rec.Status != plane.StatusTerminated {
		t.Errorf("record after a retry = %s, want terminated", rec.Status)
	}

	// Its output, from its start as a member, is its log, each line once.
	if lines := h.logLines(id, 1); lines[0].Text != "listening" {
		t.Errorf("log = %+v", lines)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	stream, err := h.js.Stream(ctx, plane.StreamLogs)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(plane.SubjectBackendLogs(id)))
	if err != nil {
		t.Fatal(err)
	}
	if n := info.State.Subjects[plane.SubjectBackendLogs(id)]; n != 1 {
		t.Errorf("%d log lines of %s, want 1", n, id)
	}
}

// TestPoolClaimCold: a claim that cannot have its member starts the
// backend cold under the member's ID, and says so.
func TestPoolClaimCold(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// member sets a pool up and returns the ID to claim.
		member func(h *harness) string
		spec   func(*plane.SpawnSpec)
	}{
		{
			name: "unknown",
			member: func(h *harness) string {
				h.setPools(poolSpec(testPool, 2))
				h.waitPool(testPool, 2)
				return "nosuchmember"
			},
		},
		{
			name: "exited",
			member: func(h *harness) string {
				h.setPools(poolSpec(testPool, 2))
				id := h.waitPool(testPool, 2)[0]
				h.rt.Container(id).Exit(1)
				h.waitRemoved(id)
				return id
			},
		},
		{
			name: "still starting",
			member: func(h *harness) string {
				h.rt.ScriptImage(testImage, dronetest.Behavior{NotReady: true})
				h.setPools(poolSpec(testPool, 1))
				h.waitBeat(func(hb plane.Heartbeat) bool { p, _ := poolOf(hb, testPool); return p.Starting == 1 })
				id := h.liveIDs()[0]
				h.rt.Script(id, dronetest.Behavior{}) // the cold container answers
				return id
			},
		},
		{
			name: "another container",
			member: func(h *harness) string {
				h.setPools(poolSpec(testPool, 2))
				return h.waitPool(testPool, 2)[0]
			},
			spec: func(s *plane.SpawnSpec) { s.Port = 9090 },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			h.start()
			id := tt.member(h)
			s := claimSpec(id)
			if tt.spec != nil {
				tt.spec(&s)
			}
			if r := h.claim(s); r.Warm {
				t.Fatalf("claim: reply %+v, want cold", r)
			}
			ev := h.waitStatus(id, plane.StatusReady)
			if got := statuses(h.statusOf(id).items()); !slices.Equal(got, toReady) {
				t.Errorf("statuses = %v, want %v", got, toReady)
			}
			if c := h.rt.Container(id); ev.Address != c.Address() || c.Spec.Pool != "" || c.Spec.Port != s.Port {
				t.Errorf("cold container: %+v at %s, ready at %s", c.Spec, c.Address(), ev.Address)
			}
			if rec := h.record(id); rec.Spec.Warm || rec.Spec.Key != s.Key {
				t.Errorf("record spec = %+v, want the claim's, cold", rec.Spec)
			}
			if r := h.claim(s); r.Warm {
				t.Errorf("retried claim: reply %+v, want cold", r)
			}
			// One container of the ID at a time: a member's went first.
			for _, c := range h.rt.Live(droneID) {
				if c.BackendID == id && c != h.rt.Container(id) {
					t.Errorf("member container %s of %s still there", c.ID, id)
				}
			}
		})
	}
}

// TestPoolReplace: members that exit, vanish or run a former spec are
// replaced; nobody is told of them.
func TestPoolReplace(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	live := liveCopies(t, h)
	h.start()
	h.setPools(poolSpec(testPool, 2))
	first := h.waitPool(testPool, 2)

	h.rt.Container(first[0]).Exit(3)
	h.waitRemoved(first[0])
	second := h.waitPool(testPool, 2)
	if slices.Contains(second, first[0]) || !slices.Contains(second, first[1]) {
		t.Errorf("pool after an exit = %v, want %s and a new member", second, first[1])
	}

	// One whose container disappears (docker rm -f) too.
	h.rt.Vanish(second[0])
	h.waitRemoved(second[0])
	if again := h.waitPool(testPool, 2); slices.Contains(again, second[0]) {
		t.Errorf("pool after a container vanished = %v, want a new member for %s", again, second[0])
	}
	vanished := second[0]
	second = h.waitPool(testPool, 2)

	changed := poolSpec(testPool, 2)
	changed.Spec.Env = map[string]string{"GREETING": "bonjour"}
	changed.Hash = changed.SpecHash()
	h.setPools(changed)
	h.waitGone(second...)
	hb := h.waitBeat(func(hb plane.Heartbeat) bool {
		p, _ := poolOf(hb, testPool)
		return p.Hash == changed.Hash && len(p.Ready) == 2 && p.Starting == 0
	})
	third, _ := poolOf(hb, testPool)
	for _, id := range third.Ready {
		if slices.Contains(second, id) {
			t.Errorf("member %s of the former spec still ready", id)
		}
		if env := h.rt.Container(id).Spec.Env; env["GREETING"] != "bonjour" {
			t.Errorf("member %s's env = %v, want the new spec's", id, env)
		}
	}
	if got := h.liveIDs(); !slices.Equal(got, third.Ready) {
		t.Errorf("containers = %v, want the new members %v only", got, third.Ready)
	}
	h.wantNoEvents(live, "sentinel", slices.Concat(first, []string{vanished}, second, third.Ready)...)
}

// TestPoolEmptied: a pool removed, shrunk, or on a drone that drains,
// loses its members.
func TestPoolEmptied(t *testing.T) {
	t.Parallel()
	t.Run("removed", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		h.start()
		h.setPools(poolSpec(testPool, 2), poolSpec("i2", 1))
		ids := h.waitPool(testPool, 2)
		other := h.waitPool("i2", 1)
		h.setPools(poolSpec("i2", 1))
		h.waitGone(ids...)
		hb := h.waitBeat(func(plane.Heartbeat) bool { return true })
		if len(hb.Pools) != 1 || hb.Pools[0].ID != "i2" || !slices.Equal(hb.Pools[0].Ready, other) {
			t.Errorf("pools = %s, want i2 with %v", dump(hb.Pools), other)
		}
		h.setPools()
		h.waitGone(other...)
		if hb := h.waitBeat(func(plane.Heartbeat) bool { return true }); len(hb.Pools) != 0 {
			t.Errorf("pools = %s, want none", dump(hb.Pools))
		}
		if ids := h.liveIDs(); len(ids) != 0 {
			t.Errorf("containers left: %v", ids)
		}
	})
	t.Run("shrunk", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		h.start()
		h.setPools(poolSpec(testPool, 2))
		ready := h.waitPool(testPool, 2)
		// A third member that does not become ready: shrinking stops it
		// rather than a ready one.
		h.rt.ScriptImage(testImage, dronetest.Behavior{NotReady: true})
		h.setPools(poolSpec(testPool, 3))
		h.waitBeat(func(hb plane.Heartbeat) bool { p, _ := poolOf(hb, testPool); return p.Starting == 1 })
		starting := h.rt.Live(droneID)[2]
		h.setPools(poolSpec(testPool, 2))
		h.waitRemoved(starting.BackendID)
		if got := h.waitPool(testPool, 2); !slices.Equal(got, ready) {
			t.Errorf("pool = %v, want %v", got, ready)
		}
		h.setPools(poolSpec(testPool, 1))
		left := h.waitPool(testPool, 1)
		h.waitGone(slices.DeleteFunc(slices.Clone(ready), func(id string) bool { return id == left[0] })...)
		if got := h.liveIDs(); !slices.Equal(got, left) {
			t.Errorf("containers = %v, want %v", got, left)
		}
	})
	t.Run("drain", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		h.start()
		h.setPools(poolSpec(testPool, 2))
		ids := h.waitPool(testPool, 2)
		h.drain(true)
		h.waitGone(ids...)
		h.waitPool(testPool, 0)
		if ids := h.liveIDs(); len(ids) != 0 {
			t.Errorf("containers left while draining: %v", ids)
		}
		// A claim finds no member: refused, as any spawn while draining.
		wantErr(t, h.spawn(claimSpec(ids[0])), plane.EUNAVAILABLE, "draining")
		// Draining survives a restart, and the pool stays empty.
		h.stop()
		h.start()
		h.setPools(poolSpec(testPool, 2))
		h.waitPool(testPool, 0)
		if n := len(h.rt.Calls(dronetest.OpStart)); n != 2 {
			t.Errorf("%d Start calls, want the 2 members before the drain", n)
		}
		h.drain(false)
		if again := h.waitPool(testPool, 2); slices.ContainsFunc(again, func(id string) bool { return slices.Contains(ids, id) }) {
			t.Errorf("pool after undrain = %v, want new members", again)
		}
	})
}

// TestPoolRefillRate: at most maxPoolStarts members start at once.
func TestPoolRefillRate(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.rt.ScriptImage(testImage, dronetest.Behavior{NotReady: true})
	h.start()
	h.setPools(poolSpec(testPool, 5))
	h.waitBeat(func(hb plane.Heartbeat) bool { p, _ := poolOf(hb, testPool); return p.Starting == 2 })
	// Several pool passes later (a heartbeat each), still two.
	for range 3 {
		h.waitBeat(func(plane.Heartbeat) bool { return true })
	}
	if n := len(h.rt.Calls(dronetest.OpStart)); n != 2 {
		t.Fatalf("%d Start calls, want 2 at once", n)
	}
	// Each member ready makes way for one more.
	h.rt.Live(droneID)[0].Serve()
	h.waitBeat(func(hb plane.Heartbeat) bool {
		p, _ := poolOf(hb, testPool)
		return len(p.Ready) == 1 && p.Starting == 2
	})
	for _, c := range h.rt.Live(droneID) {
		c.Serve()
	}
	h.rt.ScriptImage(testImage, dronetest.Behavior{})
	h.waitPool(testPool, 5)
}

// TestPoolCapacity: members count against the drone's capacity, which
// refill never exceeds; a backend spawned at capacity evicts a member.
func TestPoolCapacity(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.start(func(c *drone.Config) { c.Capacity = 3 })
	h.setPools(poolSpec(testPool, 5))
	members := h.waitPool(testPool, 3)
	for range 3 {
		h.waitBeat(func(plane.Heartbeat) bool { return true })
	}
	if n := len(h.rt.Calls(dronetest.OpStart)); n != 3 {
		t.Errorf("%d Start calls, want 3", n)
	}

	// Cold spawns take the members' places, one each.
	for i, id := range []string{"a", "b", "c"} {
		if r := h.reply(plane.SubjectSpawn(droneID), spec(id)); r.Err() != nil || r.Warm {
			t.Fatalf("spawn %s at capacity with members: reply %+v, want cold", id, r)
		}
		h.waitStatus(id, plane.StatusReady)
		h.waitPool(testPool, 2-i)
	}
	wantErr(t, h.spawn(spec("d")), plane.EUNAVAILABLE, "drone d1 is full (3 backends)")
	h.waitGone(members...)

	// A backend's end makes room for a member again.
	h.mustTerminate("a", true)
	h.waitRemoved("a")
	h.waitPool(testPool, 1)
	if peak := h.rt.Peak(droneID); peak > 3 {
		t.Errorf("the drone ran %d containers at once, capacity 3", peak)
	}
}

// TestPoolRestart: members are not stored: a restarted drone removes
// those no spawn claimed, keeps the claimed ones, and fills its pools
// again once the controller sends them.
func TestPoolRestart(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.start()
	h.setPools(poolSpec(testPool, 3))
	ids := h.waitPool(testPool, 3)
	claimed := ids[0]
	if r := h.claim(claimSpec(claimed)); !r.Warm {
		t.Fatalf("claim: %+v", r)
	}
	h.waitStatus(claimed, plane.StatusReady)
	h.stop()

	h.start()
	h.waitGone(ids[1:]...)
	hb := h.waitBeat(func(plane.Heartbeat) bool { return true })
	if len(hb.Pools) != 0 || !slices.Equal(hb.LiveBackends, []string{claimed}) {
		t.Errorf("heartbeat after a restart: pools %s, live %v; want no pools, %s live", dump(hb.Pools), hb.LiveBackends, claimed)
	}
	if c := h.rt.Container(claimed); !c.Running() || c.Removed() {
		t.Error("the claimed backend's container was stopped")
	}
	if r := h.claim(claimSpec(claimed)); !r.Warm {
		t.Errorf("retried claim after a restart: %+v, want warm", r)
	}
	h.setPools(poolSpec(testPool, 3))
	again := h.waitPool(testPool, 3)
	if slices.ContainsFunc(again, func(id string) bool { return slices.Contains(ids, id) }) {
		t.Errorf("pool after a restart = %v, want new members only (before: %v)", again, ids)
	}
	h.mustTerminate(claimed, true)
	want := []plane.BackendStatus{plane.StatusReady, plane.StatusTerminating, plane.StatusTerminated}
	if got := statuses(h.lifecycle(claimed)); !slices.Equal(got, want) {
		t.Errorf("claimed backend's statuses = %v, want %v", got, want)
	}
}

// TestPoolsMalformed: a pools request that does not parse or validate
// gets an invalid error and changes nothing.
func TestPoolsMalformed(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.start()
	good := poolSpec(testPool, 2)
	h.setPools(good)
	ids := h.waitPool(testPool, 2)
	starts := len(h.rt.Calls(dronetest.OpStart))

	with := func(f func(*plane.PoolSpec)) plane.PoolsRequest {
		p := poolSpec(testPool, 1)
		f(&p)
		return plane.PoolsRequest{Pools: []plane.PoolSpec{p}}
	}
	tests := []struct {
		name string
		msg  any
		has  string
	}{
		{"not JSON", []byte("fill them up"), "malformed message"},
		{"empty", []byte(""), "malformed message"},
		{"wrong type", []byte(`{"pools":{"id":"i1"}}`), "malformed message"},
		{"negative size", with(func(p *plane.PoolSpec) { p.Size = -1 }), "size:"},
		{"too large", with(func(p *plane.PoolSpec) { p.Size = plane.MaxWarmPool + 1 }), "size:"},
		{"no ID", with(func(p *plane.PoolSpec) { p.ID = "" }), "id:"},
		{"bad image name", with(func(p *plane.PoolSpec) { p.Image = "Not An Image" }), ""},
		{"spec names a backend", with(func(p *plane.PoolSpec) { p.Spec.BackendID = "abc" }), "spec:"},
		{"spec with a key", with(func(p *plane.PoolSpec) { p.Spec.Key = "k" }), "spec:"},
		{"bad spec", with(func(p *plane.PoolSpec) { p.Spec.Port = 0; p.Hash = p.SpecHash() }), "port:"},
		{"hash of another spec", with(func(p *plane.PoolSpec) { p.Hash = "0123456789abcdef" }), "hash:"},
		{"twice", plane.PoolsRequest{Pools: []plane.PoolSpec{good, good}}, "twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantErr(t, h.request(plane.SubjectPools(droneID), tt.msg), plane.EINVALID, tt.has)
		})
	}
	hb := h.waitBeat(func(plane.Heartbeat) bool { return true })
	if ps, _ := poolOf(hb, testPool); len(hb.Pools) != 1 || ps.Hash != good.Hash || ps.Size != 2 || !slices.Equal(ps.Ready, ids) {
		t.Errorf("pools = %s, want %s unchanged with %v", dump(hb.Pools), testPool, ids)
	}
	if n := len(h.rt.Calls(dronetest.OpStart)); n != starts {
		t.Errorf("%d Start calls, want %d", n, starts)
	}
}

// TestPoolFailing: a pool whose members fail (here, their image cannot be
// pulled) tries again, but less and less often, and fills once they can
// start.
func TestPoolFailing(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.rt.FailPull(testImage, plane.Errorf(plane.EUNAVAILABLE, "pull image %q: registry unreachable", testImage))
	h.start()
	p := poolSpec(testPool, 1)
	p.Spec.PullPolicy = plane.PullAlways
	p.Hash = p.SpecHash()
	h.setPools(p)
	pulls := func() int { return len(h.rt.Calls(dronetest.OpEnsureImage)) }
	h.rt.WaitCall(t, func(dronetest.Call) bool { return pulls() >= 2 })
	for range 5 {
		hb := h.waitBeat(func(plane.Heartbeat) bool { return true })
		if ps, _ := poolOf(hb, testPool); len(ps.Ready) != 0 {
			t.Fatalf("pool = %+v, want no member ready", ps)
		}
	}
	// The second failure in a row holds the pool back poolRetryMin.
	if n := pulls(); n > 3 {
		t.Errorf("%d pulls within a few heartbeats, want the pool held back after 2", n)
	}
	if n := len(h.rt.Calls(dronetest.OpStart)); n != 0 {
		t.Errorf("%d Start calls, want none", n)
	}
	h.rt.FailPull(testImage, nil)
	h.waitPool(testPool, 1)
}
