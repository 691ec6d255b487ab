package plane

import (
	"context"
	"encoding/json"
	"time"
)

// A project's event log: what happened to its backends, in order, for the
// API's event stream (GET /api/v1/events) and the project's webhooks.
// Each event is stored in the transaction of the change it announces, so a
// crash loses neither; the store numbers them (ID), and a reader that has
// seen an ID asks for the ones after it.

// ProjectEventType names what happened; webhooks subscribe to types.
type ProjectEventType string

const (
	// ProjectEventBackendStatus: a backend moved to a new status (its
	// first, scheduled, included). Data is a BackendStatusData.
	ProjectEventBackendStatus ProjectEventType = "backend.status"
	// ProjectEventUserJoined and ProjectEventUserLeft: a user's first
	// connection to a ready backend opened, or their last closed. Data is
	// a ConnectionData.
	ProjectEventUserJoined ProjectEventType = "backend.user_joined"
	ProjectEventUserLeft   ProjectEventType = "backend.user_left"
)

// ProjectEventTypes lists every type.
var ProjectEventTypes = []ProjectEventType{ProjectEventBackendStatus, ProjectEventUserJoined, ProjectEventUserLeft}

// Valid reports whether t is a known type.
func (t ProjectEventType) Valid() bool {
	for _, v := range ProjectEventTypes {
		if v == t {
			return true
		}
	}
	return false
}

// MaxProjectEvents is how many of a project's latest events the store
// keeps: a reader that comes back after more than that gets what is kept,
// from the oldest on. Older ones are cut when the log grows (the store
// says when), so a project briefly holds a few more.
const MaxProjectEvents = 10000

// ProjectEvent is one entry of a project's event log. Its JSON form is the
// body of a webhook (the Standard Webhooks payload: type, timestamp, data)
// and the data of an event of the API's stream.
type ProjectEvent struct {
	ID        int64            `json:"id"` // assigned by the store, rising
	ProjectID int64            `json:"-"`
	Type      ProjectEventType `json:"type"`
	BackendID string           `json:"-"` // in Data too
	Time      time.Time        `json:"timestamp"`
	Data      json.RawMessage  `json:"data"`
}

// BackendStatusData is the data of a ProjectEventBackendStatus event: what
// a webhook's consumer needs to follow a backend, never its environment.
type BackendStatusData struct {
	BackendID string            `json:"backend_id"`
	Status    BackendStatus     `json:"status"`
	Reason    TerminationReason `json:"reason,omitempty"` // of a terminated backend
	Time      time.Time         `json:"time"`
}

// ConnectionData is the data of a join or a leave.
type ConnectionData struct {
	BackendID string `json:"backend_id"`
	User      string `json:"user"`
	// Users is how many users are connected after the change.
	Users int       `json:"users"`
	Time  time.Time `json:"time"`
}

// NewBackendStatusEvent is the event of b's move to its current status at
// at.
func NewBackendStatusEvent(b *Backend, at time.Time) *ProjectEvent {
	at = jsonTime(at)
	d := BackendStatusData{BackendID: b.ID, Status: b.Status, Time: at}
	if b.Status == StatusTerminated {
		d.Reason = b.TerminationReason
	}
	return &ProjectEvent{ProjectID: b.ProjectID, Type: ProjectEventBackendStatus, BackendID: b.ID, Time: at, Data: eventData(d)}
}

// NewConnectionEvent is the event of user joining (or leaving) a backend of
// a project at at, which leaves users connected.
func NewConnectionEvent(projectID int64, backendID, user string, joined bool, users int, at time.Time) *ProjectEvent {
	t := ProjectEventUserLeft
	if joined {
		t = ProjectEventUserJoined
	}
	at = jsonTime(at)
	d := ConnectionData{BackendID: backendID, User: user, Users: users, Time: at}
	return &ProjectEvent{ProjectID: projectID, Type: t, BackendID: backendID, Time: at, Data: eventData(d)}
}

// jsonTime is t, or the zero time when JSON cannot hold it (a year past
// 9999, from a drone's broken clock): an event must never fail to encode,
// or the change it announces could not be stored either.
func jsonTime(t time.Time) time.Time {
	if y := t.Year(); y < 0 || y > 9999 {
		return time.Time{}
	}
	return t
}

// eventData encodes an event's data: plain fields, whose times jsonTime
// made encodable.
func eventData(v any) json.RawMessage {
	data, err := json.Marshal(v)
	if err != nil {
		return json.RawMessage("{}")
	}
	return data
}

// Connection is a user connected to a backend now, and since when.
type Connection struct {
	User  string    `json:"user"`
	Since time.Time `json:"since"`
}

// ProjectEventService reads the event log and who is connected; the log
// is written by BackendService, with the changes it announces.
type ProjectEventService interface {
	// FindProjectEvents returns a project's events with an ID above
	// afterID, oldest first, at most limit.
	FindProjectEvents(ctx context.Context, projectID, afterID int64, limit int) ([]*ProjectEvent, error)
	// FindBackendEvents is FindProjectEvents for one backend's events.
	FindBackendEvents(ctx context.Context, backendID string, afterID int64, limit int) ([]*ProjectEvent, error)
	// FindConnections returns the users connected to a backend now, in
	// the order they joined.
	FindConnections(ctx context.Context, backendID string) ([]Connection, error)
}
