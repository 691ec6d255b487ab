// Package api is the shape of the controller's JSON API under /api/v1 —
// what it answers — and a Go client for it, used by the command line and
// by tests. Requests that the drone and the controller share (the spawn
// request, images, tokens) are the root package's; this package holds the
// answers that only the API gives.
package api

import (
	"time"

	"plane"
)

// Backend is the API's view of a backend.
type Backend struct {
	ID      string              `json:"id"`
	Key     string              `json:"key"`
	Image   string              `json:"image"`
	Status  plane.BackendStatus `json:"status"`
	Spawned bool                `json:"spawned"` // a spawn started it (not found by its key)
	// Warm and ColdReason answer a spawn that started the backend (absent
	// elsewhere): warm, it is a warm pool's member, claimed ready; cold,
	// ColdReason says why no member could serve the request.
	Warm       *bool            `json:"warm,omitempty"`
	ColdReason plane.ColdReason `json:"cold_reason,omitempty"`
	URL        string           `json:"url"`
	Drone      string           `json:"drone"`
	// DroneUnreachable: the backend is live, but its drone has not been
	// heard from for a while; it keeps its status (and may well serve its
	// users) until the drone is back or declared lost.
	DroneUnreachable  bool                    `json:"drone_unreachable"`
	User              string                  `json:"user"`
	StatusHistory     []plane.StatusChange    `json:"status_history"`
	TerminationReason plane.TerminationReason `json:"termination_reason"`
	ExitCode          *int                    `json:"exit_code"`
	Error             string                  `json:"error"`
	plane.Limits
	// Suspended: the backend is ready but its drone paused it while idle
	// (suspend_seconds); the next request through the proxy resumes it.
	// SuspendedAt and ResumedAt are its last suspension and resume (null:
	// never).
	Suspended   bool       `json:"suspended"`
	SuspendedAt *time.Time `json:"suspended_at"`
	ResumedAt   *time.Time `json:"resumed_at"`
	CreatedAt   time.Time  `json:"created_at"`
	// KeepAliveUntil and KeepAliveBy: the last keep-alive (POST
	// …/keepalive) holds off the idle stop until then (null: none asked).
	KeepAliveUntil *time.Time `json:"keep_alive_until"`
	KeepAliveBy    string     `json:"keep_alive_by"`
	// UpBecause says, for a ready backend, why it is still up: "2 users
	// connected", "kept alive by ci until 14:05:00Z", "idle, stops in
	// 40 s", "no idle limit".
	UpBecause string `json:"up_because,omitempty"`
	// From the drone's latest stats, for live backends.
	Connections  int        `json:"connections"`
	LastActivity *time.Time `json:"last_activity"`
	IdleDeadline *time.Time `json:"idle_deadline"`
	CPUPercent   float64    `json:"cpu_percent"`
	MemoryBytes  uint64     `json:"memory_bytes"`
}

// Backends is the answer of GET /api/v1/backends.
type Backends struct {
	Backends []Backend `json:"backends"`
}

// Images is the answer of GET /api/v1/images.
type Images struct {
	Images []*plane.Image `json:"images"`
}

// Drones is the answer of GET /api/v1/drones: every drone the controller
// has heard of, by ID. POST /api/v1/drones/{id}/drain and .../undrain
// answer the one drone as a plane.Drone.
type Drones struct {
	Drones []plane.Drone `json:"drones"`
}

// TerminateRequest is the body of POST /api/v1/backends/{id}/terminate.
type TerminateRequest struct {
	Hard bool `json:"hard"` // SIGKILL at once, no grace period
}

// ConnectRequest is the body of POST /api/v1/backends/{id}/connect. User
// is a pointer so that an absent user (the backend's own) differs from an
// empty one (no user).
type ConnectRequest struct {
	User *string `json:"user,omitempty"`
}

// Connect is the answer of POST /api/v1/backends/{id}/connect.
type Connect struct {
	URL       string    `json:"url"`
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
}

// ErrorResponse is every error's body: {"error": {"code", "message"}}.
type ErrorResponse struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is what went wrong; Field names the request field at fault.
type ErrorDetail struct {
	Code    plane.ErrorCode `json:"code"`
	Message string          `json:"message"`
	Field   string          `json:"field,omitempty"`
}

// DisconnectRequest is the body of POST /api/v1/backends/{id}/disconnect.
// User is a pointer so that an absent user (every user's connections)
// differs from an empty one (the connections that name no user).
type DisconnectRequest struct {
	User *string `json:"user,omitempty"`
}

// KeepAliveRequest is the body of POST /api/v1/backends/{id}/keepalive:
// hold off the backend's idle stop for Seconds (1 to 86400) from now.
type KeepAliveRequest struct {
	Seconds int `json:"seconds"`
}

// Connection is a user connected to a backend now: since when, and how
// many connections they hold (from the drone's latest stats; 1 when they
// do not name the user yet).
type Connection struct {
	User        string    `json:"user"`
	Since       time.Time `json:"since"`
	Connections int       `json:"connections"`
}

// Connections is the answer of GET /api/v1/backends/{id}/connections, in
// the order the users joined.
type Connections struct {
	Connections []Connection `json:"connections"`
}

// Webhook is a webhook as the API shows it. Secret is in the answer of
// POST /api/v1/webhooks only: it is never shown again.
type Webhook struct {
	ID        int64                    `json:"id"`
	URL       string                   `json:"url"`
	Events    []plane.ProjectEventType `json:"events"` // empty: every type
	CreatedAt time.Time                `json:"created_at"`
	// FailingSince is the first failed attempt since the last answered
	// one (null while answered); a webhook failing for a day is disabled:
	// DisabledAt, with DisabledReason.
	FailingSince   *time.Time `json:"failing_since"`
	DisabledAt     *time.Time `json:"disabled_at"`
	DisabledReason string     `json:"disabled_reason"`
	Secret         string     `json:"secret,omitempty"`
}

// Webhooks is the answer of GET /api/v1/webhooks.
type Webhooks struct {
	Webhooks []Webhook `json:"webhooks"`
}

// Delivery is one event for one webhook, with its attempts (oldest
// first). NextAttemptAt and RetryUntil are set while it is pending.
type Delivery struct {
	ID            int64                  `json:"id"`
	WebhookID     int64                  `json:"webhook_id"`
	EventID       int64                  `json:"event_id"`
	EventType     plane.ProjectEventType `json:"event_type"`
	Status        plane.DeliveryStatus   `json:"status"`
	CreatedAt     time.Time              `json:"created_at"`
	NextAttemptAt *time.Time             `json:"next_attempt_at"`
	RetryUntil    *time.Time             `json:"retry_until"`
	Attempts      []DeliveryAttempt      `json:"attempts"`
}

// DeliveryAttempt is one try of a delivery: the answer's status code, or
// the error when there was no answer.
type DeliveryAttempt struct {
	Time       time.Time `json:"time"`
	StatusCode int       `json:"status_code,omitempty"`
	Error      string    `json:"error,omitempty"`
	DurationMS int64     `json:"duration_ms"`
}

// Deliveries is the answer of GET /api/v1/webhooks/{id}/deliveries, newest
// first.
type Deliveries struct {
	Deliveries []Delivery `json:"deliveries"`
}
