package plane

import (
	"context"
	"strings"
	"time"
)

// The cluster has one wildcard certificate, *.<zone> and <zone>, ordered by
// ACME DNS-01 through the controller's DNS server. One drone at a time holds
// the ordering lease; the certificate reaches every drone through a
// JetStream key-value bucket.
const (
	// SubjectACMELease: ACMELeaseRequest → ACMELease.
	SubjectACMELease = "plane.acme.lease"
	// SubjectACMESetTXT and SubjectACMEClearTXT: ACMEChallenge → Reply.
	SubjectACMESetTXT   = "plane.acme.txt.set"
	SubjectACMEClearTXT = "plane.acme.txt.clear"

	// CertBucket holds CertBundle values; CertKey is the cluster's.
	CertBucket = "PLANE_CERTS"
	CertKey    = "cluster"

	// ACMELeaseTTL is how long a lease lasts unless renewed or released.
	ACMELeaseTTL = 10 * time.Minute
	// CertRenewBefore: a certificate is renewed this long before it expires.
	CertRenewBefore = 30 * 24 * time.Hour
)

// ACMELeaseRequest asks for (or, with Release, gives back) the ordering lease.
type ACMELeaseRequest struct {
	DroneID string `json:"drone_id"`
	Release bool   `json:"release,omitempty"`
}

// Validate checks a request received from the network.
func (r *ACMELeaseRequest) Validate() error { return ValidateDroneID(r.DroneID) }

// ACMELease answers a lease request: Granted when DroneID now holds it.
type ACMELease struct {
	Granted   bool      `json:"granted"`
	Holder    string    `json:"holder,omitempty"`
	ExpiresAt time.Time `json:"expires_at,omitempty"`
	Error     string    `json:"error,omitempty"`
}

// Validate accepts any lease answer: every field is informational.
func (l *ACMELease) Validate() error { return nil }

// ACMEChallenge is a DNS-01 TXT value for _acme-challenge.<zone>.
type ACMEChallenge struct {
	DroneID string `json:"drone_id"`
	Value   string `json:"value"`
}

// MaxChallengeValues bounds the TXT values the controller keeps at once.
const MaxChallengeValues = 16

// Validate checks a challenge received from the network: a DNS-01 value is
// a base64url SHA-256 digest, 43 characters.
func (c *ACMEChallenge) Validate() error {
	if err := ValidateDroneID(c.DroneID); err != nil {
		return err
	}
	if len(c.Value) == 0 || len(c.Value) > 255 || strings.IndexFunc(c.Value, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_')
	}) >= 0 {
		return FieldErrorf("value", "must be 1-255 base64url characters")
	}
	return nil
}

// CertBundle is the cluster's certificate with its key, as stored in CertBucket.
type CertBundle struct {
	Domains  []string  `json:"domains"`
	CertPEM  []byte    `json:"cert_pem"` // leaf first, then the chain
	KeyPEM   []byte    `json:"key_pem"`
	NotAfter time.Time `json:"not_after"`
	IssuedBy string    `json:"issued_by"` // drone that ordered it
	IssuedAt time.Time `json:"issued_at"`
}

// Validate checks a bundle read from the bucket.
func (b *CertBundle) Validate() error {
	if len(b.CertPEM) == 0 || len(b.KeyPEM) == 0 {
		return FieldErrorf("cert_pem", "certificate and key are required")
	}
	if b.NotAfter.IsZero() {
		return FieldErrorf("not_after", "is required")
	}
	return nil
}

// CertDomains are the names the cluster certificate covers.
func CertDomains(zone string) []string {
	zone = strings.ToLower(strings.TrimSuffix(zone, "."))
	return []string{"*." + zone, zone}
}

// ACMEState is the controllers' side of certificate ordering: which drone
// holds the ordering lease until when, and the DNS-01 TXT values the DNS
// servers publish. It is kept in the store so that every controller of a
// cluster grants the same lease and its DNS server answers the same values.
type ACMEState struct {
	Holder string            `json:"holder,omitempty"`
	Until  time.Time         `json:"until,omitempty"`
	Values map[string]string `json:"values,omitempty"` // TXT value → the drone that set it
}

// ACMEStateService keeps the ACMEState.
type ACMEStateService interface {
	// UpdateACMEState runs fn on the stored state and stores what fn
	// leaves, atomically; when fn returns an error nothing is stored and
	// that error is returned. fn may run more than once.
	UpdateACMEState(ctx context.Context, fn func(*ACMEState) error) error
	FindACMEState(ctx context.Context) (*ACMEState, error)
}
