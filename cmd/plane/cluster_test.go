package main

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"plane"
)

// mustStartNATS starts a nats-server with JetStream on a free port, shut
// down when the test ends.
func mustStartNATS(t *testing.T) *natsserver.Server {
	t.Helper()
	ns, err := startNATS("127.0.0.1:0", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	return ns
}

// mustConnect connects to ns for the test.
func mustConnect(t *testing.T, ns *natsserver.Server) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// ownerClaim reads the claim of the NATS, and its revision.
func ownerClaim(t *testing.T, js jetstream.JetStream) (plane.ClusterClaim, uint64) {
	t.Helper()
	ctx := context.Background()
	kv, err := js.KeyValue(ctx, plane.ClusterBucket)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, plane.ClusterOwnerKey)
	if err != nil {
		t.Fatal(err)
	}
	claim, err := plane.Decode[plane.ClusterClaim](e.Value())
	if err != nil {
		t.Fatalf("claim %s: %v", e.Value(), err)
	}
	return claim, e.Revision()
}

// claimCluster, case by case, against a NATS holding the claim before.
func TestClaimCluster(t *testing.T) {
	mine := plane.ClusterIdentity{ID: "aaaa1111", CreatedAt: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
	other := plane.ClusterClaim{
		ID: "bbbb2222", CreatedAt: time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC), ClaimedAt: time.Date(2024, 6, 1, 0, 0, 1, 0, time.UTC),
		Host: "ctrl-old", DataDir: "/var/lib/plane-old",
	}
	sameElsewhere := plane.ClusterClaim{ID: mine.ID, CreatedAt: mine.CreatedAt, ClaimedAt: mine.CreatedAt, Host: "ctrl-2", DataDir: "/srv/plane"}
	asJSON := func(c plane.ClusterClaim) string { data, _ := json.Marshal(c); return string(data) }

	tests := []struct {
		name     string
		before   string // the claim in NATS before; "" none, "deleted" one deleted since
		takeOver bool
		embedded bool
		want     string   // the owner claimClaster returns; "" on error
		errHas   []string // what the error says
		kept     bool     // the claim in NATS is the one before, untouched
	}{
		{name: "no claim: claimed", want: mine.ID},
		{name: "deleted claim: claimed", before: "deleted", want: mine.ID},
		{name: "this cluster's claim: accepted as it is", before: asJSON(sameElsewhere), want: mine.ID, kept: true},
		{name: "another cluster's claim: refused", before: asJSON(other), kept: true, errHas: []string{
			"belongs to cluster bbbb2222", "claimed 2024-06-01T00:00:01Z", "on host ctrl-old", "with data folder /var/lib/plane-old",
			"holds cluster aaaa1111", "--data", "--take-over-cluster",
		}},
		{name: "another cluster's claim, embedded NATS: refused", before: asJSON(other), embedded: true, kept: true, errHas: []string{
			"the embedded NATS in /data/nats belongs to cluster bbbb2222", "/data/controller.db holds cluster aaaa1111", "remove /data/nats",
		}},
		{name: "unreadable claim: refused", before: `{"id":"Not An ID"}`, kept: true, errHas: []string{"does not read", "--take-over-cluster"}},
		{name: "another cluster's claim, taking over: replaced", before: asJSON(other), takeOver: true, want: mine.ID},
		{name: "unreadable claim, taking over: replaced", before: `garbage`, takeOver: true, want: mine.ID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			ns := mustStartNATS(t)
			nc, js := mustConnect(t, ns)
			var rev uint64
			if tt.before != "" {
				kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: plane.ClusterBucket, History: 1, Storage: jetstream.FileStorage})
				if err != nil {
					t.Fatal(err)
				}
				if tt.before == "deleted" {
					if _, err := kv.Put(ctx, plane.ClusterOwnerKey, []byte(asJSON(other))); err != nil {
						t.Fatal(err)
					}
					if err := kv.Delete(ctx, plane.ClusterOwnerKey); err != nil {
						t.Fatal(err)
					}
				} else if rev, err = kv.Put(ctx, plane.ClusterOwnerKey, []byte(tt.before)); err != nil {
					t.Fatal(err)
				}
			}
			got, err := claimCluster(ctx, nc, clusterClaim{
				Identity: mine, Host: "ctrl-new", DataDir: "/data", NATSURL: ns.ClientURL(), Embedded: tt.embedded,
				Replicas: 1, TakeOver: tt.takeOver, Logger: slog.New(slog.DiscardHandler),
			})
			if tt.want != "" {
				if err != nil || got.ID != tt.want {
					t.Fatalf("claimCluster = %+v, %v; want cluster %s", got, err, tt.want)
				}
			} else {
				if err == nil {
					t.Fatalf("claimCluster = %+v, want an error", got)
				}
				for _, s := range tt.errHas {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q\nlacks %q", err, s)
					}
				}
				if strings.Contains(err.Error(), "\n") {
					t.Errorf("error %q: want one line", err)
				}
			}
			kv, err := js.KeyValue(ctx, plane.ClusterBucket)
			if err != nil {
				t.Fatal(err)
			}
			e, err := kv.Get(ctx, plane.ClusterOwnerKey)
			if err != nil {
				t.Fatal(err)
			}
			if tt.kept {
				if e.Revision() != rev || string(e.Value()) != tt.before {
					t.Fatalf("claim now %s (revision %d), want %s (revision %d) untouched", e.Value(), e.Revision(), tt.before, rev)
				}
				return
			}
			now, err := plane.Decode[plane.ClusterClaim](e.Value())
			if err != nil || now.ID != mine.ID || now.Host != "ctrl-new" || now.DataDir != "/data" || !now.CreatedAt.Equal(mine.CreatedAt) {
				t.Fatalf("claim now %s (%v), want this controller's", e.Value(), err)
			}
		})
	}
}

// The incident this guards against: a second controller with a fresh data
// folder on the NATS of a running cluster. It refuses to start, naming the
// cluster that owns the NATS, before it creates or changes anything there
// and before it hears a heartbeat, so the first controller and its backend
// are untouched; the first controller restarts as before. Taking over,
// deliberately, ends the backends the new store does not know.
func TestControllerClusterOwner(t *testing.T) {
	ctx := context.Background()
	ns := mustStartNATS(t)
	nc, js := mustConnect(t, ns)
	cfgFor := func(dir, name string) ControllerConfig {
		return ControllerConfig{
			DataDir: dir, HTTPAddr: "127.0.0.1:0", BackendURL: "http://{id}.plane.localhost/", NATSURL: ns.ClientURL(),
			Domain: "plane.localhost", Logger: testLogger(t, name),
		}
	}
	a := &cluster{t: t, ns: ns, ctrlCfg: cfgFor(t.TempDir(), "controller A"), droneID: "t" + randHex(5), opts: clusterOpts{domain: "plane.localhost"}}
	a.startController()
	t.Cleanup(func() {
		if a.ctrl != nil {
			a.ctrl.Close()
		}
	})
	idA := a.ctrl.Cluster
	if claim, _ := ownerClaim(t, js); claim.ID != idA.ID || idA.ID == "" {
		t.Fatalf("claim %+v, want controller A's cluster %+v", claim, idA)
	}
	var err error
	if a.project, err = a.ctrl.EnsureProject(ctx, plane.DefaultProject); err != nil {
		t.Fatal(err)
	}
	a.registerImage(a.project.ID, "demo", "plane-demo:latest", plane.PullNever)
	a.token = a.newToken(a.project.ID, nil)

	// A fake drone: it takes spawns, counts terminate requests and
	// heartbeats with the backends it runs.
	var terminates atomic.Int32
	var live atomic.Value
	live.Store([]string{})
	for subj, handle := range map[string]func(*nats.Msg){
		plane.SubjectSpawn(a.droneID):     func(m *nats.Msg) {},
		plane.SubjectTerminate(a.droneID): func(m *nats.Msg) { terminates.Add(1) },
	} {
		if _, err := nc.Subscribe(subj, func(m *nats.Msg) {
			handle(m)
			data, _ := json.Marshal(plane.Reply{})
			_ = m.Respond(data)
		}); err != nil {
			t.Fatal(err)
		}
	}
	beatCtx, stopBeats := context.WithCancel(ctx)
	var beats sync.WaitGroup
	beats.Add(1)
	go func() {
		defer beats.Done()
		for {
			data, _ := json.Marshal(plane.Heartbeat{ProtocolVersion: plane.ProtocolVersion, DroneID: a.droneID, Address: "127.0.0.1",
				Capacity: 10, LiveBackends: live.Load().([]string), Time: time.Now()})
			_ = nc.Publish(plane.SubjectHeartbeat, data)
			select {
			case <-beatCtx.Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() {
		stopBeats()
		beats.Wait()
	})
	a.waitDrone()
	_, b := a.spawn(map[string]any{"image": "demo"})
	live.Store([]string{b.ID})
	consumer := func() *jetstream.ConsumerInfo {
		t.Helper()
		c, err := js.Consumer(ctx, plane.StreamStatus, plane.ConsumerStatus)
		if err != nil {
			t.Fatalf("status consumer: %v", err)
		}
		return c.CachedInfo()
	}
	consumerBefore := consumer()
	droneBefore, err := a.ctrl.DB.FindDroneByID(ctx, a.droneID)
	if err != nil {
		t.Fatal(err)
	}

	// Everything said on the NATS while B starts.
	var mu sync.Mutex
	var subjects []string
	watch, err := nc.Subscribe(">", func(m *nats.Msg) {
		mu.Lock()
		subjects = append(subjects, m.Subject)
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	dirB := t.TempDir()
	cb, err := OpenController(ctx, cfgFor(dirB, "controller B"))
	if err == nil {
		cb.Close()
		t.Fatal("controller B started on controller A's NATS")
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	_ = watch.Unsubscribe()

	t.Logf("refusal: %v", err)
	var owned *clusterOwnedError
	if !errors.As(err, &owned) {
		t.Fatalf("err = %v, want a *clusterOwnedError", err)
	}
	for _, s := range []string{"belongs to cluster " + idA.ID, "--data", dirB} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("refusal %q\nlacks %q", err, s)
		}
	}
	mu.Lock()
	seen := subjects
	mu.Unlock()
	sawClaim := false
	for _, s := range seen {
		sawClaim = sawClaim || s == "$KV."+plane.ClusterBucket+"."+plane.ClusterOwnerKey
		for _, bad := range []string{
			"$JS.API.STREAM.CREATE.", "$JS.API.STREAM.UPDATE.", "$JS.API.STREAM.DELETE.", "$JS.API.STREAM.PURGE.",
			"$JS.API.CONSUMER.CREATE.", "$JS.API.CONSUMER.DURABLE.CREATE.", "$JS.API.CONSUMER.DELETE.",
			plane.SubjectTerminate(a.droneID), plane.SubjectSpawn(a.droneID), plane.SubjectEvents,
		} {
			if strings.HasPrefix(s, bad) {
				t.Errorf("controller B sent %s", s)
			}
		}
	}
	if !sawClaim {
		t.Errorf("controller B did not try to claim the NATS; subjects: %v", seen)
	}
	if after := consumer(); !after.Created.Equal(consumerBefore.Created) || after.Config.Durable != plane.ConsumerStatus {
		t.Errorf("status consumer %+v after B, was %+v", after, consumerBefore)
	}
	if claim, _ := ownerClaim(t, js); claim.ID != idA.ID {
		t.Errorf("claim %+v after B, want A's", claim)
	}

	// A goes on: it hears the drone, its backend lives, nothing was ended.
	eventually(t, 5*time.Second, "controller A to hear a heartbeat after B", func() bool {
		d, err := a.ctrl.DB.FindDroneByID(ctx, a.droneID)
		return err == nil && d.LastHeartbeat.After(droneBefore.LastHeartbeat)
	})
	if got, err := a.ctrl.DB.FindBackendByID(ctx, b.ID); err != nil || !got.Status.Live() {
		t.Fatalf("backend after B: %+v, %v; want it live", got, err)
	}
	if n := terminates.Load(); n != 0 {
		t.Fatalf("%d terminate requests reached the drone", n)
	}

	// A restarts on its data folder: same cluster, same claim.
	a.ctrl.Close()
	a.ctrl = nil
	a.startController()
	if a.ctrl.Cluster != idA {
		t.Fatalf("controller A reopened as cluster %+v, want %+v", a.ctrl.Cluster, idA)
	}
	a.ctrl.Close()
	a.ctrl = nil

	// B takes over, deliberately: its store does not know A's backend,
	// and it ends it on the drone. That is what the refusal prevents.
	cfgB := cfgFor(dirB, "controller B, taking over")
	cfgB.TakeOverCluster = true
	cb, err = OpenController(ctx, cfgB)
	if err != nil {
		t.Fatalf("take over: %v", err)
	}
	if claim, _ := ownerClaim(t, js); claim.ID != cb.Cluster.ID || cb.Cluster.ID == idA.ID {
		t.Errorf("claim %+v after take-over, want B's cluster %+v", claim, cb.Cluster)
	}
	eventually(t, 10*time.Second, "controller B to end the backend it does not know", func() bool { return terminates.Load() > 0 })
	cb.Close()

	// Now A is the stranger.
	_, err = OpenController(ctx, a.ctrlCfg)
	if !errors.As(err, &owned) || !strings.Contains(err.Error(), "belongs to cluster "+cb.Cluster.ID) {
		t.Fatalf("controller A after the take-over: err = %v, want a refusal naming cluster %s", err, cb.Cluster.ID)
	}
}

// plane dev and a controller without --nats claim their embedded NATS too:
// it lives in the data folder, so the claim holds across restarts, and a
// data folder whose controller.db was replaced refuses to start.
func TestControllerClusterEmbeddedNATS(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cfg := ControllerConfig{
		DataDir: dir, HTTPAddr: "127.0.0.1:0", BackendURL: "http://{id}.plane.localhost/", NATSListen: "127.0.0.1:0",
		Domain: "plane.localhost", Logger: testLogger(t, "controller"),
	}
	claimOf := func(c *Controller) plane.ClusterClaim {
		t.Helper()
		js, err := jetstream.New(c.NC)
		if err != nil {
			t.Fatal(err)
		}
		claim, _ := ownerClaim(t, js)
		return claim
	}
	c, err := OpenController(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	first := c.Cluster
	if claim := claimOf(c); claim.ID != first.ID || claim.DataDir != dir {
		t.Fatalf("claim %+v, want cluster %s from %s", claim, first.ID, dir)
	}
	c.Close()

	if c, err = OpenController(ctx, cfg); err != nil {
		t.Fatalf("reopen: %v", err)
	}
	if c.Cluster != first {
		t.Fatalf("reopened as cluster %+v, want %+v", c.Cluster, first)
	}
	c.Close()

	// A fresh store next to the old NATS store.
	for _, f := range []string{"controller.db", "controller.db-wal", "controller.db-shm"} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
	}
	_, err = OpenController(ctx, cfg)
	var owned *clusterOwnedError
	if !errors.As(err, &owned) || !strings.Contains(err.Error(), "belongs to cluster "+first.ID) ||
		!strings.Contains(err.Error(), "remove "+filepath.Join(dir, "nats")) {
		t.Fatalf("err = %v, want a refusal naming cluster %s and the nats folder", err, first.ID)
	}
}
