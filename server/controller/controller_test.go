package controller_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"plane"
	"plane/server/bus"
	"plane/server/controller"
)

// The use-cases with fakes: a store in memory, drones that take or refuse
// what they are sent. The real store, NATS and Docker are exercised by
// cmd/plane's integration tests through the same functions.

type fakeStore struct {
	mu       sync.Mutex
	images   map[string]*plane.Image
	backends map[string]*plane.Backend
	drones   []*plane.Drone
	log      map[plane.Action]string // the last entry of each action: "actor target detail"
	next     int
	// delay slows counting and inserting, so that concurrent spawns
	// overlap between the read of the load and the insert.
	delay time.Duration
	// onCreate, when set, runs at the start of every CreateBackend;
	// onApply at the start of every ApplyBackendEvent.
	onCreate func()
	onApply  func(plane.BackendEvent)
	// failFinds: that many FindBackendByID calls fail.
	failFinds int
}

func newStore() *fakeStore {
	return &fakeStore{
		images: map[string]*plane.Image{"demo": {ProjectID: 1, Name: "demo", Ref: "plane-demo:latest", Port: 8080,
			Env: map[string]string{"A": "image", "B": "image"}, Limits: plane.Limits{MaxIdleSeconds: 300, CPUMillis: 500}}},
		backends: map[string]*plane.Backend{},
		log:      map[plane.Action]string{},
		drones:   []*plane.Drone{{ID: "d1", Status: plane.DroneReady, LastHeartbeat: time.Now()}},
	}
}

func (s *fakeStore) FindImage(_ context.Context, projectID int64, name string) (*plane.Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if img, ok := s.images[name]; ok && img.ProjectID == projectID {
		return img, nil
	}
	return nil, plane.Errorf(plane.ENOTFOUND, "image %q not found", name)
}

func (s *fakeStore) CreateImage(_ context.Context, img *plane.Image) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.images[img.Name]; ok {
		return plane.FieldErrorf("name", "image %q already exists", img.Name)
	}
	s.images[img.Name] = img
	return nil
}

func (s *fakeStore) UpdateImage(_ context.Context, projectID int64, name string, in plane.ImageInput) (*plane.Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	img, ok := s.images[name]
	if !ok || img.ProjectID != projectID {
		return nil, plane.Errorf(plane.ENOTFOUND, "image %q not found", name)
	}
	next := *img
	if err := next.Apply(in); err != nil {
		return nil, err
	}
	delete(s.images, name)
	s.images[next.Name] = &next
	return &next, nil
}

func (s *fakeStore) DeleteImage(_ context.Context, projectID int64, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if img, ok := s.images[name]; !ok || img.ProjectID != projectID {
		return plane.Errorf(plane.ENOTFOUND, "image %q not found", name)
	}
	delete(s.images, name)
	return nil
}

func (s *fakeStore) FindBackendByID(_ context.Context, id string) (*plane.Backend, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failFinds > 0 {
		s.failFinds--
		return nil, errors.New("the store is failing over")
	}
	if b, ok := s.backends[id]; ok {
		cp := *b
		return &cp, nil
	}
	return nil, plane.Errorf(plane.ENOTFOUND, "backend %q not found", id)
}

func (s *fakeStore) FindBackends(_ context.Context, f plane.BackendFilter) ([]*plane.Backend, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*plane.Backend
	for _, b := range s.backends {
		if (f.ProjectID == nil || *f.ProjectID == b.ProjectID) && (f.Key == nil || *f.Key == b.Key) &&
			(f.Live == nil || *f.Live == b.Status.Live()) {
			out = append(out, b)
		}
	}
	return out, nil
}

// CreateBackend stores b, unless a live backend of the project holds its
// key: that one is returned instead, as the real store does.
func (s *fakeStore) CreateBackend(_ context.Context, b *plane.Backend) (*plane.Backend, bool, error) {
	if s.onCreate != nil {
		s.onCreate()
	}
	time.Sleep(s.delay)
	s.mu.Lock()
	defer s.mu.Unlock()
	if b.Key != "" {
		for _, h := range s.backends {
			if h.ProjectID == b.ProjectID && h.Key == b.Key && h.Status.Live() {
				cp := *h
				return &cp, false, nil
			}
		}
	}
	if b.ID != "" {
		if _, ok := s.backends[b.ID]; ok {
			return nil, false, &plane.Error{Code: plane.ECONFLICT, Field: "id", Message: "id: backend " + b.ID + " already exists"}
		}
	} else {
		s.next++
		b.ID = fmt.Sprintf("b%d", s.next)
	}
	b.Status = plane.StatusScheduled
	s.backends[b.ID] = b
	cp := *b
	return &cp, true, nil
}

// ApplyBackendEvent moves a live backend to a later status, or records a
// ready backend's suspension or resume at a later time than the last;
// anything else is not applied.
func (s *fakeStore) ApplyBackendEvent(_ context.Context, ev plane.BackendEvent) (*plane.Backend, bool, error) {
	if s.onApply != nil {
		s.onApply(ev)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.backends[ev.BackendID]
	if !ok {
		return nil, false, plane.Errorf(plane.ENOTFOUND, "backend %q not found", ev.BackendID)
	}
	if ev.Suspended != nil {
		last := &b.ResumedAt
		if *ev.Suspended {
			last = &b.SuspendedAt
		}
		applied := b.Status == plane.StatusReady && (*last == nil || ev.Time.After(**last))
		if applied {
			at := ev.Time
			*last = &at
		}
		cp := *b
		return &cp, applied, nil
	}
	if !b.Status.Live() || ev.Status == b.Status {
		cp := *b
		return &cp, false, nil
	}
	b.Status, b.TerminationReason, b.Error = ev.Status, ev.Reason, ev.Error
	cp := *b
	return &cp, true, nil
}

func (s *fakeStore) FindWarmPoolImages(context.Context) ([]*plane.Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*plane.Image
	for _, img := range s.images {
		if img.WarmPool > 0 {
			cp := *img
			out = append(out, &cp)
		}
	}
	slices.SortFunc(out, func(a, b *plane.Image) int { return int(a.ID - b.ID) })
	return out, nil
}

func (s *fakeStore) SetKeepAlive(_ context.Context, id string, until time.Time, by string) (*plane.Backend, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.backends[id]
	if !ok {
		return nil, plane.Errorf(plane.ENOTFOUND, "backend %q not found", id)
	}
	if !b.Status.Live() {
		return nil, plane.Errorf(plane.ECONFLICT, "backend %s is terminated", id)
	}
	b.KeepAliveUntil, b.KeepAliveBy = &until, by
	cp := *b
	return &cp, nil
}

func (s *fakeStore) CountLiveBackendsByDrone(context.Context) (map[string]int, error) {
	s.mu.Lock()
	counts := map[string]int{}
	for _, b := range s.backends {
		if b.Status.Live() && b.DroneID != "" {
			counts[b.DroneID]++
		}
	}
	s.mu.Unlock()
	// Slow after the read, as a real read would be: the counts may be
	// stale by the time the caller sees them.
	time.Sleep(s.delay)
	return counts, nil
}

func (s *fakeStore) FindDrones(context.Context) ([]*plane.Drone, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.drones), nil
}

// liveByDrone counts the live backends on each drone.
func (s *fakeStore) liveByDrone() map[string]int {
	counts, _ := s.CountLiveBackendsByDrone(context.Background())
	return counts
}

// addLive stores n ready backends on drone, as load placed earlier.
func (s *fakeStore) addLive(drone string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range n {
		id := fmt.Sprintf("old-%s-%d", drone, i)
		s.backends[id] = &plane.Backend{ID: id, ProjectID: 1, DroneID: drone, Status: plane.StatusReady}
	}
}

func (s *fakeStore) addBackend(b *plane.Backend) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.backends[b.ID] = b
}

// backend returns a copy of the stored backend id (nil if none).
func (s *fakeStore) backend(id string) *plane.Backend {
	b, err := s.FindBackendByID(context.Background(), id)
	if err != nil {
		return nil
	}
	return b
}
func (s *fakeStore) FindDroneByID(_ context.Context, id string) (*plane.Drone, error) {
	for _, d := range s.drones {
		if d.ID == id {
			return d, nil
		}
	}
	return nil, plane.Errorf(plane.ENOTFOUND, "drone %q not found", id)
}

func (s *fakeStore) SetDroneDraining(_ context.Context, id string, draining bool) error {
	d, err := s.FindDroneByID(context.Background(), id)
	if err == nil {
		d.Draining = draining
	}
	return err
}

func (s *fakeStore) RecordActivity(_ context.Context, a *plane.Activity) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log[a.Action] = a.Actor.Name + " " + a.Target + " " + a.Detail
	return nil
}

// activity returns the log entry of action: "actor target detail".
func (s *fakeStore) activity(action plane.Action) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log[action]
}

type fakeDrones struct {
	mu     sync.Mutex
	refuse error // every drone's answer
	// refuseOn: the answer of a drone to a spawn (over refuse); onSpawn,
	// when set, runs before a drone answers.
	refuseOn map[string]error
	onSpawn  func(droneID string)
	// pools are what the drones' heartbeats say of their warm pools;
	// members those of the pools that a claim finds (a drone claims a
	// member it has and starts cold one it has not).
	pools   map[string][]plane.PoolState
	members map[string]bool
	spawned []plane.SpawnSpec
	sentTo  []string // the drone of each spawn sent, in order
	stopped []plane.TerminateRequest
	// disconnects and keepAlives are the requests sent, in order.
	disconnects []plane.DisconnectRequest
	keepAlives  []plane.KeepAliveRequest
}

func (d *fakeDrones) Spawn(_ context.Context, droneID string, spec plane.SpawnSpec) (bool, error) {
	if d.onSpawn != nil {
		d.onSpawn(droneID)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.spawned = append(d.spawned, spec)
	d.sentTo = append(d.sentTo, droneID)
	if err, ok := d.refuseOn[droneID]; ok {
		return false, err
	}
	if d.refuse != nil {
		return false, d.refuse
	}
	warm := spec.Warm && d.members[spec.BackendID]
	delete(d.members, spec.BackendID)
	return warm, nil
}

func (d *fakeDrones) Pools() map[string][]plane.PoolState {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[string][]plane.PoolState, len(d.pools))
	for id, ps := range d.pools {
		out[id] = slices.Clone(ps)
	}
	return out
}

// sent returns the drones spawns were sent to, in order.
func (d *fakeDrones) sent() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.sentTo)
}

func (d *fakeDrones) Terminate(_ context.Context, _ string, req plane.TerminateRequest) error {
	d.stopped = append(d.stopped, req)
	return d.refuse
}

func (d *fakeDrones) Drain(context.Context, string, bool) error { return d.refuse }

func (d *fakeDrones) Disconnect(_ context.Context, _ string, req plane.DisconnectRequest) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.disconnects = append(d.disconnects, req)
	return d.refuse
}

func (d *fakeDrones) KeepAlive(_ context.Context, _ string, req plane.KeepAliveRequest) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.keepAlives = append(d.keepAlives, req)
	return d.refuse
}

func (d *fakeDrones) Pull(_ context.Context, droneID, _ string) error {
	if droneID == "refuses" {
		return plane.Errorf(plane.EUNAVAILABLE, "no room")
	}
	return nil
}

func (d *fakeDrones) Stats(string) (plane.BackendStats, bool)  { return plane.BackendStats{}, false }
func (d *fakeDrones) StatsHistory(string) []plane.BackendStats { return nil }
func (d *fakeDrones) Logs(context.Context, string, bool, func(plane.LogLine) error) error {
	return nil
}

type fakeMetrics struct {
	mu        sync.Mutex
	claims    []string // "warm", or the cold reason
	outcomes  []string
	changed   []plane.BackendStatus
	suspended []bool
}

func (m *fakeMetrics) Spawned(o string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.outcomes = append(m.outcomes, o)
}

func (m *fakeMetrics) BackendChanged(b *plane.Backend) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.changed = append(m.changed, b.Status)
}

func (m *fakeMetrics) PoolClaim(warm bool, reason plane.ColdReason) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if warm {
		m.claims = append(m.claims, "warm")
		return
	}
	m.claims = append(m.claims, string(reason))
}

func (m *fakeMetrics) BackendSuspended(suspended bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.suspended = append(m.suspended, suspended)
}

func newCore(t *testing.T) (*controller.Core, *fakeStore, *fakeDrones, *fakeMetrics) {
	st, dr, m := newStore(), &fakeDrones{}, &fakeMetrics{}
	b := bus.NewMemory()
	t.Cleanup(func() { b.Close() })
	return &controller.Core{Store: st, Activity: st, Dispatch: dr, Bus: b, Metrics: m, WaitTimeout: time.Second}, st, dr, m
}

var alice = plane.Actor{UserID: 7, Name: "alice@example.com"}

func TestSpawn(t *testing.T) {
	ctx := context.Background()
	t.Run("merges the image's defaults and sends the drone its spec", func(t *testing.T) {
		c, st, dr, m := newCore(t)
		ch, cancel := c.Bus.Subscribe(plane.TopicProject(1))
		defer cancel()
		idle, suspend := 60, 120
		sp, err := c.Spawn(ctx, alice, 1, plane.SpawnRequest{Image: "demo", Env: map[string]string{"B": "request"},
			User: "u", LimitsInput: plane.LimitsInput{MaxIdleSeconds: &idle, SuspendSeconds: &suspend}})
		if err != nil || !sp.New || sp.Backend == nil {
			t.Fatalf("spawn: %+v, %v", sp, err)
		}
		if len(dr.spawned) != 1 {
			t.Fatalf("drones got %d specs", len(dr.spawned))
		}
		spec := dr.spawned[0]
		want := plane.Limits{MaxIdleSeconds: 60, CPUMillis: 500, SuspendSeconds: 120}
		if spec.Limits != want || spec.Env["A"] != "image" || spec.Env["B"] != "request" || spec.User != "u" || spec.ImageRef != "plane-demo:latest" {
			t.Fatalf("spec %+v", spec)
		}
		if e := <-ch; e.Backend.ID != sp.Backend.ID || e.Backend.Status != plane.StatusScheduled {
			t.Fatalf("bus event %+v", e.Backend)
		}
		if got := st.activity(plane.ActionBackendSpawn); got != "alice@example.com "+sp.Backend.ID+" image demo" {
			t.Fatalf("activity %q", got)
		}
		if !slices.Equal(m.outcomes, []string{"spawned"}) {
			t.Fatalf("metrics %v", m.outcomes)
		}
	})
	t.Run("a key held by a live backend returns it", func(t *testing.T) {
		c, st, dr, _ := newCore(t)
		st.backends["held"] = &plane.Backend{ID: "held", ProjectID: 1, Key: "k", Status: plane.StatusReady}
		sp, err := c.Spawn(ctx, alice, 1, plane.SpawnRequest{Image: "demo", Key: "k"})
		if err != nil || sp.New || sp.Backend.ID != "held" || len(dr.spawned) != 0 {
			t.Fatalf("spawn %+v, %v, drones got %d", sp, err, len(dr.spawned))
		}
	})
	t.Run("another project's image is not found", func(t *testing.T) {
		c, _, _, _ := newCore(t)
		_, err := c.Spawn(ctx, alice, 2, plane.SpawnRequest{Image: "demo"})
		var pe *plane.Error
		if !errors.As(err, &pe) || pe.Code != plane.EINVALID || pe.Field != "image" {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("no drone: unavailable, nothing stored", func(t *testing.T) {
		c, st, _, m := newCore(t)
		st.drones = nil
		if _, err := c.Spawn(ctx, alice, 1, plane.SpawnRequest{Image: "demo"}); plane.ErrorCodeOf(err) != plane.EUNAVAILABLE {
			t.Fatalf("err %v", err)
		}
		if len(st.backends) != 0 || !slices.Equal(m.outcomes, []string{"unavailable"}) {
			t.Fatalf("stored %d, metrics %v", len(st.backends), m.outcomes)
		}
	})
	t.Run("a drone that refuses leaves the backend failed", func(t *testing.T) {
		c, st, dr, m := newCore(t)
		dr.refuse = plane.Errorf(plane.EUNAVAILABLE, "full")
		_, err := c.Spawn(ctx, alice, 1, plane.SpawnRequest{Image: "demo"})
		if plane.ErrorCodeOf(err) != plane.EUNAVAILABLE {
			t.Fatalf("err %v", err)
		}
		b := st.backends["b1"]
		if b == nil || b.Status != plane.StatusTerminated || b.TerminationReason != plane.ReasonFailed || !strings.Contains(b.Error, "full") {
			t.Fatalf("stored %+v", b)
		}
		if !slices.Equal(m.changed, []plane.BackendStatus{plane.StatusScheduled, plane.StatusTerminated}) {
			t.Fatalf("metrics saw %v", m.changed)
		}
	})
}

func TestTerminate(t *testing.T) {
	ctx := context.Background()
	c, st, dr, _ := newCore(t)
	done := &plane.Backend{ID: "done", ProjectID: 1, Status: plane.StatusTerminated}
	if err := c.Terminate(ctx, alice, done, true); err != nil || len(dr.stopped) != 0 {
		t.Fatalf("terminated backend: %v, drones got %d", err, len(dr.stopped))
	}
	live := &plane.Backend{ID: "live", ProjectID: 1, DroneID: "d1", Status: plane.StatusReady}
	if err := c.Terminate(ctx, alice, live, true); err != nil {
		t.Fatal(err)
	}
	if len(dr.stopped) != 1 || !dr.stopped[0].Hard || dr.stopped[0].Reason != plane.ReasonRequested {
		t.Fatalf("stopped %+v", dr.stopped)
	}
	if got := st.activity(plane.ActionBackendTerminate); got != "alice@example.com live hard" {
		t.Fatalf("activity %q", got)
	}
	dr.refuse = plane.Errorf(plane.EUNAVAILABLE, "drone gone")
	if err := c.Terminate(ctx, alice, live, false); plane.ErrorCodeOf(err) != plane.EUNAVAILABLE {
		t.Fatalf("refused terminate: %v", err)
	}
}

func TestDrain(t *testing.T) {
	ctx := context.Background()
	c, st, dr, _ := newCore(t)
	if _, err := c.Drain(ctx, alice, "nope", true); plane.ErrorCodeOf(err) != plane.ENOTFOUND {
		t.Fatalf("unknown drone: %v", err)
	}
	dr.refuse = plane.Errorf(plane.EUNAVAILABLE, "drone did not answer")
	if d, err := c.Drain(ctx, alice, "d1", true); plane.ErrorCodeOf(err) != plane.EUNAVAILABLE || d == nil || st.drones[0].Draining {
		t.Fatalf("a drone that does not answer: %v; the store says draining %v", err, st.drones[0].Draining)
	}
	dr.refuse = nil
	if _, err := c.Drain(ctx, alice, "d1", true); err != nil || !st.drones[0].Draining {
		t.Fatalf("drain: %v, draining %v", err, st.drones[0].Draining)
	}
}

func TestImages(t *testing.T) {
	ctx := context.Background()
	c, st, _, _ := newCore(t)
	name, ref, port := "app", "registry.example/app:1", 9000
	if _, err := c.RegisterImage(ctx, alice, 1, plane.ImageInput{Name: &name}); plane.ErrorCodeOf(err) != plane.EINVALID {
		t.Fatalf("register without a ref: %v", err)
	}
	img, err := c.RegisterImage(ctx, alice, 1, plane.ImageInput{Name: &name, Ref: &ref})
	if err != nil || img.Ref != ref || img.MaxIdleSeconds != plane.DefaultIdleSeconds {
		t.Fatalf("register: %+v, %v", img, err)
	}
	if got := st.activity(plane.ActionImageCreate); got != "alice@example.com app "+ref {
		t.Fatalf("activity %q", got)
	}
	idle, suspend, pool := 30, 600, 3
	if _, err := c.UpdateImage(ctx, alice, 1, "app", plane.ImageInput{Port: &port, WarmPool: &pool, LimitsInput: plane.LimitsInput{MaxIdleSeconds: &idle, SuspendSeconds: &suspend}}); err != nil {
		t.Fatal(err)
	}
	if got := st.activity(plane.ActionImageUpdate); got != "alice@example.com app changed port, max_idle_seconds, suspend_seconds, warm_pool" {
		t.Fatalf("activity %q", got)
	}
	if _, err := c.UpdateImage(ctx, alice, 1, "app", plane.ImageInput{}); err != nil || st.activity(plane.ActionImageUpdate) != "alice@example.com app no change" {
		t.Fatalf("update without a change: %v, activity %q", err, st.activity(plane.ActionImageUpdate))
	}
	if _, err := c.UpdateImage(ctx, alice, 2, "app", plane.ImageInput{Port: &port}); plane.ErrorCodeOf(err) != plane.ENOTFOUND {
		t.Fatalf("another project's image: %v", err)
	}
	if err := c.DeleteImage(ctx, alice, 1, "app"); err != nil || st.activity(plane.ActionImageDelete) != "alice@example.com app " {
		t.Fatalf("delete: %v, activity %q", err, st.activity(plane.ActionImageDelete))
	}
}

func TestPrePull(t *testing.T) {
	c, st, _, _ := newCore(t)
	st.drones = []*plane.Drone{
		{ID: "d1", Status: plane.DroneReady}, {ID: "refuses", Status: plane.DroneReady},
		{ID: "draining", Status: plane.DroneDraining}, {ID: "lost", Status: plane.DroneLost},
	}
	got, err := c.PrePull(context.Background(), &plane.Image{Ref: "plane-demo:latest"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].DroneID != "d1" || got[0].Err != nil || got[1].DroneID != "refuses" || plane.ErrorCodeOf(got[1].Err) != plane.EUNAVAILABLE {
		t.Fatalf("pulls %+v: want the two ready drones, the second refusing", got)
	}
}

func TestWaitSettled(t *testing.T) {
	ctx := context.Background()
	c, st, _, _ := newCore(t)
	st.backends["b"] = &plane.Backend{ID: "b", ProjectID: 1, Status: plane.StatusStarting}
	go func() {
		time.Sleep(20 * time.Millisecond) // after WaitSettled subscribed, as a rule; the re-read covers the rest
		if _, applied, err := c.ApplyBackendEvent(ctx, plane.BackendEvent{BackendID: "b", Status: plane.StatusReady}); err != nil || !applied {
			t.Errorf("apply: %v, %v", applied, err)
		}
	}()
	got, err := c.WaitSettled(ctx, &plane.Backend{ID: "b", Status: plane.StatusStarting})
	if err != nil || got.Status != plane.StatusReady {
		t.Fatalf("WaitSettled: %+v, %v", got, err)
	}

	// Nothing happens: after WaitTimeout, the current state.
	st.backends["slow"] = &plane.Backend{ID: "slow", ProjectID: 1, Status: plane.StatusLoading}
	c.WaitTimeout = 50 * time.Millisecond
	got, err = c.WaitSettled(ctx, &plane.Backend{ID: "slow", Status: plane.StatusLoading})
	if err != nil || got.Status != plane.StatusLoading {
		t.Fatalf("WaitSettled timed out: %+v, %v", got, err)
	}
}

// A change stored by a controller that died before it announced it on the
// bus still ends the wait: WaitSettled reads the store every second.
func TestWaitSettledReadsTheStore(t *testing.T) {
	t.Parallel() // waits for the recheck, a second
	ctx := context.Background()
	c, st, _, _ := newCore(t)
	c.WaitTimeout = time.Minute
	st.addBackend(&plane.Backend{ID: "b", ProjectID: 1, Status: plane.StatusStarting})
	go func() {
		time.Sleep(50 * time.Millisecond) // while WaitSettled waits
		if _, applied, err := st.ApplyBackendEvent(ctx, plane.BackendEvent{BackendID: "b", Status: plane.StatusReady}); err != nil || !applied {
			t.Errorf("apply: %v, %v", applied, err)
		}
	}()
	start := time.Now()
	got, err := c.WaitSettled(ctx, &plane.Backend{ID: "b", Status: plane.StatusStarting})
	if err != nil || got.Status != plane.StatusReady {
		t.Fatalf("WaitSettled: %+v, %v; want ready from the store", got, err)
	}
	if took := time.Since(start); took > c.WaitTimeout/2 {
		t.Fatalf("WaitSettled took %s: it waited for the bus only", took)
	}
}

// A read of the store that fails during a wait (a failover) does not end
// the wait: the next recheck, or the bus, brings the change.
func TestWaitSettledSurvivesAFailedRead(t *testing.T) {
	t.Parallel() // waits for two rechecks
	ctx := context.Background()
	c, st, _, _ := newCore(t)
	c.WaitTimeout = time.Minute
	st.addBackend(&plane.Backend{ID: "b", ProjectID: 1, Status: plane.StatusStarting})
	go func() {
		time.Sleep(50 * time.Millisecond) // while WaitSettled waits
		st.mu.Lock()
		st.failFinds = 1 // the first recheck fails
		st.mu.Unlock()
		if _, _, err := st.ApplyBackendEvent(ctx, plane.BackendEvent{BackendID: "b", Status: plane.StatusReady}); err != nil {
			t.Error(err)
		}
	}()
	got, err := c.WaitSettled(ctx, &plane.Backend{ID: "b", Status: plane.StatusStarting})
	if err != nil || got.Status != plane.StatusReady {
		t.Fatalf("WaitSettled: %+v, %v; want ready at the recheck after the failed one", got, err)
	}
}

// A backend still scheduled RedispatchAfter after it was stored (the
// controller that stored it died before sending it) is sent to its drone
// again by a spawn of its key, or by a wait for it; a fresh one is not.
func TestRedispatchStale(t *testing.T) {
	t.Parallel() // "by a wait" waits for a recheck
	ctx := context.Background()
	stale := time.Now().Add(-controller.RedispatchAfter - time.Second)
	for _, tc := range []struct {
		name    string
		backend plane.Backend
		resent  bool
	}{
		{"stale scheduled", plane.Backend{Status: plane.StatusScheduled, UpdatedAt: stale, DroneID: "d1"}, true},
		{"fresh scheduled", plane.Backend{Status: plane.StatusScheduled, UpdatedAt: time.Now(), DroneID: "d1"}, false},
		{"stale loading", plane.Backend{Status: plane.StatusLoading, UpdatedAt: stale, DroneID: "d1"}, false},
		{"stale but never placed", plane.Backend{Status: plane.StatusScheduled, UpdatedAt: stale}, false},
		// Its image was changed since (here its reference): the spec it
		// was stored with cannot be rebuilt, so it is left to reconciliation.
		{"stale, image changed since", plane.Backend{Status: plane.StatusScheduled, UpdatedAt: stale, DroneID: "d1", ImageRef: "plane-demo:1"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, st, dr, _ := newCore(t)
			b := tc.backend
			b.ID, b.ProjectID, b.Image, b.Key = "k1", 1, "demo", "room"
			if b.ImageRef == "" {
				b.ImageRef = "plane-demo:latest" // the image's: unchanged since
			}
			st.addBackend(&b)
			sp, err := c.Spawn(ctx, alice, 1, plane.SpawnRequest{Image: "demo", Key: "room"})
			if err != nil || sp.New || sp.Backend.ID != "k1" {
				t.Fatalf("spawn of the key: %+v, %v; want the backend holding it", sp, err)
			}
			if got := len(dr.spawned) == 1; got != tc.resent {
				t.Fatalf("sent again: %v (%d specs), want %v", got, len(dr.spawned), tc.resent)
			}
			if tc.resent {
				if spec, to := dr.spawned[0], dr.sent()[0]; spec.BackendID != "k1" || spec.ImageRef != "plane-demo:latest" || spec.Port != 8080 || to != "d1" {
					t.Fatalf("sent %+v to %s, want k1's spec with its stored image reference to d1", spec, to)
				}
			}
		})
	}

	t.Run("by a wait", func(t *testing.T) {
		c, st, dr, _ := newCore(t)
		c.WaitTimeout = 1500 * time.Millisecond // one recheck
		st.addBackend(&plane.Backend{ID: "w", ProjectID: 1, Image: "demo", ImageRef: "plane-demo:latest", DroneID: "d1",
			Status: plane.StatusScheduled, UpdatedAt: stale})
		got, err := c.WaitSettled(ctx, &plane.Backend{ID: "w", Status: plane.StatusScheduled})
		if err != nil || got.Status != plane.StatusScheduled {
			t.Fatalf("WaitSettled: %+v, %v", got, err)
		}
		if len(dr.spawned) != 1 || dr.spawned[0].BackendID != "w" {
			t.Fatalf("the wait sent %d specs (%+v), want w's once", len(dr.spawned), dr.spawned)
		}
	})
}

func TestApplyBackendEvent(t *testing.T) {
	ctx := context.Background()
	c, st, _, m := newCore(t)
	st.backends["b"] = &plane.Backend{ID: "b", ProjectID: 1, Status: plane.StatusStarting}
	ch, cancel := c.Bus.Subscribe(plane.TopicProject(1))
	defer cancel()
	for _, tc := range []struct {
		status  plane.BackendStatus
		applied bool
	}{
		{plane.StatusReady, true},
		{plane.StatusReady, false}, // a repeat: neither metrics nor the bus hear of it
		{plane.StatusTerminated, true},
		{plane.StatusReady, false}, // after the end
	} {
		b, applied, err := c.ApplyBackendEvent(ctx, plane.BackendEvent{BackendID: "b", Status: tc.status})
		if err != nil || applied != tc.applied || b.Status == "" {
			t.Fatalf("apply %s: %+v, %v, %v; want applied %v", tc.status, b, applied, err, tc.applied)
		}
	}
	for _, want := range []plane.BackendStatus{plane.StatusReady, plane.StatusTerminated} {
		if e := <-ch; e.Backend.Status != want {
			t.Fatalf("bus: %s, want %s", e.Backend.Status, want)
		}
	}
	select {
	case e := <-ch:
		t.Fatalf("bus carried a change not applied: %+v", e.Backend)
	default:
	}
	if !slices.Equal(m.changed, []plane.BackendStatus{plane.StatusReady, plane.StatusTerminated}) {
		t.Fatalf("metrics saw %v", m.changed)
	}
	if _, _, err := c.ApplyBackendEvent(ctx, plane.BackendEvent{BackendID: "nope", Status: plane.StatusReady}); plane.ErrorCodeOf(err) != plane.ENOTFOUND {
		t.Fatalf("unknown backend: %v", err)
	}
}

// A suspension or a resume the store records is published, counted apart
// from status changes (the phase latencies are not observed again) and
// logged as Plane's doing; one it does not record is not heard of.
func TestApplyBackendSuspension(t *testing.T) {
	ctx := context.Background()
	c, st, _, m := newCore(t)
	t0 := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	st.backends["b"] = &plane.Backend{ID: "b", ProjectID: 1, Status: plane.StatusReady, Limits: plane.Limits{MaxIdleSeconds: 60, SuspendSeconds: 600}}
	st.backends["w"] = &plane.Backend{ID: "w", ProjectID: 1, Status: plane.StatusWaiting}
	ch, cancel := c.Bus.Subscribe(plane.TopicProject(1))
	defer cancel()
	apply := func(id string, sec int, suspended bool) (*plane.Backend, bool) {
		t.Helper()
		b, applied, err := c.ApplyBackendEvent(ctx, plane.BackendEvent{BackendID: id, Status: plane.StatusReady, Time: t0.Add(time.Duration(sec) * time.Second), Suspended: &suspended})
		if err != nil {
			t.Fatal(err)
		}
		return b, applied
	}

	if b, applied := apply("b", 10, true); !applied || !b.Suspended() {
		t.Fatalf("suspend: applied %v, %+v", applied, b)
	}
	if e := <-ch; e.Backend.ID != "b" || !e.Backend.Suspended() || e.Backend.Status != plane.StatusReady {
		t.Fatalf("bus: %+v", e.Backend)
	}
	if got := st.activity(plane.ActionBackendSuspend); got != "plane b idle for 60 s; stops after 600 s suspended" {
		t.Fatalf("suspend activity %q", got)
	}
	if b, applied := apply("b", 52, false); !applied || b.Suspended() {
		t.Fatalf("resume: applied %v, %+v", applied, b)
	}
	if e := <-ch; e.Backend.ID != "b" || e.Backend.Suspended() {
		t.Fatalf("bus: %+v", e.Backend)
	}
	if got := st.activity(plane.ActionBackendResume); got != "plane b after 42 s suspended" {
		t.Fatalf("resume activity %q", got)
	}

	// Not recorded: a redelivery, a backend not ready.
	st.log = map[plane.Action]string{}
	if _, applied := apply("b", 52, false); applied {
		t.Fatal("a redelivered resume was applied")
	}
	if _, applied := apply("w", 60, true); applied {
		t.Fatal("a backend not ready was suspended")
	}
	select {
	case e := <-ch:
		t.Fatalf("bus carried a change not applied: %+v", e.Backend)
	default:
	}
	if len(st.log) != 0 {
		t.Fatalf("activity of changes not applied: %v", st.log)
	}
	if !slices.Equal(m.suspended, []bool{true, false}) || len(m.changed) != 0 {
		t.Fatalf("metrics: suspensions %v, status changes %v", m.suspended, m.changed)
	}
}

// A spawn that waits for the backend holding its key, which then ends
// terminated (its drone never ran it), gets a new backend with the key;
// one whose keyed backend becomes ready gets that one.
func TestSpawnAndWait(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		ends   plane.BackendStatus
		newOne bool
	}{
		{"the backend holding the key becomes ready", plane.StatusReady, false},
		{"the backend holding the key is lost", plane.StatusTerminated, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, st, dr, _ := newCore(t)
			c.WaitTimeout = 100 * time.Millisecond
			st.backends["held"] = &plane.Backend{ID: "held", ProjectID: 1, Key: "k", DroneID: "d1", Status: plane.StatusScheduled}
			go func() {
				time.Sleep(20 * time.Millisecond) // after the wait subscribed, as a rule; its re-read covers the rest
				ev := plane.BackendEvent{BackendID: "held", Status: tc.ends, Reason: plane.ReasonLost}
				if _, _, err := c.ApplyBackendEvent(ctx, ev); err != nil {
					t.Error(err)
				}
			}()
			sp, err := c.SpawnAndWait(ctx, alice, 1, plane.SpawnRequest{Image: "demo", Key: "k"})
			if err != nil {
				t.Fatal(err)
			}
			if tc.newOne != sp.New || (sp.Backend.ID == "held") == tc.newOne || sp.Backend.Key != "k" {
				t.Fatalf("got %+v (new %v), want a new backend: %v", sp.Backend, sp.New, tc.newOne)
			}
			if n := len(dr.spawned); (n == 1) != tc.newOne {
				t.Fatalf("drones got %d spawns", n)
			}
		})
	}
}
