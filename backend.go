package plane

import (
	"context"
	"crypto/rand"
	"time"
)

// BackendStatus is a step of a backend's lifecycle. Steps only move forward:
// scheduled → loading → starting → waiting → ready → terminating → terminated.
type BackendStatus string

const (
	StatusScheduled   BackendStatus = "scheduled"
	StatusLoading     BackendStatus = "loading"
	StatusStarting    BackendStatus = "starting"
	StatusWaiting     BackendStatus = "waiting"
	StatusReady       BackendStatus = "ready"
	StatusTerminating BackendStatus = "terminating"
	StatusTerminated  BackendStatus = "terminated"
)

// Statuses lists every status in lifecycle order.
var Statuses = []BackendStatus{StatusScheduled, StatusLoading, StatusStarting, StatusWaiting, StatusReady, StatusTerminating, StatusTerminated}

// Rank is the status's position in the lifecycle, from 1; 0 for an unknown status.
func (s BackendStatus) Rank() int {
	for i, v := range Statuses {
		if v == s {
			return i + 1
		}
	}
	return 0
}

// Valid reports whether s is a known status.
func (s BackendStatus) Valid() bool { return s.Rank() > 0 }

// Live reports whether a backend in status s still holds its key and resources.
func (s BackendStatus) Live() bool { return s.Valid() && s != StatusTerminated }

// CanMoveTo reports whether next is a forward move from s.
func (s BackendStatus) CanMoveTo(next BackendStatus) bool {
	return next.Valid() && next.Rank() > s.Rank()
}

// TerminationReason says why a backend reached StatusTerminated.
type TerminationReason string

const (
	ReasonIdle      TerminationReason = "idle"      // no connection for max_idle_seconds
	ReasonLifetime  TerminationReason = "lifetime"  // lifetime_seconds reached
	ReasonRequested TerminationReason = "requested" // API or dashboard asked
	ReasonExited    TerminationReason = "exited"    // the process exited by itself
	ReasonFailed    TerminationReason = "failed"    // pull, create, start error, crash before ready, start timeout
	ReasonLost      TerminationReason = "lost"      // its drone stopped answering
)

// Valid reports whether r is a known reason.
func (r TerminationReason) Valid() bool {
	switch r {
	case ReasonIdle, ReasonLifetime, ReasonRequested, ReasonExited, ReasonFailed, ReasonLost:
		return true
	}
	return false
}

// StatusChange is one entry of a backend's status history.
type StatusChange struct {
	Status BackendStatus `json:"status"`
	Time   time.Time     `json:"time"`
}

// Backend is one session backend: a container started for a project, maybe
// holding a key, on one drone.
type Backend struct {
	ID        string `json:"id"`
	ProjectID int64  `json:"-"`
	Image     string `json:"image"`     // the image's name in its project
	ImageRef  string `json:"image_ref"` // the container image reference it was started from
	Key       string `json:"key"`
	DroneID   string `json:"drone"`

	Status            BackendStatus     `json:"status"`
	StatusHistory     []StatusChange    `json:"status_history"`
	TerminationReason TerminationReason `json:"termination_reason"`
	ExitCode          *int              `json:"exit_code"`
	Error             string            `json:"error"`
	Address           string            `json:"-"` // host:port of the container on its drone

	Env  map[string]string `json:"-"`
	User string            `json:"user"`
	Limits

	// SuspendedAt is when the backend was last suspended (its container
	// paused while idle), ResumedAt when it was last resumed; it is
	// suspended now when SuspendedAt is after ResumedAt. Nil: never.
	SuspendedAt *time.Time `json:"suspended_at"`
	ResumedAt   *time.Time `json:"resumed_at"`
	// KeepAliveUntil is until when a keep-alive holds off the idle stop
	// (nil: none asked); KeepAliveBy names who asked.
	KeepAliveUntil *time.Time `json:"keep_alive_until"`
	KeepAliveBy    string     `json:"keep_alive_by"`

	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`

	// DroneUnreachable is not stored: readers that show a live backend set
	// it when its drone has not been heard from for a while.
	DroneUnreachable bool `json:"-"`
}

// BackendEvent is a status change of a backend as reported by its drone (or
// by the controller for `lost` and dispatch failures). It travels over NATS
// on SubjectBackendStatus and is applied by BackendService.ApplyBackendEvent.
type BackendEvent struct {
	BackendID string            `json:"backend_id"`
	DroneID   string            `json:"drone_id"`
	Status    BackendStatus     `json:"status"`
	Time      time.Time         `json:"time"`
	Reason    TerminationReason `json:"reason,omitempty"`
	ExitCode  *int              `json:"exit_code,omitempty"`
	Error     string            `json:"error,omitempty"`
	Address   string            `json:"address,omitempty"`
	// Suspended, when set, reports a suspension (true) or a resume (false)
	// of a ready backend at Time; its status does not change.
	Suspended *bool `json:"suspended,omitempty"`
	// Connection, when set, reports a user who joined or left the ready
	// backend at Time (connection.go); its status does not change.
	Connection *ConnectionChange `json:"connection,omitempty"`
}

// Suspended reports whether the backend is suspended now.
func (b *Backend) Suspended() bool {
	return b.Status == StatusReady && b.SuspendedAt != nil && (b.ResumedAt == nil || b.SuspendedAt.After(*b.ResumedAt))
}

// Validate checks an event received from the network.
func (e *BackendEvent) Validate() error {
	if err := ValidateBackendID(e.BackendID); err != nil {
		return err
	}
	if !e.Status.Valid() {
		return FieldErrorf("status", "unknown status %q", e.Status)
	}
	if e.Time.IsZero() {
		return FieldErrorf("time", "is required")
	}
	if e.Status == StatusTerminated && !e.Reason.Valid() {
		return FieldErrorf("reason", "unknown termination reason %q", e.Reason)
	}
	if e.Status != StatusTerminated && e.Reason != "" {
		return FieldErrorf("reason", "only a terminated backend has a reason")
	}
	if e.Suspended != nil && e.Status != StatusReady {
		return FieldErrorf("suspended", "only a ready backend is suspended or resumed")
	}
	if e.Connection != nil {
		if e.Status != StatusReady || e.Suspended != nil {
			return FieldErrorf("connection", "only a ready backend's event reports a connection, and no suspension with it")
		}
		if err := e.Connection.Validate(); err != nil {
			return err
		}
	}
	if len(e.Error) > MaxErrorLen {
		return FieldErrorf("error", "longer than %d bytes", MaxErrorLen)
	}
	return nil
}

// MaxErrorLen bounds the error message kept with a failed backend.
const MaxErrorLen = 4096

// BackendFilter selects backends. Zero fields match everything.
type BackendFilter struct {
	ProjectID *int64
	ID        *string
	Key       *string
	DroneID   *string
	Image     *string
	Live      *bool // true: not terminated; false: terminated
	Limit     int
}

// BackendService stores backends and their status history.
type BackendService interface {
	FindBackendByID(ctx context.Context, id string) (*Backend, error)
	FindBackends(ctx context.Context, filter BackendFilter) ([]*Backend, error)
	// CreateBackend stores a new backend in StatusScheduled. When b has a key
	// and a live backend of the same project holds it, nothing is stored and
	// that backend is returned with created == false: one live backend per key.
	CreateBackend(ctx context.Context, b *Backend) (backend *Backend, created bool, err error)
	// ApplyBackendEvent records a status change. Only forward moves apply;
	// others are ignored (applied == false) so that redelivered and stale
	// events are harmless.
	ApplyBackendEvent(ctx context.Context, e BackendEvent) (b *Backend, applied bool, err error)
	// CountLiveBackendsByDrone returns how many live backends each drone runs.
	CountLiveBackendsByDrone(ctx context.Context) (map[string]int, error)
	// SetKeepAlive records a keep-alive of the live backend id until until,
	// asked by by, and returns the backend; ECONFLICT once terminated.
	SetKeepAlive(ctx context.Context, id string, until time.Time, by string) (*Backend, error)
}

// backendIDAlphabet is lowercase so that IDs are valid, case-insensitive DNS labels.
const backendIDAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789"

// BackendIDLen is the length of generated backend IDs.
const BackendIDLen = 14

// NewBackendID returns a random backend ID, usable as a DNS label: it starts
// with a letter and holds lowercase letters and digits.
func NewBackendID() string {
	b := make([]byte, BackendIDLen)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error()) // never happens on supported platforms
	}
	for i := range b {
		n := len(backendIDAlphabet)
		if i == 0 {
			n = 26
		}
		// 256 % 36 bias is negligible for IDs that only need to be unique.
		b[i] = backendIDAlphabet[int(b[i])%n]
	}
	return string(b)
}

// ValidateBackendID checks the shape of a backend ID from outside.
func ValidateBackendID(id string) error {
	if id == "" {
		return FieldErrorf("id", "is required")
	}
	if len(id) > 63 {
		return FieldErrorf("id", "longer than 63 characters")
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return FieldErrorf("id", "%q holds a character other than a-z and 0-9", id)
		}
	}
	return nil
}
