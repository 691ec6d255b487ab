package scheduler_test

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"plane"
	"plane/server/scheduler"
)

var now = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// drone returns a healthy drone; opts adjust it.
func drone(id string, capacity int, opts ...func(*plane.Drone)) *plane.Drone {
	d := &plane.Drone{ID: id, Status: plane.DroneReady, Capacity: capacity, LastHeartbeat: now.Add(-time.Second)}
	for _, o := range opts {
		o(d)
	}
	return d
}

func status(s plane.DroneStatus) func(*plane.Drone) { return func(d *plane.Drone) { d.Status = s } }

func draining(d *plane.Drone) { d.Draining = true }

func proxyDown(d *plane.Drone) { d.ProxyError = "proxy cannot accept connections: too many open files" }

func beatAgo(age time.Duration) func(*plane.Drone) {
	return func(d *plane.Drone) { d.LastHeartbeat = now.Add(-age) }
}

func TestPick(t *testing.T) {
	tests := []struct {
		name    string
		drones  []*plane.Drone
		live    map[string]int
		exclude map[string]bool
		want    string // drone ID; empty when no drone fits
		errHas  string // part of the error message
	}{
		{name: "no drones", errHas: "no drones registered"},
		{name: "only nil", drones: []*plane.Drone{nil}, errHas: "no drones registered"},
		{name: "one healthy", drones: []*plane.Drone{drone("a", 10)}, want: "a"},
		{name: "least loaded by count", drones: []*plane.Drone{drone("a", 0), drone("b", 0)},
			live: map[string]int{"a": 3, "b": 2}, want: "b"},
		{name: "least loaded by ratio", drones: []*plane.Drone{drone("a", 10), drone("b", 100)},
			live: map[string]int{"a": 2, "b": 10}, want: "b"}, // 20% vs 10%
		{name: "ratio beats count", drones: []*plane.Drone{drone("small", 4), drone("big", 40)},
			live: map[string]int{"small": 1, "big": 5}, want: "big"}, // 25% vs 12.5%
		{name: "skips full", drones: []*plane.Drone{drone("a", 2), drone("b", 5)},
			live: map[string]int{"a": 2, "b": 4}, want: "b"},
		{name: "skips over-full", drones: []*plane.Drone{drone("a", 2), drone("b", 0)},
			live: map[string]int{"a": 3, "b": 50}, want: "b"},
		{name: "skips draining flag", drones: []*plane.Drone{drone("a", 10, draining), drone("b", 10)},
			live: map[string]int{"b": 9}, want: "b"},
		{name: "skips draining status", drones: []*plane.Drone{drone("a", 10, status(plane.DroneDraining)), drone("b", 10)},
			live: map[string]int{"b": 9}, want: "b"},
		{name: "skips lost and stopped", drones: []*plane.Drone{drone("a", 0, status(plane.DroneLost)), drone("b", 0, status(plane.DroneStopped)), drone("c", 0)},
			live: map[string]int{"c": 100}, want: "c"},
		{name: "skips stale", drones: []*plane.Drone{drone("a", 0, beatAgo(plane.DroneStaleAfter+time.Millisecond)), drone("b", 0)},
			live: map[string]int{"b": 100}, want: "b"},
		{name: "skips unreachable, even with a fresh heartbeat on record", drones: []*plane.Drone{drone("a", 0, status(plane.DroneUnreachable)), drone("b", 0)},
			live: map[string]int{"b": 100}, want: "b"},
		{name: "only unreachable", drones: []*plane.Drone{drone("a", 0, status(plane.DroneUnreachable), beatAgo(20*time.Second))},
			errHas: "no heartbeat from the drone for 20 s"},
		{name: "skips a drone whose proxy cannot accept", drones: []*plane.Drone{drone("a", 0, proxyDown), drone("b", 0)},
			live: map[string]int{"b": 100}, want: "b"},
		{name: "only proxies that cannot accept", drones: []*plane.Drone{drone("a", 0, proxyDown)},
			errHas: "the drone's proxy cannot accept connections"},
		{name: "skips excluded, even the least loaded", drones: []*plane.Drone{drone("a", 0), drone("b", 0), drone("c", 0)},
			live: map[string]int{"b": 5, "c": 9}, exclude: map[string]bool{"a": true}, want: "b"},
		{name: "excluding an unknown drone changes nothing", drones: []*plane.Drone{drone("a", 0), drone("b", 0)},
			live: map[string]int{"b": 1}, exclude: map[string]bool{"zz": true}, want: "a"},
		{name: "an excluded drone is only excluded", drones: []*plane.Drone{drone("a", 0, status(plane.DroneLost)), drone("b", 1)},
			live: map[string]int{"b": 1}, exclude: map[string]bool{"a": true}, errHas: "of 2 drones, 1 full, 1 excluded"},
		{name: "heartbeat exactly at the limit is fresh", drones: []*plane.Drone{drone("a", 0, beatAgo(plane.DroneStaleAfter))}, want: "a"},
		{name: "heartbeat from the future is fresh", drones: []*plane.Drone{drone("a", 0, beatAgo(-time.Minute))}, want: "a"},

		{name: "one draining", drones: []*plane.Drone{drone("a", 1, draining)}, errHas: "the drone is draining"},
		{name: "all draining", drones: []*plane.Drone{drone("a", 1, draining), drone("b", 1, status(plane.DroneDraining))},
			errHas: "all 2 drones are draining"},
		{name: "all stale", drones: []*plane.Drone{drone("a", 1, beatAgo(40*time.Second)), drone("b", 1, beatAgo(12*time.Second))},
			errHas: "no heartbeat from any drone for 12 s"},
		{name: "all full", drones: []*plane.Drone{drone("a", 1), drone("b", 2), drone("c", 3)},
			live: map[string]int{"a": 1, "b": 2, "c": 3}, errHas: "all 3 drones are full"},
		{name: "all lost", drones: []*plane.Drone{drone("a", 1, status(plane.DroneLost))}, errHas: "the drone is lost"},
		{name: "one excluded", drones: []*plane.Drone{drone("a", 1)}, exclude: map[string]bool{"a": true},
			errHas: "the drone is excluded"},
		{name: "all excluded", drones: []*plane.Drone{drone("a", 1), drone("b", 1)}, exclude: map[string]bool{"a": true, "b": true},
			errHas: "all 2 drones are excluded"},
		{name: "unknown status", drones: []*plane.Drone{drone("a", 1, status("")), drone("b", 1, status("weird"))},
			errHas: "none of the 2 drones is ready"},
		{name: "mixed", drones: []*plane.Drone{
			drone("a", 1, draining),
			drone("b", 1, beatAgo(20*time.Second)),
			drone("c", 1),
			drone("d", 1, status(plane.DroneStopped)),
		}, live: map[string]int{"c": 1}, errHas: "of 4 drones, 1 draining, 1 with no heartbeat for 20 s, 1 full, 1 stopped"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := scheduler.Pick(tt.drones, tt.live, tt.exclude, now, rand.New(rand.NewPCG(1, 2)))
			if tt.want != "" {
				if err != nil {
					t.Fatalf("err = %v, want drone %s", err, tt.want)
				}
				if got.ID != tt.want {
					t.Fatalf("picked %s, want %s", got.ID, tt.want)
				}
				return
			}
			if got != nil {
				t.Fatalf("picked %s, want none", got.ID)
			}
			if code := plane.ErrorCodeOf(err); code != plane.EUNAVAILABLE {
				t.Fatalf("code = %q (%v), want unavailable", code, err)
			}
			if msg := plane.ErrorMessageOf(err); !strings.Contains(msg, tt.errHas) {
				t.Fatalf("message %q does not say %q", msg, tt.errHas)
			}
		})
	}
}

func TestPickSpreadsTies(t *testing.T) {
	tests := []struct {
		name    string
		drones  []*plane.Drone
		live    map[string]int
		exclude map[string]bool
		tied    []string
	}{
		{name: "equal counts", drones: []*plane.Drone{drone("a", 0), drone("b", 0), drone("c", 0)},
			live: map[string]int{"a": 1, "b": 1, "c": 2}, tied: []string{"a", "b"}},
		{name: "equal ratios", drones: []*plane.Drone{drone("a", 2), drone("b", 4), drone("c", 10)},
			live: map[string]int{"a": 1, "b": 2, "c": 6}, tied: []string{"a", "b"}},
		{name: "all empty", drones: []*plane.Drone{drone("a", 5), drone("b", 5), drone("c", 5), drone("d", 0)},
			tied: []string{"a", "b", "c", "d"}},
		{name: "an excluded drone takes no share", drones: []*plane.Drone{drone("a", 0), drone("b", 0), drone("c", 0)},
			exclude: map[string]bool{"b": true}, tied: []string{"a", "c"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rnd := rand.New(rand.NewPCG(7, 8))
			counts := map[string]int{}
			const draws = 4000
			for range draws {
				d, err := scheduler.Pick(tt.drones, tt.live, tt.exclude, now, rnd)
				if err != nil {
					t.Fatal(err)
				}
				counts[d.ID]++
			}
			total := 0
			for _, id := range tt.tied {
				// Each tied drone's share is near 1/k; a loose bound keeps the test deterministic-safe.
				want := draws / len(tt.tied)
				if c := counts[id]; c < want*3/4 || c > want*5/4 {
					t.Errorf("%s picked %d times of %d, want about %d (counts %v)", id, c, draws, want, counts)
				}
				total += counts[id]
			}
			if total != draws {
				t.Errorf("untied drones were picked: %v", counts)
			}
		})
	}

	t.Run("nil rand", func(t *testing.T) {
		drones := []*plane.Drone{drone("a", 0), drone("b", 0)}
		seen := map[string]bool{}
		for range 200 {
			d, err := scheduler.Pick(drones, nil, nil, now, nil)
			if err != nil {
				t.Fatal(err)
			}
			seen[d.ID] = true
		}
		if !seen["a"] || !seen["b"] {
			t.Fatalf("only %v picked over 200 draws", seen)
		}
	})
}
