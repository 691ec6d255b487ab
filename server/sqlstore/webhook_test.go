package sqlstore_test

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"plane"
	"plane/server/sqlstore"
)

func mustCreateWebhook(tb testing.TB, db *sqlstore.DB, projectID int64, events ...plane.ProjectEventType) *plane.Webhook {
	tb.Helper()
	w := &plane.Webhook{ProjectID: projectID, URL: "https://hooks.example.com/in?token=t", Events: events, Secret: "whsec_c2VjcmV0"}
	if err := db.CreateWebhook(context.Background(), w); err != nil {
		tb.Fatal(err)
	}
	return w
}

func mustDeliveries(tb testing.TB, db *sqlstore.DB, webhookID int64) []*plane.WebhookDelivery {
	tb.Helper()
	ds, err := db.FindWebhookDeliveries(context.Background(), webhookID, 0)
	if err != nil {
		tb.Fatal(err)
	}
	return ds
}

// Webhooks belong to a project: stored with their secret, found only
// through it, deleted with their deliveries.
func TestWebhooks(t *testing.T) { eachStore(t, testWebhooks) }

func testWebhooks(t *testing.T, s store) {
	ctx := context.Background()
	db := s.MustOpen(t)
	p := MustCreateProject(t, db, "hooks")
	other := MustCreateProject(t, db, "other")
	all := mustCreateWebhook(t, db, p.ID)
	joins := mustCreateWebhook(t, db, p.ID, plane.ProjectEventUserJoined, plane.ProjectEventUserLeft)
	if all.ID == 0 || all.CreatedAt.IsZero() || joins.ID == all.ID {
		t.Fatalf("created %+v, %+v", all, joins)
	}

	got, err := db.FindWebhookByID(ctx, p.ID, joins.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.URL != joins.URL || got.Secret != joins.Secret || !slices.Equal(got.Events, joins.Events) || !got.CreatedAt.Equal(joins.CreatedAt) ||
		got.DisabledAt != nil || got.FailingSince != nil || got.ProjectID != p.ID {
		t.Errorf("found %+v, want %+v", got, joins)
	}
	if got, err := db.FindWebhookByID(ctx, p.ID, all.ID); err != nil || got.Events == nil || len(got.Events) != 0 {
		t.Errorf("a webhook of every type: %+v, %v", got, err)
	}
	list, err := db.FindWebhooks(ctx, p.ID)
	if err != nil || len(list) != 2 || list[0].ID != all.ID || list[1].ID != joins.ID {
		t.Fatalf("list %+v, %v", list, err)
	}

	t.Run("another project's", func(t *testing.T) {
		_, err := db.FindWebhookByID(ctx, other.ID, all.ID)
		wantCode(t, err, plane.ENOTFOUND)
		wantCode(t, db.DeleteWebhook(ctx, other.ID, all.ID), plane.ENOTFOUND)
		if list, err := db.FindWebhooks(ctx, other.ID); err != nil || len(list) != 0 {
			t.Errorf("other project's list %+v, %v", list, err)
		}
	})
	t.Run("unknown project", func(t *testing.T) {
		wantCode(t, db.CreateWebhook(ctx, &plane.Webhook{ProjectID: 999999, URL: "https://x.example", Secret: "whsec_eA=="}), plane.ENOTFOUND)
	})
	t.Run("at most MaxWebhooks", func(t *testing.T) {
		full := MustCreateProject(t, db, "full")
		for range plane.MaxWebhooks {
			mustCreateWebhook(t, db, full.ID)
		}
		wantCode(t, db.CreateWebhook(ctx, &plane.Webhook{ProjectID: full.ID, URL: "https://x.example", Secret: "whsec_eA=="}), plane.ECONFLICT)
	})

	t.Run("deliveries of the types each wants", func(t *testing.T) {
		b := mustCreateBackend(t, db, p.ID, "")
		mustApply(t, db, plane.BackendEvent{BackendID: b.ID, DroneID: "d1", Status: plane.StatusReady})
		mustApply(t, db, connectionEvent(b.ID, "ada", true, time.Now()))
		types := func(ds []*plane.WebhookDelivery) []plane.ProjectEventType {
			var ts []plane.ProjectEventType
			for _, d := range ds {
				ts = append(ts, d.EventType)
			}
			return ts
		}
		// Newest first.
		if got, want := types(mustDeliveries(t, db, all.ID)), []plane.ProjectEventType{plane.ProjectEventUserJoined, plane.ProjectEventBackendStatus, plane.ProjectEventBackendStatus}; !slices.Equal(got, want) {
			t.Errorf("every type: %v, want %v", got, want)
		}
		ds := mustDeliveries(t, db, joins.ID)
		if got, want := types(ds), []plane.ProjectEventType{plane.ProjectEventUserJoined}; !slices.Equal(got, want) {
			t.Fatalf("joins and leaves: %v, want %v", got, want)
		}
		d := ds[0]
		if d.Status != plane.DeliveryPending || d.NextAttemptAt == nil || len(d.Attempts) != 0 || d.WebhookID != joins.ID || !d.Since.Equal(d.CreatedAt) {
			t.Errorf("new delivery %+v", d)
		}
		evs, err := db.FindBackendEvents(ctx, b.ID, 0, 0)
		if err != nil || evs[len(evs)-1].ID != d.EventID {
			t.Errorf("the delivery's event %d, the log's %+v (%v)", d.EventID, evs, err)
		}
		if n := len(mustDeliveries(t, db, all.ID)); n != 3 {
			t.Fatalf("%d deliveries", n)
		}
		if err := db.DeleteWebhook(ctx, p.ID, all.ID); err != nil {
			t.Fatal(err)
		}
		if n := len(mustDeliveries(t, db, all.ID)); n != 0 {
			t.Errorf("%d deliveries of a deleted webhook", n)
		}
		_, err = db.FindWebhookByID(ctx, p.ID, all.ID)
		wantCode(t, err, plane.ENOTFOUND)
	})
}

// A delivery's life: claimed (once, while its lease holds), sent, retried,
// delivered or failed; every attempt logged; a webhook failing since its
// first failed attempt after an answered one, disabled on request, enabled
// again by a retry by hand.
func TestWebhookDeliveries(t *testing.T) { eachStore(t, testWebhookDeliveries) }

func testWebhookDeliveries(t *testing.T, s store) {
	ctx := context.Background()
	db := s.MustOpen(t)
	p := MustCreateProject(t, db, "deliveries")
	w := mustCreateWebhook(t, db, p.ID)
	now := ms(time.Now().UnixMilli())
	claim := func(at time.Time, limit int) []*plane.DueDelivery {
		t.Helper()
		due, err := db.ClaimWebhookDeliveries(ctx, at, time.Minute, limit)
		if err != nil {
			t.Fatal(err)
		}
		return due
	}
	record := func(d *plane.DueDelivery, o plane.AttemptOutcome) *time.Time {
		t.Helper()
		failing, err := db.RecordWebhookAttempt(ctx, d, o)
		if err != nil {
			t.Fatal(err)
		}
		return failing
	}

	b := mustCreateBackend(t, db, p.ID, "") // one event, one delivery
	due := claim(now.Add(time.Second), 10)
	if len(due) != 1 {
		t.Fatalf("claimed %d, want 1", len(due))
	}
	d := due[0]
	var body plane.ProjectEvent
	if err := json.Unmarshal(d.Payload, &body); err != nil || body.ID != d.EventID || body.Type != plane.ProjectEventBackendStatus || statusData(t, &body).BackendID != b.ID {
		t.Fatalf("payload %s: %v", d.Payload, err)
	}
	if d.WebhookID != w.ID || d.ProjectID != p.ID || d.URL != w.URL || d.Secret != w.Secret || d.Attempts != 0 || d.Claim == "" {
		t.Fatalf("claimed %+v", d)
	}
	if again := claim(now.Add(2*time.Second), 10); len(again) != 0 {
		t.Fatalf("claimed again while leased: %+v", again)
	}

	// A failure: pending again, later; the webhook failing since then.
	next := now.Add(10 * time.Second)
	failing := record(d, plane.AttemptOutcome{Attempt: plane.DeliveryAttempt{Time: now, StatusCode: 500, Duration: 12 * time.Millisecond}, Next: &next})
	if failing == nil || !failing.Equal(now) {
		t.Errorf("failing since %v, want %v", failing, now)
	}
	if got := claim(now.Add(5*time.Second), 10); len(got) != 0 {
		t.Fatalf("claimed before it is due: %+v", got)
	}
	d2 := claim(next, 10)
	if len(d2) != 1 || d2[0].ID != d.ID || d2[0].Attempts != 1 || d2[0].Claim == d.Claim {
		t.Fatalf("claimed when due: %+v", d2)
	}
	// The first claim's late outcome is logged, moves nothing.
	record(d, plane.AttemptOutcome{Attempt: plane.DeliveryAttempt{Time: now.Add(11 * time.Second), Error: "no answer within 10s"}, Next: &next})
	// A second failure: failing since the first still.
	failing = record(d2[0], plane.AttemptOutcome{Attempt: plane.DeliveryAttempt{Time: next, Error: "connection refused"}, Next: ptr(next.Add(time.Minute))})
	if failing == nil || !failing.Equal(now) {
		t.Errorf("failing since %v after a second failure, want %v", failing, now)
	}
	d3 := claim(next.Add(time.Minute), 10)
	if len(d3) != 1 || d3[0].Attempts != 2 {
		t.Fatalf("third claim %+v", d3)
	}
	// Delivered: the webhook answers again.
	if failing := record(d3[0], plane.AttemptOutcome{Attempt: plane.DeliveryAttempt{Time: next.Add(time.Minute), StatusCode: 204, Duration: time.Millisecond}}); failing != nil {
		t.Errorf("failing since %v after an answer", failing)
	}
	ds := mustDeliveries(t, db, w.ID)
	if len(ds) != 1 || ds[0].Status != plane.DeliveryDelivered || ds[0].NextAttemptAt != nil {
		t.Fatalf("deliveries %+v", ds)
	}
	var log []string
	for _, a := range ds[0].Attempts {
		switch {
		case a.Error != "":
			log = append(log, a.Error)
		default:
			log = append(log, strconv.Itoa(a.StatusCode))
		}
	}
	if want := []string{"500", "no answer within 10s", "connection refused", "204"}; !slices.Equal(log, want) {
		t.Errorf("attempts %v, want %v", log, want)
	}
	if a := ds[0].Attempts[0]; !a.Time.Equal(now) || a.Duration != 12*time.Millisecond {
		t.Errorf("first attempt %+v", a)
	}

	t.Run("given up", func(t *testing.T) {
		mustApply(t, db, plane.BackendEvent{BackendID: b.ID, DroneID: "d1", Status: plane.StatusLoading})
		due := claim(time.Now().Add(time.Second), 10)
		if len(due) != 1 {
			t.Fatalf("claimed %d", len(due))
		}
		record(due[0], plane.AttemptOutcome{Attempt: plane.DeliveryAttempt{Time: time.Now(), StatusCode: 404}})
		if ds := mustDeliveries(t, db, w.ID); ds[0].Status != plane.DeliveryFailed || ds[0].NextAttemptAt != nil {
			t.Errorf("given up: %+v", ds[0])
		}
	})

	t.Run("disabled, then retried by hand", func(t *testing.T) {
		mustApply(t, db, plane.BackendEvent{BackendID: b.ID, Status: plane.StatusStarting})
		at := ms(time.Now().UnixMilli())
		if err := db.DisableWebhook(ctx, w.ID, "every attempt failed", at); err != nil {
			t.Fatal(err)
		}
		got, err := db.FindWebhookByID(ctx, p.ID, w.ID)
		if err != nil || got.DisabledAt == nil || !got.DisabledAt.Equal(at) || got.DisabledReason != "every attempt failed" {
			t.Fatalf("disabled webhook %+v, %v", got, err)
		}
		if err := db.DisableWebhook(ctx, w.ID, "another reason", at.Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		if got, _ := db.FindWebhookByID(ctx, p.ID, w.ID); got.DisabledReason != "every attempt failed" {
			t.Errorf("disabled twice: reason %q", got.DisabledReason)
		}
		ds := mustDeliveries(t, db, w.ID)
		if ds[0].Status != plane.DeliveryFailed {
			t.Errorf("the pending delivery of a disabled webhook: %+v", ds[0])
		}
		// A disabled webhook gets no new deliveries, and none are claimed.
		mustApply(t, db, plane.BackendEvent{BackendID: b.ID, Status: plane.StatusWaiting})
		if n := len(mustDeliveries(t, db, w.ID)); n != len(ds) {
			t.Errorf("a disabled webhook got a delivery: %d, had %d", n, len(ds))
		}
		retryAt := at.Add(time.Hour)
		rd, err := db.RetryWebhookDelivery(ctx, w.ID, ds[0].ID, retryAt)
		if err != nil {
			t.Fatal(err)
		}
		if rd.Status != plane.DeliveryPending || rd.NextAttemptAt == nil || !rd.NextAttemptAt.Equal(retryAt) || !rd.Since.Equal(retryAt) || len(rd.Attempts) != len(ds[0].Attempts) {
			t.Errorf("retried %+v", rd)
		}
		if got, _ := db.FindWebhookByID(ctx, p.ID, w.ID); got.DisabledAt != nil || got.DisabledReason != "" || got.FailingSince != nil {
			t.Errorf("after a retry by hand: %+v", got)
		}
		if due := claim(retryAt, 10); len(due) != 1 || due[0].ID != ds[0].ID || !due[0].Since.Equal(retryAt) {
			t.Errorf("claimed after the retry: %+v", due)
		}
		_, err = db.RetryWebhookDelivery(ctx, w.ID+1000, ds[0].ID, retryAt)
		wantCode(t, err, plane.ENOTFOUND)
	})

	t.Run("pruned when done", func(t *testing.T) {
		before := len(mustDeliveries(t, db, w.ID))
		n, err := db.PruneWebhookDeliveries(ctx, time.Now().Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		left := mustDeliveries(t, db, w.ID)
		for _, d := range left {
			if d.Status != plane.DeliveryPending {
				t.Errorf("kept %+v", d)
			}
		}
		if int(n)+len(left) != before || n == 0 {
			t.Errorf("pruned %d of %d, %d left", n, before, len(left))
		}
	})

	t.Run("an attempt of a deleted webhook", func(t *testing.T) {
		w2 := mustCreateWebhook(t, db, p.ID)
		mustApply(t, db, plane.BackendEvent{BackendID: b.ID, Status: plane.StatusReady})
		due := claim(time.Now().Add(time.Hour), 10)
		var mine *plane.DueDelivery
		for _, d := range due {
			if d.WebhookID == w2.ID {
				mine = d
			}
		}
		if mine == nil {
			t.Fatalf("no delivery of the new webhook in %+v", due)
		}
		if err := db.DeleteWebhook(ctx, p.ID, w2.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := db.RecordWebhookAttempt(ctx, mine, plane.AttemptOutcome{Attempt: plane.DeliveryAttempt{Time: time.Now(), StatusCode: 200}}); err != nil {
			t.Fatalf("record after delete: %v", err)
		}
	})
}

// Several controllers claim at once: each delivery goes to one of them.
func TestWebhookDeliveries_concurrentClaims(t *testing.T) {
	eachStore(t, testWebhookDeliveries_concurrentClaims)
}

func testWebhookDeliveries_concurrentClaims(t *testing.T, s store) {
	ctx := context.Background()
	where := s.fresh(t)
	dbs := []*sqlstore.DB{s.mustOpenAt(t, where), s.mustOpenAt(t, where)}
	p := MustCreateProject(t, dbs[0], "claims")
	mustCreateWebhook(t, dbs[0], p.ID)
	const deliveries = 40
	for range deliveries {
		mustCreateBackend(t, dbs[0], p.ID, "")
	}
	var mu sync.Mutex
	claimed := map[int64]int{}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Go(func() {
			for {
				due, err := dbs[i%2].ClaimWebhookDeliveries(ctx, time.Now().Add(time.Second), time.Minute, 3)
				if err != nil {
					errs <- err
					return
				}
				if len(due) == 0 {
					return
				}
				mu.Lock()
				for _, d := range due {
					claimed[d.ID]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(claimed) != deliveries {
		t.Errorf("%d deliveries claimed, want %d", len(claimed), deliveries)
	}
	for id, n := range claimed {
		if n != 1 {
			t.Errorf("delivery %d claimed %d times", id, n)
		}
	}
}
