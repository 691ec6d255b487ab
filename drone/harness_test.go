package drone_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"plane"
	"plane/drone"
	"plane/drone/dronetest"
	"plane/drone/store"
)

// These tests drive the agent as the controller does: requests over NATS,
// status events read from the JetStream stream the controller consumes,
// heartbeats on their subject. The container runtime is dronetest's fake, so
// that every path runs in milliseconds; cmd/plane's tests run the same agent
// against real Docker.

var _ drone.Runtime = (*dronetest.Runtime)(nil)

const (
	droneID   = "d1"
	testImage = "demo:latest"
	// waitFor bounds every wait for an event: generous, since a healthy run
	// sees each event within milliseconds.
	waitFor = 10 * time.Second
	// longDeadline is the agent's deadlines unless a case sets its own:
	// beyond any wait of a test, so that a slow machine fails no deadline.
	longDeadline = time.Minute
)

// harness is one drone's world: a NATS server with the controller's
// streams, a store file and a fake runtime that outlive the agents started
// on them, so that a test can restart the drone.
type harness struct {
	t       *testing.T
	streams bool // the controller's streams exist
	url     string
	nc      *nats.Conn // the controller's connection
	js      jetstream.JetStream
	rt      *dronetest.Runtime
	path    string
	st      *store.Store
	cfg     drone.Config // of the next start; NATS, Store and Runtime are filled in
	beats   *feed[plane.Heartbeat]
	logs    *syncBuffer

	mu     sync.Mutex
	events map[string]*feed[plane.BackendEvent]
	run    *agentRun
}

type agentRun struct {
	agent  *drone.Agent
	cancel context.CancelFunc
	done   chan error
}

type harnessOption func(*harness)

// withoutStreams leaves out the controller's streams: the status events then
// have nowhere to go and stay in the drone's outbox.
func withoutStreams() harnessOption { return func(h *harness) { h.streams = false } }

// newHarness makes a drone's world; start runs the agent in it.
func newHarness(t *testing.T, opts ...harnessOption) *harness {
	t.Helper()
	ns, nc := dronetest.StartNATS(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{
		t:       t,
		streams: true,
		url:     ns.ClientURL(),
		nc:      nc,
		js:      js,
		rt:      dronetest.NewRuntime(t, testImage),
		path:    filepath.Join(t.TempDir(), "drone.db"),
		beats:   newFeed[plane.Heartbeat](),
		logs:    &syncBuffer{},
		events:  map[string]*feed[plane.BackendEvent]{},
		cfg: drone.Config{
			ID:           droneID,
			Address:      "127.0.0.2",
			ProxyAddress: "127.0.0.2:9090",
			Version:      "v-test",
			// Short deadlines and intervals; each case that depends on one
			// sets it to what it needs.
			StartTimeout:      longDeadline,
			PullTimeout:       longDeadline,
			StopGrace:         longDeadline,
			StatsInterval:     10 * time.Millisecond,
			HeartbeatInterval: 20 * time.Millisecond,
			ActivityInterval:  10 * time.Millisecond,
			IdleCheckInterval: 10 * time.Millisecond,
		},
	}
	for _, o := range opts {
		o(h)
	}
	if h.streams {
		dronetest.CreateStreams(t, js)
	}
	h.st = openStore(t, h.path)
	sub, err := nc.Subscribe(plane.SubjectHeartbeat, func(m *nats.Msg) {
		hb, err := plane.Decode[plane.Heartbeat](m.Data)
		if err != nil {
			t.Errorf("invalid heartbeat %s: %v", m.Data, err)
			return
		}
		h.beats.add(hb)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Unsubscribe() }) //nolint:errcheck // closing anyway
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		h.stop()
		if t.Failed() {
			t.Logf("drone log:\n%s", h.logs.String())
		}
	})
	return h
}

func openStore(t *testing.T, path string) *store.Store {
	t.Helper()
	st, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// start runs an agent, as a fresh drone process would be, on its own NATS
// connection, and returns once it answers requests: its first heartbeat
// follows its reconciliation with the runtime.
func (h *harness) start(mutate ...func(*drone.Config)) *drone.Agent {
	h.t.Helper()
	if h.run != nil {
		h.t.Fatal("agent already running")
	}
	nc, err := nats.Connect(h.url, nats.Name("drone"))
	if err != nil {
		h.t.Fatal(err)
	}
	cfg := h.cfg
	cfg.NATS, cfg.Store, cfg.Runtime = nc, h.st, h.rt
	cfg.Logger = slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	for _, m := range mutate {
		m(&cfg)
	}
	a, err := drone.New(cfg)
	if err != nil {
		nc.Close()
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	run := &agentRun{agent: a, cancel: cancel, done: make(chan error, 1)}
	from := h.beats.len()
	go func() {
		run.done <- a.Run(ctx)
		nc.Close()
	}()
	h.run = run
	h.beats.next(h.t, from, func(hb plane.Heartbeat) bool { return !hb.Stopping })
	return a
}

// stop stops the running agent, as a drone process is stopped, and returns
// its last heartbeat: the one that says it is stopping. Backends keep running.
func (h *harness) stop() plane.Heartbeat {
	h.t.Helper()
	if h.run == nil {
		return plane.Heartbeat{}
	}
	run := h.run
	h.run = nil
	from := h.beats.len()
	run.cancel()
	select {
	case err := <-run.done:
		if err != nil {
			h.t.Errorf("Run: %v", err)
			return plane.Heartbeat{}
		}
	case <-time.After(waitFor):
		h.t.Fatalf("Run did not return within %s of its context's end", waitFor)
	}
	// Every beat of this run has arrived once its last one has.
	hb, _ := h.beats.next(h.t, from, func(hb plane.Heartbeat) bool { return hb.Stopping })
	return hb
}

// request sends a request as the controller does and returns the reply's
// error. v is marshalled unless it is already []byte.
func (h *harness) request(subject string, v any) error {
	h.t.Helper()
	return h.reply(subject, v).Err()
}

// reply sends a request as the controller does and returns the reply.
func (h *harness) reply(subject string, v any) plane.Reply {
	h.t.Helper()
	data, ok := v.([]byte)
	if !ok {
		var err error
		if data, err = json.Marshal(v); err != nil {
			h.t.Fatal(err)
		}
	}
	m, err := h.nc.Request(subject, data, waitFor)
	if err != nil {
		h.t.Fatalf("request %s: %v", subject, err)
	}
	var r plane.Reply
	if err := json.Unmarshal(m.Data, &r); err != nil {
		h.t.Fatalf("reply to %s: %q: %v", subject, m.Data, err)
	}
	return r
}

func (h *harness) spawn(spec plane.SpawnSpec) error {
	h.t.Helper()
	return h.request(plane.SubjectSpawn(droneID), spec)
}

func (h *harness) mustSpawn(spec plane.SpawnSpec) {
	h.t.Helper()
	if err := h.spawn(spec); err != nil {
		h.t.Fatalf("spawn %s: %v", spec.BackendID, err)
	}
}

func (h *harness) terminate(id string, hard bool) error {
	h.t.Helper()
	return h.request(plane.SubjectTerminate(droneID), plane.TerminateRequest{BackendID: id, Hard: hard, Reason: plane.ReasonRequested})
}

func (h *harness) mustTerminate(id string, hard bool) {
	h.t.Helper()
	if err := h.terminate(id, hard); err != nil {
		h.t.Fatalf("terminate %s: %v", id, err)
	}
}

// statusOf returns backend id's status events as the controller receives
// them: from the status stream, through a consumer of their subject.
func (h *harness) statusOf(id string) *feed[plane.BackendEvent] {
	h.t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if f, ok := h.events[id]; ok {
		return f
	}
	f := newFeed[plane.BackendEvent]()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	cons, err := h.js.OrderedConsumer(ctx, plane.StreamStatus, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{plane.SubjectBackendStatus(id)},
	})
	if err != nil {
		h.t.Fatal(err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		ev, err := plane.Decode[plane.BackendEvent](m.Data())
		if err != nil {
			h.t.Errorf("invalid status event %s: %v", m.Data(), err)
			return
		}
		f.add(ev)
	})
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() {
		cc.Stop()
		// Deleted rather than left to expire: the server's shutdown waits
		// on consumers that exist.
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		_ = h.js.DeleteConsumer(ctx, plane.StreamStatus, cons.CachedInfo().Name)
	})
	h.events[id] = f
	return f
}

// waitStatus waits for backend id's event of status and returns it.
func (h *harness) waitStatus(id string, status plane.BackendStatus) plane.BackendEvent {
	h.t.Helper()
	ev, _ := h.statusOf(id).next(h.t, 0, func(e plane.BackendEvent) bool { return e.Status == status })
	return ev
}

// lifecycle waits for backend id to be terminated and returns every status
// event it had.
func (h *harness) lifecycle(id string) []plane.BackendEvent {
	h.t.Helper()
	f := h.statusOf(id)
	_, i := f.next(h.t, 0, func(e plane.BackendEvent) bool { return e.Status == plane.StatusTerminated })
	return f.items()[:i+1]
}

// waitRemoved waits until the drone removed backend id's container: the last
// step of its end, after it left the live set.
func (h *harness) waitRemoved(id string) {
	h.t.Helper()
	c := h.rt.Container(id)
	if c == nil {
		h.t.Fatalf("backend %s has no container", id)
	}
	h.rt.WaitCall(h.t, func(call dronetest.Call) bool { return call.Op == dronetest.OpRemove && call.ID == c.ID })
}

// record returns the drone's record of backend id.
func (h *harness) record(id string) *store.Backend {
	h.t.Helper()
	rec, err := h.st.FindBackend(context.Background(), id)
	if err != nil {
		h.t.Fatal(err)
	}
	return rec
}

// spec is a valid spawn request for backend id.
func spec(id string) plane.SpawnSpec {
	return plane.SpawnSpec{
		BackendID:  id,
		Key:        "key-" + id,
		ImageRef:   testImage,
		PullPolicy: plane.PullIfNotPresent,
		Port:       8080,
		Env:        map[string]string{"GREETING": "hello"},
	}
}

// statuses lists the statuses of events.
func statuses(events []plane.BackendEvent) []plane.BackendStatus {
	out := make([]plane.BackendStatus, len(events))
	for i, e := range events {
		out[i] = e.Status
	}
	return out
}

// lifecycle paths, as the drone reports them; the controller records
// scheduled itself when it places the backend.
var (
	toReady      = []plane.BackendStatus{plane.StatusLoading, plane.StatusStarting, plane.StatusWaiting, plane.StatusReady}
	readyAndStop = append(slices.Clone(toReady), plane.StatusTerminating, plane.StatusTerminated)
)

func ptr[T any](v T) *T { return &v }

// feed collects values that arrive asynchronously, in order, and lets a test
// wait for one.
type feed[T any] struct {
	mu      sync.Mutex
	vals    []T
	changed chan struct{} // closed and replaced at every value
}

func newFeed[T any]() *feed[T] { return &feed[T]{changed: make(chan struct{})} }

// subscribeFeed collects the messages of type T on subject, each checked
// as the controller decodes it, until the test ends.
func subscribeFeed[T any, P interface {
	*T
	Validate() error
}](t *testing.T, nc *nats.Conn, subject string) *feed[T] {
	t.Helper()
	f := newFeed[T]()
	sub, err := nc.Subscribe(subject, func(m *nats.Msg) {
		v, err := plane.Decode[T, P](m.Data)
		if err != nil {
			t.Errorf("invalid message on %s: %s: %v", subject, m.Data, err)
			return
		}
		f.add(v)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	// Registered with the server before the test goes on.
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *feed[T]) add(v T) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.vals = append(f.vals, v)
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *feed[T]) len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.vals)
}

func (f *feed[T]) items() []T {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.vals)
}

// next waits for the first value from index from on that match accepts, and
// returns it with its index.
func (f *feed[T]) next(t testing.TB, from int, match func(T) bool) (T, int) {
	t.Helper()
	deadline := time.After(waitFor)
	for i := from; ; {
		f.mu.Lock()
		vals, changed := f.vals, f.changed
		f.mu.Unlock()
		for ; i < len(vals); i++ {
			if match(vals[i]) {
				return vals[i], i
			}
		}
		select {
		case <-changed:
		case <-deadline:
			var zero T
			t.Fatalf("no matching %T within %s; got %s", zero, waitFor, dump(vals[from:]))
			return zero, -1
		}
	}
}

func dump(v any) string {
	b, _ := json.MarshalIndent(v, "", "  ")
	return string(b)
}

// syncBuffer collects the agent's log for a failing test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
