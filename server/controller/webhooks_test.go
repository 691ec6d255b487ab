package controller_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"plane"
	"plane/server/controller"
)

// The backoff: the first retry within 30 s, then doubling, less jitter,
// never past the cap.
func TestWebhookRetryDelay(t *testing.T) {
	var p controller.WebhookPolicy // the defaults
	tests := []struct {
		attempt  int
		jitter   float64
		min, max time.Duration
	}{
		{1, 0, 5 * time.Second, 5 * time.Second},
		{1, 1, 4 * time.Second, 4 * time.Second},
		{1, 0.5, 4 * time.Second, 5 * time.Second},
		{2, 0, 10 * time.Second, 10 * time.Second},
		{3, 0, 20 * time.Second, 20 * time.Second},
		{10, 0, 2560 * time.Second, 2560 * time.Second},
		{11, 0, time.Hour, time.Hour}, // 5120 s, capped
		{11, 1, 48 * time.Minute, 48 * time.Minute},
		{1000, 0.3, 48 * time.Minute, time.Hour}, // no overflow
		{0, 0, 5 * time.Second, 5 * time.Second},
		{2, -3, 10 * time.Second, 10 * time.Second}, // jitter clamped
		{2, 7, 8 * time.Second, 8 * time.Second},
	}
	for _, tt := range tests {
		if got := p.RetryDelay(tt.attempt, tt.jitter); got < tt.min || got > tt.max {
			t.Errorf("RetryDelay(%d, %v) = %v, want %v to %v", tt.attempt, tt.jitter, got, tt.min, tt.max)
		}
	}
	if got := p.RetryDelay(1, 0.999); got > 30*time.Second {
		t.Errorf("first retry after %v", got)
	}
	fast := controller.WebhookPolicy{FirstRetry: 10 * time.Millisecond, MaxRetryDelay: 50 * time.Millisecond}
	if got := fast.RetryDelay(4, 0); got != 50*time.Millisecond {
		t.Errorf("a shortened policy: %v", got)
	}
}

// A delivery is retried for RetryFor from the start of its round; the last
// try lands on its end; Retry-After is honoured up to the cap.
func TestWebhookNextAttempt(t *testing.T) {
	since := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	p := controller.WebhookPolicy{}
	d := &plane.DueDelivery{Since: since, Attempts: 0}
	tests := []struct {
		name       string
		now        time.Time
		attempts   int
		retryAfter time.Duration
		want       *time.Time
	}{
		{"the first failure", since, 0, 0, timePtr(since.Add(5 * time.Second))},
		{"the third", since.Add(time.Minute), 2, 0, timePtr(since.Add(time.Minute + 20*time.Second))},
		{"Retry-After longer", since, 0, 90 * time.Second, timePtr(since.Add(90 * time.Second))},
		{"Retry-After past the cap", since, 0, 5 * time.Hour, timePtr(since.Add(time.Hour))},
		{"Retry-After shorter", since, 2, time.Second, timePtr(since.Add(20 * time.Second))},
		{"near the end", since.Add(24*time.Hour - time.Second), 30, 0, timePtr(since.Add(24 * time.Hour))},
		{"at the end", since.Add(24 * time.Hour), 31, 0, nil},
		{"past it", since.Add(25 * time.Hour), 31, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d.Attempts = tt.attempts
			got := p.NextAttempt(d, tt.now, tt.retryAfter, 0)
			if (got == nil) != (tt.want == nil) || got != nil && !got.Equal(*tt.want) {
				t.Fatalf("next %v, want %v", got, tt.want)
			}
		})
	}
}

func timePtr(t time.Time) *time.Time { return &t }

// connStore applies joins and leaves, as the real store does, over the
// fake store's statuses.
type connStore struct{ *fakeStore }

func (s connStore) ApplyBackendEvent(ctx context.Context, ev plane.BackendEvent) (*plane.Backend, bool, error) {
	if ev.Connection != nil {
		b, err := s.FindBackendByID(ctx, ev.BackendID)
		return b, err == nil, err
	}
	return s.fakeStore.ApplyBackendEvent(ctx, ev)
}

// A join or a leave is announced as the project log's growth, for the
// event streams, and not as a change of the backend: its status is the
// same, and the phase latencies are not observed again.
func TestConnectionEventAnnounced(t *testing.T) {
	c, st, _, m := newCore(t)
	c.Store = connStore{st}
	b := &plane.Backend{ID: "b1", ProjectID: 3, Status: plane.StatusReady}
	st.addBackend(b)
	logCh, cancel := c.Bus.Subscribe(plane.TopicProjectLog(3))
	defer cancel()
	backendCh, cancel2 := c.Bus.Subscribe(plane.TopicBackendLog("b1"))
	defer cancel2()
	changes, cancel3 := c.Bus.Subscribe("b1")
	defer cancel3()

	ev := plane.BackendEvent{BackendID: "b1", Status: plane.StatusReady, Time: time.Now(), Connection: &plane.ConnectionChange{User: "ada", Joined: true, Users: 1}}
	if _, applied, err := c.ApplyBackendEvent(context.Background(), ev); err != nil || !applied {
		t.Fatalf("apply: %v, %v", applied, err)
	}
	for _, ch := range []<-chan plane.Event{logCh, backendCh} {
		select {
		case e := <-ch:
			if e.Kind != plane.EventProjectLog || e.ProjectLog.ProjectID != 3 || e.ProjectLog.BackendID != "b1" {
				t.Fatalf("announcement %+v", e)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no announcement")
		}
	}
	select {
	case e := <-changes:
		t.Fatalf("a join announced as a change of the backend: %+v", e)
	default:
	}
	if len(m.changed) != 0 {
		t.Errorf("metrics observed %v", m.changed)
	}

	// A status change is announced both ways.
	if _, applied, err := c.ApplyBackendEvent(context.Background(), plane.BackendEvent{BackendID: "b1", Status: plane.StatusTerminating, Time: time.Now()}); err != nil || !applied {
		t.Fatalf("apply: %v, %v", applied, err)
	}
	if e := <-changes; e.Backend.Status != plane.StatusTerminating {
		t.Fatalf("change %+v", e.Backend)
	}
	if e := <-logCh; e.Kind != plane.EventProjectLog {
		t.Fatalf("announcement %+v", e)
	}
}

// hookStore is an in-memory plane.WebhookService for the use-cases'
// checks; the SQL store's is tested in server/sqlstore and, with the
// deliveries' loop, in server.
type hookStore struct {
	plane.WebhookService
	mu    sync.Mutex
	hooks []*plane.Webhook
}

func (s *hookStore) CreateWebhook(_ context.Context, w *plane.Webhook) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	w.ID = int64(len(s.hooks) + 1)
	cp := *w
	s.hooks = append(s.hooks, &cp)
	return nil
}

func (s *hookStore) FindWebhookByID(_ context.Context, projectID, id int64) (*plane.Webhook, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, w := range s.hooks {
		if w.ID == id && w.ProjectID == projectID {
			cp := *w
			return &cp, nil
		}
	}
	return nil, plane.Errorf(plane.ENOTFOUND, "webhook %d not found", id)
}

func (s *hookStore) FindWebhooks(_ context.Context, projectID int64) ([]*plane.Webhook, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []*plane.Webhook{}
	for _, w := range s.hooks {
		if w.ProjectID == projectID {
			cp := *w
			out = append(out, &cp)
		}
	}
	return out, nil
}

// refusingSender refuses hosts named private.*, as the real sender
// refuses private addresses.
type refusingSender struct{}

func (refusingSender) CheckURL(_ context.Context, raw string) error {
	u, err := plane.ParseWebhookURL(raw)
	if err != nil {
		return err
	}
	if strings.HasPrefix(u.Hostname(), "private.") {
		return plane.FieldErrorf("url", "refused: a private address")
	}
	return nil
}

func (refusingSender) Send(context.Context, plane.WebhookMessage) plane.WebhookResult {
	return plane.WebhookResult{Err: errors.New("not in these tests")}
}

func TestCreateWebhook(t *testing.T) {
	ctx := context.Background()
	c, st, _, _ := newCore(t)
	if _, err := c.CreateWebhook(ctx, alice, 1, plane.WebhookInput{URL: "https://hooks.example.com/"}); plane.ErrorCodeOf(err) != plane.EUNAVAILABLE {
		t.Fatalf("without a webhook store: %v", err)
	}
	hs := &hookStore{}
	c.Webhooks, c.WebhookSender = hs, refusingSender{}

	nw, err := c.CreateWebhook(ctx, alice, 1, plane.WebhookInput{URL: "https://hooks.example.com/in?token=abc",
		Events: []plane.ProjectEventType{plane.ProjectEventUserLeft, plane.ProjectEventUserJoined}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(nw.Secret, plane.WebhookSecretPrefix) || nw.Webhook.Secret != "" || nw.Webhook.ID == 0 {
		t.Fatalf("created %+v (secret %q)", nw.Webhook, nw.Secret)
	}
	if hs.hooks[0].Secret != nw.Secret {
		t.Errorf("stored secret %q, shown %q", hs.hooks[0].Secret, nw.Secret)
	}
	if got, want := st.activity(plane.ActionWebhookCreate), "alice@example.com webhook 1 (https://hooks.example.com/in) backend.user_joined, backend.user_left"; got != want {
		t.Errorf("activity %q, want %q", got, want)
	}
	if w, err := c.Webhook(ctx, 1, nw.Webhook.ID); err != nil || w.Secret != "" {
		t.Errorf("read back: %+v, %v", w, err)
	}
	if ws, err := c.ProjectWebhooks(ctx, 1); err != nil || len(ws) != 1 || ws[0].Secret != "" {
		t.Errorf("list: %+v, %v", ws, err)
	}
	if _, err := c.Webhook(ctx, 2, nw.Webhook.ID); plane.ErrorCodeOf(err) != plane.ENOTFOUND {
		t.Errorf("another project's: %v", err)
	}

	for _, tt := range []struct {
		name  string
		in    plane.WebhookInput
		field string
	}{
		{"no URL", plane.WebhookInput{}, "url"},
		{"a private host", plane.WebhookInput{URL: "https://private.example/"}, "url"},
		{"an unknown type", plane.WebhookInput{URL: "https://x.example/", Events: []plane.ProjectEventType{"nope"}}, "events"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.CreateWebhook(ctx, alice, 1, tt.in)
			var e *plane.Error
			if !errors.As(err, &e) || e.Field != tt.field || e.Code != plane.EINVALID {
				t.Fatalf("error %v, want one about %q", err, tt.field)
			}
		})
	}
	if len(hs.hooks) != 1 {
		t.Errorf("%d webhooks stored", len(hs.hooks))
	}
}
