package main

import (
	"errors"
	"io"
	"testing"
)

// --webhook-allow-private (or PLANE_WEBHOOK_ALLOW_PRIVATE) lets webhooks
// reach private addresses; without it they are refused.
func TestWebhookAllowPrivateFlag(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     string
		want    bool
		wantErr bool
	}{
		{"off by default", nil, "", false, false},
		{"on", []string{"--webhook-allow-private"}, "", true, false},
		{"from the environment", nil, "true", true, false},
		{"flag wins over environment", []string{"--webhook-allow-private=false"}, "true", false, false},
		{"not a boolean", nil, "maybe", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.env != "" {
				t.Setenv("PLANE_WEBHOOK_ALLOW_PRIVATE", tt.env)
			}
			var cfg ControllerConfig
			fs := newFlagSet("controller", "", io.Discard)
			webhookFlags(fs, &cfg)
			err := parseFlags(fs, tt.args)
			if tt.wantErr {
				if !errors.As(err, new(usageError)) {
					t.Fatalf("err = %v, want a usage error", err)
				}
				return
			}
			if err != nil || cfg.WebhookAllowPrivate != tt.want {
				t.Fatalf("allow private %v (%v), want %v", cfg.WebhookAllowPrivate, err, tt.want)
			}
		})
	}
}
