package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"plane/drone/proxy"
)

// BenchmarkProxySoak puts the drone's proxy (`plane drone` as its own
// process) through a long run of connections that come and go, then lets
// it sit idle, and fails unless its open descriptors and resident memory
// come back to where they were before: a leaked connection, goroutine or
// buffer would show as a level that stays up. Through the proxy, to one
// public demo backend:
//
//   - PLANE_BENCH_SOAK_SHORT (100,000) short connections, one GET /healthz
//     each with Connection: close, PLANE_BENCH_SOAK_PARALLEL (32) at a time;
//   - PLANE_BENCH_SOAK_WS (5,000) WebSocket open/echo/close cycles, half
//     closed with the closing handshake and half dropped without one,
//     PLANE_BENCH_SOAK_PARALLEL at a time;
//   - PLANE_BENCH_SOAK_KEEPALIVE (200) keep-alive clients at once, each
//     requesting GET /healthz on one connection for
//     PLANE_BENCH_SOAK_KEEPALIVE_FOR (10 s);
//
// then PLANE_BENCH_SOAK_WAIT (90 s) of nothing, longer than the proxy's
// upstream idle timeout (60 s), after which the kept-alive backend
// connections must have been closed too.
//
// The baseline is taken after a warm-up (the same three kinds of load,
// smaller) once the proxy's kept-alive backend connections have expired:
// both ends of the comparison are a proxy idle for a minute or more with
// an empty pool, whose heap has seen the same concurrency.
//
// Quick run (about 2.5 minutes: the idle timeout is waited out twice):
// PLANE_BENCH_SOAK_SHORT=2000 PLANE_BENCH_SOAK_KEEPALIVE=20
// PLANE_BENCH_SOAK_KEEPALIVE_FOR=2s PLANE_BENCH_SOAK_WS=200
// PLANE_BENCH_SOAK_WAIT=70s. A wait shorter than the idle timeout leaves
// the keep-alive clients' backend connections open, and fails.
//
// make bench writes the results to the "soak" section of docs/benchmarks.md.
func BenchmarkProxySoak(b *testing.B) {
	cfg := soakConfig{
		short:        envInt("PLANE_BENCH_SOAK_SHORT", 100000),
		parallel:     envInt("PLANE_BENCH_SOAK_PARALLEL", 32),
		keepAlive:    envInt("PLANE_BENCH_SOAK_KEEPALIVE", 200),
		keepAliveFor: envDuration(b, "PLANE_BENCH_SOAK_KEEPALIVE_FOR", 10*time.Second),
		ws:           envInt("PLANE_BENCH_SOAK_WS", 5000),
		wait:         envDuration(b, "PLANE_BENCH_SOAK_WAIT", 90*time.Second),
	}
	c := newCluster(b, clusterOpts{noDrone: true})
	dp := startBenchDrone(b, c)
	c.waitDrone()
	be, direct := spawnBenchBackend(b, c)
	tg := soakTarget{
		addr: dp.addr, host: be.ID + ".plane.localhost",
		ws: wsTarget{name: "proxy", url: "ws://" + be.ID + ".plane.localhost/ws", client: fixedAddrClient(dp.addr)},
	}
	eventually(b, 10*time.Second, "the proxy to answer /healthz", func() bool {
		return httpTarget{name: "proxy", addr: tg.addr, host: tg.host}.healthy()
	})
	m := &soakMonitor{pid: dp.pid(), proxyPort: portOf(b, dp.addr), backendPort: portOf(b, direct)}
	drainWithin := proxy.DefaultUpstreamIdleTimeout + 30*time.Second

	var res soakResults
	for range b.N {
		// Warm-up: page in every path and grow the heap to this load's
		// size, in the soak's order, then idle until the pool has expired,
		// as it will after the soak. Both readings are then of a proxy
		// idle for about a minute after the same keep-alive load, which
		// sets how much memory the Go runtime keeps: a warm-up ending with
		// WebSocket cycles (their tunnels take the pooled connections, so
		// the pool empties at once) gave baselines 3 to 5 MB lower, most
		// of the 10% allowed: a difference made by when the last GC ran,
		// not by a leak.
		warm := soakConfig{short: min(cfg.short, 2000), parallel: cfg.parallel, keepAlive: cfg.keepAlive,
			keepAliveFor: min(cfg.keepAliveFor, 5*time.Second), ws: min(cfg.ws, 200)}
		warmed := runSoakPhases(b, tg, m, warm, soakOrder...)
		res.warm = warm
		start := time.Now()
		res.baseline = m.waitIdle(b, drainWithin, func(s soakSample) bool { return s.upstream == 0 })
		res.goBaseline = dp.goMem()
		b.Logf("warm-up: %d short connections, %d WebSocket cycles, %d keep-alive requests (%d clients for %s); peak %d fds, %.1f MB RSS; pool empty %.0f s after",
			warmed[0].count, warmed[1].count, warmed[2].count, warm.keepAlive, warm.keepAliveFor,
			soakPeak(warmed).fds, float64(soakPeak(warmed).rssKB)/1024, time.Since(start).Seconds())
		b.Logf("baseline: %s; Go heap %d MB, stacks %d MB (GC %d)", res.baseline, res.goBaseline.heapMB, res.goBaseline.stacks, res.goBaseline.n)

		res.phases = runSoakPhases(b, tg, m, cfg, soakOrder...)
		for _, ph := range res.phases {
			b.Logf("soak: %s", ph)
		}

		// Idle: nothing but the poll, once a second.
		res.fdLimit = res.baseline.fds + max((res.baseline.fds+9)/10, soakFDSlack)
		res.rssLimitKB = res.baseline.rssKB + res.baseline.rssKB/10
		res.waited = cfg.wait
		start = time.Now()
		for {
			s := m.sample(b)
			s.at = time.Since(start)
			res.timeline = append(res.timeline, s)
			if s.at >= cfg.wait {
				break
			}
			time.Sleep(min(time.Second, cfg.wait-s.at))
		}
		res.after, res.goAfter = res.timeline[len(res.timeline)-1], dp.goMem()
	}
	res.report(b, cfg)
}

// soakFDSlack is the least growth of open descriptors the soak tolerates:
// the drone's own connections (NATS, Docker's API) come and go while it
// idles, a few at a time, whatever the proxy did.
const soakFDSlack = 8

type soakConfig struct {
	short        int // short connections
	parallel     int // short connections and WebSocket cycles at a time
	keepAlive    int // keep-alive clients
	keepAliveFor time.Duration
	ws           int // WebSocket cycles
	wait         time.Duration
}

type soakTarget struct {
	addr string // the proxy
	host string // the backend's Host
	ws   wsTarget
}

// ---- load ----

// soakPhase is what one kind of load did.
type soakPhase struct {
	name     string
	count    int64 // requests or cycles done
	failed   int64
	firstErr error
	took     time.Duration
	peak     soakSample // highest descriptors and memory seen while it ran
}

func (p soakPhase) String() string {
	s := fmt.Sprintf("%s: %d in %.1f s (%.0f/s), %d failed; peak %d fds, %.1f MB RSS",
		p.name, p.count, p.took.Seconds(), float64(p.count)/p.took.Seconds(), p.failed, p.peak.fds, float64(p.peak.rssKB)/1024)
	if p.firstErr != nil {
		s += "; first error: " + p.firstErr.Error()
	}
	return s
}

// The kinds of load, for runSoakPhases.
const (
	loadShort = iota
	loadKeepAlive
	loadWebSocket
)

// soakOrder puts the keep-alive clients last: the pool is then at its
// fullest when the load stops, and the idle wait sees it expire. (A
// WebSocket upgrade takes a pooled connection for its tunnel, so cycles
// after them would empty it at once.)
var soakOrder = []int{loadShort, loadWebSocket, loadKeepAlive}

// runSoakPhases runs the kinds of load in order, one after the other, each
// watched by m for its peaks, and fails the benchmark if a request failed.
func runSoakPhases(b *testing.B, tg soakTarget, m *soakMonitor, cfg soakConfig, order ...int) []soakPhase {
	b.Helper()
	type load struct {
		name string
		run  func(ctx context.Context, p *soakPhase)
	}
	loads := map[int]load{
		loadShort: {fmt.Sprintf("short connections (Connection: close, %d at a time)", cfg.parallel),
			func(ctx context.Context, p *soakPhase) { shortConns(ctx, tg, cfg.short, cfg.parallel, p) }},
		loadKeepAlive: {fmt.Sprintf("keep-alive requests (%d clients for %s)", cfg.keepAlive, cfg.keepAliveFor),
			func(ctx context.Context, p *soakPhase) { keepAliveClients(ctx, tg, cfg.keepAlive, cfg.keepAliveFor, p) }},
		loadWebSocket: {fmt.Sprintf("WebSocket open/echo/close cycles (%d at a time)", cfg.parallel),
			func(ctx context.Context, p *soakPhase) { wsCycles(ctx, tg, cfg.ws, cfg.parallel, p) }},
	}
	var phases []soakPhase
	for _, kind := range order {
		l := loads[kind]
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		p := soakPhase{name: l.name}
		stop := m.watch(b)
		start := time.Now()
		l.run(ctx, &p)
		p.took = time.Since(start)
		p.peak = stop()
		cancel()
		if p.failed > 0 || p.count == 0 {
			b.Fatalf("load failed: %s", p)
		}
		phases = append(phases, p)
	}
	return phases
}

// failures counts what went wrong in a phase's workers and keeps the first.
type failures struct {
	mu    sync.Mutex
	n     int64
	first error
}

func (f *failures) add(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	if f.first == nil {
		f.first = err
	}
}

// healthz is GET /healthz on tg, as a client writes it.
func (tg soakTarget) healthz(close bool) string {
	s := "GET /healthz HTTP/1.1\r\nHost: " + tg.host + "\r\n"
	if close {
		s += "Connection: close\r\n"
	}
	return s + "\r\n"
}

// readOK reads one response and its body, and wants the demo's 200 "ok".
func readOK(br *bufio.Reader) (*http.Response, error) {
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("body: %w", err)
	}
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != "ok" {
		return nil, fmt.Errorf("answer %d %q", resp.StatusCode, body)
	}
	return resp, nil
}

// shortConns makes n connections, parallel at a time, each sending one
// request with Connection: close and reading until the proxy closes: the
// proxy closing first, as it must, leaves TIME_WAIT on its side, where it
// costs no descriptor, and the client's ports free for reuse.
func shortConns(ctx context.Context, tg soakTarget, n, parallel int, p *soakPhase) {
	var next, done atomic.Int64
	var fails failures
	req := tg.healthz(true)
	one := func() error {
		conn, err := (&net.Dialer{Timeout: 10 * time.Second}).DialContext(ctx, "tcp", tg.addr)
		if err != nil {
			return err
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := io.WriteString(conn, req); err != nil {
			return err
		}
		br := bufio.NewReader(conn)
		if _, err := readOK(br); err != nil {
			return err
		}
		if _, err := br.ReadByte(); err != io.EOF {
			return fmt.Errorf("after the answer to Connection: close: %v, want EOF", err)
		}
		return nil
	}
	var wg sync.WaitGroup
	for range min(parallel, n) {
		wg.Go(func() {
			for ctx.Err() == nil && next.Add(1) <= int64(n) {
				if err := one(); err != nil {
					fails.add(err)
					continue
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	p.count, p.failed, p.firstErr = done.Load(), fails.n, fails.first
	if ctx.Err() != nil && p.firstErr == nil {
		p.failed, p.firstErr = 1, ctx.Err()
	}
}

// keepAliveClients opens n connections at once and has each send requests
// one after the other for d; then they close.
func keepAliveClients(ctx context.Context, tg soakTarget, n int, d time.Duration, p *soakPhase) {
	var done atomic.Int64
	var fails failures
	req := tg.healthz(false)
	end := time.Now().Add(d)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			conn, err := (&net.Dialer{Timeout: 10 * time.Second}).DialContext(ctx, "tcp", tg.addr)
			if err != nil {
				fails.add(err)
				return
			}
			defer conn.Close()
			br := bufio.NewReader(conn)
			for ctx.Err() == nil && time.Now().Before(end) {
				_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
				if _, err := io.WriteString(conn, req); err != nil {
					fails.add(err)
					return
				}
				resp, err := readOK(br)
				if err != nil {
					fails.add(err)
					return
				}
				if resp.Close {
					fails.add(errors.New("the proxy closed a keep-alive connection"))
					return
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	p.count, p.failed, p.firstErr = done.Load(), fails.n, fails.first
}

// wsCycles opens n WebSockets, parallel at a time, sends one message on
// each and reads its echo, then closes it: even ones with the closing
// handshake, odd ones by dropping the connection, as a closed browser tab
// does. The two take different ways out of the proxy's tunnel.
func wsCycles(ctx context.Context, tg soakTarget, n, parallel int, p *soakPhase) {
	var next, done atomic.Int64
	var fails failures
	one := func(i int64) error {
		ws, err := tg.ws.dial(ctx)
		if err != nil {
			return err
		}
		ectx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := echo(ectx, ws, []byte("soak "+strconv.FormatInt(i, 10))); err != nil {
			ws.CloseNow()
			return err
		}
		if i%2 == 1 {
			return ws.CloseNow()
		}
		return ws.Close(websocket.StatusNormalClosure, "")
	}
	var wg sync.WaitGroup
	for range min(parallel, n) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				if err := one(i); err != nil {
					fails.add(fmt.Errorf("cycle %d: %w", i, err))
					continue
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	p.count, p.failed, p.firstErr = done.Load(), fails.n, fails.first
}

// ---- the drone process, watched ----

// soakSample is the drone process at one moment.
type soakSample struct {
	at       time.Duration // since the load ended, in the idle wait
	fds      int
	rssKB    int64
	clients  int // sockets of client connections to the proxy
	upstream int // sockets of connections to the backend
}

func (s soakSample) String() string {
	return fmt.Sprintf("%d fds (%d client and %d backend connections), %.1f MB RSS",
		s.fds, s.clients, s.upstream, float64(s.rssKB)/1024)
}

// soakMonitor reads the drone process's descriptors and memory from /proc.
type soakMonitor struct {
	pid                    int
	proxyPort, backendPort int
}

// sample reads the descriptors, the memory, and which of the sockets are
// connections of clients or to the backend.
func (m *soakMonitor) sample(b *testing.B) soakSample {
	b.Helper()
	s := soakSample{rssKB: rssKB(b, m.pid)}
	var err error
	if s.fds, s.clients, s.upstream, err = m.connections(); err != nil {
		b.Fatal(err)
	}
	return s
}

// connections counts the drone's descriptors, and among them the TCP
// sockets whose local port is the proxy's (client connections, the
// listener aside) and whose remote port is the backend's published one
// (the proxy's connections to it).
func (m *soakMonitor) connections() (fds, clients, upstream int, err error) {
	dir := "/proc/" + strconv.Itoa(m.pid)
	ents, err := os.ReadDir(dir + "/fd")
	if err != nil {
		return 0, 0, 0, err
	}
	fds = len(ents)
	mine := map[string]bool{}
	for _, e := range ents {
		l, err := os.Readlink(filepath.Join(dir, "fd", e.Name()))
		if err != nil {
			continue // closed since ReadDir
		}
		if inode, ok := strings.CutPrefix(l, "socket:["); ok {
			mine[strings.TrimSuffix(inode, "]")] = true
		}
	}
	for _, table := range []string{"tcp", "tcp6"} {
		f, err := os.Open(dir + "/net/" + table)
		if err != nil {
			return 0, 0, 0, err
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // the heading
		for sc.Scan() {
			// sl local rem st queues timer retransmits uid timeout inode
			fl := strings.Fields(sc.Text())
			if len(fl) < 10 || !mine[fl[9]] || fl[3] == "0A" { // 0A: LISTEN
				continue
			}
			switch {
			case hexPort(fl[1]) == m.proxyPort:
				clients++
			case hexPort(fl[2]) == m.backendPort:
				upstream++
			}
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return 0, 0, 0, err
		}
	}
	return fds, clients, upstream, nil
}

// hexPort is the port of a /proc/net/tcp address, "0100007F:1F90".
func hexPort(addr string) int {
	_, h, _ := strings.Cut(addr, ":")
	p, err := strconv.ParseUint(h, 16, 16)
	if err != nil {
		return -1
	}
	return int(p)
}

// watch samples descriptors and memory every 100 ms until the returned
// function is called, which returns the highest of each. Only the cheap
// counts: the socket tables are long while 100,000 closed connections sit
// in TIME_WAIT.
func (m *soakMonitor) watch(b *testing.B) (stop func() soakSample) {
	b.Helper()
	var peak soakSample
	var mu sync.Mutex
	var readErr error
	record := func() {
		fds := openFDs(m.pid)
		rss, err := readRSSKB(m.pid)
		mu.Lock()
		defer mu.Unlock()
		if err != nil && readErr == nil {
			readErr = err
		}
		peak.fds, peak.rssKB = max(peak.fds, fds), max(peak.rssKB, rss)
	}
	done := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			record()
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() soakSample {
		close(done)
		<-exited
		record()
		if readErr != nil {
			b.Fatal(readErr)
		}
		return peak
	}
}

// waitIdle polls once a second until ok holds, for at most within, and
// returns the sample that satisfied it.
func (m *soakMonitor) waitIdle(b *testing.B, within time.Duration, ok func(soakSample) bool) soakSample {
	b.Helper()
	deadline := time.Now().Add(within)
	for {
		s := m.sample(b)
		if ok(s) {
			return s
		}
		if time.Now().After(deadline) {
			b.Fatalf("the drone did not settle within %s: %s", within, s)
		}
		time.Sleep(time.Second)
	}
}

func portOf(tb testing.TB, addr string) int {
	tb.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		tb.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		tb.Fatalf("port of %q: %v", addr, err)
	}
	return n
}

// envDuration reads a duration such as "90s" from the environment; a value
// that does not parse is an error rather than the default, so that a typo
// does not run the long soak unasked.
func envDuration(tb testing.TB, name string, def time.Duration) time.Duration {
	tb.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		tb.Fatalf("%s=%q: want a positive duration such as 90s", name, v)
	}
	return d
}

// ---- report ----

type soakResults struct {
	warm                soakConfig
	phases              []soakPhase
	baseline, after     soakSample
	goBaseline, goAfter gcTrace
	fdLimit             int
	rssLimitKB          int64
	waited              time.Duration
	timeline            []soakSample // the idle wait, once a second
}

// soakPeak is the highest of the phases' peaks.
func soakPeak(phases []soakPhase) soakSample {
	var p soakSample
	for _, ph := range phases {
		p.fds, p.rssKB = max(p.fds, ph.peak.fds), max(p.rssKB, ph.peak.rssKB)
	}
	return p
}

// every10s renders the idle wait's first sample, one every ten seconds
// after it, and the last.
func (r *soakResults) every10s(f func(soakSample) string) string {
	var out []string
	next := time.Duration(0)
	for i, s := range r.timeline {
		if s.at >= next || i == len(r.timeline)-1 {
			out = append(out, f(s))
			next = s.at.Truncate(10*time.Second) + 10*time.Second
		}
	}
	return strings.Join(out, " ")
}

// settled returns when, in the idle wait, ok began to hold for good; false
// if it did not hold at the end.
func (r *soakResults) settled(ok func(soakSample) bool) (time.Duration, bool) {
	at, held := time.Duration(0), false
	for _, s := range r.timeline {
		switch {
		case !ok(s):
			held = false
		case !held:
			at, held = s.at, true
		}
	}
	return at, held
}

func (r *soakResults) report(b *testing.B, cfg soakConfig) {
	peak := soakPeak(r.phases)
	fdsOK := func(s soakSample) bool { return s.fds <= r.fdLimit }
	rssOK := func(s soakSample) bool { return s.rssKB <= r.rssLimitKB }
	fdsAt, fdsBack := r.settled(fdsOK)
	rssAt, rssBack := r.settled(rssOK)
	poolAt, poolEmpty := r.settled(func(s soakSample) bool { return s.upstream == 0 })
	when := func(at time.Duration, ok bool) string {
		if !ok {
			return fmt.Sprintf("**not within %s**", r.waited)
		}
		return fmt.Sprintf("%.0f s", at.Seconds())
	}
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "**missed**"
	}
	mb := func(kb int64) string { return fmt.Sprintf("%.1f MB", float64(kb)/1024) }

	for _, ph := range r.phases {
		b.ReportMetric(float64(ph.count)/ph.took.Seconds(), strings.Fields(ph.name)[0]+"/s")
	}
	b.ReportMetric(float64(r.after.fds-r.baseline.fds), "fds-after-baseline")
	b.ReportMetric(float64(r.after.rssKB)/float64(r.baseline.rssKB), "rss-after/baseline")
	b.ReportMetric(fdsAt.Seconds(), "fds-back-s")
	fdsEvery := r.every10s(func(s soakSample) string { return strconv.Itoa(s.fds) })
	rssEvery := r.every10s(func(s soakSample) string { return fmt.Sprintf("%.1f", float64(s.rssKB)/1024) })
	b.Logf("idle, every 10 s: fds %s; RSS MB %s", fdsEvery, rssEvery)
	b.Logf("idle for %s: %s (baseline %s); FDs within %d (baseline + max(10%%, %d)) from +%s, RSS within %s (baseline + 10%%) from +%s, no backend connections from +%s",
		r.waited, r.after, r.baseline, r.fdLimit, soakFDSlack, when(fdsAt, fdsBack), mb(r.rssLimitKB), when(rssAt, rssBack), when(poolAt, poolEmpty))

	var sb strings.Builder
	fmt.Fprintf(&sb, "## Proxy soak: descriptors and memory come back\n\n")
	fmt.Fprintf(&sb, "%s (`make bench`, BenchmarkProxySoak; alone: `go test -run '^$' -bench BenchmarkProxySoak -benchtime 1x ./cmd/plane/`). "+
		"One public backend (plane-demo, `DEMO_QUIET=1`) behind `plane drone` run as its own process, whose open descriptors (`/proc/<pid>/fd`) "+
		"and resident memory (VmRSS) are read; the load comes from the benchmark process over loopback, every request `GET /healthz` "+
		"with `Host: <id>.plane.localhost`.\n\n", machine())
	fmt.Fprintf(&sb, "Sizes: `PLANE_BENCH_SOAK_SHORT=%d PLANE_BENCH_SOAK_PARALLEL=%d PLANE_BENCH_SOAK_KEEPALIVE=%d PLANE_BENCH_SOAK_KEEPALIVE_FOR=%s "+
		"PLANE_BENCH_SOAK_WS=%d PLANE_BENCH_SOAK_WAIT=%s`. The baseline is read after a warm-up "+
		"(%d short connections, %d WebSocket cycles, %d keep-alive clients for %s) once the proxy's kept-alive backend connections have expired, "+
		"so that both readings are of a proxy idle for a minute or more after the same keep-alive load, with an empty pool. "+
		"The keep-alive clients come last, so that the idle wait starts with the pool at its fullest.\n\n",
		cfg.short, cfg.parallel, cfg.keepAlive, cfg.keepAliveFor, cfg.ws, cfg.wait,
		r.warm.short, r.warm.ws, r.warm.keepAlive, r.warm.keepAliveFor)
	sb.WriteString("| load | done | time | rate | failed | peak fds | peak RSS |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, ph := range r.phases {
		fmt.Fprintf(&sb, "| %s | %d | %.1f s | %.0f/s | %d | %d | %s |\n",
			ph.name, ph.count, ph.took.Seconds(), float64(ph.count)/ph.took.Seconds(), ph.failed, ph.peak.fds, mb(ph.peak.rssKB))
	}
	fmt.Fprintf(&sb, "\nWebSocket cycles: one message echoed on each, then half closed with the closing handshake and half dropped without one.\n\n")
	fmt.Fprintf(&sb, "Then %s idle (the proxy closes backend connections unused for %s), polled once a second.\n\n", r.waited, proxy.DefaultUpstreamIdleTimeout)
	sb.WriteString("| | baseline | peak | after the idle wait | limit | back within the limit after |\n| --- | ---: | ---: | ---: | ---: | ---: |\n")
	fmt.Fprintf(&sb, "| open descriptors | %d | %d | %d | %d | %s |\n", r.baseline.fds, peak.fds, r.after.fds, r.fdLimit, when(fdsAt, fdsBack))
	fmt.Fprintf(&sb, "| of them, client connections | %d | | %d | | |\n", r.baseline.clients, r.after.clients)
	fmt.Fprintf(&sb, "| of them, backend connections | %d | | %d | | %s |\n", r.baseline.upstream, r.after.upstream, when(poolAt, poolEmpty))
	fmt.Fprintf(&sb, "| resident memory | %s | %s | %s | %s | %s |\n", mb(r.baseline.rssKB), mb(peak.rssKB), mb(r.after.rssKB), mb(r.rssLimitKB), when(rssAt, rssBack))
	fmt.Fprintf(&sb, "| Go heap, goroutine stacks (last GC trace) | %d MB, %d MB (GC %d) | | %d MB, %d MB (GC %d) | | |\n",
		r.goBaseline.heapMB, r.goBaseline.stacks, r.goBaseline.n, r.goAfter.heapMB, r.goAfter.stacks, r.goAfter.n)
	fmt.Fprintf(&sb, "\nDuring the idle wait, every 10 s: open descriptors %s; resident memory (MB) %s.\n", fdsEvery, rssEvery)
	fdsAfterOK, rssAfterOK := fdsOK(r.after), rssOK(r.after)
	fmt.Fprintf(&sb, "\nLimits: descriptors baseline + max(10%%, %d) (%s), memory baseline + 10%% (%s).\n", soakFDSlack, verdict(fdsAfterOK), verdict(rssAfterOK))
	writeBenchDoc(b, "soak", sb.String())

	if !fdsAfterOK || !rssAfterOK {
		b.Fatalf("after %s idle the drone holds %s; baseline %s; limits %d fds (baseline + max(10%%, %d)) and %s RSS (baseline + 10%%)",
			r.waited, r.after, r.baseline, r.fdLimit, soakFDSlack, mb(r.rssLimitKB))
	}
}
