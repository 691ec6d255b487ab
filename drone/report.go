package drone

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"plane"
)

// heartbeatLoop publishes a heartbeat every HeartbeatInterval, and one
// soon after beatSoon asks, refreshes the list of cached images now and
// then, and prunes old records.
func (a *Agent) heartbeatLoop(ctx context.Context) {
	a.refreshImages(ctx)
	a.beat(false)
	a.wg.Go(func() { every(ctx, 30*time.Second, a.refreshImages) })
	a.wg.Go(func() { every(ctx, time.Hour, a.pruneTerminated) })
	tick := time.NewTicker(a.cfg.HeartbeatInterval)
	defer tick.Stop()
	var soon <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			a.beat(false)
		case <-a.beatKick:
			if soon == nil {
				// At most one extra beat per beatCoalesce: a burst of
				// changes (a pool filling) is told in one.
				last := time.Unix(0, a.lastBeat.Load())
				soon = time.After(max(0, beatCoalesce-time.Since(last)))
			}
		case <-soon:
			soon = nil
			a.beat(false)
		}
	}
}

// beatCoalesce is the least time between a beat and one beatSoon asks for.
const beatCoalesce = 100 * time.Millisecond

// beatSoon asks for a heartbeat within beatCoalesce, so that the
// controller hears at once of a change it acts on: a pool member ready, or
// claimed.
func (a *Agent) beatSoon() {
	select {
	case a.beatKick <- struct{}{}:
	default:
	}
}

// keepTerminated is how long the drone remembers terminated backends, so
// that its proxy answers 410 rather than 404 for them.
const keepTerminated = 7 * 24 * time.Hour

func (a *Agent) pruneTerminated(ctx context.Context) {
	n, err := a.cfg.Store.DeleteTerminatedBefore(ctx, time.Now().Add(-keepTerminated))
	if err != nil {
		a.log.Warn("prune terminated backends", "err", err)
		return
	}
	if n > 0 {
		a.log.Info("pruned terminated backends", "count", n)
	}
}

func (a *Agent) refreshImages(ctx context.Context) {
	imgs, err := a.cfg.Runtime.Images(ctx)
	if err != nil {
		a.log.Warn("list images", "err", err)
		return
	}
	slices.Sort(imgs)
	a.mu.Lock()
	a.images = imgs
	a.mu.Unlock()
}

// beat publishes one heartbeat; stopping marks the last one of a drone that
// shuts down, so that the controller stops placing backends on it at once.
func (a *Agent) beat(stopping bool) {
	a.mu.Lock()
	live := make([]string, 0, len(a.backends))
	for id := range a.backends {
		live = append(live, id)
	}
	hb := plane.Heartbeat{
		ProtocolVersion: plane.ProtocolVersion,
		DroneID:         a.cfg.ID,
		Address:         a.cfg.Address,
		ProxyAddress:    a.cfg.ProxyAddress,
		Version:         a.cfg.Version,
		Draining:        a.draining,
		Stopping:        stopping,
		Capacity:        a.cfg.Capacity,
		LiveBackends:    live,
		Images:          a.images,
		Pools:           a.poolStatesLocked(),
		Time:            time.Now(),
	}
	a.mu.Unlock()
	a.lastBeat.Store(hb.Time.UnixNano())
	hb.CPUPercent, hb.MemoryBytes = hostLoad()
	if a.cfg.CertStatus != nil {
		hb.CertNotAfter, hb.CertError = a.cfg.CertStatus()
	}
	if a.cfg.Proxy != nil {
		hb.ProxyError = a.cfg.Proxy.Health()
	}
	data, err := json.Marshal(hb)
	if err != nil {
		a.log.Error("encode heartbeat", "err", err)
		return
	}
	if err := a.cfg.NATS.Publish(plane.SubjectHeartbeat, data); err != nil {
		a.log.Warn("publish heartbeat", "err", err)
	}
	if stopping {
		_ = a.cfg.NATS.Flush()
	}
}

// statsLoop publishes each ready backend's stats every ActivityInterval:
// its connections, users and last activity, fresh from the proxy, and its CPU and
// memory as last sampled by sampleLoop (Docker's stats call is slow).
func (a *Agent) statsLoop(ctx context.Context) {
	a.wg.Go(func() { every(ctx, a.cfg.StatsInterval, a.sample) })
	every(ctx, a.cfg.ActivityInterval, a.publishStats)
}

// every calls fn every d until ctx is done.
func every(ctx context.Context, d time.Duration, fn func(context.Context)) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn(ctx)
		}
	}
}

// publishStats publishes each ready backend's stats once.
func (a *Agent) publishStats(context.Context) {
	for _, b := range a.readyBackends() {
		b.mu.Lock()
		s := b.usage
		b.mu.Unlock()
		s.BackendID, s.Time = b.id, time.Now()
		s.Connections, s.LastActivity = a.activity(b.id)
		if a.cfg.Proxy != nil {
			s.Users = a.cfg.Proxy.Users(b.id)
		}
		data, _ := json.Marshal(s)
		if err := a.cfg.NATS.Publish(plane.SubjectBackendStats(b.id), data); err != nil {
			b.log.Warn("publish stats", "err", err)
		}
	}
}

// ActivityInterval is how often backend stats are published.
const ActivityInterval = 2 * time.Second

// sample samples each ready backend's CPU and memory, one after the other.
func (a *Agent) sample(ctx context.Context) {
	for _, b := range a.readyBackends() {
		b.mu.Lock()
		cid := b.rec.ContainerID
		b.mu.Unlock()
		sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		st, err := a.cfg.Runtime.Stats(sctx, cid)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				b.log.Debug("stats", "err", err)
			}
			continue
		}
		b.mu.Lock()
		b.usage.CPUPercent, b.usage.MemoryBytes, b.usage.MemoryLimit = st.CPUPercent, st.MemoryBytes, st.MemoryLimit
		b.mu.Unlock()
	}
	a.enforceSuspendBudget()
}

// enforceSuspendBudget ends the longest-suspended backends, as idle, while
// the suspended ones hold more memory than SuspendMemoryBytes: a paused
// container keeps its memory, and the ones nobody came back to for the
// longest are the least likely to be missed.
func (a *Agent) enforceSuspendBudget() {
	if a.cfg.SuspendMemoryBytes <= 0 {
		return
	}
	type held struct {
		b     *backend
		since time.Time
		bytes int64
	}
	var suspended []held
	var total int64
	for _, b := range a.readyBackends() {
		b.mu.Lock()
		h := held{b, b.suspended, int64(b.usage.MemoryBytes)}
		b.mu.Unlock()
		if !h.since.IsZero() {
			suspended = append(suspended, h)
			total += h.bytes
		}
	}
	slices.SortFunc(suspended, func(x, y held) int { return x.since.Compare(y.since) })
	for _, h := range suspended {
		if total <= a.cfg.SuspendMemoryBytes {
			return
		}
		h.b.log.Info("suspended backends hold more memory than the budget: ending the longest suspended",
			"suspended_bytes", total, "budget_bytes", a.cfg.SuspendMemoryBytes, "suspended_since", h.since)
		h.b.terminate(false, plane.ReasonIdle)
		total -= h.bytes
	}
}

func (a *Agent) readyBackends() []*backend {
	a.mu.Lock()
	defer a.mu.Unlock()
	var ready []*backend
	for _, b := range a.backends {
		b.mu.Lock()
		if b.rec.Status == plane.StatusReady {
			ready = append(ready, b)
		}
		b.mu.Unlock()
	}
	return ready
}

// maxLogLine bounds one forwarded log line; longer lines are cut.
const maxLogLine = 16 << 10

// forwardLogs queues the container's output, line by line, for the logs
// stream until the container's output ends.
func (a *Agent) forwardLogs(ctx context.Context, backendID, containerID string) {
	subject := plane.SubjectBackendLogs(backendID)
	err := a.cfg.Runtime.Logs(ctx, containerID, true, func(stream, line string) {
		if len(line) > maxLogLine {
			line = line[:maxLogLine]
		}
		data, _ := json.Marshal(plane.LogLine{BackendID: backendID, Time: time.Now(), Stream: stream, Text: line})
		// Through the outbox, like status changes: a line written while
		// NATS is away waits for it. The id lets the stream drop a line
		// published twice (an acknowledgement lost); the agent's start
		// keeps ids apart across restarts.
		id := backendID + "." + a.started + "." + strconv.FormatUint(a.logSeq.Add(1), 36)
		if _, err := a.cfg.Store.Enqueue(ctx, subject, id, data); err != nil {
			a.log.Warn("queue log line", "backend", backendID, "err", err)
			return
		}
		a.out.notify()
	})
	if err != nil && ctx.Err() == nil {
		a.log.Warn("follow logs", "backend", backendID, "err", err)
	}
}

// hostLoad returns the machine's load as a CPU percentage (1-minute load
// average over cores) and its used memory, from /proc; zeros elsewhere.
func hostLoad() (cpuPercent float64, memUsed uint64) {
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			if l, err := strconv.ParseFloat(f[0], 64); err == nil {
				cpuPercent = l / float64(runtime.NumCPU()) * 100
			}
		}
	}
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return cpuPercent, 0
	}
	defer f.Close()
	var total, avail uint64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		v, _ := strconv.ParseUint(fields[1], 10, 64)
		switch fields[0] {
		case "MemTotal:":
			total = v * 1024
		case "MemAvailable:":
			avail = v * 1024
		}
	}
	if total > avail {
		memUsed = total - avail
	}
	return cpuPercent, memUsed
}
