package dispatch

import (
	"context"
	"slices"
	"sync"
	"time"

	"plane"
)

// Warm pools (plane's pool.go): the dispatcher remembers the pools each
// drone's heartbeat reports, for the core's claims and the dashboard
// (Pools), and the controller that holds the cluster's lease sends a drone
// the pools it should keep whenever its heartbeat reports others.

// PoolSource gives the pools every drone should keep: the controller core.
type PoolSource interface {
	PoolSpecs(ctx context.Context) ([]plane.PoolSpec, error)
}

// poolWantTTL is how long the pools read from the PoolSource are used: a
// change of an image's pool reaches the drones within it and a heartbeat.
const poolWantTTL = time.Second

// poolResendAfter is how long a drone whose heartbeats still report other
// pools is left to apply the last PoolsRequest before it gets another.
const poolResendAfter = 2 * time.Second

// pools is the dispatcher's pool state; its zero value is ready to use.
type pools struct {
	mu     sync.Mutex
	drones map[string]dronePools // by drone ID, from the latest heartbeat
	want   []plane.PoolSpec      // from the PoolSource, read at wantAt
	wantAt time.Time
	sent   map[string]time.Time // drone ID → when it was last sent its pools
}

type dronePools struct {
	pools []plane.PoolState
	at    time.Time
}

// record keeps the pools of a heartbeat received at now; a drone that
// stops has none.
func (p *pools) record(hb plane.Heartbeat, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drones == nil {
		p.drones = map[string]dronePools{}
	}
	if hb.Stopping {
		delete(p.drones, hb.DroneID)
		return
	}
	p.drones[hb.DroneID] = dronePools{pools: hb.Pools, at: now}
}

// Pools are the warm pools of every drone heard from within
// plane.DroneStaleAfter, by drone ID.
func (d *Dispatcher) Pools() map[string][]plane.PoolState {
	now := d.Now()
	p := &d.pools
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string][]plane.PoolState, len(p.drones))
	for id, dp := range p.drones {
		if now.Sub(dp.at) > plane.DroneStaleAfter || len(dp.pools) == 0 {
			continue
		}
		cp := make([]plane.PoolState, len(dp.pools))
		for i, ps := range dp.pools {
			ps.Ready = slices.Clone(ps.Ready)
			cp[i] = ps
		}
		out[id] = cp
	}
	return out
}

// wanted returns the pools every drone should keep, read from the source
// at most once every poolWantTTL.
func (d *Dispatcher) wanted(ctx context.Context) ([]plane.PoolSpec, error) {
	p := &d.pools
	p.mu.Lock()
	if now := d.Now(); p.wantAt.IsZero() || now.Sub(p.wantAt) >= poolWantTTL {
		p.mu.Unlock()
		want, err := d.PoolSource.PoolSpecs(ctx)
		if err != nil {
			return nil, err
		}
		p.mu.Lock()
		p.want, p.wantAt = want, now
	}
	defer p.mu.Unlock()
	return p.want, nil
}

// poolsMatch reports whether a drone's pools are the ones it should keep.
func poolsMatch(have []plane.PoolState, want []plane.PoolSpec) bool {
	if len(have) != len(want) {
		return false
	}
	for _, w := range want {
		i := slices.IndexFunc(have, func(h plane.PoolState) bool { return h.ID == w.ID })
		if i < 0 || have[i].Hash != w.Hash || have[i].Size != w.Size {
			return false
		}
	}
	return true
}

// syncPools sends a drone the pools it should keep when its heartbeat
// reports others, at most once every poolResendAfter; the request runs in
// the background, off the heartbeat's handler.
func (d *Dispatcher) syncPools(ctx context.Context, hb plane.Heartbeat) {
	if d.PoolSource == nil || hb.Stopping || hb.ProtocolVersion < 3 {
		return
	}
	want, err := d.wanted(ctx)
	if err != nil {
		d.Logger.Warn("read the warm pools", "err", err)
		return
	}
	if poolsMatch(hb.Pools, want) {
		return
	}
	now := d.Now()
	p := &d.pools
	p.mu.Lock()
	if p.sent == nil {
		p.sent = map[string]time.Time{}
	}
	if last, ok := p.sent[hb.DroneID]; ok && now.Sub(last) < poolResendAfter {
		p.mu.Unlock()
		return
	}
	p.sent[hb.DroneID] = now
	p.mu.Unlock()
	req := plane.PoolsRequest{Pools: want}
	if req.Pools == nil {
		req.Pools = []plane.PoolSpec{}
	}
	runCtx := d.runCtx
	if runCtx == nil {
		runCtx = context.Background()
	}
	d.wg.Go(func() {
		if err := d.SetPools(runCtx, hb.DroneID, req); err != nil {
			d.Logger.Warn("send a drone its warm pools", "drone", hb.DroneID, "err", err)
			return
		}
		d.Logger.Debug("sent a drone its warm pools", "drone", hb.DroneID, "pools", len(req.Pools))
	})
}
