package drone

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"plane"
	"plane/drone/store"
)

// Warm pools (plane's pool.go): the drone keeps, for each pool the
// controller asked for (handlePools), Size started and ready containers of
// the pool's spec, its members, so that a spawn claims one ready rather
// than waiting for a container to start.
//
// A member is a backend (backend.go) with its member field set: it goes
// through the same lifecycle (image, start, readiness probe), but while
// unclaimed it is in a.members, not a.backends, and its status changes stay
// in memory: no store record, no status event, no proxy route, no idle or
// lifetime timer, not live in the heartbeat. The controller learns of
// ready members from the heartbeat only (Heartbeat.Pools). A claim
// (handleSpawn with SpawnSpec.Warm) hands the member the spawn's spec and
// makes it a backend like any other, which records one status event: ready.
//
// Members are not stored: a drone that restarts removes those of its
// previous run as strays (reconcile) and starts its pools again when the
// controller sends them.

const (
	// maxPoolStarts bounds the members starting at once on a drone, so
	// that filling pools leaves the machine to the backends it runs.
	maxPoolStarts = 2
	// poolSweep is how often the pools are looked at when nothing wakes
	// them: a safety net for a missed kick.
	poolSweep = time.Second
	// poolRetryMin and poolRetryMax bound the wait before a pool whose
	// members keep failing (an image that cannot be pulled, an app that
	// crashes) starts another one.
	poolRetryMin = 500 * time.Millisecond
	poolRetryMax = 30 * time.Second
)

// errMemberGone says that a member left its pool (it exited or was stopped)
// before a claim reached it.
var errMemberGone = errors.New("warm pool member gone")

// pool is the drone's side of one warm pool; a.mu guards it.
type pool struct {
	spec plane.PoolSpec
	// refill is how long the pool's last new member took from its
	// container's start to ready (0: none yet).
	refill time.Duration
	// failures counts the members in a row that ended without being asked
	// to; no new one starts before retryAt.
	failures int
	retryAt  time.Time
}

// member is what makes a backend an unclaimed member of a warm pool. Its
// flags are guarded by a.mu; its channels never change.
type member struct {
	pool  string // pool ID
	image string // the pool's image name, for the container's label
	hash  string // the spec it runs: PoolSpec.Hash
	// ready: it answered HTTP and waits for a claim (pooled).
	ready bool
	// stopping: the pool (or a spawn that needs its place) stopped it;
	// claiming: a spawn is handing it its spec; left: it left the pool by
	// itself (it exited). None of these can be claimed or counted.
	stopping, claiming, left bool

	claim chan claimRequest // a spawn's claim, to the member's goroutine
	gone  chan struct{}     // closed once it left its pool unclaimed
	done  chan struct{}     // closed once its container is removed

	// startedAt is when its container was started, for pool.refill; its
	// goroutine's alone.
	startedAt time.Time
}

// claimRequest hands a ready member a spawn's spec; done receives the
// outcome once the member is a backend (nil) or stays a member (an error).
type claimRequest struct {
	spec plane.SpawnSpec
	done chan error
}

// claimable reports whether a spawn may claim the member now; a.mu is held.
func (m *member) claimable() bool {
	return m.ready && !m.stopping && !m.claiming && !m.left
}

// counts reports whether the member counts for its pool (it is neither
// leaving nor being claimed); a.mu is held.
func (m *member) counts() bool { return !m.stopping && !m.claiming && !m.left }

// runs reports whether member b's container runs what spec asks for: a
// claim changes its key, user and limits, not its container. A claim that
// asks for another (which the controller does not send) starts cold.
func (b *backend) runs(spec plane.SpawnSpec) bool {
	b.mu.Lock()
	have := b.rec.Spec
	b.mu.Unlock()
	ok := have.ImageRef == spec.ImageRef && have.Port == spec.Port && maps.Equal(have.Env, spec.Env) &&
		have.CPUMillis == spec.CPUMillis && have.MemoryMB == spec.MemoryMB
	if !ok {
		b.log.Warn("a claim asks for another container than this warm pool member's: starting it cold",
			"image", spec.ImageRef, "member_image", have.ImageRef)
	}
	return ok
}

// handlePools sets the pools to keep: the pool loop starts, replaces and
// stops members to match. The request is not stored: a restarted drone has
// no pools until the controller, seeing none in its heartbeat, sends them
// again.
func (a *Agent) handlePools(ctx context.Context, data []byte) error {
	req, err := plane.Decode[plane.PoolsRequest](data)
	if err != nil {
		return err
	}
	a.mu.Lock()
	next := make(map[string]*pool, len(req.Pools))
	for _, ps := range req.Pools {
		p := a.pools[ps.ID]
		if p == nil {
			p = &pool{}
		} else if p.spec.Hash != ps.Hash {
			p.failures, p.retryAt = 0, time.Time{} // a new spec gets a fresh chance
		}
		p.spec = ps
		next[ps.ID] = p
	}
	a.pools = next
	a.mu.Unlock()
	a.log.Info("warm pools set", "pools", len(req.Pools))
	a.kickPools()
	a.beatSoon()
	return nil
}

// kickPools wakes the pool loop: the pools, the drain flag or the room
// on the drone changed.
func (a *Agent) kickPools() {
	select {
	case a.poolKick <- struct{}{}:
	default:
	}
}

// poolLoop keeps the pools filled until ctx is done. Members are left
// running when it ends: the next run of the drone removes them.
func (a *Agent) poolLoop(ctx context.Context) {
	for {
		wait := poolSweep
		if next := a.tendPools(time.Now()); !next.IsZero() {
			wait = max(0, min(wait, time.Until(next)))
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-a.poolKick:
		case <-t.C:
		}
		t.Stop()
	}
}

// tendPools stops the members no pool wants (a pool removed or shrunk, a
// former spec, a draining drone) and starts new ones where pools lack some,
// within maxPoolStarts and the drone's capacity. It returns when a pool
// held back after failures may start one again (zero: none is).
func (a *Agent) tendPools(now time.Time) (retry time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var stop []*backend
	current := map[string][]*backend{} // by pool: its members that count
	starting := 0
	for _, b := range a.members {
		m := b.member
		if !m.counts() {
			continue
		}
		if p := a.pools[m.pool]; a.draining || p == nil || p.spec.Hash != m.hash {
			stop = append(stop, b)
			continue
		}
		current[m.pool] = append(current[m.pool], b)
		if !m.ready {
			starting++
		}
	}
	ids := make([]string, 0, len(a.pools))
	for id, p := range a.pools {
		ids = append(ids, id)
		if extra := len(current[id]) - p.spec.Size; extra > 0 {
			// The members not ready yet go first: they are the least
			// use, and a claim may be on its way to a ready one.
			bs := current[id]
			slices.SortStableFunc(bs, func(x, y *backend) int { return boolCmp(x.member.ready, y.member.ready) })
			stop = append(stop, bs[:extra]...)
			for _, b := range bs[:extra] {
				if !b.member.ready {
					starting--
				}
			}
			current[id] = bs[extra:]
		}
	}
	for _, b := range stop {
		a.stopMemberLocked(b)
	}
	if a.draining {
		return time.Time{}
	}
	// Round robin over the pools, one member each per round, so that a
	// large pool does not starve the others of the starts allowed.
	slices.Sort(ids)
	total := len(a.backends) + len(a.members) // leaving members hold their container until removed
	for progress := true; progress; {
		progress = false
		for _, id := range ids {
			p := a.pools[id]
			if len(current[id]) >= p.spec.Size {
				continue
			}
			if now.Before(p.retryAt) {
				if retry.IsZero() || p.retryAt.Before(retry) {
					retry = p.retryAt
				}
				continue
			}
			if starting >= maxPoolStarts || a.cfg.Capacity > 0 && total >= a.cfg.Capacity {
				return retry
			}
			current[id] = append(current[id], a.startMemberLocked(p))
			starting++
			total++
			progress = true
		}
	}
	return retry
}

// boolCmp orders false before true.
func boolCmp(x, y bool) int {
	switch {
	case x == y:
		return 0
	case !x:
		return -1
	}
	return 1
}

// startMemberLocked starts a new member of p under a fresh ID; a.mu is
// held.
func (a *Agent) startMemberLocked(p *pool) *backend {
	id := plane.NewBackendID()
	for a.backends[id] != nil || a.members[id] != nil {
		id = plane.NewBackendID()
	}
	spec := p.spec.Spec
	spec.BackendID = id
	b := a.newBackend(&store.Backend{Spec: spec, Status: plane.StatusScheduled, CreatedAt: time.Now()})
	b.log = b.log.With("pool", p.spec.ID)
	b.member = &member{
		pool: p.spec.ID, image: p.spec.Image, hash: p.spec.Hash,
		claim: make(chan claimRequest), gone: make(chan struct{}), done: make(chan struct{}),
	}
	a.members[id] = b
	a.wg.Go(func() { b.spawn(a.ctx) })
	return b
}

// stopMemberLocked has member b stopped, at once (it holds nobody's
// work), unless it is leaving already; a.mu is held.
func (a *Agent) stopMemberLocked(b *backend) {
	if m := b.member; !m.stopping && !m.left {
		m.stopping = true
		b.terminate(true, plane.ReasonRequested)
	}
}

// evictMemberLocked stops a member to make room for a backend, one not
// ready if any, and returns it (nil: no member can go); a.mu is held.
func (a *Agent) evictMemberLocked() *backend {
	var pick *backend
	for _, b := range a.members {
		if !b.member.counts() {
			continue
		}
		if pick == nil || pick.member.ready && !b.member.ready {
			pick = b
		}
	}
	if pick != nil {
		pick.log.Info("warm pool member evicted: the drone is at capacity and a backend needs its place")
		a.stopMemberLocked(pick)
	}
	return pick
}

// activeMembersLocked counts the members that hold a place on the drone
// and are not leaving it; a.mu is held.
func (a *Agent) activeMembersLocked() int {
	n := 0
	for _, b := range a.members {
		if !b.member.stopping && !b.member.left {
			n++
		}
	}
	return n
}

// memberReady records that member b answered HTTP: it may be claimed from
// now on, the controller is told soon, and the pool may start another.
func (a *Agent) memberReady(b *backend) {
	m := b.member
	a.mu.Lock()
	m.ready = true
	if p := a.pools[m.pool]; p != nil && p.spec.Hash == m.hash {
		p.refill = time.Since(m.startedAt)
		p.failures, p.retryAt = 0, time.Time{}
	}
	a.mu.Unlock()
	b.log.Debug("warm pool member ready")
	a.kickPools() // one start fewer under way: another may begin
	a.beatSoon()
}

// memberGone drops member b, whose container is removed, from its pool,
// and has it replaced; one that ended without being asked to holds its
// pool back a while if others did too.
func (a *Agent) memberGone(b *backend) {
	m := b.member
	a.mu.Lock()
	if a.members[b.id] == b {
		delete(a.members, b.id)
	}
	if p := a.pools[m.pool]; p != nil && !m.stopping && p.spec.Hash == m.hash {
		p.failures++
		p.retryAt = time.Now().Add(poolBackoff(p.failures))
	}
	wasReady := m.ready
	a.mu.Unlock()
	close(m.done)
	a.kickPools()
	if wasReady {
		a.beatSoon()
	}
}

// poolBackoff is the wait before a pool starts a member after failures in
// a row: none after the first (a member may just have crashed), then
// doubling from poolRetryMin up to poolRetryMax.
func poolBackoff(failures int) time.Duration {
	if failures <= 1 {
		return 0
	}
	if failures > 8 {
		return poolRetryMax
	}
	return min(poolRetryMin<<(failures-2), poolRetryMax)
}

// leavePool marks member b as leaving by itself (it exited, or a stop
// reached it), so that no claim waits for it.
func (a *Agent) leavePool(b *backend) {
	m := b.member
	a.mu.Lock()
	defer a.mu.Unlock()
	if !m.left {
		m.left = true
		close(m.gone)
	}
}

// pooled waits, while member b is ready and unclaimed, for a claim, its
// exit or a stop. It reports whether it was claimed: its goroutine then
// watches it as the backend it became.
func (b *backend) pooled(ctx context.Context) bool {
	m := b.member
	b.a.memberReady(b)
	for {
		select {
		case <-ctx.Done():
			return false // left running; the drone's next run removes it
		case req := <-m.claim:
			err := b.takeClaim(ctx, req.spec)
			req.done <- err
			if err == nil {
				return true
			}
		case code := <-b.exited:
			b.a.leavePool(b)
			b.log.Info("warm pool member exited", "exit_code", code)
			b.finish(ctx, plane.ReasonExited, &code, "")
			return false
		case req := <-b.stop:
			b.a.leavePool(b)
			b.stopContainer(ctx, req)
			return false
		}
	}
}

// takeClaim makes member b the backend spec asks for: its record, with
// the spawn's key, user and limits, is stored with the one status event
// ready, its clocks start now, and it is live and routed. On an error it
// stays a member.
func (b *backend) takeClaim(ctx context.Context, spec plane.SpawnSpec) error {
	now := time.Now()
	b.mu.Lock()
	rec := *b.rec
	b.mu.Unlock()
	spec.Warm = true // the record says so: a retried claim is answered warm
	rec.Spec, rec.Status, rec.CreatedAt, rec.UpdatedAt = spec, plane.StatusReady, now, now
	ev := plane.BackendEvent{BackendID: b.id, DroneID: b.a.cfg.ID, Status: plane.StatusReady, Time: now, Address: rec.Address}
	if !b.record(ctx, &rec, ev, b.id+"."+string(plane.StatusReady)) {
		return plane.Errorf(plane.EINTERNAL, "claim warm pool member %s: its record could not be stored", b.id)
	}
	b.mu.Lock()
	*b.rec = rec
	b.since = now // the idle clock starts at the claim, as the lifetime does
	b.mu.Unlock()
	a := b.a
	a.mu.Lock()
	if a.members[b.id] == b {
		delete(a.members, b.id)
	}
	a.backends[b.id] = b
	b.member = nil
	a.mu.Unlock()
	a.route(&rec)
	b.log.Info("warm pool member claimed")
	a.kickPools()
	a.beatSoon()
	return nil
}

// claim hands member b, which the caller marked claiming, the spawn's
// spec and waits until it is a backend. errMemberGone: it left its pool
// first, and the spawn starts cold.
func (a *Agent) claim(ctx context.Context, b *backend, spec plane.SpawnSpec) error {
	m := b.member // read under a.mu by the caller; its channels never change
	req := claimRequest{spec: spec, done: make(chan error, 1)}
	select {
	case m.claim <- req:
	case <-m.gone:
		return errMemberGone
	case <-ctx.Done():
		return fmt.Errorf("claim warm pool member %s: %w", b.id, ctx.Err())
	}
	return <-req.done // the member answers every claim it took
}

// poolStatesLocked are the pools as the heartbeat reports them, in the order of
// their IDs; a.mu is held.
func (a *Agent) poolStatesLocked() []plane.PoolState {
	if len(a.pools) == 0 {
		return nil
	}
	byID := make(map[string]*plane.PoolState, len(a.pools))
	out := make([]plane.PoolState, 0, len(a.pools))
	for id, p := range a.pools {
		ms := p.refill.Milliseconds()
		if p.refill > 0 && ms == 0 {
			ms = 1 // 0 says none yet
		}
		out = append(out, plane.PoolState{ID: id, Hash: p.spec.Hash, Size: p.spec.Size, Ready: []string{}, RefillMillis: ms})
	}
	slices.SortFunc(out, func(x, y plane.PoolState) int { return strings.Compare(x.ID, y.ID) })
	for i := range out {
		byID[out[i].ID] = &out[i]
	}
	for id, b := range a.members {
		m := b.member
		ps := byID[m.pool]
		// A draining drone's members are on their way out.
		if ps == nil || m.hash != ps.Hash || !m.counts() || a.draining {
			continue
		}
		if m.ready {
			ps.Ready = append(ps.Ready, id)
		} else {
			ps.Starting++
		}
	}
	for i := range out {
		slices.Sort(out[i].Ready)
	}
	return out
}
