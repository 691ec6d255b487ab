package bus_test

import (
	"context"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"plane"
	"plane/server/bus"
)

// bus under test, with what closes it.
type testBus interface {
	plane.EventBus
	Close() error
}

// TestContract runs the one suite every plane.EventBus passes.
func TestContract(t *testing.T) {
	impls := []struct {
		name string
		open func(t *testing.T) testBus
	}{
		{"memory", func(t *testing.T) testBus { return bus.NewMemory() }},
		{"nats", func(t *testing.T) testBus { return mustNATSBus(t, mustConnect(t, runNATS(t))) }},
	}
	for _, impl := range impls {
		t.Run(impl.name, func(t *testing.T) { contract(t, impl.open) })
	}
}

func contract(t *testing.T, open func(t *testing.T) testBus) {
	ctx := context.Background()
	b1 := &plane.Backend{ID: "b1", ProjectID: 7, Status: plane.StatusReady}
	b2 := &plane.Backend{ID: "b2", ProjectID: 8, Status: plane.StatusLoading}
	d1 := &plane.Drone{ID: "d1", Status: plane.DroneReady}

	t.Run("topics", func(t *testing.T) {
		b := open(t)
		defer b.Close()
		tests := []struct {
			topic string
			want  []string // what the subscriber receives, in order
		}{
			{"b1", []string{"backend b1"}},
			{"b2", []string{"backend b2"}},
			{plane.TopicProject(7), []string{"backend b1"}},
			{plane.TopicBackends, []string{"backend b1", "backend b2"}},
			{plane.TopicDrones, []string{"drone d1"}},
			{"nobody", nil},
		}
		subs := make([]<-chan plane.Event, len(tests))
		for i, tt := range tests {
			ch, cancel := b.Subscribe(tt.topic)
			defer cancel()
			subs[i] = ch
		}
		for _, e := range []plane.Event{{Kind: plane.EventBackend, Backend: b1}, {Kind: plane.EventBackend, Backend: b2}, {Kind: plane.EventDrone, Drone: d1}} {
			if err := b.Publish(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
		for i, tt := range tests {
			for _, want := range tt.want {
				if got := describe(receive(t, subs[i])); got != want {
					t.Fatalf("topic %s: got %s, want %s", tt.topic, got, want)
				}
			}
			expectNone(t, subs[i])
		}
	})

	t.Run("cancel closes the channel and stops delivery", func(t *testing.T) {
		b := open(t)
		defer b.Close()
		ch, cancel := b.Subscribe("b1")
		cancel()
		cancel() // twice is fine
		if _, ok := <-ch; ok {
			t.Fatal("channel open after cancel")
		}
		if err := b.Publish(ctx, plane.Event{Kind: plane.EventBackend, Backend: b1}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("a stuck subscriber loses events, the others get them", func(t *testing.T) {
		b := open(t)
		defer b.Close()
		stuck, cancel := b.Subscribe("b1")
		defer cancel()
		live, cancel2 := b.Subscribe("b1")
		defer cancel2()
		for range 50 {
			if err := b.Publish(ctx, plane.Event{Kind: plane.EventBackend, Backend: b1}); err != nil {
				t.Fatal(err)
			}
			receive(t, live)
		}
		if n := len(stuck); n == 0 || n > 50 {
			t.Fatalf("the stuck subscriber holds %d events", n)
		}
	})

	t.Run("close ends subscriptions", func(t *testing.T) {
		b := open(t)
		ch, _ := b.Subscribe(plane.TopicBackends)
		b.Close()
		if _, ok := <-ch; ok {
			t.Fatal("channel open after Close")
		}
		after, _ := b.Subscribe("b1")
		if _, ok := <-after; ok {
			t.Fatal("a subscription after Close is open")
		}
	})
}

// TestNATSAcrossControllers: an event one controller publishes reaches the
// subscribers of another on the same NATS, once, and its own at once.
func TestNATSAcrossControllers(t *testing.T) {
	ns := runNATS(t)
	a := mustNATSBus(t, mustConnect(t, ns))
	b := mustNATSBus(t, mustConnect(t, ns))
	defer a.Close()
	defer b.Close()
	onA, cancelA := a.Subscribe("b1")
	defer cancelA()
	onB, cancelB := b.Subscribe(plane.TopicProject(7))
	defer cancelB()
	e := plane.Event{Kind: plane.EventBackend, Backend: &plane.Backend{ID: "b1", ProjectID: 7, Status: plane.StatusReady,
		Env: map[string]string{"SECRET": "s3cret"}, Address: "127.0.0.1:1234"}}
	if err := a.Publish(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	if got := receive(t, onA); got.Backend.Status != plane.StatusReady {
		t.Fatalf("publisher's subscriber got %+v", got)
	}
	got := receive(t, onB)
	if got.Backend.ID != "b1" || got.Backend.Status != plane.StatusReady || got.Backend.ProjectID != 7 {
		t.Fatalf("other controller's subscriber got %+v", got.Backend)
	}
	if got.Backend.Env != nil || got.Backend.Address != "" {
		t.Fatalf("the environment (%v) or address (%q) crossed NATS", got.Backend.Env, got.Backend.Address)
	}
	// The publisher does not get its own event a second time from NATS.
	if err := a.NC().Flush(); err != nil {
		t.Fatal(err)
	}
	expectNone(t, onA)
	expectNone(t, onB)
}

// TestNATSRefusesBadEvents: what another process sends on the subject is
// checked; garbage reaches no subscriber.
func TestNATSRefusesBadEvents(t *testing.T) {
	ns := runNATS(t)
	nc := mustConnect(t, ns)
	b := mustNATSBus(t, mustConnect(t, ns))
	defer b.Close()
	ch, cancel := b.Subscribe(plane.TopicBackends)
	defer cancel()
	for _, msg := range []string{
		`not json`,
		`{"origin":"x","event":{"kind":"backend"}}`,
		`{"origin":"x","event":{"kind":"backend","backend":{"id":"../etc"}}}`,
		`{"origin":"x","event":{"kind":"weird"}}`,
	} {
		if err := nc.Publish(plane.SubjectEvents, []byte(msg)); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	expectNone(t, ch)
}

func describe(e plane.Event) string {
	switch e.Kind {
	case plane.EventBackend:
		return "backend " + e.Backend.ID
	case plane.EventDrone:
		return "drone " + e.Drone.ID
	}
	return string(e.Kind)
}

func receive(t *testing.T, ch <-chan plane.Event) plane.Event {
	t.Helper()
	select {
	case e, ok := <-ch:
		if !ok {
			t.Fatal("subscription closed")
		}
		return e
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5 s")
	}
	return plane.Event{}
}

// expectNone checks that nothing more arrives for a little while.
func expectNone(t *testing.T, ch <-chan plane.Event) {
	t.Helper()
	select {
	case e := <-ch:
		t.Fatalf("unexpected event %s", describe(e))
	case <-time.After(50 * time.Millisecond):
	}
}

func runNATS(t *testing.T) *natsserver.Server {
	t.Helper()
	ns, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	t.Cleanup(ns.Shutdown)
	return ns
}

func mustConnect(t *testing.T, ns *natsserver.Server) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func mustNATSBus(t *testing.T, nc *nats.Conn) *bus.NATS {
	t.Helper()
	b, err := bus.NewNATS(nc, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
