package dispatch

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"plane"
)

func sample(backend string, n int) plane.BackendStats {
	return plane.BackendStats{BackendID: backend, Time: t0.Add(time.Duration(n) * time.Second), Connections: n}
}

func connections(h []plane.BackendStats) []int {
	var out []int
	for _, s := range h {
		out = append(out, s.Connections)
	}
	return out
}

func TestStatsRing(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		size int
		add  []plane.BackendStats
		want map[string][]int // backend → connections of its history, oldest first
	}{
		{name: "empty", size: 3, want: map[string][]int{"a": nil}},
		{name: "oldest first", size: 3, add: []plane.BackendStats{sample("a", 1), sample("a", 2)},
			want: map[string][]int{"a": {1, 2}}},
		{name: "full keeps the newest", size: 3,
			add:  []plane.BackendStats{sample("a", 1), sample("a", 2), sample("a", 3), sample("a", 4), sample("a", 5)},
			want: map[string][]int{"a": {3, 4, 5}}},
		{name: "per backend", size: 2,
			add:  []plane.BackendStats{sample("a", 1), sample("b", 10), sample("a", 2), sample("a", 3), sample("b", 11)},
			want: map[string][]int{"a": {2, 3}, "b": {10, 11}, "c": nil}},
		{name: "default size", size: 0, add: samples("a", StatsHistory+5),
			want: map[string][]int{"a": connections(samples("a", StatsHistory+5)[5:])}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := statsRing{size: tc.size}
			for _, s := range tc.add {
				r.add(s, t0)
			}
			for backend, want := range tc.want {
				got := r.history(backend)
				if fmt.Sprint(connections(got)) != fmt.Sprint(want) {
					t.Errorf("history(%s) = %v, want %v", backend, connections(got), want)
				}
				last, ok := r.latest(backend)
				if ok != (len(want) > 0) || ok && last.Connections != want[len(want)-1] {
					t.Errorf("latest(%s) = %v, %v; want the last of %v", backend, last.Connections, ok, want)
				}
			}
		})
	}
}

func samples(backend string, n int) []plane.BackendStats {
	var out []plane.BackendStats
	for i := range n {
		out = append(out, sample(backend, i))
	}
	return out
}

func TestStatsRingHistoryIsACopy(t *testing.T) {
	t.Parallel()
	var r statsRing
	r.add(sample("a", 1), t0)
	h := r.history("a")
	h[0].Connections = 99
	if got := r.history("a")[0].Connections; got != 1 {
		t.Errorf("history changed through a returned copy: %d", got)
	}
}

func TestStatsRingForget(t *testing.T) {
	t.Parallel()
	var r statsRing
	r.add(sample("a", 1), t0)
	r.add(sample("b", 1), t0)
	r.forget("a")
	r.forget("never seen")
	if _, ok := r.latest("a"); ok {
		t.Error("a forgotten backend still has stats")
	}
	if _, ok := r.latest("b"); !ok {
		t.Error("forgetting a dropped another backend's stats")
	}
}

func TestStatsRingConcurrent(t *testing.T) {
	t.Parallel()
	r := statsRing{size: 10}
	var wg sync.WaitGroup
	for w := range 8 {
		backend := fmt.Sprintf("b%d", w%2)
		wg.Go(func() {
			for i := range 100 {
				r.add(sample(backend, i), t0)
				r.latest(backend)
				r.history(backend)
			}
		})
	}
	wg.Wait()
	for _, b := range []string{"b0", "b1"} {
		if n := len(r.history(b)); n != 10 {
			t.Errorf("%s holds %d samples, want 10", b, n)
		}
	}
}

// Stats arrive on NATS; a malformed sample is ignored, and a backend's
// stats go when it terminates.
func TestDispatcherStats(t *testing.T) {
	t.Parallel()
	st := newStore([]*plane.Backend{{ID: "a", DroneID: "d1", Status: plane.StatusReady}}, nil)
	d, _ := newDispatcher(st, nil)
	d.handleStats(msg(t, sample("a", 1)))
	d.handleStats(msg(t, "{not json"))
	d.handleStats(msg(t, plane.BackendStats{BackendID: "Not An ID"}))
	d.handleStats(msg(t, sample("a", 2)))
	if got := connections(d.StatsHistory("a")); fmt.Sprint(got) != "[1 2]" {
		t.Fatalf("StatsHistory = %v, want [1 2]", got)
	}
	if s, ok := d.Stats("a"); !ok || s.Connections != 2 {
		t.Fatalf("Stats = %v, %v; want the second sample", s, ok)
	}
	ev := plane.BackendEvent{BackendID: "a", DroneID: "d1", Status: plane.StatusTerminated, Time: t0, Reason: plane.ReasonIdle}
	if _, err := d.Apply(t.Context(), ev); err != nil {
		t.Fatal(err)
	}
	if _, ok := d.Stats("a"); ok {
		t.Error("a terminated backend kept its stats")
	}
}

// Stats of a backend whose samples stopped coming go after statsStaleAfter,
// even when this controller never saw it terminate (another controller
// applied that, or the sample came after the termination).
func TestStatsRingPrune(t *testing.T) {
	t.Parallel()
	var r statsRing
	r.add(sample("old", 1), t0)
	r.add(sample("new", 1), t0)
	r.add(sample("new", 2), t0.Add(statsStaleAfter))
	r.prune(t0.Add(statsStaleAfter))
	if _, ok := r.latest("old"); ok {
		t.Error("stale stats kept")
	}
	if n := len(r.history("new")); n != 2 {
		t.Errorf("fresh backend holds %d samples after prune, want 2", n)
	}
}
