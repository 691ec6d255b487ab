package plane_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"plane"
)

// lifecycle is DESIGN §4's order, written out here rather than taken from
// plane.Statuses so that a change to either is caught.
var lifecycle = []plane.BackendStatus{"scheduled", "loading", "starting", "waiting", "ready", "terminating", "terminated"}

// unknownStatuses are not statuses: wrong case, typos, empty.
var unknownStatuses = []plane.BackendStatus{"", "Ready", "READY", "running", "terminated ", "stopped", "lost"}

func TestStatusesOrder(t *testing.T) {
	if !slices.Equal(plane.Statuses, lifecycle) {
		t.Fatalf("Statuses = %v, want %v", plane.Statuses, lifecycle)
	}
}

func TestBackendStatusRankValidLive(t *testing.T) {
	tests := []struct {
		status plane.BackendStatus
		rank   int
		valid  bool
		live   bool
	}{
		{plane.StatusScheduled, 1, true, true},
		{plane.StatusLoading, 2, true, true},
		{plane.StatusStarting, 3, true, true},
		{plane.StatusWaiting, 4, true, true},
		{plane.StatusReady, 5, true, true},
		{plane.StatusTerminating, 6, true, true},
		{plane.StatusTerminated, 7, true, false},
	}
	for _, s := range unknownStatuses {
		tests = append(tests, struct {
			status plane.BackendStatus
			rank   int
			valid  bool
			live   bool
		}{s, 0, false, false})
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.status), func(t *testing.T) {
			if got := tt.status.Rank(); got != tt.rank {
				t.Errorf("Rank() = %d, want %d", got, tt.rank)
			}
			if got := tt.status.Valid(); got != tt.valid {
				t.Errorf("Valid() = %v, want %v", got, tt.valid)
			}
			if got := tt.status.Live(); got != tt.live {
				t.Errorf("Live() = %v, want %v", got, tt.live)
			}
		})
	}
}

// TestBackendStatusCanMoveTo checks every ordered pair of statuses (known and
// unknown): only strictly forward moves to a known status are allowed.
func TestBackendStatusCanMoveTo(t *testing.T) {
	all := append(slices.Clone(lifecycle), unknownStatuses...)
	pos := func(s plane.BackendStatus) int { return slices.Index(lifecycle, s) } // -1 when unknown
	for _, from := range all {
		for _, to := range all {
			want := pos(to) >= 0 && pos(to) > pos(from)
			if got := from.CanMoveTo(to); got != want {
				t.Errorf("%q.CanMoveTo(%q) = %v, want %v", from, to, got, want)
			}
		}
	}
	// Spot checks that read like the lifecycle, in case both sides above are wrong alike.
	for _, tt := range []struct {
		from, to plane.BackendStatus
		want     bool
	}{
		{plane.StatusScheduled, plane.StatusLoading, true},
		{plane.StatusScheduled, plane.StatusTerminated, true}, // skipping steps is a forward move
		{plane.StatusReady, plane.StatusWaiting, false},
		{plane.StatusReady, plane.StatusReady, false}, // redelivered event
		{plane.StatusTerminated, plane.StatusScheduled, false},
		{plane.StatusTerminated, plane.StatusTerminated, false},
		{plane.StatusReady, "bogus", false},
	} {
		if got := tt.from.CanMoveTo(tt.to); got != tt.want {
			t.Errorf("%q.CanMoveTo(%q) = %v, want %v", tt.from, tt.to, got, tt.want)
		}
	}
}

func TestTerminationReasonValid(t *testing.T) {
	tests := []struct {
		reason plane.TerminationReason
		want   bool
	}{
		{plane.ReasonIdle, true},
		{plane.ReasonLifetime, true},
		{plane.ReasonRequested, true},
		{plane.ReasonExited, true},
		{plane.ReasonFailed, true},
		{plane.ReasonLost, true},
		{"idle", true},
		{"", false},
		{"IDLE", false},
		{"crashed", false},
		{"terminated", false},
		{" idle", false},
	}
	for _, tt := range tests {
		if got := tt.reason.Valid(); got != tt.want {
			t.Errorf("TerminationReason(%q).Valid() = %v, want %v", tt.reason, got, tt.want)
		}
	}
}

func TestNewBackendID(t *testing.T) {
	const n = 10_000
	seen := make(map[string]bool, n)
	for range n {
		id := plane.NewBackendID()
		if len(id) != plane.BackendIDLen {
			t.Fatalf("NewBackendID() = %q: length %d, want %d", id, len(id), plane.BackendIDLen)
		}
		if id[0] < 'a' || id[0] > 'z' {
			t.Fatalf("NewBackendID() = %q: a DNS label should start with a letter", id)
		}
		if strings.Trim(id, "abcdefghijklmnopqrstuvwxyz0123456789") != "" {
			t.Fatalf("NewBackendID() = %q: holds a character other than a-z and 0-9", id)
		}
		if err := plane.ValidateBackendID(id); err != nil {
			t.Fatalf("ValidateBackendID(NewBackendID() = %q) = %v", id, err)
		}
		if seen[id] {
			t.Fatalf("NewBackendID() returned %q twice in %d calls", id, n)
		}
		seen[id] = true
	}
}

func TestValidateBackendID(t *testing.T) {
	tests := []struct {
		id       string
		valid    bool
		contains string
	}{
		{"abc", true, ""},
		{"a", true, ""},
		{"0abc", true, ""},
		{"k3x9q2m7z0p1w4", true, ""},
		{strings.Repeat("a", 63), true, ""},
		{"", false, "is required"},
		{strings.Repeat("a", 64), false, "longer than 63"},
		{"ABC", false, "a-z and 0-9"},
		{"aBc", false, "a-z and 0-9"},
		{"a-b", false, "a-z and 0-9"},
		{"a.b", false, "a-z and 0-9"},
		{"a*", false, "a-z and 0-9"},
		{"a>", false, "a-z and 0-9"},
		{"a b", false, "a-z and 0-9"},
		{"a_b", false, "a-z and 0-9"},
		{"é", false, "a-z and 0-9"},
		{"abc\x00", false, "a-z and 0-9"},
		{"abc\n", false, "a-z and 0-9"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.id), func(t *testing.T) {
			err := plane.ValidateBackendID(tt.id)
			if tt.valid {
				if err != nil {
					t.Fatalf("ValidateBackendID(%q) = %v, want nil", tt.id, err)
				}
				return
			}
			assertInvalid(t, err, "id", tt.contains)
		})
	}
}

func TestValidateDroneID(t *testing.T) {
	tests := []struct {
		id       string
		valid    bool
		contains string
	}{
		{"d1", true, ""},
		{"a", true, ""},
		{"1", true, ""},
		{"drone-1", true, ""},
		{"a--b", true, ""},
		{"host-01-eu", true, ""},
		{strings.Repeat("d", 63), true, ""},
		{"", false, "is required"},
		{strings.Repeat("d", 64), false, "longer than 63"},
		{"-", false, "inner '-'"},
		{"-a", false, "inner '-'"},
		{"a-", false, "inner '-'"},
		{"Drone", false, "lowercase"},
		{"a.b", false, "lowercase"}, // a dot would add a NATS subject token
		{"a*", false, "lowercase"},  // NATS wildcard
		{"a>", false, "lowercase"},  // NATS wildcard
		{"a b", false, "lowercase"},
		{"a_b", false, "lowercase"},
		{"ü", false, "lowercase"},
		{"a\x00", false, "lowercase"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.id), func(t *testing.T) {
			err := plane.ValidateDroneID(tt.id)
			if tt.valid {
				if err != nil {
					t.Fatalf("ValidateDroneID(%q) = %v, want nil", tt.id, err)
				}
				return
			}
			assertInvalid(t, err, "drone_id", tt.contains)
		})
	}
}
