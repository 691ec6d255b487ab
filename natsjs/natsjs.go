// Package natsjs holds the JetStream settings of the wire contract: the
// streams the controller creates for the drones' status changes and logs.
// The controller (server/dispatch) creates them; the drone's tests
// (drone/dronetest) create the same ones without importing the controller.
package natsjs

import (
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"plane"
)

// Streams are the status stream, with the duplicate window that lets a
// drone publish again a change whose acknowledgement it never saw, and the
// logs stream, bounded per backend. Replicas is left for the caller.
func Streams() []jetstream.StreamConfig {
	return []jetstream.StreamConfig{
		{
			Name:       plane.StreamStatus,
			Subjects:   plane.StatusSubjects,
			Storage:    jetstream.FileStorage,
			MaxAge:     7 * 24 * time.Hour,
			Duplicates: 2 * time.Minute,
		},
		{
			Name:              plane.StreamLogs,
			Subjects:          plane.LogSubjects,
			Storage:           jetstream.FileStorage,
			MaxAge:            7 * 24 * time.Hour,
			MaxMsgsPerSubject: plane.LogsPerBackend,
			Discard:           jetstream.DiscardOld,
		},
	}
}
