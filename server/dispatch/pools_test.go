package dispatch

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"plane"
)

// poolSource is a PoolSource that wants want, counting its reads.
type poolSource struct {
	mu    sync.Mutex
	want  []plane.PoolSpec
	reads int
}

func (s *poolSource) PoolSpecs(context.Context) ([]plane.PoolSpec, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reads++
	return s.want, nil
}

func testPool(size int) plane.PoolSpec {
	p := plane.PoolSpec{ID: plane.PoolID(3), Image: "demo", Size: size,
		Spec: plane.SpawnSpec{ImageRef: "plane-demo:latest", PullPolicy: plane.PullNever, Port: 8080}}
	p.Hash = p.SpecHash()
	return p
}

// TestSyncPools: a drone whose heartbeat reports other pools than the
// wanted ones is sent them, once within poolResendAfter; one that reports
// them, or speaks protocol 2, or stops, is sent nothing.
func TestSyncPools(t *testing.T) {
	t.Parallel()
	want := testPool(2)
	match := plane.PoolState{ID: want.ID, Hash: want.Hash, Size: 2, Ready: []string{"abc"}, Starting: 1}
	cases := []struct {
		name  string
		hb    plane.Heartbeat
		sends int
	}{
		{"no pools yet", plane.Heartbeat{ProtocolVersion: 3}, 1},
		{"pools wanted", plane.Heartbeat{ProtocolVersion: 3, Pools: []plane.PoolState{match}}, 0},
		{"other size", plane.Heartbeat{ProtocolVersion: 3, Pools: []plane.PoolState{{ID: want.ID, Hash: want.Hash, Size: 1}}}, 1},
		{"former spec", plane.Heartbeat{ProtocolVersion: 3, Pools: []plane.PoolState{{ID: want.ID, Hash: "old", Size: 2}}}, 1},
		{"a pool too many", plane.Heartbeat{ProtocolVersion: 3, Pools: []plane.PoolState{match, {ID: "i9", Size: 1}}}, 1},
		{"protocol 2", plane.Heartbeat{ProtocolVersion: 2}, 0},
		{"stopping", plane.Heartbeat{ProtocolVersion: 3, Stopping: true}, 0},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			nc := startNATS(t)
			d, _ := newDispatcher(newStore(nil, nil), nc)
			src := &poolSource{want: []plane.PoolSpec{want}}
			d.PoolSource = src
			got := make(chan plane.PoolsRequest, 8)
			sub, err := nc.Subscribe(plane.SubjectPools("d1"), func(m *nats.Msg) {
				req, err := plane.Decode[plane.PoolsRequest](m.Data)
				if err != nil {
					t.Errorf("pools request: %v", err)
				}
				got <- req
				data, _ := json.Marshal(plane.Reply{})
				_ = m.Respond(data)
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = sub.Unsubscribe() })
			hb := tt.hb
			hb.DroneID, hb.Time = "d1", t0
			// Two beats at once: the second finds the first request sent.
			d.handleHeartbeat(msg(t, hb))
			d.handleHeartbeat(msg(t, hb))
			d.wg.Wait()
			if n := len(got); n != tt.sends {
				t.Fatalf("pools requests sent: %d, want %d", n, tt.sends)
			}
			if tt.sends > 0 {
				if req := <-got; len(req.Pools) != 1 || req.Pools[0].Hash != want.Hash || req.Pools[0].Size != 2 {
					t.Errorf("pools sent: %+v, want [%+v]", req.Pools, want)
				}
			}
			if src.reads > 1 {
				t.Errorf("pool source read %d times in one poolWantTTL, want at most once", src.reads)
			}
		})
	}
}

// TestPoolsReported: Pools has what each drone's latest heartbeat said,
// for drones heard from within plane.DroneStaleAfter; a stopping drone's
// are gone.
func TestPoolsReported(t *testing.T) {
	t.Parallel()
	now := t0
	d, _ := newDispatcher(newStore(nil, nil), nil)
	d.Now = func() time.Time { return now }
	p := plane.PoolState{ID: "i3", Hash: "h", Size: 2, Ready: []string{"abc", "def"}}
	for _, id := range []string{"d1", "d2", "d3"} {
		d.pools.record(plane.Heartbeat{DroneID: id, Pools: []plane.PoolState{p}}, now)
	}
	d.pools.record(plane.Heartbeat{DroneID: "d2", Stopping: true}, now)
	now = now.Add(plane.DroneStaleAfter / 2)
	d.pools.record(plane.Heartbeat{DroneID: "d3", Pools: []plane.PoolState{p}}, now)
	now = now.Add(plane.DroneStaleAfter/2 + time.Millisecond)
	got := d.Pools()
	if _, ok := got["d1"]; ok {
		t.Errorf("stale drone d1 reported: %+v", got)
	}
	if _, ok := got["d2"]; ok {
		t.Errorf("stopped drone d2 reported: %+v", got)
	}
	if ps := got["d3"]; len(ps) != 1 || len(ps[0].Ready) != 2 {
		t.Fatalf("d3's pools: %+v, want %+v", ps, p)
	}
	got["d3"][0].Ready[0] = "changed"
	if d.Pools()["d3"][0].Ready[0] != "abc" {
		t.Errorf("Pools returned the dispatcher's own slice")
	}
}
