package plane

import "time"

// Connections (protocol version 3): a drone's proxy knows which user —
// the user of the connect token — holds which connections to a backend.
// When a user's count on a backend goes from 0 to 1, the drone reports the
// user joined; from 1 to 0, after ConnectionLeaveDebounce without a new
// connection (a page reload is no leave), that the user left. Each report
// is a BackendEvent with Connection set, on the backend's status subject
// through the drone's outbox: durable, like a status change. The
// controller keeps who is connected, and publishes each join and leave as
// a project event (backend.user_joined, backend.user_left).

// ConnectionLeaveDebounce is how long a user's last connection must stay
// closed before the user has left.
const ConnectionLeaveDebounce = time.Second

// ConnectionChange, in a BackendEvent, reports a user who joined a ready
// backend (their first connection) or left it (their last one closed).
type ConnectionChange struct {
	User   string `json:"user"`
	Joined bool   `json:"joined"`
	// Users is how many distinct users are connected after the change.
	Users int `json:"users"`
}

// Validate checks a change received from the network.
func (c *ConnectionChange) Validate() error {
	if len(c.User) > MaxUserLen || !printable(c.User) {
		return FieldErrorf("user", "must be printable UTF-8 of at most %d bytes", MaxUserLen)
	}
	if c.Users < 0 || c.Joined && c.Users < 1 {
		return FieldErrorf("users", "out of range (%d)", c.Users)
	}
	return nil
}

// UserConnections is one user's open connections to a backend, in its
// BackendStats.
type UserConnections struct {
	User        string    `json:"user"`
	Connections int       `json:"connections"`
	Since       time.Time `json:"since"` // when they joined
}

// MaxStatsUsers bounds BackendStats.Users.
const MaxStatsUsers = 1000

// SubjectDisconnect: the controller asks a drone to close a user's
// connections to a backend (DisconnectRequest → Reply).
func SubjectDisconnect(droneID string) string { return "plane.drone." + droneID + ".disconnect" }

// SubjectKeepAlive: the controller asks a drone to hold off a backend's
// idle stop (KeepAliveRequest → Reply).
func SubjectKeepAlive(droneID string) string { return "plane.drone." + droneID + ".keepalive" }

// DisconnectRequest closes the open connections of User (of every user
// when All) to a backend at once, and from then on refuses their connect
// tokens that expire before TokensExpiringBefore: the tokens issued before
// the disconnect (a token lives ConnectTokenTTL, so those issued after it
// expire later). The drone keeps the refusal until that time.
type DisconnectRequest struct {
	BackendID            string    `json:"backend_id"`
	User                 string    `json:"user,omitempty"`
	All                  bool      `json:"all,omitempty"`
	TokensExpiringBefore time.Time `json:"tokens_expiring_before"`
}

// Validate checks a request received from the network.
func (r *DisconnectRequest) Validate() error {
	if err := ValidateBackendID(r.BackendID); err != nil {
		return err
	}
	if r.All && r.User != "" {
		return FieldErrorf("user", "names no user when all are disconnected")
	}
	if len(r.User) > MaxUserLen || !printable(r.User) {
		return FieldErrorf("user", "must be printable UTF-8 of at most %d bytes", MaxUserLen)
	}
	return nil
}

// KeepAliveRequest holds off a backend's idle stop (and suspension) until
// Until, bounded by its lifetime; a later request replaces an earlier one.
type KeepAliveRequest struct {
	BackendID string    `json:"backend_id"`
	Until     time.Time `json:"until"`
}

// Validate checks a request received from the network.
func (r *KeepAliveRequest) Validate() error {
	if err := ValidateBackendID(r.BackendID); err != nil {
		return err
	}
	if r.Until.IsZero() {
		return FieldErrorf("until", "is required")
	}
	return nil
}
