package plane

import (
	"crypto/ed25519"
	"encoding/json"
	"time"
)

// ProtocolVersion is the version of the NATS wire contract in this file. It
// travels in heartbeats so that the controller can refuse drones it cannot
// talk to. Prefer adding a message (or an optional field) to changing one.
//
// A controller accepts drones from MinProtocolVersion to ProtocolVersion:
// this version and the one before, so that a rolling upgrade (controllers
// first, then drone by drone) keeps every drone serving. Versions:
//
//	1  the first contract
//	2  Heartbeat.ProxyError (a drone of version 1 sends none: its proxy
//	   counts as healthy)
//	3  warm pools (pool.go): SubjectPools, Heartbeat.Pools, SpawnSpec.Warm
//	   and Reply.Warm (a drone of version 2 reports no pools and is sent
//	   none: its spawns start cold); connections (connection.go):
//	   BackendEvent.Connection, BackendStats.Users, SubjectDisconnect and
//	   SubjectKeepAlive (a drone of version 2 reports no users and cannot
//	   disconnect one or keep a backend alive)
const (
	ProtocolVersion    = 3
	MinProtocolVersion = ProtocolVersion - 1
)

// Subjects and streams of the wire contract.
const (
	// SubjectHeartbeat: drones publish Heartbeat every HeartbeatInterval.
	SubjectHeartbeat = "plane.drone.heartbeat"

	// StreamStatus holds BackendEvents on plane.backend.<id>.status; the
	// controller reads it with the durable consumer ConsumerStatus, so a
	// controller restart loses none.
	StreamStatus   = "PLANE_STATUS"
	ConsumerStatus = "plane-controller"
	// StreamLogs holds LogLines on plane.backend.<id>.logs, at most
	// LogsPerBackend per backend.
	StreamLogs     = "PLANE_LOGS"
	LogsPerBackend = 10000

	// SubjectConnectKey: drones ask the controller for the public key that
	// verifies connect tokens (request/reply → ConnectKey).
	SubjectConnectKey = "plane.controller.connect-key"

	// SubjectEvents: controllers publish the events they apply (Event, in
	// an EventEnvelope) for the live views of the others.
	SubjectEvents = "plane.controller.events"

	subjectStatusWildcard = "plane.backend.*.status"
	subjectLogsWildcard   = "plane.backend.*.logs"
)

// StatusSubjects and LogSubjects are the subject filters of the two streams.
var (
	StatusSubjects = []string{subjectStatusWildcard}
	LogSubjects    = []string{subjectLogsWildcard}
)

// Per-drone request/reply subjects.
func SubjectSpawn(droneID string) string     { return "plane.drone." + droneID + ".spawn" }
func SubjectTerminate(droneID string) string { return "plane.drone." + droneID + ".terminate" }
func SubjectDrain(droneID string) string     { return "plane.drone." + droneID + ".drain" }
func SubjectPull(droneID string) string      { return "plane.drone." + droneID + ".pull" }

// Per-backend subjects.
func SubjectBackendStatus(id string) string { return "plane.backend." + id + ".status" }
func SubjectBackendLogs(id string) string   { return "plane.backend." + id + ".logs" }
func SubjectBackendStats(id string) string  { return "plane.backend." + id + ".stats" }

// SubjectBackendStatsAll matches the stats of every backend.
const SubjectBackendStatsAll = "plane.backend.*.stats"

// SubjectBackendStatusLive carries a copy of each status change on core
// NATS, beside the stream's (SubjectBackendStatus): it reaches the
// controller at once even while the stream elects a leader. The stream's
// copy is the one that counts; this one may be lost.
func SubjectBackendStatusLive(id string) string { return SubjectBackendStatus(id) + ".live" }

// SubjectBackendStatusLiveAll matches every backend's live status copies.
const SubjectBackendStatusLiveAll = "plane.backend.*.status.live"

// SpawnSpec asks a drone to start a backend (SubjectSpawn → Reply).
type SpawnSpec struct {
	BackendID  string            `json:"backend_id"`
	Key        string            `json:"key,omitempty"`
	ImageRef   string            `json:"image_ref"`
	PullPolicy PullPolicy        `json:"pull_policy"`
	Port       int               `json:"port"`
	Env        map[string]string `json:"env,omitempty"`
	User       string            `json:"user,omitempty"`
	Limits
	// Public backends need no connect token; AllowBearer lets non-browser
	// clients send it as "Authorization: Bearer".
	Public      bool `json:"public,omitempty"`
	AllowBearer bool `json:"allow_bearer,omitempty"`
	// Warm: BackendID is a ready member of one of the drone's warm pools,
	// which becomes this backend (with this spec's key, user and limits);
	// a member gone meanwhile is started cold under that ID.
	Warm bool `json:"warm,omitempty"`
}

// Validate checks a spec received from the network.
func (s *SpawnSpec) Validate() error {
	if err := ValidateBackendID(s.BackendID); err != nil {
		return err
	}
	if err := ValidateImageRef(s.ImageRef); err != nil {
		return err
	}
	if !s.PullPolicy.Valid() {
		return FieldErrorf("pull_policy", "unknown policy %q", s.PullPolicy)
	}
	if s.Port < 1 || s.Port > 65535 {
		return FieldErrorf("port", "must be between 1 and 65535 (got %d)", s.Port)
	}
	if len(s.Key) > MaxKeyLen {
		return FieldErrorf("key", "longer than %d bytes", MaxKeyLen)
	}
	if !printable(s.Key) {
		// The drone's proxy writes it into every request (X-Plane-Key).
		return FieldErrorf("key", "must be printable UTF-8")
	}
	if err := ValidateEnv("env", s.Env); err != nil {
		return err
	}
	return s.Limits.Validate()
}

// TerminateRequest asks a drone to stop a backend (SubjectTerminate → Reply).
type TerminateRequest struct {
	BackendID string            `json:"backend_id"`
	Hard      bool              `json:"hard"`
	Reason    TerminationReason `json:"reason"`
}

// Validate checks a request received from the network.
func (r *TerminateRequest) Validate() error {
	if err := ValidateBackendID(r.BackendID); err != nil {
		return err
	}
	if !r.Reason.Valid() {
		return FieldErrorf("reason", "unknown termination reason %q", r.Reason)
	}
	return nil
}

// DrainRequest sets or clears a drone's draining flag (SubjectDrain → Reply).
type DrainRequest struct {
	Draining bool `json:"draining"`
}

// PullRequest asks a drone to pull an image ahead of use (SubjectPull → Reply).
type PullRequest struct {
	ImageRef string `json:"image_ref"`
}

// ConnectKey is what verifies connect tokens: the controllers' signing key
// and, during a rotation of it, the other keys whose tokens are still
// good. Drones ask again every ConnectKeyRefresh.
type ConnectKey struct {
	PublicKey []byte   `json:"public_key"`         // ed25519, 32 bytes
	Accepted  [][]byte `json:"accepted,omitempty"` // ed25519, 32 bytes each
}

// ConnectKeyRefresh is how often a drone asks for the connect keys again,
// so that a rotation reaches it: wait that long between the steps of one.
const ConnectKeyRefresh = time.Minute

// MaxAcceptedKeys bounds ConnectKey.Accepted.
const MaxAcceptedKeys = 8

// Validate checks keys received from the network.
func (k *ConnectKey) Validate() error {
	if len(k.PublicKey) != ed25519.PublicKeySize {
		return FieldErrorf("public_key", "must be %d bytes (got %d)", ed25519.PublicKeySize, len(k.PublicKey))
	}
	if len(k.Accepted) > MaxAcceptedKeys {
		return FieldErrorf("accepted", "at most %d keys (got %d)", MaxAcceptedKeys, len(k.Accepted))
	}
	for i, a := range k.Accepted {
		if len(a) != ed25519.PublicKeySize {
			return FieldErrorf("accepted", "key %d must be %d bytes (got %d)", i, ed25519.PublicKeySize, len(a))
		}
	}
	return nil
}

// Keys returns every key, the signing key first.
func (k *ConnectKey) Keys() []ed25519.PublicKey {
	keys := []ed25519.PublicKey{k.PublicKey}
	for _, a := range k.Accepted {
		keys = append(keys, a)
	}
	return keys
}

// Reply answers every request; Error is empty on success.
type Reply struct {
	Error *WireError `json:"error,omitempty"`
	// Warm (spawn only): the backend is a warm pool's member, claimed
	// ready; false for one started cold.
	Warm bool `json:"warm,omitempty"`
}

// WireError carries an *Error over NATS.
type WireError struct {
	Code    ErrorCode `json:"code"`
	Message string    `json:"message"`
}

// ReplyOf builds the reply for the outcome err.
func ReplyOf(err error) Reply {
	if err == nil {
		return Reply{}
	}
	return Reply{Error: &WireError{Code: ErrorCodeOf(err), Message: ErrorMessageOf(err)}}
}

// Err turns a reply back into an error (nil on success).
func (r Reply) Err() error {
	if r.Error == nil {
		return nil
	}
	code := r.Error.Code
	if code == "" {
		code = EINTERNAL
	}
	return &Error{Code: code, Message: r.Error.Message}
}

// Heartbeat is published by every drone on SubjectHeartbeat.
type Heartbeat struct {
	ProtocolVersion int      `json:"protocol_version"`
	DroneID         string   `json:"drone_id"`
	Address         string   `json:"address"`
	ProxyAddress    string   `json:"proxy_address"`
	Version         string   `json:"version"`
	Draining        bool     `json:"draining"`
	Stopping        bool     `json:"stopping,omitempty"` // last beat of a drone shutting down
	Capacity        int      `json:"capacity"`
	CPUPercent      float64  `json:"cpu_percent"`
	MemoryBytes     uint64   `json:"memory_bytes"`
	LiveBackends    []string `json:"live_backends"`
	Images          []string `json:"images"`
	// Pools are the drone's warm pools (version 3); their members are not
	// in LiveBackends.
	Pools []PoolState `json:"pools,omitempty"`
	// HTTPS: the expiry of the certificate the drone serves (nil: none)
	// and the last certificate error, for drone health.
	CertNotAfter *time.Time `json:"cert_not_after,omitempty"`
	CertError    string     `json:"cert_error,omitempty"`
	// ProxyError says why the drone's proxy cannot accept connections
	// ("" while it can): the controller places nothing on such a drone.
	ProxyError string    `json:"proxy_error,omitempty"`
	Time       time.Time `json:"time"`
}

// Validate checks a heartbeat received from the network.
func (h *Heartbeat) Validate() error {
	if err := ValidateDroneID(h.DroneID); err != nil {
		return err
	}
	if h.ProtocolVersion < MinProtocolVersion || h.ProtocolVersion > ProtocolVersion {
		return FieldErrorf("protocol_version", "drone speaks version %d, controller speaks %d to %d: upgrade the %s",
			h.ProtocolVersion, MinProtocolVersion, ProtocolVersion, map[bool]string{true: "drone", false: "controller"}[h.ProtocolVersion < MinProtocolVersion])
	}
	if h.Capacity < 0 {
		return FieldErrorf("capacity", "must not be negative")
	}
	for _, id := range h.LiveBackends {
		if err := ValidateBackendID(id); err != nil {
			return err
		}
	}
	if len(h.Pools) > MaxPools {
		return FieldErrorf("pools", "at most %d (got %d)", MaxPools, len(h.Pools))
	}
	for i := range h.Pools {
		if err := h.Pools[i].Validate(); err != nil {
			return err
		}
	}
	return nil
}

// ValidateDroneID checks a drone ID: it is a NATS subject token and a DNS label.
func ValidateDroneID(id string) error {
	if id == "" {
		return FieldErrorf("drone_id", "is required")
	}
	if len(id) > 63 {
		return FieldErrorf("drone_id", "longer than 63 characters")
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' && i > 0 && i < len(id)-1) {
			return FieldErrorf("drone_id", "%q must be lowercase letters, digits and inner '-'", truncate(id, 64))
		}
	}
	return nil
}

// BackendStats is published by a drone on SubjectBackendStats every few seconds.
type BackendStats struct {
	BackendID    string    `json:"backend_id"`
	Time         time.Time `json:"time"`
	CPUPercent   float64   `json:"cpu_percent"`
	MemoryBytes  uint64    `json:"memory_bytes"`
	MemoryLimit  uint64    `json:"memory_limit"`
	Connections  int       `json:"connections"`
	LastActivity time.Time `json:"last_activity"`
	// Users are the users connected now (version 3).
	Users []UserConnections `json:"users,omitempty"`
}

// LogLine is one line of a backend's output, on SubjectBackendLogs.
type LogLine struct {
	BackendID string    `json:"backend_id"`
	Time      time.Time `json:"time"`
	Stream    string    `json:"stream"` // stdout or stderr
	Text      string    `json:"text"`
}

// Decode parses and validates a wire message of any type with a Validate method.
func Decode[T any, P interface {
	*T
	Validate() error
}](data []byte) (T, error) {
	var v T
	if err := json.Unmarshal(data, &v); err != nil {
		return v, Errorf(EINVALID, "malformed message: %v", err)
	}
	return v, P(&v).Validate()
}

// Validate checks stats received from the network.
func (s *BackendStats) Validate() error {
	if len(s.Users) > MaxStatsUsers {
		return FieldErrorf("users", "at most %d (got %d)", MaxStatsUsers, len(s.Users))
	}
	for _, u := range s.Users {
		if len(u.User) > MaxUserLen || !printable(u.User) || u.Connections < 0 {
			return FieldErrorf("users", "bad user entry")
		}
	}
	return ValidateBackendID(s.BackendID)
}

// Validate checks a log line received from the network.
func (l *LogLine) Validate() error { return ValidateBackendID(l.BackendID) }

// Validate accepts every drain request: the flag is all it holds.
func (r *DrainRequest) Validate() error { return nil }

// Validate checks a pull request received from the network.
func (r *PullRequest) Validate() error { return ValidateImageRef(r.ImageRef) }

// EventEnvelope is an Event on SubjectEvents; Origin names the controller
// that published it, which has delivered it to its own subscribers already.
//
// A backend travels in its JSON form, without its environment (which may
// hold secrets) and its container's address; ProjectID, which that form
// leaves out, travels beside it, for the project's topic.
type EventEnvelope struct {
	Origin    string `json:"origin"`
	Event     Event  `json:"event"`
	ProjectID int64  `json:"project_id,omitempty"`
}

// Validate checks an event received from another controller: it names what
// changed, and the topics it goes to are well formed.
func (e *EventEnvelope) Validate() error {
	switch ev := e.Event; {
	case ev.Kind == EventBackend && ev.Backend != nil:
		return ValidateBackendID(ev.Backend.ID)
	case ev.Kind == EventDrone && ev.Drone != nil:
		return ValidateDroneID(ev.Drone.ID)
	case ev.Kind == EventProjectLog && ev.ProjectLog != nil:
		if ev.ProjectLog.ProjectID <= 0 {
			return FieldErrorf("project_id", "must be positive")
		}
		if ev.ProjectLog.BackendID == "" {
			return nil
		}
		return ValidateBackendID(ev.ProjectLog.BackendID)
	}
	return FieldErrorf("event", "kind %q without its %s", e.Event.Kind, e.Event.Kind)
}
