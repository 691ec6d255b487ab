package plane

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strconv"
)

// Warm pools (protocol version 3).
//
// An image with a warm pool (Image.WarmPool > 0) has that many started,
// ready, unclaimed backends on every ready, non-draining drone: its
// members. The controller sends each drone the pools it should keep
// (PoolsRequest on SubjectPools) whenever the drone's heartbeat
// (Heartbeat.Pools) does not match them; the drone starts, replaces and
// removes members in the background. A member is no backend of any
// project: the controller does not store it, and its drone reports no
// status of it, until a spawn claims it. To claim one, the controller
// stores the new backend under the member's ID (one of PoolState.Ready)
// and sends a SpawnSpec with Warm set: the drone hands the member over,
// with the spawn's key, user and limits, and answers Reply.Warm; a member
// gone meanwhile is started cold under the same ID instead.

// MaxWarmPool bounds Image.WarmPool.
const MaxWarmPool = 100

// MaxPools bounds the pools of one drone (PoolsRequest, Heartbeat.Pools).
const MaxPools = 256

// SubjectPools: the controller sets a drone's pools (PoolsRequest → Reply).
func SubjectPools(droneID string) string { return "plane.drone." + droneID + ".pools" }

// PoolSpec is one image's warm pool on a drone.
type PoolSpec struct {
	// ID names the pool: PoolID of its image.
	ID string `json:"id"`
	// Image is the image's name in its project, for labels and logs.
	Image string `json:"image"`
	Size  int    `json:"size"`
	// Spec is what every member runs; its BackendID, Key and User are
	// empty (a member's ID is its drone's to choose).
	Spec SpawnSpec `json:"spec"`
	// Hash is SpecHash of the pool: a drone replaces members started from
	// a spec of another hash, and the controller claims only members of
	// the current one.
	Hash string `json:"hash"`
}

// PoolID is the pool of the image with id imageID.
func PoolID(imageID int64) string { return "i" + strconv.FormatInt(imageID, 10) }

// SpecHash is a short digest of what a pool's members run.
func (p *PoolSpec) SpecHash() string {
	data, _ := json.Marshal(p.Spec) // a struct of plain fields: never fails
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:8])
}

// Validate checks a pool received from the network.
func (p *PoolSpec) Validate() error {
	if p.ID == "" || len(p.ID) > 32 || !printable(p.ID) {
		return FieldErrorf("id", "must be 1 to 32 printable characters")
	}
	if err := ValidateImageName(p.Image); err != nil {
		return err
	}
	if p.Size < 0 || p.Size > MaxWarmPool {
		return FieldErrorf("size", "must be between 0 and %d (got %d)", MaxWarmPool, p.Size)
	}
	if p.Spec.BackendID != "" || p.Spec.Key != "" || p.Spec.User != "" || p.Spec.Warm {
		return FieldErrorf("spec", "a pool's spec names no backend, key or user")
	}
	// The spec's own checks, with a placeholder for the ID it lacks.
	s := p.Spec
	s.BackendID = poolSpecPlaceholderID
	if err := s.Validate(); err != nil {
		return err
	}
	if p.Hash != p.SpecHash() {
		return FieldErrorf("hash", "does not match the spec")
	}
	return nil
}

// poolSpecPlaceholderID stands in for a member's ID when a pool's spec is
// checked.
const poolSpecPlaceholderID = "p0000000000000"

// PoolsRequest sets every warm pool of a drone (SubjectPools → Reply): a
// pool it does not list is emptied.
type PoolsRequest struct {
	Pools []PoolSpec `json:"pools"`
}

// Validate checks a request received from the network.
func (r *PoolsRequest) Validate() error {
	if len(r.Pools) > MaxPools {
		return FieldErrorf("pools", "at most %d (got %d)", MaxPools, len(r.Pools))
	}
	seen := make(map[string]bool, len(r.Pools))
	for i := range r.Pools {
		if err := r.Pools[i].Validate(); err != nil {
			return err
		}
		if seen[r.Pools[i].ID] {
			return FieldErrorf("pools", "pool %q twice", r.Pools[i].ID)
		}
		seen[r.Pools[i].ID] = true
	}
	return nil
}

// PoolState is one of a drone's warm pools, as its heartbeat reports it.
type PoolState struct {
	ID   string `json:"id"`
	Hash string `json:"hash"`
	Size int    `json:"size"` // members wanted
	// Ready are the IDs of the ready, unclaimed members; Starting counts
	// the members on their way to ready.
	Ready    []string `json:"ready"`
	Starting int      `json:"starting"`
	// RefillMillis is how long the pool's last new member took from its
	// start to ready (0: none yet).
	RefillMillis int64 `json:"refill_ms,omitempty"`
}

// Validate checks a pool state received from the network.
func (p *PoolState) Validate() error {
	if p.ID == "" || len(p.ID) > 32 || !printable(p.ID) {
		return FieldErrorf("pools", "pool id must be 1 to 32 printable characters")
	}
	if len(p.Ready) > MaxWarmPool || p.Starting < 0 || p.Size < 0 || p.Size > MaxWarmPool {
		return FieldErrorf("pools", "pool %q: counts out of range", p.ID)
	}
	for _, id := range p.Ready {
		if err := ValidateBackendID(id); err != nil {
			return err
		}
	}
	return nil
}

// ColdReason says why a spawn started its backend cold rather than from a
// warm pool (api.Backend.ColdReason).
type ColdReason string

const (
	ColdNoPool    ColdReason = "no_pool"    // the image has no warm pool
	ColdEnv       ColdReason = "env"        // the spawn sets env, which a started member cannot take
	ColdCPU       ColdReason = "cpu_millis" // the spawn sets cpu_millis other than the image's
	ColdMemory    ColdReason = "memory_mb"  // the spawn sets memory_mb other than the image's
	ColdPoolEmpty ColdReason = "pool_empty" // no drone had a ready member to claim
	ColdRaced     ColdReason = "pool_raced" // the member chosen was gone when its drone got the claim
)

// ColdReasons are every ColdReason, for metrics and documentation.
var ColdReasons = []ColdReason{ColdNoPool, ColdEnv, ColdCPU, ColdMemory, ColdPoolEmpty, ColdRaced}
