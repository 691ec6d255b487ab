package plane

import (
	"context"
	"time"
)

// Action names what someone did in a project.
type Action string

const (
	ActionProjectCreate     Action = "project.create"
	ActionImageCreate       Action = "image.create"
	ActionImageUpdate       Action = "image.update"
	ActionImageDelete       Action = "image.delete"
	ActionBackendSpawn      Action = "backend.spawn"
	ActionBackendTerminate  Action = "backend.terminate"
	ActionBackendSuspend    Action = "backend.suspend" // by its drone, when idle
	ActionBackendResume     Action = "backend.resume"  // by its drone, at a request
	ActionTokenCreate       Action = "token.create"
	ActionTokenRevoke       Action = "token.revoke"
	ActionBackendDisconnect Action = "backend.disconnect" // its users' connections closed, their tokens refused
	ActionBackendKeepAlive  Action = "backend.keepalive"  // its idle stop held off
	ActionWebhookCreate     Action = "webhook.create"
	ActionWebhookDelete     Action = "webhook.delete"
	ActionWebhookRetry      Action = "webhook.retry" // a delivery sent again by hand
)

// Actor is who did something: a signed-in user (from the dashboard) or an
// API token. Name is kept as it was, so the log reads the same after the
// user or token is gone.
type Actor struct {
	UserID  int64  `json:"user_id,omitempty"`
	TokenID string `json:"token_id,omitempty"`
	Name    string `json:"name"`
}

// Activity is one entry of a project's activity log.
type Activity struct {
	ID        int64     `json:"id"`
	ProjectID int64     `json:"project_id"`
	Time      time.Time `json:"time"`
	Actor     Actor     `json:"actor"`
	Action    Action    `json:"action"`
	Target    string    `json:"target"` // the backend id, image name or token name
	Detail    string    `json:"detail"` // e.g. "image demo", "hard"
}

// ActivityService stores the activity log.
type ActivityService interface {
	RecordActivity(ctx context.Context, a *Activity) error
	// FindActivity returns a project's entries, newest first, at most limit.
	FindActivity(ctx context.Context, projectID int64, limit int) ([]*Activity, error)
}
