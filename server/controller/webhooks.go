package controller

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"plane"
)

// Webhooks: a project's endpoints get its events as signed POSTs. The store
// queues a delivery for every webhook that wants an event, in the
// transaction that logs the event, so that no crash loses one; the
// deliveries' loop (RunWebhooks), on every controller, claims the due ones
// under a lease, sends them through the WebhookSender, and records each
// attempt. A failed attempt (no answer within the sender's timeout, a
// non-2xx answer) is tried again after a backoff, for RetryFor; a webhook
// whose every attempt failed for DisableAfter is disabled, with why.

// WebhookPolicy sets how deliveries are sent and retried. Zero fields take
// their defaults.
type WebhookPolicy struct {
	// FirstRetry is the wait before the first retry, doubled at each
	// failure after, less up to a fifth (jitter, so that the retries of
	// one outage do not come back together), and at most MaxRetryDelay.
	// Defaults: DefaultFirstRetry, DefaultMaxRetryDelay.
	FirstRetry, MaxRetryDelay time.Duration
	// RetryFor is how long a delivery is tried, from its creation or its
	// retry by hand (default plane.WebhookRetryFor).
	RetryFor time.Duration
	// DisableAfter is how long a webhook's attempts may all fail before it
	// is disabled (default plane.WebhookDisableAfter).
	DisableAfter time.Duration
	// Poll is how often the loop looks for due deliveries (default
	// DefaultWebhookPoll); an event this controller logs wakes it at once.
	Poll time.Duration
	// Lease is how long a claim keeps a delivery from the other
	// controllers (default DefaultWebhookLease): well beyond an attempt,
	// so that only a controller that died with it in flight loses it,
	// to another, after the lease.
	Lease time.Duration
	// Parallel is how many deliveries one controller sends at once
	// (default DefaultWebhookParallel).
	Parallel int
	// KeepDone is how long delivered and failed deliveries stay in the
	// delivery log (default DefaultKeepDone).
	KeepDone time.Duration
}

// Defaults of WebhookPolicy.
const (
	DefaultFirstRetry      = 5 * time.Second
	DefaultMaxRetryDelay   = time.Hour
	DefaultWebhookPoll     = time.Second
	DefaultWebhookLease    = time.Minute
	DefaultWebhookParallel = 16
	DefaultKeepDone        = 7 * 24 * time.Hour
)

func (p WebhookPolicy) withDefaults() WebhookPolicy {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&p.FirstRetry, DefaultFirstRetry)
	def(&p.MaxRetryDelay, DefaultMaxRetryDelay)
	def(&p.RetryFor, plane.WebhookRetryFor)
	def(&p.DisableAfter, plane.WebhookDisableAfter)
	def(&p.Poll, DefaultWebhookPoll)
	def(&p.Lease, DefaultWebhookLease)
	def(&p.KeepDone, DefaultKeepDone)
	if p.Parallel <= 0 {
		p.Parallel = DefaultWebhookParallel
	}
	return p
}

// RetryDelay is the wait after the failed attempt number attempt (1 for
// the first): FirstRetry doubled attempt-1 times, capped at MaxRetryDelay,
// less jitter (0 to 1) fifths of it. With the defaults: 4–5 s, 8–10 s,
// 16–20 s… up to 48–60 min.
func (p WebhookPolicy) RetryDelay(attempt int, jitter float64) time.Duration {
	p = p.withDefaults()
	d := p.MaxRetryDelay
	if shift := attempt - 1; shift < 40 {
		d = min(p.FirstRetry<<max(shift, 0), p.MaxRetryDelay)
	}
	return d - time.Duration(float64(d)*0.2*min(max(jitter, 0), 1))
}

// NextAttempt is when to try d again after its attempt at now failed
// (RetryDelay with jitter), or nil when its time is up. An answer's
// Retry-After is honoured, up to MaxRetryDelay. The last try comes at the
// end of RetryFor.
func (p WebhookPolicy) NextAttempt(d *plane.DueDelivery, now time.Time, retryAfter time.Duration, jitter float64) *time.Time {
	p = p.withDefaults()
	deadline := d.Since.Add(p.RetryFor)
	if !now.Before(deadline) {
		return nil
	}
	wait := p.RetryDelay(d.Attempts+1, jitter)
	if retryAfter > wait {
		wait = min(retryAfter, p.MaxRetryDelay)
	}
	next := now.Add(wait)
	if next.After(deadline) {
		next = deadline
	}
	return &next
}

func (c *Core) webhooks() (plane.WebhookService, error) {
	if c.Webhooks == nil || c.WebhookSender == nil {
		return nil, plane.Errorf(plane.EUNAVAILABLE, "this controller sends no webhooks")
	}
	return c.Webhooks, nil
}

// NewWebhook is a webhook just created, with its secret: shown this once.
type NewWebhook struct {
	Webhook *plane.Webhook
	Secret  string
}

// CreateWebhook registers an endpoint for a project's events (in.Events;
// none: all), with a new secret.
func (c *Core) CreateWebhook(ctx context.Context, actor plane.Actor, projectID int64, in plane.WebhookInput) (NewWebhook, error) {
	store, err := c.webhooks()
	if err != nil {
		return NewWebhook{}, err
	}
	if err := in.Validate(); err != nil {
		return NewWebhook{}, err
	}
	if err := c.WebhookSender.CheckURL(ctx, in.URL); err != nil {
		return NewWebhook{}, err
	}
	secret, err := plane.NewWebhookSecret()
	if err != nil {
		return NewWebhook{}, err
	}
	w := &plane.Webhook{ProjectID: projectID, URL: in.URL, Events: in.Events, Secret: secret, CreatedAt: time.Now()}
	if err := store.CreateWebhook(ctx, w); err != nil {
		return NewWebhook{}, err
	}
	c.Record(ctx, actor, projectID, plane.ActionWebhookCreate, webhookTarget(w), eventsDetail(w.Events))
	w.Secret = ""
	return NewWebhook{Webhook: w, Secret: secret}, nil
}

// webhookTarget names a webhook in the activity log: its id and its URL
// without the query, which may hold a token of the receiver's.
func webhookTarget(w *plane.Webhook) string {
	u, err := url.Parse(w.URL)
	if err != nil {
		return "webhook " + strconv.FormatInt(w.ID, 10)
	}
	u.RawQuery, u.Fragment = "", ""
	return fmt.Sprintf("webhook %d (%s)", w.ID, u.String())
}

func eventsDetail(ts []plane.ProjectEventType) string {
	if len(ts) == 0 {
		return "all events"
	}
	s := make([]string, len(ts))
	for i, t := range ts {
		s[i] = string(t)
	}
	return strings.Join(s, ", ")
}

// ProjectWebhooks returns a project's webhooks, without their secrets.
func (c *Core) ProjectWebhooks(ctx context.Context, projectID int64) ([]*plane.Webhook, error) {
	store, err := c.webhooks()
	if err != nil {
		return nil, err
	}
	ws, err := store.FindWebhooks(ctx, projectID)
	for _, w := range ws {
		w.Secret = ""
	}
	return ws, err
}

// Webhook returns a webhook of the project, without its secret; another
// project's is not found.
func (c *Core) Webhook(ctx context.Context, projectID, id int64) (*plane.Webhook, error) {
	store, err := c.webhooks()
	if err != nil {
		return nil, err
	}
	w, err := store.FindWebhookByID(ctx, projectID, id)
	if err != nil {
		return nil, err
	}
	w.Secret = ""
	return w, nil
}

// DeleteWebhook deletes a webhook of the project with its deliveries.
func (c *Core) DeleteWebhook(ctx context.Context, actor plane.Actor, projectID, id int64) error {
	w, err := c.Webhook(ctx, projectID, id)
	if err != nil {
		return err
	}
	if err := c.Webhooks.DeleteWebhook(ctx, projectID, id); err != nil {
		return err
	}
	c.Record(ctx, actor, projectID, plane.ActionWebhookDelete, webhookTarget(w), "")
	return nil
}

// WebhookDelivery is a delivery with when its tries end, while pending.
type WebhookDelivery struct {
	*plane.WebhookDelivery
	RetryUntil *time.Time
}

// WebhookDeliveries returns the deliveries of a webhook of the project,
// newest first, with every attempt: at most limit.
func (c *Core) WebhookDeliveries(ctx context.Context, projectID, webhookID int64, limit int) ([]WebhookDelivery, error) {
	if _, err := c.Webhook(ctx, projectID, webhookID); err != nil {
		return nil, err
	}
	ds, err := c.Webhooks.FindWebhookDeliveries(ctx, webhookID, limit)
	if err != nil {
		return nil, err
	}
	return c.withRetryUntil(ds), nil
}

func (c *Core) withRetryUntil(ds []*plane.WebhookDelivery) []WebhookDelivery {
	p := c.WebhookPolicy.withDefaults()
	out := make([]WebhookDelivery, len(ds))
	for i, d := range ds {
		out[i] = WebhookDelivery{WebhookDelivery: d}
		if d.Status == plane.DeliveryPending {
			until := d.Since.Add(p.RetryFor)
			out[i].RetryUntil = &until
		}
	}
	return out
}

// RetryWebhookDelivery sends a delivery of a webhook of the project again,
// now, whatever its status, with a new round of tries; a disabled webhook
// is enabled again.
func (c *Core) RetryWebhookDelivery(ctx context.Context, actor plane.Actor, projectID, webhookID, deliveryID int64) (WebhookDelivery, error) {
	w, err := c.Webhook(ctx, projectID, webhookID)
	if err != nil {
		return WebhookDelivery{}, err
	}
	d, err := c.Webhooks.RetryWebhookDelivery(ctx, webhookID, deliveryID, time.Now())
	if err != nil {
		return WebhookDelivery{}, err
	}
	detail := fmt.Sprintf("delivery %d of event %d", d.ID, d.EventID)
	if w.DisabledAt != nil {
		detail += "; the webhook is enabled again"
	}
	c.Record(ctx, actor, projectID, plane.ActionWebhookRetry, webhookTarget(w), detail)
	c.hooks.wake()
	return c.withRetryUntil([]*plane.WebhookDelivery{d})[0], nil
}

// hookWake wakes the deliveries' loop when there may be work: an event
// logged here, a retry, a free slot.
type hookWake struct {
	once sync.Once
	ch   chan struct{}
}

func (h *hookWake) c() chan struct{} {
	h.once.Do(func() { h.ch = make(chan struct{}, 1) })
	return h.ch
}

func (h *hookWake) wake() {
	select {
	case h.c() <- struct{}{}:
	default: // a wake is pending already
	}
}

// RunWebhooks sends the due deliveries of every project until ctx ends,
// then waits for the attempts in flight. Every controller runs it: the
// store's claims give each delivery to one of them at a time. It returns
// at once on a controller without webhooks.
func (c *Core) RunWebhooks(ctx context.Context) {
	if _, err := c.webhooks(); err != nil {
		return
	}
	p := c.WebhookPolicy.withDefaults()
	log := c.logger().With("component", "webhooks")
	poll := time.NewTicker(p.Poll)
	defer poll.Stop()
	slots := make(chan struct{}, p.Parallel)
	var wg sync.WaitGroup
	defer wg.Wait()
	var pruned time.Time
	for {
		if free := p.Parallel - len(slots); free > 0 {
			due, err := c.Webhooks.ClaimWebhookDeliveries(ctx, time.Now(), p.Lease, free)
			if err != nil && ctx.Err() == nil {
				log.Error("claim webhook deliveries", "err", err)
			}
			for _, d := range due {
				slots <- struct{}{}
				wg.Go(func() {
					defer func() {
						<-slots
						c.hooks.wake() // a slot is free: there may be more due
					}()
					c.deliver(ctx, p, d)
				})
			}
		}
		if time.Since(pruned) > time.Hour {
			pruned = time.Now()
			if n, err := c.Webhooks.PruneWebhookDeliveries(ctx, pruned.Add(-p.KeepDone)); err != nil && ctx.Err() == nil {
				log.Error("prune webhook deliveries", "err", err)
			} else if n > 0 {
				log.Info("pruned webhook deliveries", "deleted", n, "older_than", p.KeepDone)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-poll.C:
		case <-c.hooks.c():
		}
	}
}

// recordTimeout bounds the store's writes after an attempt: they run even
// while the loop stops, so that an attempt made is an attempt logged.
const recordTimeout = 10 * time.Second

// deliver makes one attempt of a claimed delivery and records it. An
// attempt cut short because the controller is stopping is not recorded:
// it says nothing of the endpoint, and the delivery's lease runs out for
// the next controller to send it.
func (c *Core) deliver(ctx context.Context, p WebhookPolicy, d *plane.DueDelivery) {
	log := c.logger().With("component", "webhooks", "project", d.ProjectID, "webhook", d.WebhookID, "delivery", d.ID)
	start := time.Now()
	res := c.WebhookSender.Send(ctx, plane.WebhookMessage{
		ID: "evt_" + strconv.FormatInt(d.EventID, 10), URL: d.URL, Secret: d.Secret, Body: d.Payload,
	})
	if ctx.Err() != nil && !res.OK() {
		return
	}
	now := time.Now()
	a := plane.DeliveryAttempt{Time: start, StatusCode: res.StatusCode, Duration: res.Duration}
	out := plane.AttemptOutcome{Attempt: a}
	if res.Err != nil {
		out.Attempt.Error = truncateError(res.Err.Error())
	}
	if !res.OK() {
		out.Next = p.NextAttempt(d, now, res.RetryAfter, rand.Float64())
		log.Debug("webhook attempt failed", "status", res.StatusCode, "err", res.Err, "retry", out.Next != nil)
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	failingSince, err := c.Webhooks.RecordWebhookAttempt(rctx, d, out)
	if err != nil {
		log.Error("record webhook attempt", "err", err)
		return
	}
	var reason string
	switch {
	case res.StatusCode == 410:
		// The specification's way for an endpoint to say it wants no more.
		reason = "the endpoint answered 410 Gone"
	case failingSince != nil && now.Sub(*failingSince) >= p.DisableAfter:
		reason = fmt.Sprintf("every attempt failed since %s; the last: %s", failingSince.UTC().Format(time.RFC3339), attemptSummary(out.Attempt))
	default:
		return
	}
	if err := c.Webhooks.DisableWebhook(rctx, d.WebhookID, reason, now); err != nil {
		log.Error("disable webhook", "err", err)
		return
	}
	log.Warn("webhook disabled", "reason", reason)
}

func truncateError(s string) string {
	if len(s) <= plane.MaxAttemptErrorLen {
		return s
	}
	cut := plane.MaxAttemptErrorLen - 3
	for cut > 0 && s[cut]&0xc0 == 0x80 { // not inside a UTF-8 sequence
		cut--
	}
	return s[:cut] + "..."
}

func attemptSummary(a plane.DeliveryAttempt) string {
	if a.Error != "" {
		return a.Error
	}
	return fmt.Sprintf("answered %d", a.StatusCode)
}
