package dronetest

import (
	"context"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"plane/natsjs"
)

// StartNATS starts an in-process nats-server with JetStream on a random
// loopback port, its store in a temporary folder, and returns a connection
// to it; both end with the test.
func StartNATS(tb testing.TB) (*natsserver.Server, *nats.Conn) {
	tb.Helper()
	ns, err := natsserver.NewServer(&natsserver.Options{
		Host:      "127.0.0.1",
		Port:      natsserver.RANDOM_PORT,
		JetStream: true,
		StoreDir:  tb.TempDir(),
		NoSigs:    true,
		NoLog:     true,
	})
	if err != nil {
		tb.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		tb.Fatal("nats-server did not start")
	}
	tb.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	return ns, nc
}

// CreateStreams creates the streams the controller creates for drones
// (natsjs.Streams, as server/dispatch.EnsureStreams does, which a drone's
// tests may not import).
func CreateStreams(tb testing.TB, js jetstream.JetStream) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, cfg := range natsjs.Streams() {
		if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
			tb.Fatalf("create stream %s: %v", cfg.Name, err)
		}
	}
}
