package dispatch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"plane"
)

// store is an in-memory plane.BackendService and plane.DroneService. Status
// changes follow the store's contract: only forward moves apply.
type store struct {
	mu       sync.Mutex
	backends map[string]*plane.Backend
	drones   map[string]*plane.Drone
	applied  []plane.BackendEvent // events that applied, in order
	applyErr error                // returned by ApplyBackendEvent when set
}

var (
	_ plane.BackendService = (*store)(nil)
	_ plane.DroneService   = (*store)(nil)
)

func newStore(backends []*plane.Backend, drones []*plane.Drone) *store {
	s := &store{backends: map[string]*plane.Backend{}, drones: map[string]*plane.Drone{}}
	for _, b := range backends {
		s.backends[b.ID] = b
	}
	for _, d := range drones {
		s.drones[d.ID] = d
	}
	return s
}

func (s *store) FindBackendByID(_ context.Context, id string) (*plane.Backend, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.backends[id]
	if !ok {
		return nil, plane.Errorf(plane.ENOTFOUND, "backend %s not found", id)
	}
	c := *b
	return &c, nil
}

func (s *store) FindBackends(_ context.Context, f plane.BackendFilter) ([]*plane.Backend, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*plane.Backend
	for _, b := range s.backends {
		if f.DroneID != nil && b.DroneID != *f.DroneID || f.Live != nil && b.Status.Live() != *f.Live {
			continue
		}
		c := *b
		out = append(out, &c)
	}
	slices.SortFunc(out, func(a, b *plane.Backend) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

func (s *store) CreateBackend(context.Context, *plane.Backend) (*plane.Backend, bool, error) {
	panic("not used by the dispatcher")
}

func (s *store) ApplyBackendEvent(_ context.Context, e plane.BackendEvent) (*plane.Backend, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.applyErr != nil {
		return nil, false, s.applyErr
	}
	b, ok := s.backends[e.BackendID]
	if !ok {
		return nil, false, plane.Errorf(plane.ENOTFOUND, "backend %s not found", e.BackendID)
	}
	applied := b.Status.CanMoveTo(e.Status)
	if applied {
		b.Status, b.TerminationReason, b.Error = e.Status, e.Reason, e.Error
		s.applied = append(s.applied, e)
	}
	c := *b
	return &c, applied, nil
}

func (s *store) SetKeepAlive(context.Context, string, time.Time, string) (*plane.Backend, error) {
	panic("not used by the dispatcher")
}

func (s *store) CountLiveBackendsByDrone(context.Context) (map[string]int, error) {
	panic("not used by the dispatcher")
}

func (s *store) UpsertDrone(_ context.Context, d *plane.Drone) error {
	s.mu.Lock()
	c := *d
	s.drones[d.ID] = &c
	s.mu.Unlock()
	return nil
}

func (s *store) FindDroneByID(_ context.Context, id string) (*plane.Drone, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.drones[id]
	if !ok {
		return nil, plane.Errorf(plane.ENOTFOUND, "drone %s not found", id)
	}
	c := *d
	return &c, nil
}

func (s *store) FindDrones(context.Context) ([]*plane.Drone, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*plane.Drone
	for _, d := range s.drones {
		c := *d
		out = append(out, &c)
	}
	slices.SortFunc(out, func(a, b *plane.Drone) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

func (s *store) SetDroneStatus(_ context.Context, id string, status plane.DroneStatus) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.drones[id]
	if !ok {
		return plane.Errorf(plane.ENOTFOUND, "drone %s not found", id)
	}
	d.Status = status
	return nil
}

func (s *store) SetDroneDraining(_ context.Context, id string, draining bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.drones[id]
	if !ok {
		return plane.Errorf(plane.ENOTFOUND, "drone %s not found", id)
	}
	d.Draining = draining
	return nil
}

// appliedEvents returns the events that applied, in order.
func (s *store) appliedEvents() []plane.BackendEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.applied)
}

func (s *store) backend(t *testing.T, id string) plane.Backend {
	t.Helper()
	b, err := s.FindBackendByID(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return *b
}

func (s *store) drone(t *testing.T, id string) plane.Drone {
	t.Helper()
	d, err := s.FindDroneByID(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return *d
}

// logBuffer is a logger whose output tests can read.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// count is how many log lines contain substr.
func (l *logBuffer) count(substr string) int {
	n := 0
	for _, line := range strings.Split(l.String(), "\n") {
		if strings.Contains(line, substr) {
			n++
		}
	}
	return n
}

func (l *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

// t0 is the tests' fixed clock.
var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// newDispatcher is a dispatcher on st with a fixed clock, not opened: its
// handlers are called directly. nc may be nil when nothing is sent.
func newDispatcher(st *store, nc *nats.Conn) (*Dispatcher, *logBuffer) {
	logs := &logBuffer{}
	return &Dispatcher{
		NC: nc, Backends: st, Drones: st, Logger: logs.logger(),
		RequestTimeout: 2 * time.Second, Now: func() time.Time { return t0 },
	}, logs
}

// startNATS runs an in-process nats-server with JetStream and connects to it.
func startNATS(t *testing.T) *nats.Conn {
	t.Helper()
	ns, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	return connect(t, ns.ClientURL())
}

func connect(t *testing.T, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// msg is a NATS message holding v as JSON, for calling a handler directly.
func msg(t *testing.T, v any) *nats.Msg {
	t.Helper()
	if s, ok := v.(string); ok {
		return &nats.Msg{Data: []byte(s)}
	}
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return &nats.Msg{Data: data}
}

// challenge is a well-formed DNS-01 TXT value derived from s.
func challenge(s string) string {
	sum := sha256.Sum256([]byte(s))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// wait fails t unless ch yields a value within a few seconds.
func wait[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// notifier stores status changes in the store and calls fn with each one
// it applied, as the controller core does when it publishes them.
type notifier struct {
	Applier
	fn func(*plane.Backend)
}

func (n notifier) ApplyBackendEvent(ctx context.Context, ev plane.BackendEvent) (*plane.Backend, bool, error) {
	b, applied, err := n.Applier.ApplyBackendEvent(ctx, ev)
	if applied {
		n.fn(b)
	}
	return b, applied, err
}
