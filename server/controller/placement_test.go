package controller_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"plane"
)

// drones returns ready drones with a fresh heartbeat and the capacity
// given for each ID (0: none declared).
func drones(caps map[string]int) []*plane.Drone {
	var ds []*plane.Drone
	for id, c := range caps {
		ds = append(ds, &plane.Drone{ID: id, Status: plane.DroneReady, Capacity: c, LastHeartbeat: time.Now()})
	}
	slices.SortFunc(ds, func(a, b *plane.Drone) int { return strings.Compare(a.ID, b.ID) })
	return ds
}

// spawnAll runs spawn n times at once and returns the errors.
func spawnAll(t *testing.T, spawn func() error, n int) []error {
	t.Helper()
	errs := make([]error, n)
	var start, done sync.WaitGroup
	start.Add(1)
	for i := range n {
		done.Go(func() {
			start.Wait()
			errs[i] = spawn()
		})
	}
	start.Done()
	done.Wait()
	return errs
}

func TestSpawnSpreadsBursts(t *testing.T) {
	tests := []struct {
		name   string
		caps   map[string]int // the drones and their capacities
		before map[string]int // live backends before the burst
		spawns int
		// want: live backends per drone after the burst, each within ±3;
		// unavailable: how many spawns find no room.
		want        map[string]int
		unavailable int
	}{
		{name: "idle drones share a burst", caps: map[string]int{"d1": 0, "d2": 0, "d3": 0}, spawns: 40,
			want: map[string]int{"d1": 13, "d2": 13, "d3": 14}},
		{name: "a busy drone gets the least of it", caps: map[string]int{"d1": 0, "d2": 0, "d3": 0}, spawns: 40,
			before: map[string]int{"d1": 20}, want: map[string]int{"d1": 20, "d2": 20, "d3": 20}},
		{name: "an uneven start evens out", caps: map[string]int{"d1": 0, "d2": 0, "d3": 0}, spawns: 40,
			before: map[string]int{"d1": 2, "d2": 1}, want: map[string]int{"d1": 14, "d2": 14, "d3": 14}},
		{name: "by capacity", caps: map[string]int{"small": 20, "big": 60}, spawns: 40,
			want: map[string]int{"small": 10, "big": 30}},
		// Exact: the pending placements count against capacity too.
		{name: "a burst does not overfill", caps: map[string]int{"d1": 5, "d2": 5}, spawns: 14,
			want: map[string]int{"d1": 5, "d2": 5}, unavailable: 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, st, dr, m := newCore(t)
			st.drones, st.delay = drones(tt.caps), time.Millisecond
			for id, n := range tt.before {
				st.addLive(id, n)
			}
			errs := spawnAll(t, func() error {
				_, err := c.Spawn(context.Background(), alice, 1, plane.SpawnRequest{Image: "demo"})
				return err
			}, tt.spawns)
			unavailable := 0
			for _, err := range errs {
				switch {
				case plane.ErrorCodeOf(err) == plane.EUNAVAILABLE && strings.Contains(plane.ErrorMessageOf(err), "full"):
					unavailable++
				case err != nil:
					t.Errorf("spawn: %v", err)
				}
			}
			got := st.liveByDrone()
			t.Logf("live backends per drone after %d spawns: %v", tt.spawns, got)
			for id, want := range tt.want {
				if n := got[id]; n < want-3 || n > want+3 {
					t.Errorf("drone %s has %d backends, want %d±3 (all: %v)", id, n, want, got)
				}
				if capacity := tt.caps[id]; capacity > 0 && got[id] > capacity {
					t.Errorf("drone %s has %d backends, over its capacity %d", id, got[id], capacity)
				}
			}
			if unavailable != tt.unavailable {
				t.Errorf("%d spawns unavailable, want %d", unavailable, tt.unavailable)
			}
			if n := len(dr.sent()); n != tt.spawns-tt.unavailable {
				t.Errorf("drones got %d spawns, want %d", n, tt.spawns-tt.unavailable)
			}
			if n := len(m.outcomes); n != tt.spawns {
				t.Errorf("metrics counted %d spawns, want %d", n, tt.spawns)
			}
		})
	}
}

// noAnswer is what the dispatcher says of a drone that is gone.
var noAnswer = plane.Errorf(plane.EUNAVAILABLE, "drone did not answer (nats: no responders available for request)")

// threeDrones sets up d1, d2 and d3, with d1 the least loaded so that it is
// tried first.
func threeDrones(st *fakeStore) {
	st.drones = drones(map[string]int{"d1": 0, "d2": 0, "d3": 0})
	st.addLive("d2", 5)
	st.addLive("d3", 5)
}

func TestSpawnTriesTheNextDrone(t *testing.T) {
	ctx := context.Background()
	t.Run("a drone that does not answer", func(t *testing.T) {
		c, st, dr, m := newCore(t)
		threeDrones(st)
		dr.refuseOn = map[string]error{"d1": noAnswer}
		events, cancel := c.Bus.Subscribe(plane.TopicProject(1))
		defer cancel()
		sp, err := c.Spawn(ctx, alice, 1, plane.SpawnRequest{Image: "demo"})
		if err != nil || !sp.New || sp.Backend == nil {
			t.Fatalf("spawn: %+v, %v", sp, err)
		}
		sent := dr.sent()
		if len(sent) != 2 || sent[0] != "d1" || sent[1] == "d1" || sp.Backend.DroneID != sent[1] {
			t.Fatalf("sent to %v, placed on %s: want d1 then another drone, which holds it", sent, sp.Backend.DroneID)
		}
		failed := st.backend("b1")
		if failed.Status != plane.StatusTerminated || failed.TerminationReason != plane.ReasonFailed ||
			!strings.Contains(failed.Error, "drone d1 did not accept the backend: drone did not answer") {
			t.Fatalf("the refused backend: %+v", failed)
		}
		if placed := st.backend(sp.Backend.ID); placed.Status != plane.StatusScheduled || sp.Backend.ID == "b1" {
			t.Fatalf("the placed backend: %+v", placed)
		}
		// One spawn, one outcome; every backend's changes, in order.
		if !slices.Equal(m.outcomes, []string{"spawned"}) {
			t.Fatalf("outcomes %v", m.outcomes)
		}
		if want := []plane.BackendStatus{plane.StatusScheduled, plane.StatusTerminated, plane.StatusScheduled}; !slices.Equal(m.changed, want) {
			t.Fatalf("metrics saw %v, want %v", m.changed, want)
		}
		for _, want := range []struct {
			id     string
			status plane.BackendStatus
		}{{"b1", plane.StatusScheduled}, {"b1", plane.StatusTerminated}, {sp.Backend.ID, plane.StatusScheduled}} {
			if e := <-events; e.Backend.ID != want.id || e.Backend.Status != want.status {
				t.Fatalf("bus: %s %s, want %s %s", e.Backend.ID, e.Backend.Status, want.id, want.status)
			}
		}
		if got, want := st.activity(plane.ActionBackendSpawn), "alice@example.com "+sp.Backend.ID+" image demo (refused by d1)"; got != want {
			t.Fatalf("activity %q, want %q", got, want)
		}
	})
	t.Run("all refuse: unavailable after three drones", func(t *testing.T) {
		c, st, dr, m := newCore(t)
		st.drones = drones(map[string]int{"d1": 0, "d2": 0, "d3": 0, "d4": 0})
		dr.refuse = noAnswer
		_, err := c.Spawn(ctx, alice, 1, plane.SpawnRequest{Image: "demo"})
		sent := dr.sent()
		if len(sent) != 3 || len(slices.Compact(slices.Sorted(slices.Values(sent)))) != 3 {
			t.Fatalf("sent to %v, want three different drones", sent)
		}
		if plane.ErrorCodeOf(err) != plane.EUNAVAILABLE {
			t.Fatalf("err %v", err)
		}
		for _, d := range sent {
			if msg := plane.ErrorMessageOf(err); !strings.Contains(msg, "drone "+d+" did not accept the backend: drone did not answer") {
				t.Fatalf("message %q does not say what %s said", msg, d)
			}
		}
		for _, id := range []string{"b1", "b2", "b3"} {
			if b := st.backend(id); b.Status != plane.StatusTerminated || b.TerminationReason != plane.ReasonFailed {
				t.Fatalf("backend %s: %+v", id, b)
			}
		}
		if !slices.Equal(m.outcomes, []string{"unavailable"}) {
			t.Fatalf("outcomes %v", m.outcomes)
		}
		if got, want := st.activity(plane.ActionBackendSpawn), "alice@example.com b3 image demo (refused by "+strings.Join(sent, ", ")+")"; got != want {
			t.Fatalf("activity %q, want %q", got, want)
		}
	})
	t.Run("all refuse, fewer than three: says why the rest cannot", func(t *testing.T) {
		c, st, dr, _ := newCore(t)
		st.drones = drones(map[string]int{"d1": 0, "d2": 1})
		st.addLive("d2", 1)
		dr.refuse = plane.Errorf(plane.EUNAVAILABLE, "drone d1 is draining")
		_, err := c.Spawn(ctx, alice, 1, plane.SpawnRequest{Image: "demo"})
		if msg := plane.ErrorMessageOf(err); plane.ErrorCodeOf(err) != plane.EUNAVAILABLE ||
			msg != "drone d1 did not accept the backend: drone d1 is draining; no drone can take a new backend: of 2 drones, 1 full, 1 excluded" {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("a drone's other errors are not retried", func(t *testing.T) {
		c, st, dr, _ := newCore(t)
		threeDrones(st)
		dr.refuseOn = map[string]error{"d1": plane.Errorf(plane.EINTERNAL, "disk full")}
		_, err := c.Spawn(ctx, alice, 1, plane.SpawnRequest{Image: "demo"})
		if plane.ErrorCodeOf(err) != plane.EUNAVAILABLE || !strings.Contains(plane.ErrorMessageOf(err), "disk full") || len(dr.sent()) != 1 {
			t.Fatalf("err %v, sent to %v", err, dr.sent())
		}
		// Nor avoided: the next spawn tries d1 first again.
		dr.refuseOn = nil
		if sp, err := c.Spawn(ctx, alice, 1, plane.SpawnRequest{Image: "demo"}); err != nil || sp.Backend.DroneID != "d1" {
			t.Fatalf("next spawn: %+v, %v", sp, err)
		}
	})
	t.Run("the caller's deadline is not the drone's fault", func(t *testing.T) {
		c, st, dr, _ := newCore(t)
		threeDrones(st)
		ctx, cancel := context.WithCancel(ctx)
		dr.refuseOn = map[string]error{"d1": noAnswer}
		dr.onSpawn = func(string) { cancel() }
		if _, err := c.Spawn(ctx, alice, 1, plane.SpawnRequest{Image: "demo"}); plane.ErrorCodeOf(err) != plane.EUNAVAILABLE || len(dr.sent()) != 1 {
			t.Fatalf("err %v, sent to %v", err, dr.sent())
		}
		if b := st.backend("b1"); b.Status != plane.StatusTerminated {
			t.Fatalf("the backend of a spawn given up: %+v", b)
		}
		dr.refuseOn, dr.onSpawn = nil, nil
		if sp, err := c.Spawn(context.Background(), alice, 1, plane.SpawnRequest{Image: "demo"}); err != nil || sp.Backend.DroneID != "d1" {
			t.Fatalf("next spawn: %+v, %v", sp, err)
		}
	})
	t.Run("a keyed spawn keeps its key", func(t *testing.T) {
		c, st, dr, _ := newCore(t)
		threeDrones(st)
		dr.refuseOn = map[string]error{"d1": noAnswer}
		sp, err := c.Spawn(ctx, alice, 1, plane.SpawnRequest{Image: "demo", Key: "room-1"})
		if err != nil || !sp.New || sp.Backend.Key != "room-1" || sp.Backend.DroneID == "d1" {
			t.Fatalf("spawn: %+v, %v", sp, err)
		}
		if b := st.backend("b1"); b.Key != "room-1" || b.Status.Live() {
			t.Fatalf("the refused backend: %+v", b)
		}
		again, err := c.Spawn(ctx, alice, 1, plane.SpawnRequest{Image: "demo", Key: "room-1"})
		if err != nil || again.New || again.Backend.ID != sp.Backend.ID {
			t.Fatalf("the key's holder: %+v, %v; want %s", again.Backend, err, sp.Backend.ID)
		}
	})
	t.Run("a key taken while retrying: its holder", func(t *testing.T) {
		c, st, dr, m := newCore(t)
		threeDrones(st)
		dr.refuseOn = map[string]error{"d1": noAnswer}
		// Between the refusal, which frees the key, and the retry's insert,
		// a concurrent spawn's backend takes the key.
		creates := 0
		st.onCreate = func() {
			if creates++; creates == 2 {
				st.addBackend(&plane.Backend{ID: "other", ProjectID: 1, Key: "room-1", DroneID: "d2", Status: plane.StatusScheduled})
			}
		}
		sp, err := c.Spawn(ctx, alice, 1, plane.SpawnRequest{Image: "demo", Key: "room-1"})
		if err != nil || sp.New || sp.Backend.ID != "other" {
			t.Fatalf("spawn: %+v, %v; want the key's holder", sp, err)
		}
		if len(dr.sent()) != 1 || len(m.outcomes) != 0 {
			t.Fatalf("sent to %v, outcomes %v: want only the refused attempt, and no outcome", dr.sent(), m.outcomes)
		}
		if got := st.activity(plane.ActionBackendSpawn); got != "alice@example.com b1 image demo (refused by d1)" {
			t.Fatalf("activity %q", got)
		}
	})
}

func TestSpawnAvoidsRefusingDrones(t *testing.T) {
	ctx := context.Background()
	t.Run("other spawns pass over it for a while", func(t *testing.T) {
		c, st, dr, _ := newCore(t)
		threeDrones(st)
		dr.refuseOn = map[string]error{"d1": noAnswer}
		if _, err := c.Spawn(ctx, alice, 1, plane.SpawnRequest{Image: "demo"}); err != nil {
			t.Fatal(err)
		}
		// d1 is still the least loaded, and now answers; it is tried last
		// all the same until AvoidRefused has passed.
		dr.refuseOn = nil
		for range 3 {
			if sp, err := c.Spawn(ctx, alice, 1, plane.SpawnRequest{Image: "demo"}); err != nil || sp.Backend.DroneID == "d1" {
				t.Fatalf("spawn: %+v, %v; want d1 passed over", sp.Backend, err)
			}
		}
		if sent := dr.sent(); slices.Index(sent[1:], "d1") >= 0 {
			t.Fatalf("sent to %v: d1 tried again", sent)
		}
	})
	t.Run("until AvoidRefused has passed", func(t *testing.T) {
		c, st, dr, _ := newCore(t)
		c.AvoidRefused = time.Millisecond
		threeDrones(st)
		dr.refuseOn = map[string]error{"d1": noAnswer}
		if _, err := c.Spawn(ctx, alice, 1, plane.SpawnRequest{Image: "demo"}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
		dr.refuseOn = nil
		if sp, err := c.Spawn(ctx, alice, 1, plane.SpawnRequest{Image: "demo"}); err != nil || sp.Backend.DroneID != "d1" {
			t.Fatalf("spawn: %+v, %v; want d1 again", sp.Backend, err)
		}
	})
	t.Run("tried when nothing else can take it; cleared when it accepts", func(t *testing.T) {
		c, st, dr, _ := newCore(t)
		st.drones = drones(map[string]int{"d1": 0, "d2": 0})
		st.addLive("d2", 5)
		dr.refuseOn = map[string]error{"d1": noAnswer}
		if sp, err := c.Spawn(ctx, alice, 1, plane.SpawnRequest{Image: "demo"}); err != nil || sp.Backend.DroneID != "d2" {
			t.Fatalf("spawn: %+v, %v", sp.Backend, err)
		}
		// d2 drains and d1 is back from a blip: d1 is all there is.
		dr.refuseOn = nil
		st.drones[1].Draining = true
		if sp, err := c.Spawn(ctx, alice, 1, plane.SpawnRequest{Image: "demo"}); err != nil || sp.Backend.DroneID != "d1" {
			t.Fatalf("spawn with only d1: %+v, %v", sp.Backend, err)
		}
		// It accepted: no longer passed over, it is the least loaded again.
		st.drones[1].Draining = false
		if sp, err := c.Spawn(ctx, alice, 1, plane.SpawnRequest{Image: "demo"}); err != nil || sp.Backend.DroneID != "d1" {
			t.Fatalf("spawn after d1 accepted: %+v, %v", sp.Backend, err)
		}
	})
	t.Run("a burst with a dead drone", func(t *testing.T) {
		c, st, dr, m := newCore(t)
		st.drones, st.delay = drones(map[string]int{"d1": 0, "d2": 0, "d3": 0}), time.Millisecond
		dr.refuseOn = map[string]error{"d1": noAnswer}
		const n = 40
		errs := spawnAll(t, func() error {
			sp, err := c.Spawn(ctx, alice, 1, plane.SpawnRequest{Image: "demo"})
			if err == nil && sp.Backend.DroneID == "d1" {
				t.Errorf("placed on d1, which does not answer")
			}
			return err
		}, n)
		for _, err := range errs {
			if err != nil {
				t.Errorf("spawn: %v", err)
			}
		}
		sent, live := dr.sent(), st.liveByDrone()
		tries := 0
		for _, d := range sent {
			if d == "d1" {
				tries++
			}
		}
		t.Logf("%d spawns: %d sent to the dead drone, placed %v", n, tries, live)
		if len(sent) != n+tries || tries == 0 || tries > n {
			t.Fatalf("%d sent, %d to d1: want one attempt on d1 at most per spawn", len(sent), tries)
		}
		if live["d2"] < n/2-3 || live["d3"] < n/2-3 {
			t.Fatalf("placed %v, want d2 and d3 even ±3", live)
		}
		if got := slices.Compact(slices.Clone(m.outcomes)); !slices.Equal(got, []string{"spawned"}) || len(m.outcomes) != n {
			t.Fatalf("outcomes %v", m.outcomes)
		}
	})
}
