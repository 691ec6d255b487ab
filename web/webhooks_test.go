package web

import (
	"testing"
	"time"

	"github.com/a-h/templ"

	"plane"
)

func TestWebhookViewsGolden(t *testing.T) {
	failing := &plane.Webhook{ID: 3, URL: "https://hooks.example.com/in?token=x", CreatedAt: t0, FailingSince: ptr(t0.Add(time.Minute))}
	disabled := &plane.Webhook{ID: 4, URL: "https://hooks.example.com/gone", CreatedAt: t0, FailingSince: ptr(t0), DisabledAt: ptr(t0.Add(time.Hour)), DisabledReason: "the endpoint answered 410 Gone"}
	pending := Delivery{WebhookDelivery: &plane.WebhookDelivery{ID: 12, WebhookID: 3, EventID: 1042, EventType: plane.ProjectEventUserJoined, Status: plane.DeliveryPending,
		CreatedAt: t0, NextAttemptAt: ptr(t0.Add(10 * time.Second)), Attempts: []plane.DeliveryAttempt{
			{Time: t0, StatusCode: 503, Duration: 12 * time.Millisecond},
			{Time: t0.Add(5 * time.Second), Error: "dial tcp: connection refused", Duration: 3 * time.Millisecond},
		}}, RetryUntil: ptr(t0.Add(24 * time.Hour))}
	delivered := Delivery{WebhookDelivery: &plane.WebhookDelivery{ID: 11, WebhookID: 3, EventID: 1041, EventType: plane.ProjectEventBackendStatus, Status: plane.DeliveryDelivered,
		CreatedAt: t0, Attempts: []plane.DeliveryAttempt{{Time: t0, StatusCode: 204, Duration: 1500 * time.Millisecond}}}}
	tests := []struct {
		name string
		c    templ.Component
	}{
		{"connections", ConnectionsPanel(ConnectionsView{Live: true, Now: t0.Add(time.Minute), Users: []ConnectedUser{
			{User: "ada@example.com", Connections: 3, Since: t0}, {User: "", Connections: 1, Since: t0.Add(30 * time.Second)},
		}})},
		{"connections-none", ConnectionsPanel(ConnectionsView{Live: true, Now: t0})},
		{"connections-ended", ConnectionsPanel(ConnectionsView{})},
		{"stats-up-because", StatsPanel(StatsView{Live: true, Known: true, Connections: 2, UpBecause: "2 users connected", Now: t0})},
		{"webhook-failing", WebhookStateBadge(failing)},
		{"webhook-disabled", WebhookStateBadge(disabled)},
		{"deliveries", Deliveries("tok", "/projects/7/webhooks/3", []Delivery{pending, delivered}, t0.Add(time.Minute))},
		{"deliveries-empty", Deliveries("tok", "/projects/7/webhooks/3", nil, t0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { golden(t, tt.name, tt.c) })
	}
}

func TestWebhookFormat(t *testing.T) {
	tests := []struct{ got, want string }{
		{WebhookURL("https://hooks.example.com/in?token=secret"), "https://hooks.example.com/in?…"},
		{WebhookURL("https://hooks.example.com:8443/in"), "https://hooks.example.com:8443/in"},
		{WebhookURL("https://hooks.example.com/in?"), "https://hooks.example.com/in?…"},
		{WebhookURL("http://[::1]:9/x?a=b#frag"), "http://[::1]:9/x?…"},
		{WebhookURL("%zz"), "(unreadable URL)"},
		{WebhookEvents(&plane.Webhook{}), "all events"},
		{WebhookEvents(&plane.Webhook{Events: []plane.ProjectEventType{plane.ProjectEventUserJoined, plane.ProjectEventUserLeft}}), "backend.user_joined, backend.user_left"},
		{WebhookState(&plane.Webhook{}), "active"},
		{WebhookState(&plane.Webhook{FailingSince: ptr(t0)}), "failing"},
		{WebhookState(&plane.Webhook{FailingSince: ptr(t0), DisabledAt: ptr(t0)}), "disabled"},
		{ActionLabel(plane.ActionWebhookRetry), "Webhook delivery retried"},
		{ActionLabel("made.up"), "made.up"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}
