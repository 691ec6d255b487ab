package plane

import (
	"crypto/rand"
	"encoding/hex"
	"time"
)

// One cluster, one owner. A cluster's identity is made at random by its
// first controller and kept in the controller's store; every controller
// claims it in NATS before it touches anything there. A controller whose
// store holds another identity refuses to start: it would reconcile the
// drones of a cluster it does not know against an empty store and end every
// backend they run.
const (
	// ClusterBucket is the JetStream key-value bucket of the claim;
	// ClusterOwnerKey holds the ClusterClaim of the cluster that owns this
	// NATS (account).
	ClusterBucket   = "PLANE_CLUSTER"
	ClusterOwnerKey = "owner"
	// ClusterProbeKey is written by a controller's readiness check: a
	// JetStream that cannot take it cannot take a status change either.
	ClusterProbeKey = "probe"
	// ClusterLeaseKey is held by the controller that runs the cluster's
	// singleton duties (the liveness sweep, reconciliation).
	ClusterLeaseKey = "lease"

	// ClusterIDLen is the length of generated cluster IDs: 128 random bits
	// in lowercase hex.
	ClusterIDLen = 32
)

// Bounds of the informational fields of a claim, which end up in an error
// message on an operator's terminal.
const (
	maxClaimHostLen    = 255
	maxClaimDataDirLen = 4096
)

// ClusterIdentity is a cluster's identity as its store keeps it.
type ClusterIdentity struct {
	ID        string    `json:"id"`
	CreatedAt time.Time `json:"created_at"`
}

// NewClusterID returns a random cluster ID.
func NewClusterID() string {
	b := make([]byte, ClusterIDLen/2)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error()) // never happens on supported platforms
	}
	return hex.EncodeToString(b)
}

// ValidateClusterID checks the shape of a cluster ID from outside.
func ValidateClusterID(id string) error {
	if id == "" {
		return FieldErrorf("id", "is required")
	}
	if len(id) > 64 {
		return FieldErrorf("id", "longer than 64 characters")
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return FieldErrorf("id", "%q holds a character other than a-z, 0-9 and '-'", truncate(id, 64))
		}
	}
	return nil
}

// ClusterClaim is the value of ClusterOwnerKey in ClusterBucket: which
// cluster owns this NATS, since when, and where its claiming controller ran
// (Host and DataDir say so in the refusal of another cluster's controller).
type ClusterClaim struct {
	ID        string    `json:"id"`
	CreatedAt time.Time `json:"created_at"` // when the cluster's identity was made
	ClaimedAt time.Time `json:"claimed_at"` // when this claim was written
	Host      string    `json:"host,omitempty"`
	DataDir   string    `json:"data_dir,omitempty"`
}

// Validate checks a claim read from NATS.
func (c *ClusterClaim) Validate() error {
	if err := ValidateClusterID(c.ID); err != nil {
		return err
	}
	if c.CreatedAt.IsZero() {
		return FieldErrorf("created_at", "is required")
	}
	if c.ClaimedAt.IsZero() {
		return FieldErrorf("claimed_at", "is required")
	}
	if len(c.Host) > maxClaimHostLen || !printable(c.Host) {
		return FieldErrorf("host", "must be at most %d printable bytes", maxClaimHostLen)
	}
	if len(c.DataDir) > maxClaimDataDirLen || !printable(c.DataDir) {
		return FieldErrorf("data_dir", "must be at most %d printable bytes", maxClaimDataDirLen)
	}
	return nil
}
