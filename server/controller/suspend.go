package controller

import (
	"context"
	"fmt"

	"plane"
)

// systemActor is who the activity log names for what Plane does by itself,
// such as a drone suspending an idle backend.
var systemActor = plane.Actor{Name: "plane"}

// backendSuspended announces that b's drone suspended it (suspended) or
// resumed it: on the bus, like any change, in the metrics, and in its
// project's activity log. Its status did not change, so the phase
// latencies (BackendChanged) are not observed again.
func (c *Core) backendSuspended(ctx context.Context, b *plane.Backend, suspended bool) {
	if c.Metrics != nil {
		c.Metrics.BackendSuspended(suspended)
	}
	c.publish(b)
	action, detail := plane.ActionBackendResume, resumeDetail(b)
	if suspended {
		action, detail = plane.ActionBackendSuspend, fmt.Sprintf("idle for %d s; stops after %d s suspended", b.MaxIdleSeconds, b.SuspendSeconds)
	}
	c.Record(ctx, systemActor, b.ProjectID, action, b.ID, detail)
}

// resumeDetail is the activity log's detail of a resume: how long the
// backend was suspended, when its suspension came first.
func resumeDetail(b *plane.Backend) string {
	if b.SuspendedAt == nil || b.ResumedAt == nil || b.ResumedAt.Before(*b.SuspendedAt) {
		return ""
	}
	return fmt.Sprintf("after %d s suspended", int(b.ResumedAt.Sub(*b.SuspendedAt).Seconds()+0.5))
}
