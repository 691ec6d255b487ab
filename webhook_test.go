package plane_test

import (
	"net/url"
	"slices"
	"strings"
	"testing"

	"plane"
)

// A webhook's input: the URL's shape (where it points is checked when
// sending), its event types normalized.
func TestWebhookInputValidate(t *testing.T) {
	tests := []struct {
		name   string
		in     plane.WebhookInput
		field  string // of the error; "" for valid
		events []plane.ProjectEventType
	}{
		{"https", plane.WebhookInput{URL: "https://hooks.example.com/plane?token=x"}, "", nil},
		{"http with a port", plane.WebhookInput{URL: "http://hooks.example.com:8080/in"}, "", nil},
		{"an IPv6 literal", plane.WebhookInput{URL: "https://[2606:4700::1111]/in"}, "", nil},
		{"some types, deduplicated, in order", plane.WebhookInput{URL: "https://x.example/",
			Events: []plane.ProjectEventType{plane.ProjectEventUserLeft, plane.ProjectEventBackendStatus, plane.ProjectEventUserLeft}},
			"", []plane.ProjectEventType{plane.ProjectEventBackendStatus, plane.ProjectEventUserLeft}},
		{"every type is none", plane.WebhookInput{URL: "https://x.example/", Events: plane.ProjectEventTypes}, "", nil},
		{"no URL", plane.WebhookInput{}, "url", nil},
		{"relative", plane.WebhookInput{URL: "/hooks"}, "url", nil},
		{"ftp", plane.WebhookInput{URL: "ftp://x.example/"}, "url", nil},
		{"javascript", plane.WebhookInput{URL: "javascript:alert(1)"}, "url", nil},
		{"no host", plane.WebhookInput{URL: "https:///path"}, "url", nil},
		{"a user", plane.WebhookInput{URL: "https://user@x.example/"}, "url", nil},
		{"a password", plane.WebhookInput{URL: "https://user:pw@x.example/"}, "url", nil},
		{"a fragment", plane.WebhookInput{URL: "https://x.example/#top"}, "url", nil},
		{"a space", plane.WebhookInput{URL: "https://x.example/a b"}, "url", nil},
		{"a line break", plane.WebhookInput{URL: "https://x.example/\r\nX-Evil: 1"}, "url", nil},
		{"a port out of range", plane.WebhookInput{URL: "https://x.example:70000/"}, "url", nil},
		{"port zero", plane.WebhookInput{URL: "https://x.example:0/"}, "url", nil},
		{"a port that is no number", plane.WebhookInput{URL: "https://x.example:http/"}, "url", nil},
		{"too long", plane.WebhookInput{URL: "https://x.example/" + strings.Repeat("a", plane.MaxWebhookURLLen)}, "url", nil},
		{"an unknown type", plane.WebhookInput{URL: "https://x.example/", Events: []plane.ProjectEventType{"backend.created"}}, "events", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in
			err := in.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("invalid: %v", err)
				}
				if !slices.Equal(in.Events, tt.events) {
					t.Fatalf("events %v, want %v", in.Events, tt.events)
				}
				return
			}
			e, ok := err.(*plane.Error)
			if !ok || e.Field != tt.field || e.Code != plane.EINVALID {
				t.Fatalf("error %v, want one about %q", err, tt.field)
			}
		})
	}
}

func TestWebhookWants(t *testing.T) {
	all := &plane.Webhook{}
	some := &plane.Webhook{Events: []plane.ProjectEventType{plane.ProjectEventUserJoined}}
	for _, typ := range plane.ProjectEventTypes {
		if !all.Wants(typ) {
			t.Errorf("a webhook of every type does not want %s", typ)
		}
		if some.Wants(typ) != (typ == plane.ProjectEventUserJoined) {
			t.Errorf("a webhook of joins: wants %s %v", typ, some.Wants(typ))
		}
	}
}

// ParseWebhookURL takes anything without panicking; what it accepts is an
// absolute http(s) URL with a host and no user, that parses the same
// again.
func FuzzParseWebhookURL(f *testing.F) {
	for _, s := range []string{
		"https://hooks.example.com/plane?token=x", "http://[::1]:8080/", "https://user:pw@x/", "ftp://x/",
		"https://x:99999/", "http://%zz/", "https://x.example/#f", "//x.example/", "https://\u00e9.example/", "http://0x7f.1/",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := plane.ParseWebhookURL(raw)
		if err != nil {
			checkDecodeError(t, err)
			return
		}
		if u.Scheme != "http" && u.Scheme != "https" || u.Hostname() == "" || u.User != nil || u.Fragment != "" {
			t.Fatalf("accepted %q: %+v", raw, u)
		}
		again, err := url.Parse(u.String())
		if err != nil || again.Host != u.Host || again.Scheme != u.Scheme {
			t.Fatalf("%q does not parse the same again: %v %+v", u.String(), err, again)
		}
	})
}
