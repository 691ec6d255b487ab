package docker_test

import (
	"context"
	"testing"
	"time"

	"plane/drone/docker/dockertest"
)

// BenchmarkStart measures Start (create, start, inspect) of a demo backend
// and, as the metric ms-to-http, Start until its first 200 on /healthz.
// Removal is not timed.
func BenchmarkStart(b *testing.B) {
	r := dockertest.Runtime(b)
	ctx := context.Background()
	var toHTTP time.Duration
	for b.Loop() {
		spec := demoSpec(nil)
		begin := time.Now()
		c, err := r.Start(ctx, spec)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		// The poll runs untimed by the benchmark clock but timed here.
		if _, err := pollHTTP(c.Address, "/healthz", 15*time.Second); err != nil {
			b.Fatal(err)
		}
		toHTTP += time.Since(begin)
		if err := r.Remove(ctx, c.ID); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(toHTTP.Microseconds())/1000/float64(b.N), "ms-to-http/op")
}
