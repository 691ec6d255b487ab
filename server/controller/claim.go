package controller

import (
	"sync"
	"time"

	"plane"
)

// coldReason says why a spawn of img for req cannot claim a warm pool's
// member ("" when it can): a member started with the image's environment
// and resources, so a spawn that sets its own starts cold. Idle, lifetime
// and suspend limits, the key and the user are the claim's to set.
func coldReason(img *plane.Image, req plane.SpawnRequest) plane.ColdReason {
	switch {
	case img.WarmPool <= 0:
		return plane.ColdNoPool
	case len(req.Env) > 0:
		return plane.ColdEnv
	case req.CPUMillis != nil && *req.CPUMillis != img.CPUMillis:
		return plane.ColdCPU
	case req.MemoryMB != nil && *req.MemoryMB != img.MemoryMB:
		return plane.ColdMemory
	}
	return ""
}

// claimHold is how long a member handed to a spawn is not handed to
// another: by then the drone's heartbeats no longer list it as ready.
const claimHold = 30 * time.Second

// claims are the members this controller has handed to spawns; its zero
// value is ready to use. Several controllers do not see each other's: two
// that hand out the same member both try to store a backend under its ID,
// and the second finds the ID taken and tries another member.
type claims struct {
	mu    sync.Mutex
	taken map[string]time.Time // member ID → when it was handed out
}

// free reports the members of pool p not handed out yet.
func (c *claims) free(p plane.PoolState, now time.Time) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, id := range p.Ready {
		if at, ok := c.taken[id]; !ok || now.Sub(at) >= claimHold {
			out = append(out, id)
		}
	}
	return out
}

// take hands out one member of p not handed out yet ("" if none).
func (c *claims) take(p plane.PoolState, now time.Time) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.taken == nil {
		c.taken = map[string]time.Time{}
	}
	for id, at := range c.taken {
		if now.Sub(at) >= claimHold {
			delete(c.taken, id)
		}
	}
	for _, id := range p.Ready {
		if _, ok := c.taken[id]; !ok {
			c.taken[id] = now
			return id
		}
	}
	return ""
}

// poolOf returns the state of pool want among a drone's pools, if the
// drone runs members of its current spec.
func poolOf(pools []plane.PoolState, want plane.PoolSpec) (plane.PoolState, bool) {
	for _, p := range pools {
		if p.ID == want.ID && p.Hash == want.Hash {
			return p, true
		}
	}
	return plane.PoolState{}, false
}
