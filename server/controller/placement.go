package controller

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"plane"
	"plane/server/scheduler"
)

// Placement: which drone takes the next backend.
//
// The scheduler picks the least loaded drone from the store's count of live
// backends per drone. A count read before a concurrent spawn's insert misses
// that backend, so a burst of spawns that all read the same counts would all
// pick the same drone. The placer closes that gap within this controller: it
// keeps the placements whose insert a count may not include yet (pending)
// and adds them to what was read, so that the pick sees every placement made
// before it. Its lock covers the pick only, never the store's read or write.
//
// Several controllers do not see each other's pending placements: when they
// share a store, the store will have to read the counts, pick and insert in
// one transaction (or keep per-drone counters that the insert updates).
//
// The placer also remembers the drones that refused a backend, so that for a
// short while every spawn tries them last. The scheduler passes over a drone
// that died only once its last heartbeat is DroneStaleAfter old; until then,
// with its failed backends no longer counted, it looks the least loaded, and
// every spawn would spend its first attempt on it.

// maxSpawnAttempts bounds the drones one spawn tries.
const maxSpawnAttempts = 3

// DefaultAvoidRefused is how long spawns pass over a drone that refused one:
// plane.DroneStaleAfter, by when a drone that is gone has stopped beating
// for long enough that the scheduler skips it anyway.
const DefaultAvoidRefused = plane.DroneStaleAfter

// errAllTried: every registered drone has refused this spawn.
var errAllTried = errors.New("every drone was tried")

// placer is the Core's placement state; its zero value is ready to use.
type placer struct {
	mu sync.Mutex
	// seq orders the start of count reads and the end of inserts: an
	// insert that ended before a read started is in that read's counts.
	seq     uint64
	reading map[uint64]bool // the reads in progress, by the seq they started at
	pending []*reservation
	refused map[string]time.Time // drone ID → until when spawns try it last
}

// reservation is a placement whose backend a count may not include yet.
type reservation struct {
	drone string
	done  uint64 // the seq at which its insert ended; 0 while it runs
}

// beginRead marks the start of a read of the counts; pass what it returns
// to reserve, and to endRead when done.
func (p *placer) beginRead() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.reading == nil {
		p.reading = map[uint64]bool{}
	}
	p.seq++
	p.reading[p.seq] = true
	return p.seq
}

func (p *placer) endRead(read uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.reading, read)
	p.prune()
}

// reserve picks a drone with the counts of the read started at read plus
// the placements they may miss, and holds a place on it until release.
// Drones in tried are excluded; drones that refused a backend recently are
// tried only when no other drone can take it.
func (p *placer) reserve(read uint64, drones []*plane.Drone, live map[string]int, tried []string, now time.Time) (*plane.Drone, *reservation, error) {
	if len(tried) > 0 && !slices.ContainsFunc(drones, func(d *plane.Drone) bool { return d != nil && !slices.Contains(tried, d.ID) }) {
		return nil, nil, errAllTried
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	counts := make(map[string]int, len(live)+len(p.pending))
	for id, n := range live {
		counts[id] = n
	}
	for _, r := range p.pending {
		// Ended after the read started (or still running): the read may
		// have missed it. Counting it twice for a moment errs on the side
		// of spreading.
		if r.done == 0 || r.done > read {
			counts[r.drone]++
		}
	}
	exclude := make(map[string]bool, len(tried)+len(p.refused))
	for _, id := range tried {
		exclude[id] = true
	}
	avoided := false
	for id, until := range p.refused {
		switch {
		case !now.Before(until):
			delete(p.refused, id)
		case !exclude[id]:
			exclude[id] = true
			avoided = true
		}
	}
	d, err := scheduler.Pick(drones, counts, exclude, now, nil)
	if err != nil && avoided {
		// Nothing else can take it: a drone that refused a moment ago is
		// better than none (it may have been a blip).
		for id := range p.refused {
			if !slices.Contains(tried, id) {
				delete(exclude, id)
			}
		}
		d, err = scheduler.Pick(drones, counts, exclude, now, nil)
	}
	if err != nil {
		return nil, nil, err
	}
	r := &reservation{drone: d.ID}
	p.pending = append(p.pending, r)
	return d, r, nil
}

// release ends a reservation: inserted says whether its backend is now in
// the store (and so in every count read from now on).
func (p *placer) release(r *reservation, inserted bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if inserted {
		p.seq++
		r.done = p.seq
	} else {
		p.pending = slices.DeleteFunc(p.pending, func(x *reservation) bool { return x == r })
	}
	p.prune()
}

// prune drops the reservations that every read in progress, and every
// later one, counts already.
func (p *placer) prune() {
	oldest := p.seq + 1
	for read := range p.reading {
		oldest = min(oldest, read)
	}
	p.pending = slices.DeleteFunc(p.pending, func(r *reservation) bool { return r.done != 0 && r.done < oldest })
}

// refuse makes spawns try drone last until until.
func (p *placer) refuse(drone string, until time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.refused == nil {
		p.refused = map[string]time.Time{}
	}
	p.refused[drone] = until
}

// accepted clears a refusal: the drone took a backend.
func (p *placer) accepted(drone string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.refused, drone)
}

// reserveDrone reads the drones and their load and reserves a place on the
// least loaded drone not in tried, among those only accepts (nil: all).
func (c *Core) reserveDrone(ctx context.Context, tried []string, only func(*plane.Drone) bool) (*plane.Drone, *reservation, error) {
	read := c.placer.beginRead()
	defer c.placer.endRead(read)
	drones, err := c.Store.FindDrones(ctx)
	if err != nil {
		return nil, nil, err
	}
	if only != nil {
		drones = slices.DeleteFunc(drones, func(d *plane.Drone) bool { return !only(d) })
	}
	live, err := c.Store.CountLiveBackendsByDrone(ctx)
	if err != nil {
		return nil, nil, err
	}
	return c.placer.reserve(read, drones, live, tried, time.Now())
}

// reserveMember reserves a place on the least loaded drone not in tried
// that has a ready member of pool to claim, and hands one out. With none
// to claim it reserves nothing and returns no member; an error is the
// store's.
func (c *Core) reserveMember(ctx context.Context, pool plane.PoolSpec, tried []string) (*plane.Drone, *reservation, string, error) {
	now := time.Now()
	pools := c.Dispatch.Pools()
	withMember := func(d *plane.Drone) bool {
		p, ok := poolOf(pools[d.ID], pool)
		return ok && len(c.claims.free(p, now)) > 0
	}
	d, r, err := c.reserveDrone(ctx, tried, withMember)
	switch {
	case err == nil:
	case plane.ErrorCodeOf(err) == plane.EUNAVAILABLE || errors.Is(err, errAllTried):
		return nil, nil, "", nil // no drone has one
	default:
		return nil, nil, "", err
	}
	p, _ := poolOf(pools[d.ID], pool)
	member := c.claims.take(p, now)
	if member == "" {
		// A concurrent spawn took the last one since.
		c.placer.release(r, false)
		return nil, nil, "", nil
	}
	return d, r, member, nil
}

func (c *Core) avoidRefused() time.Duration {
	if c.AvoidRefused <= 0 {
		return DefaultAvoidRefused
	}
	return c.AvoidRefused
}
