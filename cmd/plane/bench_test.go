package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"plane/drone/docker/dockertest"
)

// BenchmarkSpawnReady compares, in alternating rounds, a spawn through the
// API with "wait": true (API → scheduler → NATS → drone → Docker → ready →
// JetStream → store → answer) with the same image started by raw Docker SDK
// calls: create, start, and poll until the first HTTP response.
//
// make bench writes the medians to docs/benchmarks.md.
func BenchmarkSpawnReady(b *testing.B) {
	rounds := envInt("PLANE_BENCH_ROUNDS", 30)
	c := newCluster(b, clusterOpts{})
	rt := dockertest.Runtime(b)
	ctx := context.Background()
	var api, raw []time.Duration
	for range b.N {
		for i := range rounds + 2 {
			// API round, then a raw Docker round: the same image and the
			// same readiness check.
			d := spawnReadyAPI(b, c, rt)
			r := spawnReadyDocker(ctx, b, rt, c.droneID+"raw")
			if i >= 2 { // the first rounds warm caches on both sides
				api, raw = append(api, d), append(raw, r)
			}
		}
	}
	mAPI, mRaw := median(api), median(raw)
	ratio := float64(mAPI) / float64(mRaw)
	b.ReportMetric(ms(mAPI), "api-ms")
	b.ReportMetric(ms(mRaw), "docker-ms")
	b.ReportMetric(ratio, "ratio")
	b.Logf("spawn→ready over %d rounds: API median %.1f ms (p90 %.1f), raw Docker median %.1f ms (p90 %.1f), ratio %.3f",
		len(api), ms(mAPI), ms(pct(api, 0.9)), ms(mRaw), ms(pct(raw, 0.9)), ratio)
	writeBenchDoc(b, "spawn", fmt.Sprintf(`## Spawn → ready: API vs raw Docker

%s, %d alternating rounds after 2 warm-up rounds (`+"`make bench`"+`, BenchmarkSpawnReady).

| path | median | p90 |
| --- | ---: | ---: |
| API, `+"`POST /api/v1/backends`"+` with `+"`wait: true`"+` | %.1f ms | %.1f ms |
| raw Docker SDK: create + start + first HTTP response | %.1f ms | %.1f ms |

Median ratio API / raw Docker: **%.3f** (target ≤ 1.15).
`, machine(), len(api), ms(mAPI), ms(pct(api, 0.9)), ms(mRaw), ms(pct(raw, 0.9)), ratio))
}

func probe(ctx context.Context, url string) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := noKeepAlive.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return true
}

var noKeepAlive = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

// probeInterval matches the drone's readiness polling.
const probeInterval = 5 * time.Millisecond

func median(ds []time.Duration) time.Duration { return pct(ds, 0.5) }

func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[int(float64(len(s)-1)*p+0.5)]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// machine describes where the benchmark ran.
func machine() string {
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		if m := regexp.MustCompile(`model name\s*:\s*(.+)`).FindSubmatch(b); m != nil {
			cpu = strings.TrimSpace(string(m[1]))
		}
	}
	dockerV, _ := exec.Command("docker", "version", "-f", "{{.Server.Version}}").Output()
	return fmt.Sprintf("%s, %d cores (%s), %s, Docker %s", time.Now().UTC().Format("2006-01-02"), runtime.NumCPU(), cpu, runtime.Version(), strings.TrimSpace(string(dockerV)))
}

// writeBenchDoc replaces the named section of PLANE_BENCH_DOC (if set) with
// text, keeping the other sections.
func writeBenchDoc(tb testing.TB, name, text string) {
	path := os.Getenv("PLANE_BENCH_DOC")
	if path == "" {
		return
	}
	begin, end := "<!-- bench:"+name+" -->", "<!-- /bench:"+name+" -->"
	doc, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		tb.Fatal(err)
	}
	s := string(doc)
	if s == "" {
		s = "# Benchmarks\n\nWritten by `make bench`; each section is replaced by the benchmark that measures it.\n"
	}
	section := begin + "\n" + text + end
	if i, j := strings.Index(s, begin), strings.Index(s, end); i >= 0 && j > i {
		s = s[:i] + section + s[j+len(end):]
	} else {
		s = strings.TrimRight(s, "\n") + "\n\n" + section + "\n"
	}
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		tb.Fatal(err)
	}
}
