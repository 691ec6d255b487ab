package dispatch

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"plane"
)

// Streams and the certificate bucket get the replica count asked for; the
// default follows the servers the connection knows of. On one server that
// is one. (Three servers, and a count never lowered, are checked on the
// fault suite's real cluster, test/cluster checkReplicas: a cluster's
// first election alone takes 4 to 9 s.)
func TestEnsureStreamsReplicas(t *testing.T) {
	t.Parallel()
	nc := startNATS(t)
	if n := DefaultReplicas(nc); n != 1 {
		t.Fatalf("DefaultReplicas = %d on one server, want 1", n)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := EnsureStreams(t.Context(), js, DefaultReplicas(nc)); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{plane.StreamStatus, plane.StreamLogs, "KV_" + plane.CertBucket, "KV_" + plane.ClusterBucket} {
		st, err := js.Stream(t.Context(), name)
		if err != nil {
			t.Fatal(err)
		}
		if r := st.CachedInfo().Config.Replicas; r != 1 {
			t.Errorf("%s has %d replicas, want 1", name, r)
		}
	}
}

// CheckWrite, the controller's readiness, fails when JetStream cannot take
// a write.
func TestCheckWrite(t *testing.T) {
	t.Parallel()
	nc := startNATS(t)
	st := newStore(nil, nil)
	d, _ := newDispatcher(st, nc)
	if err := d.CheckWrite(t.Context()); err == nil {
		t.Fatal("CheckWrite before Open succeeded")
	}
	if err := d.Open(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	if err := d.CheckWrite(t.Context()); err != nil {
		t.Fatalf("CheckWrite: %v", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteKeyValue(t.Context(), plane.ClusterBucket); err != nil {
		t.Fatal(err)
	}
	if err := d.CheckWrite(t.Context()); err == nil {
		t.Fatal("CheckWrite succeeded without its bucket")
	}
}

func TestRetryJetStream(t *testing.T) {
	every := jetStreamRetryEvery
	jetStreamRetryEvery = time.Millisecond // not parallel: no other test runs meanwhile
	t.Cleanup(func() { jetStreamRetryEvery = every })
	boom, refused := errors.New("no quorum yet"), errors.New("refused")
	for _, tc := range []struct {
		name  string
		fails int   // failures before success
		final error // returned, wrapped in Final, on the first call
		want  error
		calls int
	}{
		{name: "at once", want: nil, calls: 1},
		{name: "after two failures", fails: 2, want: nil, calls: 3},
		{name: "a final error is not retried", final: refused, want: refused, calls: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			err := RetryJetStream(t.Context(), slog.New(slog.DiscardHandler), "test", func() error {
				calls++
				switch {
				case tc.final != nil:
					return Final(tc.final)
				case calls <= tc.fails:
					return boom
				}
				return nil
			})
			if err != tc.want || calls != tc.calls {
				t.Fatalf("err %v after %d calls, want %v after %d", err, calls, tc.want, tc.calls)
			}
		})
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := RetryJetStream(ctx, slog.New(slog.DiscardHandler), "test", func() error { return boom }); err != boom {
		t.Fatalf("cancelled: %v", err)
	}
}
