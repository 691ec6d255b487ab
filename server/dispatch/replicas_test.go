package dispatch

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"plane"
	"plane/natsjs/natstest"
)

// startNATSCluster runs three clustered nats-servers with JetStream and
// connects to the first.
func startNATSCluster(t *testing.T) *nats.Conn {
	t.Helper()
	servers := natstest.StartCluster(t, 3)
	nc, err := nats.Connect(servers[0].ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// Streams and the certificate bucket get the replica count asked for, and
// keep a higher one they have; the default follows the servers the
// connection knows of.
func TestEnsureStreamsReplicas(t *testing.T) {
	t.Parallel() // the cluster's election takes seconds of waiting
	nc := startNATSCluster(t)
	// A loaded machine slows the election (CI once needed more than 10 s).
	deadline := time.Now().Add(30 * time.Second)
	for DefaultReplicas(nc) != 3 {
		if time.Now().After(deadline) {
			t.Fatalf("DefaultReplicas = %d with servers %v, want 3", DefaultReplicas(nc), nc.Servers())
		}
		time.Sleep(20 * time.Millisecond) // the cluster's servers are announced to the client as they join
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	replicas := func() map[string]int {
		t.Helper()
		out := map[string]int{}
		for _, name := range []string{plane.StreamStatus, plane.StreamLogs, "KV_" + plane.CertBucket, "KV_" + plane.ClusterBucket} {
			s, err := js.Stream(t.Context(), name)
			if err != nil {
				t.Fatal(err)
			}
			out[name] = s.CachedInfo().Config.Replicas
		}
		return out
	}
	// JetStream's meta leader may still be in election: retry creating.
	for {
		err = EnsureStreams(t.Context(), js, 3)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for name, r := range replicas() {
		if r != 3 {
			t.Errorf("%s has %d replicas, want 3", name, r)
		}
	}
	if err := EnsureStreams(t.Context(), js, 1); err != nil {
		t.Fatal(err)
	}
	for name, r := range replicas() {
		if r != 3 {
			t.Errorf("after asking for 1: %s has %d replicas, want 3 kept", name, r)
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
	t.Parallel()
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
