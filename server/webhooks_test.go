package server_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"plane"
	"plane/api"
	"plane/server"
	"plane/server/bus"
	"plane/server/controller"
	"plane/server/sqlite"
	"plane/server/webhook"
)

// fastHooks retries at once: the backoff shortened by its settings, not by
// sleeping.
var fastHooks = controller.WebhookPolicy{FirstRetry: 10 * time.Millisecond, MaxRetryDelay: 40 * time.Millisecond, Poll: 10 * time.Millisecond, Lease: 5 * time.Second}

// withHooks gives a dash the store's event log and webhooks.
func withHooks(p controller.WebhookPolicy, allowPrivate bool) func(*server.Config) {
	return func(cfg *server.Config) {
		db := cfg.Backends.(*sqlite.DB)
		cfg.Events, cfg.Webhooks = db, db
		cfg.WebhookPolicy, cfg.WebhookAllowPrivate = p, allowPrivate
	}
}

// runHooks runs core's deliveries' loop until the test ends (or the
// returned function stops it, and waits for it).
func runHooks(t *testing.T, core *controller.Core) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		core.RunWebhooks(ctx)
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

// hookReceiver is a webhook endpoint on loopback: it verifies every
// message's signature, with an implementation of its own of the Standard
// Webhooks scheme, records the message, and answers what answer says for
// the nth message (from 1).
type hookReceiver struct {
	*httptest.Server
	t      *testing.T
	mu     sync.Mutex
	secret string
	got    []hookMessage
	answer func(n int) int
}

type hookMessage struct {
	id, timestamp string
	body          string
	verified      error
}

func newHookReceiver(t *testing.T, answer func(n int) int) *hookReceiver {
	t.Helper()
	rc := &hookReceiver{t: t, answer: answer}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		m := hookMessage{id: r.Header.Get("webhook-id"), timestamp: r.Header.Get("webhook-timestamp"), body: string(body),
			verified: verifySignature(rc.secret, r.Header, body)}
		rc.got = append(rc.got, m)
		n := len(rc.got)
		rc.mu.Unlock()
		w.WriteHeader(rc.answer(n))
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *hookReceiver) setSecret(s string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.secret = s
}

func (rc *hookReceiver) messages() []hookMessage {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]hookMessage(nil), rc.got...)
}

// verifySignature is a receiver's check, from the specification: HMAC-
// SHA256 of "id.timestamp.body" keyed with the base64 after "whsec_", one
// of the space-separated "v1,<base64>" entries, compared in constant time;
// the timestamp within five minutes.
func verifySignature(secret string, h http.Header, body []byte) error {
	if secret == "" {
		return errors.New("the receiver has no secret yet")
	}
	ts, err := strconv.ParseInt(h.Get("webhook-timestamp"), 10, 64)
	if err != nil || time.Since(time.Unix(ts, 0)).Abs() > 5*time.Minute {
		return fmt.Errorf("timestamp %q", h.Get("webhook-timestamp"))
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return err
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(h.Get("webhook-id") + "." + h.Get("webhook-timestamp") + "."))
	mac.Write(body)
	for _, sig := range strings.Split(h.Get("webhook-signature"), " ") {
		if v, ok := strings.CutPrefix(sig, "v1,"); ok {
			if raw, err := base64.StdEncoding.DecodeString(v); err == nil && hmac.Equal(raw, mac.Sum(nil)) {
				return nil
			}
		}
	}
	return errors.New("no signature matches")
}

// webhookJSON is a webhook as the API answers it.
type webhookJSON struct {
	ID             int64                    `json:"id"`
	URL            string                   `json:"url"`
	Events         []plane.ProjectEventType `json:"events"`
	CreatedAt      time.Time                `json:"created_at"`
	FailingSince   *time.Time               `json:"failing_since"`
	DisabledAt     *time.Time               `json:"disabled_at"`
	DisabledReason string                   `json:"disabled_reason"`
	Secret         string                   `json:"secret"`
}

type deliveryJSON struct {
	ID            int64      `json:"id"`
	WebhookID     int64      `json:"webhook_id"`
	EventID       int64      `json:"event_id"`
	EventType     string     `json:"event_type"`
	Status        string     `json:"status"`
	NextAttemptAt *time.Time `json:"next_attempt_at"`
	RetryUntil    *time.Time `json:"retry_until"`
	Attempts      []struct {
		Time       time.Time `json:"time"`
		StatusCode int       `json:"status_code"`
		Error      string    `json:"error"`
		DurationMS *int64    `json:"duration_ms"`
	} `json:"attempts"`
}

func (d *dash) deliveries(token string, webhookID int64) []deliveryJSON {
	d.t.Helper()
	var out struct {
		Deliveries []deliveryJSON `json:"deliveries"`
	}
	if st := d.apiJSON(token, http.MethodGet, fmt.Sprintf("/api/v1/webhooks/%d/deliveries", webhookID), "", &out); st != http.StatusOK {
		d.t.Fatalf("deliveries: %d", st)
	}
	return out.Deliveries
}

func (d *dash) createWebhook(token, body string) webhookJSON {
	d.t.Helper()
	var w webhookJSON
	if st := d.apiJSON(token, http.MethodPost, "/api/v1/webhooks", body, &w); st != http.StatusCreated {
		d.t.Fatalf("create webhook %s: %d", body, st)
	}
	return w
}

// spawnVia makes an image and spawns a backend of the token's project,
// through the API: its scheduled event is logged.
func (d *dash) spawnVia(token string) api.Backend {
	d.t.Helper()
	var img plane.Image
	d.apiJSON(token, http.MethodPost, "/api/v1/images", `{"name":"demo","ref":"plane-demo:latest"}`, &img) // 409 the second time
	var b api.Backend
	if st := d.apiJSON(token, http.MethodPost, "/api/v1/backends", `{"image":"demo"}`, &b); st != http.StatusCreated {
		d.t.Fatalf("spawn: %d %+v", st, b)
	}
	return b
}

func (d *dash) apply(e plane.BackendEvent) {
	d.t.Helper()
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	if _, _, err := d.s.Core().ApplyBackendEvent(context.Background(), e); err != nil {
		d.t.Fatal(err)
	}
}

// The API's webhooks: the secret shown once, a clear 400 naming the field
// of a bad request, and a webhook of another project not found anywhere.
func TestWebhookAPI(t *testing.T) {
	t.Parallel()
	d := newDash(t, withHooks(fastHooks, false))
	tok := d.apiToken("hooks", plane.AllScopes...)
	otherTok := d.apiToken("other", plane.AllScopes...)
	p, err := d.db.FindProjectByName(context.Background(), "hooks")
	if err != nil {
		t.Fatal(err)
	}

	w := d.createWebhook(tok, `{"url":"https://hooks.example.com/plane?token=abc","events":["backend.user_left","backend.user_joined"]}`)
	if w.ID == 0 || !strings.HasPrefix(w.Secret, "whsec_") || w.URL != "https://hooks.example.com/plane?token=abc" ||
		len(w.Events) != 2 || w.Events[0] != plane.ProjectEventUserJoined || w.DisabledAt != nil {
		t.Fatalf("created %+v", w)
	}
	all := d.createWebhook(tok, `{"url":"https://hooks.example.com/all"}`)
	if all.Events == nil || len(all.Events) != 0 {
		t.Errorf("a webhook of every type: events %v", all.Events)
	}
	var got webhookJSON
	if st := d.apiJSON(tok, http.MethodGet, fmt.Sprintf("/api/v1/webhooks/%d", w.ID), "", &got); st != http.StatusOK || got.Secret != "" || got.ID != w.ID {
		t.Errorf("get: %d %+v (the secret is shown once)", st, got)
	}
	var list struct {
		Webhooks []webhookJSON `json:"webhooks"`
	}
	if st := d.apiJSON(tok, http.MethodGet, "/api/v1/webhooks", "", &list); st != http.StatusOK || len(list.Webhooks) != 2 || list.Webhooks[0].Secret != "" {
		t.Errorf("list: %d %+v", st, list)
	}

	t.Run("bad requests name their field", func(t *testing.T) {
		tests := []struct {
			name, body, field string
		}{
			{"no URL", `{}`, "url"},
			{"a URL that is no string", `{"url":5}`, "url"},
			{"ftp", `{"url":"ftp://x.example/"}`, "url"},
			{"a password", `{"url":"https://u:p@x.example/"}`, "url"},
			{"not absolute", `{"url":"x.example/hook"}`, "url"},
			{"loopback", `{"url":"http://127.0.0.1:8080/"}`, "url"},
			{"private", `{"url":"http://10.1.2.3/"}`, "url"},
			{"link-local", `{"url":"http://169.254.169.254/latest/meta-data"}`, "url"},
			{"IPv6 loopback", `{"url":"http://[::1]/"}`, "url"},
			{"localhost", `{"url":"http://localhost:9/"}`, "url"},
			{"an unknown type", `{"url":"https://x.example/","events":["backend.created"]}`, "events"},
			{"events that are no list", `{"url":"https://x.example/","events":"backend.status"}`, "events"},
			{"an unknown field", `{"url":"https://x.example/","uri":"x"}`, "uri"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				var e api.ErrorResponse
				if st := d.apiJSON(tok, http.MethodPost, "/api/v1/webhooks", tt.body, &e); st != http.StatusBadRequest || e.Error.Field != tt.field || e.Error.Code != plane.EINVALID {
					t.Fatalf("%s: %d %+v, want 400 about %q", tt.body, st, e.Error, tt.field)
				}
			})
		}
		var e api.ErrorResponse
		if st := d.apiJSON(tok, http.MethodPost, "/api/v1/webhooks", `{"url":`, &e); st != http.StatusBadRequest || !strings.Contains(e.Error.Message, "JSON") {
			t.Errorf("malformed JSON: %d %+v", st, e)
		}
	})

	t.Run("another project sees none of them", func(t *testing.T) {
		for _, c := range []struct{ method, path string }{
			{http.MethodGet, fmt.Sprintf("/api/v1/webhooks/%d", w.ID)},
			{http.MethodDelete, fmt.Sprintf("/api/v1/webhooks/%d", w.ID)},
			{http.MethodGet, fmt.Sprintf("/api/v1/webhooks/%d/deliveries", w.ID)},
			{http.MethodPost, fmt.Sprintf("/api/v1/webhooks/%d/deliveries/1/retry", w.ID)},
			{http.MethodGet, "/api/v1/webhooks/nope"},
		} {
			if st, code := d.apiCall(otherTok, c.method, c.path); st != http.StatusNotFound || code != plane.ENOTFOUND {
				t.Errorf("%s %s: %d %s", c.method, c.path, st, code)
			}
		}
		var list struct {
			Webhooks []webhookJSON `json:"webhooks"`
		}
		if st := d.apiJSON(otherTok, http.MethodGet, "/api/v1/webhooks", "", &list); st != http.StatusOK || list.Webhooks == nil || len(list.Webhooks) != 0 {
			t.Errorf("the other project's list: %d %+v", st, list)
		}
	})

	t.Run("scopes", func(t *testing.T) {
		readOnly := d.apiToken("readonly", plane.ScopeBackendsRead)
		if st, _ := d.apiCall(readOnly, http.MethodGet, "/api/v1/webhooks"); st != http.StatusOK {
			t.Errorf("list with backends:read: %d", st)
		}
		if st := d.api(readOnly, http.MethodPost, "/api/v1/webhooks", `{"url":"https://x.example/"}`); st != http.StatusForbidden {
			t.Errorf("create with backends:read: %d", st)
		}
	})

	t.Run("delete", func(t *testing.T) {
		if st := d.api(tok, http.MethodDelete, fmt.Sprintf("/api/v1/webhooks/%d", all.ID), ""); st != http.StatusNoContent {
			t.Fatalf("delete: %d", st)
		}
		if st, _ := d.apiCall(tok, http.MethodGet, fmt.Sprintf("/api/v1/webhooks/%d", all.ID)); st != http.StatusNotFound {
			t.Errorf("get after delete: %d", st)
		}
		acts, err := d.db.FindActivity(context.Background(), p.ID, 10)
		if err != nil {
			t.Fatal(err)
		}
		var actions []string
		for _, a := range acts {
			actions = append(actions, string(a.Action)+" "+a.Target)
			if strings.Contains(a.Target+a.Detail, "token=abc") || strings.Contains(a.Target+a.Detail, "whsec_") {
				t.Errorf("the activity log holds a secret: %+v", a)
			}
		}
		want := []string{
			fmt.Sprintf("webhook.delete webhook %d (https://hooks.example.com/all)", all.ID),
			fmt.Sprintf("webhook.create webhook %d (https://hooks.example.com/all)", all.ID),
			fmt.Sprintf("webhook.create webhook %d (https://hooks.example.com/plane)", w.ID),
		}
		if strings.Join(actions, "\n") != strings.Join(want, "\n") {
			t.Errorf("activity\n%s\nwant\n%s", strings.Join(actions, "\n"), strings.Join(want, "\n"))
		}
	})
}

// An endpoint that answers 500 three times gets the event on the fourth
// attempt, every one signed and logged; the same webhook-id each time.
func TestWebhookDeliveredAfterFailures(t *testing.T) {
	t.Parallel()
	d := newDash(t, withHooks(fastHooks, true))
	d.fakeDrone("d1")
	tok := d.apiToken("retries", plane.AllScopes...)
	rc := newHookReceiver(t, func(n int) int {
		if n <= 3 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	w := d.createWebhook(tok, `{"url":"`+rc.URL+`/hook","events":["backend.status"]}`)
	rc.setSecret(w.Secret)
	runHooks(t, d.s.Core())
	b := d.spawnVia(tok)

	var ds []deliveryJSON
	eventually(t, 10*time.Second, "the delivery", func() bool {
		ds = d.deliveries(tok, w.ID)
		return len(ds) == 1 && ds[0].Status == "delivered"
	})
	dl := ds[0]
	if dl.EventType != "backend.status" || dl.NextAttemptAt != nil || dl.RetryUntil != nil || len(dl.Attempts) != 4 {
		t.Fatalf("delivery %+v", dl)
	}
	for i, a := range dl.Attempts {
		want := http.StatusInternalServerError
		if i == 3 {
			want = http.StatusOK
		}
		if a.StatusCode != want || a.Error != "" || a.DurationMS == nil || *a.DurationMS < 0 || a.Time.IsZero() {
			t.Errorf("attempt %d: %+v", i, a)
		}
		if i > 0 && a.Time.Before(dl.Attempts[i-1].Time) {
			t.Errorf("attempt %d before the one before", i)
		}
	}
	msgs := rc.messages()
	if len(msgs) != 4 {
		t.Fatalf("the receiver got %d messages", len(msgs))
	}
	var body struct {
		ID        int64                  `json:"id"`
		Type      plane.ProjectEventType `json:"type"`
		Timestamp time.Time              `json:"timestamp"`
		Data      plane.BackendStatusData
	}
	if err := json.Unmarshal([]byte(msgs[0].body), &body); err != nil {
		t.Fatal(err)
	}
	if body.ID != dl.EventID || body.Type != plane.ProjectEventBackendStatus || body.Data.BackendID != b.ID || body.Data.Status != plane.StatusScheduled || body.Timestamp.IsZero() {
		t.Errorf("body %s", msgs[0].body)
	}
	for i, m := range msgs {
		if m.verified != nil {
			t.Errorf("message %d: %v", i, m.verified)
		}
		if m.id != "evt_"+strconv.FormatInt(dl.EventID, 10) || m.body != msgs[0].body {
			t.Errorf("message %d: id %q body %s", i, m.id, m.body)
		}
	}
	var hook webhookJSON
	if d.apiJSON(tok, http.MethodGet, fmt.Sprintf("/api/v1/webhooks/%d", w.ID), "", &hook); hook.FailingSince != nil || hook.DisabledAt != nil {
		t.Errorf("after an answer: %+v", hook)
	}
}

// Deliveries are stored before they are sent: a controller stopped between
// two attempts, its store reopened by a new one, loses nothing.
func TestWebhookSurvivesRestart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "plane.db")
	rc := newHookReceiver(t, func(n int) int {
		if n == 1 {
			return http.StatusServiceUnavailable
		}
		return http.StatusNoContent
	})
	// The first retry is a second away: the first controller stops before.
	policy := controller.WebhookPolicy{FirstRetry: time.Second, MaxRetryDelay: time.Second, Poll: 10 * time.Millisecond}
	open := func() (*sqlite.DB, *controller.Core) {
		db, err := sqlite.Open(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		b := bus.NewMemory()
		t.Cleanup(func() { b.Close() })
		return db, &controller.Core{Bus: b, Events: db, Webhooks: db, WebhookPolicy: policy,
			WebhookSender: webhook.New(webhook.Config{AllowPrivate: true})}
	}

	db, core := open()
	p := &plane.Project{Name: "restart"}
	if err := db.CreateProject(ctx, p); err != nil {
		t.Fatal(err)
	}
	nw, err := core.CreateWebhook(ctx, plane.Actor{Name: "test"}, p.ID, plane.WebhookInput{URL: rc.URL + "/hook"})
	if err != nil {
		t.Fatal(err)
	}
	rc.setSecret(nw.Secret)
	b, _, err := db.CreateBackend(ctx, &plane.Backend{ProjectID: p.ID, Image: "demo", ImageRef: "demo:1"})
	if err != nil {
		t.Fatal(err)
	}
	stop := runHooks(t, core)
	var ds []*plane.WebhookDelivery
	eventually(t, 10*time.Second, "the first attempt", func() bool {
		ds, err = db.FindWebhookDeliveries(ctx, nw.Webhook.ID, 0)
		return err == nil && len(ds) == 1 && len(ds[0].Attempts) == 1
	})
	stop()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if ds[0].Status != plane.DeliveryPending || len(rc.messages()) != 1 {
		t.Fatalf("before the restart: %+v, %d messages", ds[0], len(rc.messages()))
	}

	db, core = open()
	defer db.Close()
	runHooks(t, core)
	eventually(t, 10*time.Second, "the delivery after the restart", func() bool {
		ds, err = db.FindWebhookDeliveries(ctx, nw.Webhook.ID, 0)
		return err == nil && len(ds) == 1 && ds[0].Status == plane.DeliveryDelivered
	})
	if a := ds[0].Attempts; len(a) != 2 || a[0].StatusCode != 503 || a[1].StatusCode != 204 {
		t.Fatalf("attempts %+v", a)
	}
	msgs := rc.messages()
	if len(msgs) != 2 || msgs[0].id != msgs[1].id || msgs[0].body != msgs[1].body || msgs[1].verified != nil {
		t.Fatalf("messages %+v", msgs)
	}
	if !strings.Contains(msgs[1].body, b.ID) {
		t.Errorf("body %s", msgs[1].body)
	}
}

// A webhook whose every attempt fails for DisableAfter is disabled, with
// why, and its pending deliveries with it; a retry by hand enables it
// again. A 410 disables it at once.
func TestWebhookDisabled(t *testing.T) {
	t.Parallel()
	policy := fastHooks
	policy.RetryFor, policy.DisableAfter = 150*time.Millisecond, 100*time.Millisecond
	d := newDash(t, withHooks(policy, true))
	d.fakeDrone("d1")
	tok := d.apiToken("failing", plane.AllScopes...)
	var mu sync.Mutex
	status := http.StatusServiceUnavailable
	rc := newHookReceiver(t, func(int) int {
		mu.Lock()
		defer mu.Unlock()
		return status
	})
	w := d.createWebhook(tok, `{"url":"`+rc.URL+`/hook"}`)
	rc.setSecret(w.Secret)
	runHooks(t, d.s.Core())
	d.spawnVia(tok)

	var hook webhookJSON
	eventually(t, 10*time.Second, "the webhook disabled", func() bool {
		d.apiJSON(tok, http.MethodGet, fmt.Sprintf("/api/v1/webhooks/%d", w.ID), "", &hook)
		return hook.DisabledAt != nil
	})
	if !strings.Contains(hook.DisabledReason, "every attempt failed since") || !strings.Contains(hook.DisabledReason, "answered 503") || hook.FailingSince == nil {
		t.Errorf("disabled %+v", hook)
	}
	ds := d.deliveries(tok, w.ID)
	if len(ds) != 1 || ds[0].Status != "failed" || len(ds[0].Attempts) < 2 {
		t.Fatalf("deliveries %+v", ds)
	}

	mu.Lock()
	status = http.StatusOK
	mu.Unlock()
	var retried deliveryJSON
	if st := d.apiJSON(tok, http.MethodPost, fmt.Sprintf("/api/v1/webhooks/%d/deliveries/%d/retry", w.ID, ds[0].ID), "", &retried); st != http.StatusAccepted || retried.Status != "pending" || retried.RetryUntil == nil {
		t.Fatalf("retry: %d %+v", st, retried)
	}
	eventually(t, 10*time.Second, "the retried delivery", func() bool {
		ds = d.deliveries(tok, w.ID)
		return ds[0].Status == "delivered"
	})
	if d.apiJSON(tok, http.MethodGet, fmt.Sprintf("/api/v1/webhooks/%d", w.ID), "", &hook); hook.DisabledAt != nil || hook.DisabledReason != "" {
		t.Errorf("after the retry: %+v", hook)
	}
	p, _ := d.db.FindProjectByName(context.Background(), "failing")
	acts, _ := d.db.FindActivity(context.Background(), p.ID, 1)
	if len(acts) != 1 || acts[0].Action != plane.ActionWebhookRetry || !strings.Contains(acts[0].Detail, "enabled again") {
		t.Errorf("activity %+v", acts)
	}
	if st, _ := d.apiCall(tok, http.MethodPost, fmt.Sprintf("/api/v1/webhooks/%d/deliveries/999999/retry", w.ID)); st != http.StatusNotFound {
		t.Errorf("retry of no delivery: %d", st)
	}

	t.Run("410 Gone", func(t *testing.T) {
		gone := newHookReceiver(t, func(int) int { return http.StatusGone })
		g := d.createWebhook(tok, `{"url":"`+gone.URL+`/hook"}`)
		gone.setSecret(g.Secret)
		d.spawnVia(tok)
		var hook webhookJSON
		eventually(t, 10*time.Second, "the webhook disabled", func() bool {
			d.apiJSON(tok, http.MethodGet, fmt.Sprintf("/api/v1/webhooks/%d", g.ID), "", &hook)
			return hook.DisabledAt != nil
		})
		if hook.DisabledReason != "the endpoint answered 410 Gone" || len(gone.messages()) != 1 {
			t.Errorf("disabled %+v after %d messages", hook, len(gone.messages()))
		}
	})
}

// Without --webhook-allow-private, a delivery to a loopback address is
// refused when sent too (a name may resolve there after the webhook was
// made); the attempt says why.
func TestWebhookRefusedAtSend(t *testing.T) {
	t.Parallel()
	d := newDash(t, withHooks(fastHooks, true))
	d.fakeDrone("d1")
	tok := d.apiToken("ssrf", plane.AllScopes...)
	rc := newHookReceiver(t, func(int) int { return http.StatusOK })
	w := d.createWebhook(tok, `{"url":"`+rc.URL+`/hook"}`) // allowed here
	// Another controller of the cluster, without the flag, sends it.
	cfg := d.cfg
	cfg.WebhookAllowPrivate = false
	runHooks(t, server.New(cfg).Core())
	d.spawnVia(tok)
	var ds []deliveryJSON
	eventually(t, 10*time.Second, "a refused attempt", func() bool {
		ds = d.deliveries(tok, w.ID)
		return len(ds) == 1 && len(ds[0].Attempts) > 0
	})
	if a := ds[0].Attempts[0]; a.StatusCode != 0 || !strings.Contains(a.Error, "refused: 127.0.0.1 is a loopback address") {
		t.Errorf("attempt %+v", a)
	}
	if n := len(rc.messages()); n != 0 {
		t.Errorf("the receiver got %d messages", n)
	}
}
