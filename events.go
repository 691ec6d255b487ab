package plane

import (
	"context"
	"strconv"
)

// The event bus carries what a controller applied — a backend's new state,
// a drone's — to the live views that show it: a spawn waiting for ready,
// the API's event streams, the dashboard's live tables. With one controller
// it is in memory; with several, over NATS, so that a change one applied
// reaches the browsers connected to another.

// EventKind says what changed.
type EventKind string

const (
	EventBackend EventKind = "backend" // Event.Backend is the backend's new state
	EventDrone   EventKind = "drone"   // Event.Drone is the drone's new state
	// EventProjectLog: Event.ProjectLog names the project (and backend)
	// whose event log grew. Readers take the new entries from the store,
	// after the last they have: the store's order is the one that counts,
	// and an announcement lost on the way only delays them.
	EventProjectLog EventKind = "project_log"
)

// Event is one change.
type Event struct {
	Kind       EventKind        `json:"kind"`
	Backend    *Backend         `json:"backend,omitempty"`
	Drone      *Drone           `json:"drone,omitempty"`
	ProjectLog *ProjectLogGrown `json:"project_log,omitempty"`
}

// ProjectLogGrown announces new entries of a project's event log
// (projectevent.go), about one backend when BackendID is set.
type ProjectLogGrown struct {
	ProjectID int64  `json:"project_id"`
	BackendID string `json:"backend_id,omitempty"`
}

// Topics of the bus: a backend's ID, TopicProject of its project,
// TopicBackends (every backend), TopicDrones (every drone).
const (
	TopicBackends = "backends"
	TopicDrones   = "drones"
)

// TopicProject is the topic of a project's backends.
func TopicProject(projectID int64) string { return "project:" + strconv.FormatInt(projectID, 10) }

// TopicProjectLog and TopicBackendLog carry the EventProjectLog events of
// a project and of one backend. They are topics of their own, so that the
// readers of a backend's topic get only EventBackend events.
func TopicProjectLog(projectID int64) string {
	return "project-log:" + strconv.FormatInt(projectID, 10)
}

// TopicBackendLog: see TopicProjectLog.
func TopicBackendLog(backendID string) string { return "backend-log:" + backendID }

// Topics are the topics e is delivered on.
func (e Event) Topics() []string {
	switch {
	case e.Kind == EventBackend && e.Backend != nil:
		return []string{e.Backend.ID, TopicProject(e.Backend.ProjectID), TopicBackends}
	case e.Kind == EventDrone && e.Drone != nil:
		return []string{TopicDrones}
	case e.Kind == EventProjectLog && e.ProjectLog != nil:
		if e.ProjectLog.BackendID != "" {
			return []string{TopicProjectLog(e.ProjectLog.ProjectID), TopicBackendLog(e.ProjectLog.BackendID)}
		}
		return []string{TopicProjectLog(e.ProjectLog.ProjectID)}
	}
	return nil
}

// EventBus delivers events to the subscribers of their topics.
type EventBus interface {
	// Publish delivers e to the subscribers of its topics, on this
	// controller and (over NATS) on the others.
	Publish(ctx context.Context, e Event) error
	// Subscribe returns the events of a topic until cancel is called or
	// the bus closes, which closes the channel. A subscriber that does not
	// keep up loses events rather than hold the others up: readers reload
	// what they show, so a lost intermediate state costs nothing.
	Subscribe(topic string) (events <-chan Event, cancel func())
}
