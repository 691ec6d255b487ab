package main

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver, to read pg_stat_activity

	"plane"
	"plane/drone/docker"
	"plane/drone/docker/dockertest"
	"plane/server/postgres/pgtest"
)

// The two stores a controller can have, as the benchmarks name them.
const (
	storeSQLite   = "sqlite"
	storePostgres = "postgres"
)

// storeTarget is one controller of a store benchmark, or raw Docker.
type storeTarget struct {
	name string
	c    *cluster // nil: raw Docker
}

// BenchmarkStoreSpawnReady compares spawn → ready through the API on a
// controller with the sqlite store, on one with a Postgres store, and the
// same image started by raw Docker SDK calls (create, start, first HTTP
// response, as BenchmarkSpawnReady measures it). The three alternate within
// each round, their order rotating from round to round, so that whatever
// else the machine does falls on all of them alike.
//
// make bench writes the medians to the "store-spawn" section of
// docs/benchmarks.md; it skips without Docker or Postgres (see pgtest).
func BenchmarkStoreSpawnReady(b *testing.B) {
	rounds := envInt("PLANE_BENCH_STORE_ROUNDS", 30)
	const warmup = 2
	rt := dockertest.Runtime(b)
	dsn := pgtest.DSN(b)
	b.Cleanup(func() { dockertest.RemoveDroneContainers(b, rawDroneID) })
	targets := []storeTarget{
		{name: storeSQLite, c: newCluster(b, clusterOpts{})},
		{name: storePostgres, c: newCluster(b, clusterOpts{store: dsn})},
		{name: "docker"},
	}
	ctx := context.Background()
	samples := map[string][]time.Duration{}
	for range b.N {
		for i := range rounds + warmup {
			for k := range targets {
				t := targets[(i+k)%len(targets)]
				var d time.Duration
				if t.c != nil {
					d = spawnReadyAPI(b, t.c, rt)
				} else {
					d = spawnReadyDocker(ctx, b, rt, rawDroneID)
				}
				if i >= warmup { // the first rounds warm caches on every side
					samples[t.name] = append(samples[t.name], d)
				}
			}
		}
	}
	lite, pg, raw := samples[storeSQLite], samples[storePostgres], samples["docker"]
	ratio := float64(median(pg)) / float64(median(lite))
	b.ReportMetric(ms(median(lite)), "sqlite-ms")
	b.ReportMetric(ms(median(pg)), "postgres-ms")
	b.ReportMetric(ms(median(raw)), "docker-ms")
	b.ReportMetric(ratio, "pg/sqlite")
	// The same ratio round by round: the two spawns of a round ran seconds
	// apart, so it is less moved by load that comes and goes.
	paired := make([]float64, len(lite))
	for i := range lite {
		paired[i] = float64(pg[i]) / float64(lite[i])
	}
	b.Logf("spawn→ready over %d rounds: sqlite median %.1f ms (p90 %.1f), postgres median %.1f ms (p90 %.1f), raw Docker median %.1f ms (p90 %.1f), postgres/sqlite %.3f (median of the rounds' ratios %.3f)",
		len(lite), ms(median(lite)), ms(pct(lite, 0.9)), ms(median(pg)), ms(pct(pg, 0.9)), ms(median(raw)), ms(pct(raw, 0.9)), ratio, medianFloat(paired))
	met := "met"
	if ratio > 1.1 {
		met = "missed"
	}
	row := func(what string, ds []time.Duration) string {
		return fmt.Sprintf("| %s | %.1f ms | %.1f ms | %.2f× |\n", what, ms(median(ds)), ms(pct(ds, 0.9)), float64(median(ds))/float64(median(raw)))
	}
	writeBenchDoc(b, "store-spawn", fmt.Sprintf(`## Spawn → ready: sqlite store vs Postgres store vs raw Docker

%s, %d rounds after %d warm-up rounds, the three in each round in rotating order (`+"`make bench`"+`, BenchmarkStoreSpawnReady; alone: `+"`go test -run '^$' -bench BenchmarkStoreSpawnReady -benchtime 1x ./cmd/plane/`"+`). Two clusters side by side in the benchmark's process, each a controller with its own nats-server and a drone, one on the default sqlite store, one on a Postgres database (pgtest's throw-away Postgres on loopback: `+"`fsync=off`, `synchronous_commit=off`"+`; sqlite runs WAL with `+"`synchronous=NORMAL`"+`, so neither waits for the disk on commit).

| path | median | p90 | median vs raw Docker |
| --- | ---: | ---: | ---: |
`+row("API on the sqlite store, `POST /api/v1/backends` with `wait: true`", lite)+
		row("API on the Postgres store, the same", pg)+
		row("raw Docker SDK: create + start + first HTTP response", raw)+`
Median ratio Postgres / sqlite: **%.3f** (target ≤ 1.1: %s); the median of the rounds' own ratios: %.3f.
`, machine(), len(lite), warmup, ratio, met, medianFloat(paired)))
}

// spawnReadyAPI spawns the demo image through c's API with "wait": true,
// returns how long the answer took, and terminates the backend, waiting
// until its container is gone so that the next round starts clean.
func spawnReadyAPI(b *testing.B, c *cluster, rt *docker.Runtime) time.Duration {
	b.Helper()
	start := time.Now()
	_, be := c.spawn(map[string]any{"image": "demo", "wait": true})
	d := time.Since(start)
	if be.Status != plane.StatusReady {
		b.Fatalf("backend %s is %s (%s)", be.ID, be.Status, be.Error)
	}
	c.call(http.MethodPost, "/api/v1/backends/"+be.ID+"/terminate", map[string]bool{"hard": true})
	c.waitStatus(be.ID, plane.StatusTerminated, 30*time.Second)
	eventually(b, 30*time.Second, "container removed", func() bool {
		_, err := rt.Inspect(context.Background(), "plane-"+be.ID)
		return err != nil
	})
	return d
}

// rawDroneID labels the containers spawnReadyDocker starts, so that a
// failed run's are removed.
const rawDroneID = "storebenchraw"

// spawnReadyDocker starts the demo image with raw Docker SDK calls, as a
// container of droneID, and returns the time to its first HTTP response:
// the raw Docker side of the spawn benchmarks.
func spawnReadyDocker(ctx context.Context, b *testing.B, rt *docker.Runtime, droneID string) time.Duration {
	b.Helper()
	id := "bench" + randHex(4)
	start := time.Now()
	ctr, err := rt.Start(ctx, docker.ContainerSpec{BackendID: id, DroneID: droneID, ImageRef: dockertest.DemoImage, Port: 8080,
		Env: map[string]string{"PORT": "8080", "PLANE_BACKEND_ID": id}})
	if err != nil {
		b.Fatal(err)
	}
	for !probe(ctx, "http://"+ctr.Address+"/") {
		time.Sleep(probeInterval)
	}
	d := time.Since(start)
	if err := rt.Remove(ctx, ctr.ID); err != nil {
		b.Fatal(err)
	}
	return d
}

// BenchmarkStoreReads measures the API's read throughput on each store:
// GET /api/v1/backends/{id} of a ready backend with an API token, from
// concurrent keep-alive clients for a fixed time, the two controllers
// alternating round by round. Each request reads the token's record and
// the backend with its status history from the store.
//
// make bench writes the medians to the "store-reads" section of
// docs/benchmarks.md.
func BenchmarkStoreReads(b *testing.B) {
	rounds := envInt("PLANE_BENCH_STORE_READ_ROUNDS", 10)
	dur := time.Duration(envInt("PLANE_BENCH_STORE_READ_SECONDS", 3)) * time.Second
	workers := envInt("PLANE_BENCH_STORE_WORKERS", 16)
	dockertest.Runtime(b)
	dsn := pgtest.DSN(b)
	targets := []*readTarget{
		newReadTarget(b, storeSQLite, newCluster(b, clusterOpts{}), workers),
		newReadTarget(b, storePostgres, newCluster(b, clusterOpts{store: dsn}), workers),
	}
	targets[1].server = openServerCPU(b, dsn)
	for range b.N {
		for _, t := range targets { // warm-up: connections, statement caches
			t.run(b, workers, time.Second)
		}
		for i := range rounds {
			for k := range targets {
				t := targets[(i+k)%len(targets)]
				t.rounds = append(t.rounds, t.run(b, workers, dur))
			}
		}
	}
	lite, pg := targets[0], targets[1]
	lr, pr := lite.medianRate(), pg.medianRate()
	ratio := pr / lr
	paired := make([]float64, len(pg.rounds))
	for i := range pg.rounds {
		paired[i] = pg.rounds[i].rate() / lite.rounds[i].rate()
	}
	b.ReportMetric(lr, "sqlite-req/s")
	b.ReportMetric(pr, "postgres-req/s")
	b.ReportMetric(ratio, "pg/sqlite")
	for _, t := range targets {
		b.Logf("%s: %.0f req/s (rounds %s), p50 %.2f ms, p99 %.2f ms, CPU per request %.0f µs in this process, %.0f µs in Postgres",
			t.name, t.medianRate(), t.roundRates(), ms(t.latency(0.5)), ms(t.latency(0.99)), t.cpuPerRequest(false), t.cpuPerRequest(true))
	}
	b.Logf("postgres/sqlite requests/s %.3f (median of the rounds' ratios %.3f)", ratio, medianFloat(paired))
	met := "met"
	if ratio < 1/1.1 {
		met = "missed"
	}
	row := func(t *readTarget) string {
		server := "–"
		if t.server != nil {
			server = fmt.Sprintf("%.0f µs", t.cpuPerRequest(true))
		}
		return fmt.Sprintf("| %s | %.0f | %.2f ms | %.2f ms | %.0f µs | %s | %s |\n",
			t.name, t.medianRate(), ms(t.latency(0.5)), ms(t.latency(0.99)), t.cpuPerRequest(false), server, t.roundRates())
	}
	writeBenchDoc(b, "store-reads", fmt.Sprintf(`## API reads: sqlite store vs Postgres store

%s (`+"`make bench`"+`, BenchmarkStoreReads; alone: `+"`go test -run '^$' -bench BenchmarkStoreReads -benchtime 1x ./cmd/plane/`"+`). Two clusters as in the spawn benchmark above, each with one ready backend; %d keep-alive clients in the benchmark's process send `+"`GET /api/v1/backends/{id}`"+` with an API token for %s per round, the two controllers alternating over %d rounds after a 1 s warm-up each; medians of the rounds. Each request reads the token's record (the last-use write is at most once a minute) and, in one read transaction, the backend and its status history. Load generator, controller and Postgres share the machine's cores; sqlite runs in the controller's process, Postgres in its own (its CPU is that of the controller's connections, from `+"`/proc/<pid>/stat`"+`).

| store | requests/s | p50 | p99 | CPU per request: benchmark's process | Postgres server | each round, requests/s |
| --- | ---: | ---: | ---: | ---: | ---: | --- |
`+row(lite)+row(pg)+`
Requests/s Postgres / sqlite: **%.2f×** (the 1.1× target of spawns, applied to reads, would need ≥ 0.91×: %s); the median of the rounds' own ratios: %.2f×.
`, machine(), workers, dur, rounds, ratio, met, medianFloat(paired)))
}

// readTarget is one controller under read load and what its rounds gave.
type readTarget struct {
	name   string
	url    string
	token  string
	client *http.Client
	server *serverCPU // Postgres's backends serving the controller; nil for sqlite
	rounds []readRound
}

type readRound struct {
	n       int
	elapsed time.Duration
	cpu     time.Duration // user + system time of this process
	server  time.Duration // and of the Postgres backends serving the controller
	lat     []time.Duration
}

// newReadTarget spawns the backend the load reads on c.
func newReadTarget(b *testing.B, name string, c *cluster, workers int) *readTarget {
	b.Helper()
	_, be := c.spawn(map[string]any{"image": "demo", "wait": true})
	if be.Status != plane.StatusReady {
		b.Fatalf("backend %s is %s (%s)", be.ID, be.Status, be.Error)
	}
	tr := &http.Transport{MaxIdleConnsPerHost: workers, MaxIdleConns: workers}
	b.Cleanup(tr.CloseIdleConnections)
	return &readTarget{name: name, url: c.api + "/api/v1/backends/" + be.ID, token: c.token, client: &http.Client{Transport: tr}}
}

// run sends GETs from workers goroutines for d.
func (t *readTarget) run(b *testing.B, workers int, d time.Duration) readRound {
	b.Helper()
	var (
		mu    sync.Mutex
		round readRound
		fail  error
		wg    sync.WaitGroup
	)
	cpu0, server0 := cpuTime(), t.server.cpu(b)
	start := time.Now()
	deadline := start.Add(d)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat []time.Duration
			var err error
			for err == nil && time.Now().Before(deadline) {
				s := time.Now()
				err = t.get()
				lat = append(lat, time.Since(s))
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				fail = err
				return
			}
			round.n += len(lat)
			round.lat = append(round.lat, lat...)
		}()
	}
	wg.Wait()
	round.elapsed, round.cpu = time.Since(start), cpuTime()-cpu0
	round.server = t.server.cpu(b) - server0
	if fail != nil {
		b.Fatalf("%s: %v", t.name, fail)
	}
	return round
}

func (t *readTarget) get() error {
	req, err := http.NewRequest(http.MethodGet, t.url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+t.token)
	resp, err := t.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %d %s", t.url, resp.StatusCode, body)
	}
	return nil
}

func (r readRound) rate() float64 { return float64(r.n) / r.elapsed.Seconds() }

func (t *readTarget) medianRate() float64 {
	rates := make([]float64, len(t.rounds))
	for i, r := range t.rounds {
		rates[i] = r.rate()
	}
	return medianFloat(rates)
}

// medianFloat picks like pct(…, 0.5): the upper of two middle values.
func medianFloat(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

func (t *readTarget) roundRates() string {
	s := ""
	for i, r := range t.rounds {
		if i > 0 {
			s += " "
		}
		s += fmt.Sprintf("%.0f", r.rate())
	}
	return s
}

// latency is the p-th quantile of every request of every round.
func (t *readTarget) latency(p float64) time.Duration {
	var all []time.Duration
	for _, r := range t.rounds {
		all = append(all, r.lat...)
	}
	return pct(all, p)
}

// cpuPerRequest is the CPU time per request, in µs, of this process
// (controller, its store's client or sqlite, and the load generator), or
// with server of the Postgres backends serving the controller.
func (t *readTarget) cpuPerRequest(server bool) float64 {
	var cpu time.Duration
	n := 0
	for _, r := range t.rounds {
		if server {
			cpu += r.server
		} else {
			cpu += r.cpu
		}
		n += r.n
	}
	if n == 0 {
		return 0
	}
	return float64(cpu.Microseconds()) / float64(n)
}

// cpuTime is the user and system time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// serverCPU reads the CPU time of the Postgres backend processes connected
// to one database, found in pg_stat_activity through a connection of its
// own (left out). The processes are listed at each reading: a connection
// the controller opens between two readings is counted from its start.
// Only processes of this machine whose title names the database count, so
// a Postgres elsewhere (PLANE_TEST_POSTGRES) reads as 0, not as another
// process's time.
type serverCPU struct {
	db     *sql.DB
	dbname string
	seen   map[int]time.Duration
}

func openServerCPU(b *testing.B, dsn string) *serverCPU {
	b.Helper()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		b.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	b.Cleanup(func() { db.Close() })
	s := &serverCPU{db: db, seen: map[int]time.Duration{}}
	if err := db.QueryRow(`SELECT current_database()`).Scan(&s.dbname); err != nil {
		b.Fatal(err)
	}
	return s
}

// cpu is the CPU time the database's backends have used, summed over
// every backend seen so far (an ended one keeps its last reading).
func (s *serverCPU) cpu(b *testing.B) time.Duration {
	if s == nil {
		return 0
	}
	rows, err := s.db.Query(`SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`)
	if err != nil {
		b.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var pid int
		if err := rows.Scan(&pid); err != nil {
			b.Fatal(err)
		}
		title, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
		if err != nil || !strings.Contains(string(title), " "+s.dbname+" ") {
			continue // "postgres: user database host(port) state"
		}
		if d, ok := procCPU(pid); ok {
			s.seen[pid] = d
		}
	}
	if err := rows.Err(); err != nil {
		b.Fatal(err)
	}
	var sum time.Duration
	for _, d := range s.seen {
		sum += d
	}
	return sum
}

// procCPU reads a process's user and system time from /proc/<pid>/stat.
func procCPU(pid int) (time.Duration, bool) {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// The fields after the command, which may hold spaces, in parentheses.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return 0, false
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	const clockTick = 10 * time.Millisecond // USER_HZ: 100 on Linux
	return time.Duration(utime+stime) * clockTick, true
}
