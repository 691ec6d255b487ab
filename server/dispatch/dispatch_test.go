package dispatch

import (
	"crypto/ed25519"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"plane"
)

func TestOpenRefusesAMalformedConnectKey(t *testing.T) {
	t.Parallel()
	nc := startNATS(t)
	d, _ := newDispatcher(newStore(nil, nil), nc)
	d.ConnectKey = ed25519.PublicKey("short")
	if err := d.Open(t.Context()); err == nil {
		d.Close()
		t.Fatal("Open accepted a 5-byte connect key")
	}
	pub, _, _ := ed25519.GenerateKey(nil)
	d, _ = newDispatcher(newStore(nil, nil), nc)
	d.ConnectKey, d.AcceptKeys = pub, []ed25519.PublicKey{ed25519.PublicKey("short")}
	if err := d.Open(t.Context()); err == nil {
		d.Close()
		t.Fatal("Open accepted a 5-byte accepted key")
	}
}

// Drones fetch the connect-token key over NATS.
func TestConnectKey(t *testing.T) {
	t.Parallel()
	nc := startNATS(t)
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	old, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := newDispatcher(newStore(nil, nil), nc)
	d.ConnectKey, d.AcceptKeys = pub, []ed25519.PublicKey{old}
	if err := d.Open(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	m, err := connect(t, nc.ConnectedUrl()).Request(plane.SubjectConnectKey, nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	got, err := plane.Decode[plane.ConnectKey](m.Data)
	if err != nil || !pub.Equal(ed25519.PublicKey(got.PublicKey)) {
		t.Errorf("connect key %x (%v), want %x", got.PublicKey, err, pub)
	}
	// A rotation: the key still accepted comes with it.
	if len(got.Accepted) != 1 || !old.Equal(ed25519.PublicKey(got.Accepted[0])) {
		t.Errorf("accepted keys %x, want %x", got.Accepted, old)
	}
}

// Logs replays a backend's stored lines, oldest first, skipping malformed
// ones and other backends' lines.
func TestLogs(t *testing.T) {
	t.Parallel()
	nc := startNATS(t)
	d, _ := newDispatcher(newStore(nil, nil), nc)
	if err := d.Open(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	publish := func(backend string, data []byte) {
		t.Helper()
		if _, err := js.Publish(t.Context(), plane.SubjectBackendLogs(backend), data); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Logs(t.Context(), "a", false, func(plane.LogLine) error { return fmt.Errorf("called") }); err != nil {
		t.Fatalf("logs of a backend without any: %v", err)
	}
	for i := range 3 {
		publish("a", msg(t, plane.LogLine{BackendID: "a", Time: t0, Stream: "stdout", Text: fmt.Sprint("line ", i)}).Data)
		publish("b", msg(t, plane.LogLine{BackendID: "b", Time: t0, Stream: "stdout", Text: "other"}).Data)
	}
	publish("a", []byte("{bad"))
	var got []string
	if err := d.Logs(t.Context(), "a", false, func(l plane.LogLine) error {
		got = append(got, l.Text)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "[line 0 line 1 line 2]" {
		t.Errorf("logs = %q", got)
	}
}
