package plane

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Webhooks: a project's HTTP endpoints that get its events (projectevent.go)
// as signed POSTs, following the Standard Webhooks specification
// (server/webhook signs and sends). Every matching event becomes a
// delivery, stored with the event, then sent and retried until it is
// answered 2xx or its time is up; each try is an attempt, kept for the
// delivery log.

// Webhook is one endpoint of a project.
type Webhook struct {
	ID        int64  `json:"id"`
	ProjectID int64  `json:"-"`
	URL       string `json:"url"`
	// Events are the types it gets; empty: every type.
	Events []ProjectEventType `json:"events"`
	// Secret signs the deliveries ("whsec_" and base64). The API shows it
	// once, when the webhook is created.
	Secret    string    `json:"-"`
	CreatedAt time.Time `json:"created_at"`
	// FailingSince is the first failed attempt since the last answered
	// one; nil while it is answered. A webhook failing for
	// WebhookDisableAfter is disabled: DisabledAt, with why.
	FailingSince   *time.Time `json:"failing_since"`
	DisabledAt     *time.Time `json:"disabled_at"`
	DisabledReason string     `json:"disabled_reason"`
}

// WebhookSecretPrefix starts every webhook secret, so that people (and the
// Standard Webhooks libraries) recognise one: "whsec_", then the key in
// base64.
const WebhookSecretPrefix = "whsec_"

// webhookSecretBytes is the key's length: the specification asks for 24
// to 64 bytes.
const webhookSecretBytes = 32

// NewWebhookSecret returns a new random secret.
func NewWebhookSecret() (string, error) {
	key := make([]byte, webhookSecretBytes)
	if _, err := rand.Read(key); err != nil {
		return "", fmt.Errorf("webhook secret: %w", err)
	}
	return WebhookSecretPrefix + base64.StdEncoding.EncodeToString(key), nil
}

// Wants reports whether w gets events of type t.
func (w *Webhook) Wants(t ProjectEventType) bool {
	if len(w.Events) == 0 {
		return true
	}
	for _, v := range w.Events {
		if v == t {
			return true
		}
	}
	return false
}

// WebhookDisableAfter is how long every attempt of a webhook may fail before
// it is disabled; WebhookRetryFor how long one delivery is tried.
const (
	WebhookDisableAfter = 24 * time.Hour
	WebhookRetryFor     = 24 * time.Hour
)

// MaxWebhookURLLen bounds a webhook's URL; MaxWebhooks a project's webhooks.
const (
	MaxWebhookURLLen = 2048
	MaxWebhooks      = 20
)

// WebhookInput is what a user gives to create a webhook.
type WebhookInput struct {
	URL    string             `json:"url"`
	Events []ProjectEventType `json:"events"`
}

// Validate checks in and normalizes its events: known types, each once, in
// the order of ProjectEventTypes; all of them is the same as none.
func (in *WebhookInput) Validate() error {
	if _, err := ParseWebhookURL(in.URL); err != nil {
		return err
	}
	seen := map[ProjectEventType]bool{}
	for _, t := range in.Events {
		if !t.Valid() {
			return FieldErrorf("events", "unknown event type %q (want some of %s)", t, joinTypes(ProjectEventTypes))
		}
		seen[t] = true
	}
	in.Events = nil
	if len(seen) < len(ProjectEventTypes) {
		for _, t := range ProjectEventTypes {
			if seen[t] {
				in.Events = append(in.Events, t)
			}
		}
	}
	return nil
}

func joinTypes(ts []ProjectEventType) string {
	s := make([]string, len(ts))
	for i, t := range ts {
		s[i] = string(t)
	}
	return strings.Join(s, ", ")
}

// ParseWebhookURL checks the shape of a webhook's URL: absolute http or
// https, a host, no user or password (a secret in a URL ends up in logs),
// no fragment (never sent). Where the host points is checked when a
// delivery is sent (server/webhook), since a name can change its address.
func ParseWebhookURL(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, FieldErrorf("url", "is required")
	}
	if len(raw) > MaxWebhookURLLen {
		return nil, FieldErrorf("url", "longer than %d bytes", MaxWebhookURLLen)
	}
	if strings.ContainsAny(raw, " \u00a0") || !printable(raw) {
		return nil, FieldErrorf("url", "holds spaces or control characters")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, FieldErrorf("url", "does not parse: %v", unwrapURLError(err))
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, FieldErrorf("url", "must start with https:// or http:// (got scheme %q)", u.Scheme)
	case u.Opaque != "" || u.Host == "":
		return nil, FieldErrorf("url", "names no host")
	case u.User != nil:
		return nil, FieldErrorf("url", "must not hold a user or password: the signature authenticates deliveries")
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return nil, FieldErrorf("url", "must not hold a fragment (#…)")
	case u.Hostname() == "":
		return nil, FieldErrorf("url", "names no host")
	}
	if p := u.Port(); p != "" {
		if len(p) > 5 || p == "0" || atoiPort(p) > 65535 {
			return nil, FieldErrorf("url", "port %q is out of range", p)
		}
	}
	return u, nil
}

// atoiPort reads the digits url.Parse left in a port (it checks they are
// digits).
func atoiPort(p string) int {
	n := 0
	for i := 0; i < len(p); i++ {
		n = n*10 + int(p[i]-'0')
	}
	return n
}

// unwrapURLError drops url.Error's repetition of the whole URL.
func unwrapURLError(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}

// DeliveryStatus is where a webhook delivery stands.
type DeliveryStatus string

const (
	DeliveryPending   DeliveryStatus = "pending"   // to be sent (again) at NextAttemptAt
	DeliveryDelivered DeliveryStatus = "delivered" // answered 2xx
	DeliveryFailed    DeliveryStatus = "failed"    // given up: its time was up, or its webhook disabled
)

// WebhookDelivery is one event for one webhook, with its attempts.
type WebhookDelivery struct {
	ID        int64            `json:"id"`
	WebhookID int64            `json:"webhook_id"`
	EventID   int64            `json:"event_id"`
	EventType ProjectEventType `json:"event_type"`
	Status    DeliveryStatus   `json:"status"`
	CreatedAt time.Time        `json:"created_at"`
	// Since is when its current round of tries began: when it was created,
	// or last retried by hand. A failed attempt is tried again for
	// WebhookRetryFor from then.
	Since         time.Time         `json:"-"`
	NextAttemptAt *time.Time        `json:"next_attempt_at"` // while pending
	Attempts      []DeliveryAttempt `json:"attempts"`        // oldest first
}

// DeliveryAttempt is one try of a delivery: the answer's status, or why
// there was none.
type DeliveryAttempt struct {
	Time       time.Time     `json:"time"`
	StatusCode int           `json:"status_code,omitempty"`
	Error      string        `json:"error,omitempty"`
	Duration   time.Duration `json:"-"`
}

// OK reports whether the attempt delivered: a 2xx answer.
func (a DeliveryAttempt) OK() bool { return a.Error == "" && a.StatusCode >= 200 && a.StatusCode < 300 }

// MaxAttemptErrorLen bounds the error kept with an attempt.
const MaxAttemptErrorLen = 512

// DueDelivery is a delivery claimed for sending: what the sender needs,
// and the claim that records its outcome.
type DueDelivery struct {
	ID        int64
	WebhookID int64
	ProjectID int64
	EventID   int64
	URL       string
	Secret    string
	Payload   []byte
	Attempts  int       // made before this one
	Since     time.Time // as WebhookDelivery.Since
	// Claim identifies this claim: the outcome of an attempt made after
	// the lease ran out (another controller may be sending it) is logged
	// but moves the delivery no further.
	Claim string
}

// AttemptOutcome is what RecordWebhookAttempt stores after an attempt.
type AttemptOutcome struct {
	Attempt DeliveryAttempt
	// Next is when to try again after a failure; nil: give up (failed).
	Next *time.Time
}

// WebhookService stores webhooks and their deliveries. Deliveries are
// created by BackendService, with the events they carry.
type WebhookService interface {
	// CreateWebhook stores w, setting its ID and CreatedAt.
	CreateWebhook(ctx context.Context, w *Webhook) error
	// FindWebhooks returns a project's webhooks, oldest first.
	FindWebhooks(ctx context.Context, projectID int64) ([]*Webhook, error)
	// FindWebhookByID returns a webhook of the project: another
	// project's is not found.
	FindWebhookByID(ctx context.Context, projectID, id int64) (*Webhook, error)
	DeleteWebhook(ctx context.Context, projectID, id int64) error
	// FindWebhookDeliveries returns a webhook's deliveries, newest first,
	// with their attempts, at most limit.
	FindWebhookDeliveries(ctx context.Context, webhookID int64, limit int) ([]*WebhookDelivery, error)
	// RetryWebhookDelivery makes a delivery of a webhook due at at, the
	// start of a new round of tries; a disabled webhook is enabled again.
	RetryWebhookDelivery(ctx context.Context, webhookID, deliveryID int64, at time.Time) (*WebhookDelivery, error)
	// ClaimWebhookDeliveries leases at most limit pending deliveries due
	// by now, of enabled webhooks, for lease: no other claim gets them
	// before it runs out or their outcome is recorded.
	ClaimWebhookDeliveries(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]*DueDelivery, error)
	// RecordWebhookAttempt logs an attempt of a claimed delivery, moves
	// the delivery on (delivered, pending again, failed) and returns since
	// when its webhook has been failing (nil: it is answered).
	RecordWebhookAttempt(ctx context.Context, d *DueDelivery, o AttemptOutcome) (failingSince *time.Time, err error)
	// DisableWebhook stops a webhook's deliveries, saying why: its
	// pending deliveries fail.
	DisableWebhook(ctx context.Context, id int64, reason string, at time.Time) error
	// PruneWebhookDeliveries deletes the deliveries done (delivered or
	// failed) and created before before, with their attempts.
	PruneWebhookDeliveries(ctx context.Context, before time.Time) (int64, error)
}

// WebhookMessage is one signed POST of a delivery.
type WebhookMessage struct {
	// ID is the webhook-id header: the same for every attempt of one
	// event, so that receivers can drop a message they had.
	ID     string
	URL    string
	Secret string
	Body   []byte
}

// WebhookResult is how an attempt went: the answer's status, or Err.
type WebhookResult struct {
	StatusCode int
	Err        error
	Duration   time.Duration
	// RetryAfter is what the answer's Retry-After asked for (0: nothing).
	RetryAfter time.Duration
}

// OK reports whether the endpoint took the message: a 2xx answer.
func (r WebhookResult) OK() bool { return r.Err == nil && r.StatusCode >= 200 && r.StatusCode < 300 }

// WebhookSender signs and sends messages (server/webhook).
type WebhookSender interface {
	// CheckURL checks a new webhook's URL: its shape (ParseWebhookURL),
	// and where it points, as far as can be told before a send.
	CheckURL(ctx context.Context, raw string) error
	Send(ctx context.Context, m WebhookMessage) WebhookResult
}
