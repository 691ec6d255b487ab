package main

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"plane"
)

// BenchmarkResume compares, in alternating rounds, the first request to a
// suspended backend (the proxy wakes it: Docker unpause, then the request)
// with a request to a ready one of the same image, both through the drone's
// proxy with a connect-token cookie on a kept-alive connection.
//
// make bench writes the medians to docs/benchmarks.md.
func BenchmarkResume(b *testing.B) {
	rounds := envInt("PLANE_BENCH_RESUME_ROUNDS", 20)
	c := newCluster(b, clusterOpts{})
	client := c.proxyClient()
	_, sleeper := c.spawn(map[string]any{"image": "demo", "max_idle_seconds": 1, "suspend_seconds": 3600, "wait": true})
	_, awake := c.spawn(map[string]any{"image": "demo", "wait": true})
	if sleeper.Status != plane.StatusReady || awake.Status != plane.StatusReady {
		b.Fatalf("backends %s and %s, want both ready", sleeper.Status, awake.Status)
	}
	get := func(id string) time.Duration {
		b.Helper()
		req, _ := http.NewRequest(http.MethodGet, c.hostURL(id, "/healthz"), nil)
		for k, v := range tokenCookie(c.connectToken(id, "", time.Hour)) {
			req.Header[k] = v
		}
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		d := time.Since(start)
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("GET %s: %d", id, resp.StatusCode)
		}
		return d
	}
	var resumed, ready []time.Duration
	for range b.N {
		for i := range rounds + 1 {
			eventually(b, 30*time.Second, "the backend to be suspended", func() bool { return inspect(b, sleeper.ID).Paused })
			get(awake.ID) // the same connection state for both: warm
			r := get(sleeper.ID)
			w := get(awake.ID)
			if i > 0 { // the first round warms both paths
				resumed, ready = append(resumed, r), append(ready, w)
			}
		}
	}
	mRes, mReady := median(resumed), median(ready)
	added := mRes - mReady
	b.ReportMetric(ms(mRes), "resume-ms")
	b.ReportMetric(ms(mReady), "ready-ms")
	b.ReportMetric(ms(added), "added-ms")
	met := "met"
	if added > 30*time.Millisecond {
		met = "**missed**"
	}
	b.Logf("first request over %d rounds: suspended median %.1f ms (p90 %.1f), ready median %.1f ms (p90 %.1f), resume adds %.1f ms",
		len(resumed), ms(mRes), ms(pct(resumed, 0.9)), ms(mReady), ms(pct(ready, 0.9)), ms(added))
	writeBenchDoc(b, "resume", fmt.Sprintf(`## First request: suspended backend vs ready backend

%s, %d alternating rounds after a warm-up round (`+"`make bench`"+`, BenchmarkResume). One backend of the demo image with `+"`max_idle_seconds: 1, suspend_seconds: 3600`"+`, paused by its drone before each round (`+"`docker inspect`"+` says so), and one ready backend of the same image; `+"`GET /healthz`"+` through the drone's proxy with a connect-token cookie, the ready one first (to warm the connection), then the suspended one (the proxy wakes it: Docker unpause, then the request), then the ready one again.

| backend | median | p90 |
| --- | ---: | ---: |
| suspended: unpause + request | %.1f ms | %.1f ms |
| ready | %.1f ms | %.1f ms |

Resume adds **%.1f ms** at the median (target ≤ 30 ms: %s).
`, machine(), len(resumed), ms(mRes), ms(pct(resumed, 0.9)), ms(mReady), ms(pct(ready, 0.9)), ms(added), met))
}
