package dispatch

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"plane"
)

// jsMsg is a status message handed to handleStatus directly; it records how
// it was settled.
type jsMsg struct {
	jetstream.Msg // not called
	data          []byte
	settled       []string
}

func (m *jsMsg) Data() []byte                     { return m.data }
func (m *jsMsg) Subject() string                  { return "plane.backend.a.status" }
func (m *jsMsg) Ack() error                       { m.settled = append(m.settled, "ack"); return nil }
func (m *jsMsg) Term() error                      { m.settled = append(m.settled, "term"); return nil }
func (m *jsMsg) NakWithDelay(time.Duration) error { m.settled = append(m.settled, "nak"); return nil }

func event(backend string, status plane.BackendStatus) plane.BackendEvent {
	ev := plane.BackendEvent{BackendID: backend, DroneID: "d1", Status: status, Time: t0}
	if status == plane.StatusTerminated {
		ev.Reason = plane.ReasonExited
	}
	return ev
}

func TestHandleStatus(t *testing.T) {
	t.Parallel()
	ready := event("a", plane.StatusReady)
	for _, tc := range []struct {
		name     string
		status   plane.BackendStatus // the stored backend's status before
		data     any
		applyErr error
		settled  string
		notified bool
	}{
		{name: "applied", status: plane.StatusStarting, data: ready, settled: "ack", notified: true},
		{name: "redelivered", status: plane.StatusReady, data: ready, settled: "ack"},
		{name: "stale", status: plane.StatusTerminated, data: ready, settled: "ack"},
		{name: "unknown backend", status: plane.StatusStarting, data: event("zz", plane.StatusReady), settled: "term"},
		{name: "malformed", status: plane.StatusStarting, data: "{", settled: "term"},
		{name: "invalid", status: plane.StatusStarting, data: event("a", "sleeping"), settled: "term"},
		{name: "store failure", status: plane.StatusStarting, data: ready, applyErr: errors.New("disk full"), settled: "nak"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := newStore([]*plane.Backend{{ID: "a", DroneID: "d1", Status: tc.status}}, nil)
			st.applyErr = tc.applyErr
			d, _ := newDispatcher(st, nil)
			var notified []*plane.Backend
			d.Applier = notifier{st, func(b *plane.Backend) { notified = append(notified, b) }}
			m := &jsMsg{data: msg(t, tc.data).Data}
			d.handleStatus(m)
			if len(m.settled) != 1 || m.settled[0] != tc.settled {
				t.Errorf("settled %v, want [%s]", m.settled, tc.settled)
			}
			if tc.notified != (len(notified) == 1) || len(notified) > 1 {
				t.Errorf("%d changes applied, want notified=%v", len(notified), tc.notified)
			}
			if tc.notified && notified[0].Status != plane.StatusReady {
				t.Errorf("applied status %s", notified[0].Status)
			}
		})
	}
}

// Over JetStream: each status change is applied once and acknowledged; the
// same change delivered again is acknowledged without a second apply; a
// malformed message is dropped. Nothing stays pending.
func TestStatusConsumer(t *testing.T) {
	t.Parallel()
	nc := startNATS(t)
	st := newStore([]*plane.Backend{{ID: "a", DroneID: "d1", Status: plane.StatusStarting}}, nil)
	d, _ := newDispatcher(st, nc)
	notified := make(chan *plane.Backend, 10)
	d.Applier = notifier{st, func(b *plane.Backend) { notified <- b }}
	if err := d.Open(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)

	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	subject := plane.SubjectBackendStatus("a")
	for _, data := range [][]byte{
		msg(t, event("a", plane.StatusReady)).Data,
		[]byte("{garbage"),
		msg(t, event("a", plane.StatusReady)).Data, // as a drone's retry after a lost ack would
		msg(t, event("a", plane.StatusTerminated)).Data,
	} {
		if _, err := js.Publish(t.Context(), subject, data); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []plane.BackendStatus{plane.StatusReady, plane.StatusTerminated} {
		if b := wait(t, notified, "status change"); b.Status != want {
			t.Fatalf("applied %s, want %s", b.Status, want)
		}
	}
	cons, err := js.Consumer(t.Context(), plane.StreamStatus, plane.ConsumerStatus)
	if err != nil {
		t.Fatal(err)
	}
	settled := func() bool {
		info, err := cons.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return info.Delivered.Consumer >= 4 && info.NumAckPending == 0 && info.NumPending == 0
	}
	deadline := time.Now().Add(5 * time.Second)
	for !settled() {
		if time.Now().After(deadline) {
			t.Fatal("status messages still pending")
		}
		time.Sleep(5 * time.Millisecond) // the server reports acks only when asked
	}
	if applied := st.appliedEvents(); len(applied) != 2 {
		t.Errorf("applied %d events, want 2 (ready once, then terminated): %+v", len(applied), applied)
	}
	select {
	case b := <-notified:
		t.Errorf("unexpected change to %s", b.Status)
	default:
	}
}

// The live copy of a status change, on core NATS, is applied at once; one
// that does not decode is dropped.
func TestLiveStatus(t *testing.T) {
	t.Parallel()
	nc := startNATS(t)
	st := newStore([]*plane.Backend{{ID: "a", DroneID: "d1", Status: plane.StatusStarting}}, nil)
	d, _ := newDispatcher(st, nc)
	if err := d.Open(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	pub := connect(t, nc.ConnectedUrl())
	for _, data := range [][]byte{[]byte("{garbage"), msg(t, event("a", plane.StatusReady)).Data} {
		if err := pub.Publish(plane.SubjectBackendStatusLive("a"), data); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for st.backend(t, "a").Status != plane.StatusReady {
		if time.Now().After(deadline) {
			t.Fatal("the live status copy was not applied")
		}
		time.Sleep(5 * time.Millisecond) // applied on the subscription's goroutine
	}
}
