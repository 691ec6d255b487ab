package controller

import (
	"context"
	"slices"
	"strings"
	"time"

	"plane"
)

// Warm pools: every ready drone keeps Image.WarmPool started, ready,
// unclaimed backends of each image that has one (plane's pool.go). The
// dispatcher tells the drones which pools to keep (PoolSpecs) and reports
// what their heartbeats say of them (Dispatcher.Pools); a spawn that a
// member can serve claims one (claim.go).

// PoolSpecs are the pools every drone should keep: one for each image of
// every project with a warm pool. The dispatcher sends them to the drones
// whose heartbeats report other pools.
func (c *Core) PoolSpecs(ctx context.Context) ([]plane.PoolSpec, error) {
	imgs, err := c.Store.FindWarmPoolImages(ctx)
	if err != nil {
		return nil, err
	}
	specs := make([]plane.PoolSpec, 0, len(imgs))
	for _, img := range imgs {
		specs = append(specs, poolSpecOf(img))
	}
	return specs, nil
}

// poolSpecOf is the pool of img: its members run what a spawn of img with
// no env and no resource limits of its own would run.
func poolSpecOf(img *plane.Image) plane.PoolSpec {
	p := plane.PoolSpec{
		ID: plane.PoolID(img.ID), Image: img.Name, Size: img.WarmPool,
		Spec: plane.SpawnSpec{
			ImageRef: img.Ref, PullPolicy: img.PullPolicy, Port: img.Port, Env: img.Env,
			// Idle and lifetime limits are the claim's; the resource
			// limits are the container's from its start.
			Limits: plane.Limits{CPUMillis: img.CPUMillis, MemoryMB: img.MemoryMB},
			Public: img.Public, AllowBearer: img.AllowBearer,
		},
	}
	if len(p.Spec.Env) == 0 {
		p.Spec.Env = nil // one hash for an image without env, stored as {} or null
	}
	p.Hash = p.SpecHash()
	return p
}

// PoolOnDrone is an image's warm pool on one drone, as the drone's latest
// heartbeat reported it.
type PoolOnDrone struct {
	Drone    string
	Size     int // members wanted
	Ready    int // ready, unclaimed members of the image's current spec
	Starting int
	// Stale: the drone's members run a former spec of the image (it was
	// changed a moment ago); they are being replaced.
	Stale bool
	// Refill is how long the drone's last new member took from its start
	// to ready (0: none yet).
	Refill time.Duration
}

// ImagePools reports img's warm pool on every drone that reports one, by
// drone ID; none when the image has no pool or no drone has reported it.
func (c *Core) ImagePools(img *plane.Image) []PoolOnDrone {
	want := poolSpecOf(img)
	var out []PoolOnDrone
	for drone, pools := range c.Dispatch.Pools() {
		for _, p := range pools {
			if p.ID != want.ID {
				continue
			}
			out = append(out, PoolOnDrone{
				Drone: drone, Size: p.Size, Ready: len(p.Ready), Starting: p.Starting,
				Stale: p.Hash != want.Hash, Refill: time.Duration(p.RefillMillis) * time.Millisecond,
			})
		}
	}
	slices.SortFunc(out, func(a, b PoolOnDrone) int { return strings.Compare(a.Drone, b.Drone) })
	return out
}
