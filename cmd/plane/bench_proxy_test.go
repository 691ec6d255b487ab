package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"plane"
)

// nginxBin is Debian's nginx, the reference the proxy is measured against.
const nginxBin = "/usr/sbin/nginx"

// BenchmarkProxy measures the drone's proxy (run as its own `plane drone`
// process, so that its memory is its own) against the backend's published
// port and against nginx in front of the same backend:
//
//   - requests/s and p50/p99 latency of GET /healthz with wrk, the three
//     targets alternating over rounds after a warm-up round;
//   - WebSocket message round trips on 1,000 open connections per target,
//     the targets alternating message by message;
//   - the resident memory that 5,000 held WebSockets add to the proxy's
//     process, and to nginx's workers.
//
// make bench writes the results to the "proxy" section of docs/benchmarks.md.
func BenchmarkProxy(b *testing.B) {
	wrkBin, err := exec.LookPath("wrk")
	if err != nil {
		b.Skip("wrk is not installed: apt-get install wrk")
	}
	if _, err := os.Stat(nginxBin); err != nil {
		b.Skip(nginxBin + " is not installed: apt-get install nginx-light")
	}
	cfg := proxyBenchConfig{
		rounds:   envInt("PLANE_BENCH_PROXY_ROUNDS", 5),
		duration: time.Duration(envInt("PLANE_BENCH_PROXY_SECONDS", 5)) * time.Second,
		conns:    envInt("PLANE_BENCH_PROXY_CONNS", 64),
		wsOpen:   envInt("PLANE_BENCH_PROXY_WS", 1000),
		held:     envInt("PLANE_BENCH_PROXY_HELD", 5000),
	}

	c := newCluster(b, clusterOpts{noDrone: true})
	dp := startBenchDrone(b, c)
	c.waitDrone()
	be, direct := spawnBenchBackend(b, c)
	ng := startNginx(b, direct, "")
	host := be.ID + ".plane.localhost"

	httpTargets := []httpTarget{
		{name: "proxy", addr: dp.addr, host: host},
		{name: "direct", addr: direct},
		{name: "nginx", addr: ng.addr},
	}
	for _, t := range httpTargets {
		eventually(b, 10*time.Second, t.name+" answers /healthz", func() bool { return t.healthy() })
	}
	wsProxy := wsTarget{name: "proxy", url: "ws://" + host + "/ws", client: fixedAddrClient(dp.addr)}
	wsDirect := wsTarget{name: "direct", url: "ws://" + direct + "/ws", client: fixedAddrClient(direct)}
	wsNginx := wsTarget{name: "nginx", url: "ws://" + ng.addr + "/ws", client: fixedAddrClient(ng.addr)}

	var res proxyBenchResults
	for range b.N {
		// Held connections first, while neither process has grown its
		// heap for other work: what 5,000 WebSockets add is then theirs.
		res.heldProxy = measureHeld(b, wsProxy, cfg.held, func() int64 { return rssKB(b, dp.pid()) }, dp.goMem, func() int { return openFDs(dp.pid()) })
		res.heldNginx = measureHeld(b, wsNginx, cfg.held, func() int64 { return ng.workersRSSKB(b) }, nil, nil)
		res.ws = measureRoundTrips(b, []wsTarget{wsProxy, wsDirect, wsNginx}, cfg.wsOpen, cfg.rounds)
		res.wrkCmd, res.http = measureHTTP(b, wrkBin, httpTargets, cfg)
	}
	res.report(b, cfg)
}

type proxyBenchConfig struct {
	rounds   int
	duration time.Duration
	conns    int
	wsOpen   int
	held     int
}

type proxyBenchResults struct {
	wrkCmd               string
	http                 map[string]httpStats
	ws                   map[string]wsStats
	heldProxy, heldNginx heldStats
}

// ---- requests/s with wrk ----

type httpTarget struct {
	name string
	addr string // host:port wrk connects to
	host string // Host header, when not addr
}

func (t httpTarget) url() string { return "http://" + t.addr + "/healthz" }

func (t httpTarget) healthy() bool {
	req, _ := http.NewRequest(http.MethodGet, t.url(), nil)
	if t.host != "" {
		req.Host = t.host
	}
	resp, err := noKeepAlive.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode == 200 && strings.TrimSpace(string(body)) == "ok"
}

func (t httpTarget) wrkArgs(cfg proxyBenchConfig) []string {
	args := []string{"-t1", "-c" + strconv.Itoa(cfg.conns), "-d" + strconv.Itoa(int(cfg.duration/time.Second)) + "s", "--latency"}
	if t.host != "" {
		args = append(args, "-H", "Host: "+t.host)
	}
	return append(args, t.url())
}

type httpStats struct {
	rps      float64
	p50, p99 time.Duration
	rounds   []wrkResult
}

// measureHTTP runs wrk against each target in turn, rotating the order
// every round; round 0 warms up and is not counted.
func measureHTTP(b *testing.B, wrkBin string, targets []httpTarget, cfg proxyBenchConfig) (string, map[string]httpStats) {
	rounds := map[string][]wrkResult{}
	for round := 0; round <= cfg.rounds; round++ {
		for k := range targets {
			t := targets[(k+round)%len(targets)]
			r := runWrk(b, wrkBin, t.wrkArgs(cfg), cfg.duration)
			if round > 0 {
				rounds[t.name] = append(rounds[t.name], r)
			}
			b.Logf("wrk round %d %-6s %9.0f req/s  p50 %7.3f ms  p99 %7.3f ms", round, t.name, r.rps, ms(r.p50), ms(r.p99))
		}
	}
	out := map[string]httpStats{}
	for name, rs := range rounds {
		var rps, p50, p99 []time.Duration
		for _, r := range rs {
			rps = append(rps, time.Duration(r.rps*1000)) // milli-requests/s, to reuse median
			p50, p99 = append(p50, r.p50), append(p99, r.p99)
		}
		out[name] = httpStats{rps: float64(median(rps)) / 1000, p50: median(p50), p99: median(p99), rounds: rs}
	}
	cmd := fmt.Sprintf("wrk -t1 -c%d -d%ds --latency [-H 'Host: <id>.plane.localhost'] http://127.0.0.1:<port>/healthz", cfg.conns, int(cfg.duration/time.Second))
	return cmd, out
}

type wrkResult struct {
	rps      float64
	p50, p99 time.Duration
	requests int64
	errors   int64 // socket errors of any kind
}

func runWrk(b *testing.B, bin string, args []string, d time.Duration) wrkResult {
	ctx, cancel := context.WithTimeout(context.Background(), d+30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if err != nil {
		b.Fatalf("wrk %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	r, err := parseWrk(string(out))
	if err != nil {
		b.Fatalf("wrk %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	if r.errors*100 > r.requests {
		b.Fatalf("wrk %s: %d socket errors in %d requests\n%s", strings.Join(args, " "), r.errors, r.requests, out)
	}
	return r
}

var (
	wrkRPS      = regexp.MustCompile(`(?m)^Requests/sec:\s*([0-9.]+)\s*([kKMG]?)\s*$`)
	wrkPct      = regexp.MustCompile(`(?m)^\s*(50|99)(?:\.0+)?%\s+([0-9.]+)\s*(us|ms|s|m|h)\s*$`)
	wrkRequests = regexp.MustCompile(`(?m)^\s*([0-9]+) requests in `)
	wrkNon2xx   = regexp.MustCompile(`(?m)^\s*Non-2xx or 3xx responses:\s*([0-9]+)`)
	wrkSockErrs = regexp.MustCompile(`Socket errors: connect ([0-9]+), read ([0-9]+), write ([0-9]+), timeout ([0-9]+)`)
)

// parseWrk reads requests/s and the 50th and 99th latency percentiles from
// wrk --latency's report; a non-2xx response is an error.
func parseWrk(out string) (wrkResult, error) {
	var r wrkResult
	m := wrkRPS.FindStringSubmatch(out)
	if m == nil {
		return r, errors.New("no Requests/sec line")
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return r, fmt.Errorf("requests/sec %q: %v", m[1], err)
	}
	r.rps = v * map[string]float64{"": 1, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9}[m[2]]
	for _, m := range wrkPct.FindAllStringSubmatch(out, -1) {
		v, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			return r, fmt.Errorf("latency %q: %v", m[2], err)
		}
		unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second, "m": time.Minute, "h": time.Hour}[m[3]]
		d := time.Duration(math.Round(v * float64(unit)))
		if m[1] == "50" {
			r.p50 = d
		} else {
			r.p99 = d
		}
	}
	if r.p50 == 0 || r.p99 == 0 {
		return r, errors.New("no 50% and 99% latency lines (was --latency given?)")
	}
	if m := wrkRequests.FindStringSubmatch(out); m != nil {
		r.requests, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if r.requests == 0 {
		return r, errors.New("no requests completed")
	}
	if m := wrkNon2xx.FindStringSubmatch(out); m != nil && m[1] != "0" {
		return r, fmt.Errorf("%s responses were not 2xx or 3xx", m[1])
	}
	if m := wrkSockErrs.FindStringSubmatch(out); m != nil {
		for _, s := range m[1:] {
			n, _ := strconv.ParseInt(s, 10, 64)
			r.errors += n
		}
	}
	return r, nil
}

// ---- WebSockets ----

type wsTarget struct {
	name   string
	url    string
	client *http.Client
}

// fixedAddrClient connects to addr whatever the URL's host is, as a client
// resolving <id>.plane.localhost to the proxy would.
func fixedAddrClient(addr string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		},
	}}
}

func (t wsTarget) dial(ctx context.Context) (*websocket.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, t.url, &websocket.DialOptions{HTTPClient: t.client, CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("%w (status %d)", err, resp.StatusCode)
		}
		return nil, err
	}
	return ws, nil
}

func echo(ctx context.Context, ws *websocket.Conn, msg []byte) error {
	if err := ws.Write(ctx, websocket.MessageText, msg); err != nil {
		return err
	}
	_, got, err := ws.Read(ctx)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, msg) {
		return fmt.Errorf("echo %q, want %q", got, msg)
	}
	return nil
}

// openWS opens n WebSockets to t, parallel at a time, and checks each with
// one echo. On any failure it closes what it opened.
func openWS(t wsTarget, n, parallel int) ([]*websocket.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	conns := make([]*websocket.Conn, n)
	var next atomic.Int64
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	for range min(parallel, n) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				ws, err := t.dial(ctx)
				if err == nil {
					if err = echo(ctx, ws, []byte("hello "+strconv.Itoa(i))); err != nil {
						ws.CloseNow()
					}
				}
				if err != nil {
					mu.Lock()
					if first == nil {
						first = fmt.Errorf("%s WebSocket %d of %d: %w", t.name, i+1, n, err)
					}
					mu.Unlock()
					cancel()
					return
				}
				conns[i] = ws
			}
		})
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		first = fmt.Errorf("%s: opening %d WebSockets: %w", t.name, n, ctx.Err())
	}
	if first != nil {
		closeWS(conns)
		return nil, first
	}
	return conns, nil
}

func closeWS(conns []*websocket.Conn) {
	for _, ws := range conns {
		if ws != nil {
			ws.CloseNow()
		}
	}
}

type wsStats struct {
	p50, p99 time.Duration
	samples  int
}

// measureRoundTrips opens n WebSockets per target, then, round by round,
// sends one small message on every connection in turn and times its echo,
// one at a time. The targets alternate message by message (their order
// rotating), so that a slow moment of the machine falls on all of them
// alike rather than on one target's block. Round 0 warms up.
func measureRoundTrips(b *testing.B, targets []wsTarget, n, rounds int) map[string]wsStats {
	open := map[string][]*websocket.Conn{}
	defer func() {
		for _, conns := range open {
			closeWS(conns)
		}
	}()
	for _, t := range targets {
		conns, err := openWS(t, n, 50)
		if err != nil {
			b.Fatal(err)
		}
		open[t.name] = conns
	}
	samples := map[string][]time.Duration{}
	msg := []byte("ping")
	for round := 0; round <= rounds; round++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		for i := range n {
			for k := range targets {
				t := targets[(k+i+round)%len(targets)]
				start := time.Now()
				if err := echo(ctx, open[t.name][i], msg); err != nil {
					cancel()
					b.Fatalf("%s WebSocket %d, round %d: %v", t.name, i, round, err)
				}
				if round > 0 {
					samples[t.name] = append(samples[t.name], time.Since(start))
				}
			}
		}
		cancel()
	}
	out := map[string]wsStats{}
	for name, s := range samples {
		out[name] = wsStats{p50: median(s), p99: pct(s, 0.99), samples: len(s)}
		b.Logf("WebSocket round trip %-6s over %d open: p50 %.1f µs, p99 %.1f µs (%d samples)", name, n, us(median(s)), us(pct(s, 0.99)), len(s))
	}
	return out
}

type heldStats struct {
	n                 int
	beforeKB, afterKB int64
	perConnKB         float64
	goBefore, goAfter gcTrace // proxy only
	fds               int     // proxy only: descriptors open while holding
}

// measureHeld opens n WebSockets to t, holds them, and reports what they
// add to the resident memory that rss reads. A short warm-up first pages in
// the code paths, so that the difference is the connections' own cost.
func measureHeld(b *testing.B, t wsTarget, n int, rss func() int64, goMem func() gcTrace, fds func() int) heldStats {
	warm, err := openWS(t, min(200, n), 50)
	if err != nil {
		b.Fatal(err)
	}
	closeWS(warm)
	time.Sleep(3 * time.Second)
	s := heldStats{n: n, beforeKB: rss()}
	if goMem != nil {
		s.goBefore = goMem()
	}
	conns, err := openWS(t, n, 100)
	if err != nil {
		b.Fatal(err)
	}
	defer closeWS(conns)
	time.Sleep(3 * time.Second) // let the handshakes' garbage be collected
	s.afterKB = rss()
	if goMem != nil {
		s.goAfter = goMem()
	}
	if fds != nil {
		s.fds = fds()
	}
	s.perConnKB = float64(s.afterKB-s.beforeKB) / float64(n)
	b.Logf("%d held WebSockets through %s: RSS %d → %d kB, %.1f KB per connection", n, t.name, s.beforeKB, s.afterKB, s.perConnKB)
	return s
}

// ---- the drone process ----

// benchDrone is `plane drone` as its own process, with the Go runtime's GC
// trace on stderr so that its heap can be read without instrumenting it.
type benchDrone struct {
	cmd  *exec.Cmd
	log  *syncBuffer
	addr string
}

func startBenchDrone(b *testing.B, c *cluster) *benchDrone {
	b.Helper()
	addr := "127.0.0.1:" + freePort(b)
	log := &syncBuffer{}
	cmd := exec.Command(planeBin, "drone", "--data", b.TempDir(), "--id", c.droneID, "--nats", c.ns.ClientURL(),
		"--ip", "127.0.0.1", "--proxy", addr, "--log-level", "info")
	cmd.Env = append(os.Environ(), "GODEBUG=gctrace=1")
	startChild(b, cmd, log, nil, func() {
		if b.Failed() {
			b.Logf("drone process log:\n%s", lastLines(log.String(), 200))
		}
	})
	d := &benchDrone{cmd: cmd, log: log, addr: addr}
	eventually(b, 10*time.Second, "drone proxy listening on "+addr, func() bool {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
		}
		return err == nil
	})
	return d
}

func (d *benchDrone) pid() int { return d.cmd.Process.Pid }

// spawnBenchBackend starts the demo image as a public backend (no token
// needed, as for a load generator), quiet and with the longest idle limit
// so that it outlives any benchmark, and returns it with its published
// address.
func spawnBenchBackend(b *testing.B, c *cluster) (backendOut, string) {
	b.Helper()
	c.registerImage(c.project.ID, "bench", "plane-demo:latest", plane.PullNever)
	if _, err := c.ctrl.DB.UpdateImage(context.Background(), c.project.ID, "bench", plane.ImageInput{Public: ptr(true)}); err != nil {
		b.Fatal(err)
	}
	_, be := c.spawn(map[string]any{"image": "bench", "env": map[string]string{"DEMO_QUIET": "1"},
		"max_idle_seconds": plane.MaxIdleSeconds, "wait": true})
	if be.Status != plane.StatusReady {
		b.Fatalf("backend %s is %s (%s)", be.ID, be.Status, be.Error)
	}
	direct := inspect(b, be.ID).Address
	if direct == "" {
		b.Fatalf("backend %s has no published port", be.ID)
	}
	return be, direct
}

// gcTrace is what the last gctrace line says: the live heap after marking,
// and the goroutine stacks, in MB.
type gcTrace struct {
	n              int
	heapMB, stacks int64
}

var gcLine = regexp.MustCompile(`(?m)^gc ([0-9]+) @.*?, ([0-9]+)->([0-9]+)->([0-9]+) MB, [0-9]+ MB goal, ([0-9]+) MB stacks`)

func (d *benchDrone) goMem() gcTrace {
	ms := gcLine.FindAllStringSubmatch(d.log.String(), -1)
	if len(ms) == 0 {
		return gcTrace{}
	}
	m := ms[len(ms)-1]
	n, _ := strconv.Atoi(m[1])
	heap, _ := strconv.ParseInt(m[4], 10, 64)
	stacks, _ := strconv.ParseInt(m[5], 10, 64)
	return gcTrace{n: n, heapMB: heap, stacks: stacks}
}

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ---- nginx ----

type nginxProc struct {
	cmd  *exec.Cmd
	addr string
	dir  string
}

// startNginx runs nginx in the foreground with its own configuration on a
// free loopback port, proxying to upstream with keep-alive connections and
// WebSocket upgrades, and stops it (SIGTERM to its master) at the end.
// extra holds more directives for the http block. It returns once nginx
// answers GET /healthz with 200 from upstream.
func startNginx(tb testing.TB, upstream, extra string) *nginxProc {
	tb.Helper()
	// Workers run as nobody when nginx starts as root: the folder must be
	// readable to them.
	dir, err := os.MkdirTemp("", "plane-bench-nginx-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		tb.Fatal(err)
	}
	nofile := min(lim.Max, 65536)
	addr := "127.0.0.1:" + freePort(tb)
	conf := fmt.Sprintf(`daemon off;
worker_processes auto;
worker_rlimit_nofile %[4]d;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events {
	worker_connections %[5]d;
}
http {
	access_log off;
	client_body_temp_path %[1]s/client_body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	keepalive_requests 1000000;
%[6]s
	upstream backend {
		server %[2]s;
		keepalive 256;
		keepalive_requests 1000000;
	}
	map $http_upgrade $connection_upgrade {
		default upgrade;
		'' '';
	}
	server {
		listen %[3]s;
		location / {
			proxy_pass http://backend;
			proxy_http_version 1.1;
			proxy_set_header Host $host;
			proxy_set_header Upgrade $http_upgrade;
			proxy_set_header Connection $connection_upgrade;
			proxy_buffering off;
			proxy_read_timeout 1h;
			proxy_send_timeout 1h;
		}
	}
}
`, dir, upstream, addr, nofile, nofile-1000, extra)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		tb.Fatal(err)
	}
	log := &syncBuffer{}
	cmd := exec.Command(nginxBin, "-p", dir, "-c", confPath, "-e", filepath.Join(dir, "error.log"))
	// A master that does not stop is killed with its workers, by pid.
	workers := func() []int { return childrenOf(cmd.Process.Pid) }
	exited := startChild(tb, cmd, log, workers, func() {
		// warn and worse only: anything there may bear on its numbers.
		if errLog, _ := os.ReadFile(filepath.Join(dir, "error.log")); len(errLog) > 0 || tb.Failed() {
			tb.Logf("nginx output:\n%s\nerror.log:\n%s", log.String(), lastLines(string(errLog), 50))
		}
	})
	ng := &nginxProc{cmd: cmd, addr: addr, dir: dir}
	deadline := time.Now().Add(10 * time.Second)
	for !answers200(addr) {
		select {
		case <-exited:
			errLog, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			tb.Fatalf("nginx exited: %s\n%s", log.String(), errLog)
		default:
		}
		if time.Now().After(deadline) {
			tb.Fatal("nginx did not answer /healthz within 10 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return ng
}

// answers200 reports whether GET /healthz on addr gets a 200, whatever the
// body: nginx is up and reaches its upstream, be it the demo or a recorder.
func answers200(addr string) bool {
	resp, err := noKeepAlive.Get("http://" + addr + "/healthz")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode == http.StatusOK
}

// startChild starts cmd with its output into out, as a child that dies with
// the benchmark's process should the cleanups not run, and stops it in a
// cleanup: SIGTERM, then, if it has not exited within 15 s, SIGKILL to it
// and to the processes that alsoKill (if not nil) lists just before. Once
// it has exited, the cleanup calls report. The returned channel is closed
// when cmd exits.
func startChild(tb testing.TB, cmd *exec.Cmd, out io.Writer, alsoKill func() []int, report func()) <-chan struct{} {
	tb.Helper()
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	tb.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			var others []int
			if alsoKill != nil {
				others = alsoKill()
			}
			_ = cmd.Process.Kill()
			for _, pid := range others {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			<-exited
		}
		report()
	})
	return exited
}

// workersRSSKB sums the resident memory of the master's children.
func (n *nginxProc) workersRSSKB(b *testing.B) int64 {
	kids := childrenOf(n.cmd.Process.Pid)
	if len(kids) == 0 {
		b.Fatal("nginx has no worker processes")
	}
	var sum int64
	for _, pid := range kids {
		sum += rssKB(b, pid)
	}
	return sum
}

// childrenOf lists the processes whose parent is pid.
func childrenOf(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	var kids []int
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			kids = append(kids, p)
		}
	}
	return kids
}

// rssKB reads VmRSS from /proc/<pid>/status.
func rssKB(tb testing.TB, pid int) int64 {
	tb.Helper()
	kb, err := readRSSKB(pid)
	if err != nil {
		tb.Fatal(err)
	}
	return kb
}

// readRSSKB is rssKB for goroutines that must not call Fatal.
func readRSSKB(pid int) (int64, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("VmRSS of %d: %q", pid, v)
			}
			return kb, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS for process %d", pid)
}

func openFDs(pid int) int {
	ents, _ := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	return len(ents)
}

func freePort(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1000 }

// ---- report ----

func (r *proxyBenchResults) report(b *testing.B, cfg proxyBenchConfig) {
	px, dx, nx := r.http["proxy"], r.http["direct"], r.http["nginx"]
	wp, wd, wn := r.ws["proxy"], r.ws["direct"], r.ws["nginx"]
	hp, hn := r.heldProxy, r.heldNginx
	rpsRatio := px.rps / nx.rps
	wsRatio := float64(wp.p50) / float64(wn.p50)
	goHeapKB := float64(hp.goAfter.heapMB-hp.goBefore.heapMB) * 1024 / float64(hp.n)
	goStackKB := float64(hp.goAfter.stacks-hp.goBefore.stacks) * 1024 / float64(hp.n)

	b.ReportMetric(px.rps, "proxy-req/s")
	b.ReportMetric(dx.rps, "direct-req/s")
	b.ReportMetric(nx.rps, "nginx-req/s")
	b.ReportMetric(rpsRatio, "req/s-ratio-nginx")
	b.ReportMetric(ms(px.p50), "proxy-p50-ms")
	b.ReportMetric(ms(px.p99), "proxy-p99-ms")
	b.ReportMetric(ms(nx.p50), "nginx-p50-ms")
	b.ReportMetric(ms(nx.p99), "nginx-p99-ms")
	b.ReportMetric(us(wp.p50), "ws-proxy-p50-µs")
	b.ReportMetric(us(wp.p99), "ws-proxy-p99-µs")
	b.ReportMetric(us(wn.p50), "ws-nginx-p50-µs")
	b.ReportMetric(us(wn.p99), "ws-nginx-p99-µs")
	b.ReportMetric(wsRatio, "ws-p50-ratio-nginx")
	b.ReportMetric(hp.perConnKB, "proxy-KB/ws")
	b.ReportMetric(hn.perConnKB, "nginx-KB/ws")
	b.Logf("requests/s (median of %d rounds): proxy %.0f, direct %.0f, nginx %.0f; proxy/nginx %.2f (target ≥ 1.0)", cfg.rounds, px.rps, dx.rps, nx.rps, rpsRatio)
	b.Logf("WebSocket round trip p50: proxy %.1f µs, direct %.1f µs, nginx %.1f µs; proxy/nginx %.2f (target ≤ 1.3)", us(wp.p50), us(wd.p50), us(wn.p50), wsRatio)
	b.Logf("held WebSockets: proxy %.1f KB each (Go heap %+.1f KB, stacks %+.1f KB; GC %d→%d), nginx %.1f KB each (target ≤ 30)",
		hp.perConnKB, goHeapKB, goStackKB, hp.goBefore.n, hp.goAfter.n, hn.perConnKB)

	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "**missed**"
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "## Proxy: drone proxy vs direct vs nginx\n\n")
	fmt.Fprintf(&sb, "%s, nginx %s, %s (`make bench`, BenchmarkProxy). One backend (plane-demo, `DEMO_QUIET=1`) "+
		"reached three ways on loopback: through the drone's proxy (`plane drone` as its own process, `Host: <id>.plane.localhost`), "+
		"directly on its published port, and through nginx started by the benchmark (`worker_processes auto`, `access_log off`, "+
		"upstream `keepalive 256`, `proxy_http_version 1.1`, `proxy_buffering off`, Upgrade/Connection headers). "+
		"Everything runs on the same machine: load generator, proxies and backend share its cores, "+
		"so other work on it shows as spread between rounds.\n\n",
		machine(), nginxVersion(), wrkVersion())

	fmt.Fprintf(&sb, "### HTTP: GET /healthz\n\n`%s`, the three targets alternating over %d rounds of %s after one warm-up round (order rotating each round); medians of the rounds.\n\n",
		r.wrkCmd, cfg.rounds, cfg.duration)
	sb.WriteString("| path | requests/s | p50 | p99 | requests/s vs nginx | each round, requests/s |\n| --- | ---: | ---: | ---: | ---: | --- |\n")
	for _, row := range reportRows(px, dx, nx) {
		var each []string
		for _, r := range row.s.rounds {
			each = append(each, fmt.Sprintf("%.1fk", r.rps/1000))
		}
		fmt.Fprintf(&sb, "| %s | %.0f | %.3f ms | %.3f ms | %.2f× | %s |\n", row.name, row.s.rps, ms(row.s.p50), ms(row.s.p99), row.s.rps/nx.rps, strings.Join(each, " "))
	}
	fmt.Fprintf(&sb, "\nProxy / nginx requests/s: **%.2f×** (target ≥ 1.0×: %s). Proxy / direct: %.2f×.\n\n", rpsRatio, verdict(rpsRatio >= 1.0), px.rps/dx.rps)

	fmt.Fprintf(&sb, "### WebSocket message round trip\n\n%d WebSockets open per target (github.com/coder/websocket client in the benchmark process); "+
		"one 4-byte text message sent and its echo read on each connection in turn, one at a time, the targets alternating message by message, "+
		"%d rounds over all connections after a warm-up round: %d samples per target.\n\n",
		cfg.wsOpen, cfg.rounds, wp.samples)
	sb.WriteString("| path | p50 | p99 | p50 vs nginx |\n| --- | ---: | ---: | ---: |\n")
	for _, row := range reportRows(wp, wd, wn) {
		fmt.Fprintf(&sb, "| %s | %.1f µs | %.1f µs | %.2f× |\n", row.name, us(row.s.p50), us(row.s.p99), float64(row.s.p50)/float64(wn.p50))
	}
	fmt.Fprintf(&sb, "\nProxy / nginx p50: **%.2f×** (target ≤ 1.3×: %s).\n\n", wsRatio, verdict(wsRatio <= 1.3))

	fmt.Fprintf(&sb, "### Held WebSockets: memory per connection\n\n%d WebSockets opened (100 at a time, each checked with one echo) and held; "+
		"resident memory (VmRSS) read before and 3 s after, following a warm-up of 200 connections opened and closed. "+
		"Proxy: the `plane drone` process; nginx: the sum of its workers.\n\n", hp.n)
	sb.WriteString("| process | RSS before | RSS holding | per connection |\n| --- | ---: | ---: | ---: |\n")
	fmt.Fprintf(&sb, "| drone proxy | %.1f MB | %.1f MB | %.1f KB |\n", float64(hp.beforeKB)/1024, float64(hp.afterKB)/1024, hp.perConnKB)
	fmt.Fprintf(&sb, "| nginx workers | %.1f MB | %.1f MB | %.1f KB |\n", float64(hn.beforeKB)/1024, float64(hn.afterKB)/1024, hn.perConnKB)
	fmt.Fprintf(&sb, "\nProxy: **%.1f KB** per held WebSocket (target ≤ 15 KB: %s), %.2f× nginx's. "+
		"Of that, the Go runtime's GC trace shows live heap %+.1f KB and goroutine stacks %+.1f KB per connection "+
		"(%d → %d MB heap, %d → %d MB stacks, MB resolution); the drone held %d descriptors.\n",
		hp.perConnKB, verdict(hp.perConnKB <= 15), hp.perConnKB/hn.perConnKB,
		goHeapKB, goStackKB, hp.goBefore.heapMB, hp.goAfter.heapMB, hp.goBefore.stacks, hp.goAfter.stacks, hp.fds)
	writeBenchDoc(b, "proxy", sb.String())
}

// reportRow is one line of a report table: a path and its numbers.
type reportRow[S any] struct {
	name string
	s    S
}

// reportRows names the three paths' numbers, in the tables' order.
func reportRows[S any](proxy, direct, nginx S) []reportRow[S] {
	return []reportRow[S]{{"drone proxy", proxy}, {"direct to the published port", direct}, {"nginx", nginx}}
}

func nginxVersion() string {
	out, _ := exec.Command(nginxBin, "-v").CombinedOutput()
	s := strings.TrimSpace(string(out))
	if _, v, ok := strings.Cut(s, "nginx/"); ok {
		return v
	}
	return s
}

func wrkVersion() string {
	out, _ := exec.Command("wrk", "-v").CombinedOutput()
	if f := strings.Fields(string(out)); len(f) >= 2 {
		return "wrk " + f[1]
	}
	return "wrk"
}

func TestParseWrk(t *testing.T) {
	out := `Running 5s test @ http://127.0.0.1:8080/healthz
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   717.53us  345.48us   1.02s    87.41%
    Req/Sec    89.94k     5.12k   97.01k    82.00%
  Latency Distribution
     50%  656.00us
     75%  790.00us
     90%    0.98ms
     99%    2.03ms
  447418 requests in 5.00s, 54.19MB read
  Socket errors: connect 0, read 3, write 0, timeout 2
Requests/sec:  89457.36
Transfer/sec:     10.84MB
`
	r, err := parseWrk(out)
	if err != nil {
		t.Fatal(err)
	}
	if r.rps != 89457.36 || r.p50 != 656*time.Microsecond || r.p99 != 2030*time.Microsecond || r.requests != 447418 || r.errors != 5 {
		t.Errorf("parsed %+v", r)
	}
	k := strings.NewReplacer("89457.36", "89.46k", "656.00us", "1.50s", "2.03ms", "1.20m").Replace(out)
	if r, err := parseWrk(k); err != nil || math.Abs(r.rps-89460) > 1e-6 || r.p50 != 1500*time.Millisecond || r.p99 != 72*time.Second {
		t.Errorf("units: %+v %v", r, err)
	}
	if _, err := parseWrk(strings.Replace(out, "  Socket errors", "  Non-2xx or 3xx responses: 12\n  Socket errors", 1)); err == nil {
		t.Error("non-2xx responses not reported")
	}
	if _, err := parseWrk(strings.Replace(out, "     99%    2.03ms\n", "", 1)); err == nil {
		t.Error("missing percentile not reported")
	}
}
