// Package scheduler places new backends on drones.
package scheduler

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"plane"
)

// Pick chooses the drone for a new backend: among the drones that are ready,
// not draining, heard from within plane.DroneStaleAfter, below their
// capacity (when they declare one) and not in exclude, the least loaded one. Load is live
// backends over capacity, or the live count for a drone without a capacity.
// Ties are broken at random so that equal drones share the work; rnd may be
// nil (a *rand.Rand is not safe for concurrent use, the package source is).
//
// live maps drone IDs to their live backend count; the store's count is used
// rather than the heartbeat's because it includes backends scheduled since
// the last beat. exclude (may be nil) holds the drones the caller passes over,
// such as those that just refused this backend.
//
// With no candidate, Pick returns a plane.EUNAVAILABLE error that says why.
func Pick(drones []*plane.Drone, live map[string]int, exclude map[string]bool, now time.Time, rnd *rand.Rand) (*plane.Drone, error) {
	var (
		best     *plane.Drone
		bestLive int
		bestCap  int // 1 for a drone without a capacity, so that load compares as live/cap
		ties     int
		why      reasons
	)
	for _, d := range drones {
		if d == nil {
			continue
		}
		why.total++
		n := live[d.ID]
		switch {
		case exclude[d.ID]:
			why.excluded++
			continue
		case d.Status == plane.DroneLost:
			why.lost++
			continue
		case d.Status == plane.DroneStopped:
			why.stopped++
			continue
		case d.Status == plane.DroneDraining || d.Draining:
			why.draining++
			continue
		case d.Status != plane.DroneReady && d.Status != plane.DroneUnreachable:
			why.other++
			continue
		case d.Status == plane.DroneUnreachable || now.Sub(d.LastHeartbeat) > plane.DroneStaleAfter:
			why.stale++
			if age := now.Sub(d.LastHeartbeat); why.freshest == 0 || age < why.freshest {
				why.freshest = age
			}
			continue
		case d.Capacity > 0 && n >= d.Capacity:
			why.full++
			continue
		case d.ProxyError != "":
			// Its backends could not be reached.
			why.proxy++
			continue
		}
		c := max(d.Capacity, 1)
		if best == nil {
			best, bestLive, bestCap, ties = d, n, c, 1
			continue
		}
		// n/c against bestLive/bestCap without floating point, so that equal
		// loads (1/2 and 2/4) tie exactly. Counts are small: no overflow.
		switch cmp := n*bestCap - bestLive*c; {
		case cmp < 0:
			best, bestLive, bestCap, ties = d, n, c, 1
		case cmp == 0:
			// Reservoir sampling: each of the k tied drones ends up chosen with probability 1/k.
			ties++
			if intN(rnd, ties) == 0 {
				best, bestLive, bestCap = d, n, c
			}
		}
	}
	if best == nil {
		return nil, plane.Errorf(plane.EUNAVAILABLE, "%s", why.message())
	}
	return best, nil
}

func intN(rnd *rand.Rand, n int) int {
	if rnd == nil {
		return rand.IntN(n)
	}
	return rnd.IntN(n)
}

// reasons counts why drones were passed over, to explain an empty choice.
type reasons struct {
	total                                       int
	lost, stopped, draining, other, stale, full int
	proxy                                       int           // whose proxy cannot accept connections
	excluded                                    int           // passed over by the caller
	freshest                                    time.Duration // youngest heartbeat among stale drones
}

func (r reasons) message() string {
	const prefix = "no drone can take a new backend: "
	if r.total == 0 {
		return prefix + "no drones registered"
	}
	var parts []string
	add := func(n int, what string) {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, what))
		}
	}
	add(r.draining, "draining")
	add(r.stale, fmt.Sprintf("with no heartbeat for %d s", r.freshestSeconds()))
	add(r.full, "full")
	add(r.proxy, "with a proxy that cannot accept connections")
	add(r.lost, "lost")
	add(r.stopped, "stopped")
	add(r.other, "not ready")
	add(r.excluded, "excluded")
	if len(parts) == 1 {
		switch {
		case r.draining == r.total:
			return prefix + plural(r.total, "the drone is draining", "all %d drones are draining")
		case r.stale == r.total:
			which := "any drone"
			if r.total == 1 {
				which = "the drone"
			}
			return prefix + fmt.Sprintf("no heartbeat from %s for %d s", which, r.freshestSeconds())
		case r.full == r.total:
			return prefix + plural(r.total, "the drone is full", "all %d drones are full")
		case r.proxy == r.total:
			return prefix + plural(r.total, "the drone's proxy cannot accept connections", "the proxies of all %d drones cannot accept connections")
		case r.lost == r.total:
			return prefix + plural(r.total, "the drone is lost", "all %d drones are lost")
		case r.stopped == r.total:
			return prefix + plural(r.total, "the drone is stopped", "all %d drones are stopped")
		case r.other == r.total:
			return prefix + plural(r.total, "the drone is not ready", "none of the %d drones is ready")
		case r.excluded == r.total:
			return prefix + plural(r.total, "the drone is excluded", "all %d drones are excluded")
		}
	}
	return prefix + fmt.Sprintf("of %d drones, ", r.total) + strings.Join(parts, ", ")
}

func (r reasons) freshestSeconds() int { return int(r.freshest.Round(time.Second) / time.Second) }

// plural returns one for n == 1, else many with n filled in.
func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return fmt.Sprintf(many, n)
}
