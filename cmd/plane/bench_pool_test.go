package main

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"plane"
	"plane/drone/docker/dockertest"
)

// BenchmarkWarmSpawn compares, in alternating rounds, spawn → ready
// through the API ("wait": true) from a warm pool, cold, and the same
// image started by raw Docker SDK calls; then a burst of 50 concurrent
// spawns served by a warm pool of 50. Each round starts with the pool
// full again, so that its refill does not load the other rounds.
//
// make bench writes the figures to the "warm" section of
// docs/benchmarks.md.
func BenchmarkWarmSpawn(b *testing.B) {
	rounds := envInt("PLANE_BENCH_ROUNDS", 30)
	burst := envInt("PLANE_BENCH_BURST", 50)
	c := newCluster(b, clusterOpts{})
	rt := dockertest.Runtime(b)
	ctx := context.Background()
	c.registerImage(c.project.ID, "warm", "plane-demo:latest", plane.PullNever)
	c.setWarmPool(b, "warm", 2)
	var warm, cold, raw []time.Duration
	for range b.N {
		for i := range rounds + 2 {
			c.waitPoolFull(b, "warm", 2)
			w := spawnWarm(b, c, "warm")
			c.waitPoolFull(b, "warm", 2)
			d := spawnReadyAPI(b, c, rt)
			c.waitPoolFull(b, "warm", 2)
			r := spawnReadyDocker(ctx, b, rt, c.droneID+"raw")
			if i >= 2 { // the first rounds warm caches on every side
				warm, cold, raw = append(warm, w), append(cold, d), append(raw, r)
			}
		}
	}

	// The burst: warm_pool 50, all ready, then 50 spawns at once.
	c.setWarmPool(b, "warm", burst)
	fillStart := time.Now()
	c.waitPoolFull(b, "warm", burst)
	fill := time.Since(fillStart)
	start := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var each []time.Duration
	warmed := 0
	for range burst {
		wg.Go(func() {
			s := time.Now()
			_, be := c.spawn(map[string]any{"image": "warm", "wait": true})
			d := time.Since(s)
			mu.Lock()
			defer mu.Unlock()
			each = append(each, d)
			if be.Status == plane.StatusReady && be.Warm != nil && *be.Warm {
				warmed++
			}
		})
	}
	wg.Wait()
	total := time.Since(start)

	mW, mC, mR := median(warm), median(cold), median(raw)
	b.ReportMetric(ms(mW), "warm-ms")
	b.ReportMetric(ms(mC), "cold-ms")
	b.ReportMetric(ms(mR), "docker-ms")
	b.ReportMetric(ms(total), "burst-ms")
	b.Logf("spawn→ready over %d rounds: warm median %.1f ms (p90 %.1f), cold %.1f ms (p90 %.1f), raw Docker %.1f ms (p90 %.1f); burst of %d: %.0f ms, %d warm (pool filled in %s)",
		len(warm), ms(mW), ms(pct(warm, 0.9)), ms(mC), ms(pct(cold, 0.9)), ms(mR), ms(pct(raw, 0.9)), burst, ms(total), warmed, fill.Round(time.Millisecond))
	if warmed != burst {
		b.Errorf("%d of the burst's %d spawns were warm, want all", warmed, burst)
	}
	writeBenchDoc(b, "warm", fmt.Sprintf(`## Spawn → ready from a warm pool

%s, %d alternating rounds after 2 warm-up rounds, each started with the pool full (`+"`make bench`"+`, BenchmarkWarmSpawn).

| path | median | p90 |
| --- | ---: | ---: |
| API, `+"`wait: true`"+`, warm: a pool's member claimed | %.1f ms | %.1f ms |
| API, `+"`wait: true`"+`, cold | %.1f ms | %.1f ms |
| raw Docker SDK: create + start + first HTTP response | %.1f ms | %.1f ms |

Warm / raw Docker: **%.3f** (%.1f× faster; target: warm p50 ≤ 20 ms). Cold / raw Docker: %.3f.

A burst of %d concurrent spawns (`+"`wait: true`"+`) with `+"`warm_pool: %d`"+`, all members ready: **%.0f ms** for all %d (%d warm; median %.1f ms, slowest %.1f ms; target < 1 s). Filling the pool of %d took %s.
`, machine(), len(warm), ms(mW), ms(pct(warm, 0.9)), ms(mC), ms(pct(cold, 0.9)), ms(mR), ms(pct(raw, 0.9)),
		float64(mW)/float64(mR), float64(mR)/float64(mW), float64(mC)/float64(mR),
		burst, burst, ms(total), burst, warmed, ms(median(each)), ms(pct(each, 1)), burst, fill.Round(100*time.Millisecond)))
}

// setWarmPool sets an image's warm_pool through the API.
func (c *cluster) setWarmPool(tb testing.TB, image string, n int) {
	tb.Helper()
	if status, data := c.call(http.MethodPatch, "/api/v1/images/"+image, map[string]any{"warm_pool": n}); status != http.StatusOK {
		tb.Fatalf("set warm_pool of %s to %d: %d %s", image, n, status, data)
	}
}

// waitPoolFull waits until the controller knows of n ready members of
// image's pool on the cluster's drone.
func (c *cluster) waitPoolFull(tb testing.TB, image string, n int) {
	tb.Helper()
	eventually(tb, 2*time.Minute, fmt.Sprintf("%d ready members of %s's pool", n, image), func() bool { return c.readyMembers(image) >= n })
}

// spawnWarm spawns image with "wait": true, which must claim a member,
// and returns the time to its answer; the backend is then terminated.
func spawnWarm(b *testing.B, c *cluster, image string) time.Duration {
	b.Helper()
	start := time.Now()
	_, be := c.spawn(map[string]any{"image": image, "wait": true})
	d := time.Since(start)
	if be.Status != plane.StatusReady || be.Warm == nil || !*be.Warm {
		b.Fatalf("warm spawn: %s %s warm=%v cold_reason=%q", be.ID, be.Status, be.Warm, be.ColdReason)
	}
	c.call(http.MethodPost, "/api/v1/backends/"+be.ID+"/terminate", map[string]bool{"hard": true})
	c.waitStatus(be.ID, plane.StatusTerminated, 30*time.Second)
	return d
}
