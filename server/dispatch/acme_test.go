package dispatch

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"plane"
)

func TestACMELease(t *testing.T) {
	t.Parallel()
	ttl := plane.ACMELeaseTTL
	type step struct {
		at      time.Duration // after t0
		drone   string
		release bool
		granted bool
		holder  string // "" : nobody holds it after the step
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{name: "free lease is granted", steps: []step{{drone: "d1", granted: true, holder: "d1"}}},
		{name: "held by one drone at a time", steps: []step{
			{drone: "d1", granted: true, holder: "d1"},
			{at: time.Minute, drone: "d2", holder: "d1"},
		}},
		{name: "holder renews", steps: []step{
			{drone: "d1", granted: true, holder: "d1"},
			{at: ttl - time.Second, drone: "d1", granted: true, holder: "d1"},
			{at: ttl + time.Second, drone: "d2", holder: "d1"}, // renewed: still held
		}},
		{name: "expired lease goes to another drone", steps: []step{
			{drone: "d1", granted: true, holder: "d1"},
			{at: ttl, drone: "d2", granted: true, holder: "d2"},
		}},
		{name: "release frees it", steps: []step{
			{drone: "d1", granted: true, holder: "d1"},
			{at: time.Second, drone: "d1", release: true},
			{at: 2 * time.Second, drone: "d2", granted: true, holder: "d2"},
		}},
		{name: "only the holder releases", steps: []step{
			{drone: "d1", granted: true, holder: "d1"},
			{at: time.Second, drone: "d2", release: true, holder: "d1"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var a acmeState
			for i, s := range tc.steps {
				now := t0.Add(s.at)
				l := a.lease(plane.ACMELeaseRequest{DroneID: s.drone, Release: s.release}, now)
				if l.Granted != s.granted || l.Holder != s.holder {
					t.Fatalf("step %d: granted %v to %q, want %v to %q", i, l.Granted, l.Holder, s.granted, s.holder)
				}
				if s.granted && !l.ExpiresAt.Equal(now.Add(ttl)) {
					t.Errorf("step %d: expires %v, want %v", i, l.ExpiresAt, now.Add(ttl))
				}
			}
		})
	}
}

func TestACMETXT(t *testing.T) {
	t.Parallel()
	var a acmeState
	v1, v2, v3 := challenge("1"), challenge("2"), challenge("3")
	set := func(drone, v string, at time.Duration) error {
		return a.setTXT(plane.ACMEChallenge{DroneID: drone, Value: v}, t0.Add(at))
	}
	if err := set("d1", v1, 0); plane.ErrorCodeOf(err) != plane.EFORBIDDEN {
		t.Fatalf("set without the lease: %v, want forbidden", err)
	}
	a.lease(plane.ACMELeaseRequest{DroneID: "d1"}, t0)
	if err := set("d2", v1, 0); plane.ErrorCodeOf(err) != plane.EFORBIDDEN {
		t.Fatalf("set by a drone that does not hold the lease: %v, want forbidden", err)
	}
	for _, v := range []string{v1, v2, v2} {
		if err := set("d1", v, time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := fmt.Sprint(a.txt()), fmt.Sprint(sorted(v1, v2)); got != want {
		t.Fatalf("txt = %v, want %v", got, want)
	}
	a.clearTXT(plane.ACMEChallenge{DroneID: "d1", Value: v1})
	a.clearTXT(plane.ACMEChallenge{DroneID: "d1", Value: v3}) // never set: no error
	if got, want := fmt.Sprint(a.txt()), fmt.Sprint([]string{v2}); got != want {
		t.Fatalf("after clear, txt = %v, want %v", got, want)
	}
	if err := set("d1", v3, plane.ACMELeaseTTL); plane.ErrorCodeOf(err) != plane.EFORBIDDEN {
		t.Fatalf("set after the lease expired: %v, want forbidden", err)
	}
}

func TestACMETXTBound(t *testing.T) {
	t.Parallel()
	var a acmeState
	a.lease(plane.ACMELeaseRequest{DroneID: "d1"}, t0)
	for i := range plane.MaxChallengeValues {
		if err := a.setTXT(plane.ACMEChallenge{DroneID: "d1", Value: challenge(fmt.Sprint(i))}, t0); err != nil {
			t.Fatal(err)
		}
	}
	err := a.setTXT(plane.ACMEChallenge{DroneID: "d1", Value: challenge("one more")}, t0)
	if plane.ErrorCodeOf(err) != plane.EUNAVAILABLE {
		t.Fatalf("set beyond the bound: %v, want unavailable", err)
	}
}

// A drone that dies in the middle of an order leaves its values behind; the
// next holder of the lease must still be able to publish its own.
func TestACMETXTOfAnExpiredLeaseDoNotBlockTheNext(t *testing.T) {
	t.Parallel()
	var a acmeState
	a.lease(plane.ACMELeaseRequest{DroneID: "d1"}, t0)
	for i := range plane.MaxChallengeValues {
		if err := a.setTXT(plane.ACMEChallenge{DroneID: "d1", Value: challenge(fmt.Sprint(i))}, t0); err != nil {
			t.Fatal(err)
		}
	}
	later := t0.Add(plane.ACMELeaseTTL)
	if l := a.lease(plane.ACMELeaseRequest{DroneID: "d2"}, later); !l.Granted {
		t.Fatal("expired lease not granted")
	}
	v := challenge("d2")
	if err := a.setTXT(plane.ACMEChallenge{DroneID: "d2", Value: v}, later); err != nil {
		t.Fatalf("the next holder cannot publish: %v", err)
	}
	if got := fmt.Sprint(a.txt()); got != fmt.Sprint([]string{v}) {
		t.Errorf("txt = %v, want only the new holder's value", got)
	}
}

func sorted(vs ...string) []string {
	var a acmeState
	a.Values = map[string]string{}
	for _, v := range vs {
		a.Values[v] = ""
	}
	return a.txt()
}

// Over NATS: a drone takes the lease, publishes a TXT value the DNS source
// then serves, and clears it.
func TestACMEOverNATS(t *testing.T) {
	t.Parallel()
	nc := startNATS(t)
	d, _ := newDispatcher(newStore(nil, nil), nc)
	if err := d.Open(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	drone := connect(t, nc.ConnectedUrl())
	request := func(subject string, v any) []byte {
		t.Helper()
		m, err := drone.Request(subject, msg(t, v).Data, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return m.Data
	}
	lease, err := plane.Decode[plane.ACMELease](request(plane.SubjectACMELease, plane.ACMELeaseRequest{DroneID: "d1"}))
	if err != nil || !lease.Granted || lease.Holder != "d1" {
		t.Fatalf("lease %+v, %v", lease, err)
	}
	lease, _ = plane.Decode[plane.ACMELease](request(plane.SubjectACMELease, plane.ACMELeaseRequest{DroneID: "Bad"}))
	if lease.Error == "" || lease.Granted {
		t.Errorf("invalid lease request answered %+v", lease)
	}
	v := challenge("x")
	reply := func(subject string, c plane.ACMEChallenge) error {
		t.Helper()
		var r plane.Reply
		if err := json.Unmarshal(request(subject, c), &r); err != nil {
			t.Fatal(err)
		}
		return r.Err()
	}
	if err := reply(plane.SubjectACMESetTXT, plane.ACMEChallenge{DroneID: "d2", Value: v}); plane.ErrorCodeOf(err) != plane.EFORBIDDEN {
		t.Errorf("set by a non-holder: %v, want forbidden", err)
	}
	if err := reply(plane.SubjectACMESetTXT, plane.ACMEChallenge{DroneID: "d1", Value: "not base64!"}); plane.ErrorCodeOf(err) != plane.EINVALID {
		t.Errorf("set of a malformed value: %v, want invalid", err)
	}
	if err := reply(plane.SubjectACMESetTXT, plane.ACMEChallenge{DroneID: "d1", Value: v}); err != nil {
		t.Fatal(err)
	}
	if got, _ := d.Challenges(t.Context()); fmt.Sprint(got) != fmt.Sprint([]string{v}) {
		t.Errorf("Challenges = %v, want [%s]", got, v)
	}
	if err := reply(plane.SubjectACMEClearTXT, plane.ACMEChallenge{DroneID: "d1", Value: v}); err != nil {
		t.Fatal(err)
	}
	if got, _ := d.Challenges(t.Context()); len(got) != 0 {
		t.Errorf("Challenges after clear = %v", got)
	}
}

// Two controllers that share the ACME state (the store) grant the lease to
// one drone at a time and publish the same TXT values, whichever of them a
// drone or a DNS query reaches.
func TestACMESharedByControllers(t *testing.T) {
	t.Parallel()
	shared := &memoryACME{}
	a, _ := newDispatcher(newStore(nil, nil), startNATS(t))
	b, _ := newDispatcher(newStore(nil, nil), startNATS(t))
	a.ACME, b.ACME = shared, shared
	req := func(d *Dispatcher, drone string) plane.ACMELease {
		t.Helper()
		var lease plane.ACMELease
		if err := d.acmeStore().UpdateACMEState(t.Context(), func(st *plane.ACMEState) error {
			lease = (*acmeState)(st).lease(plane.ACMELeaseRequest{DroneID: drone}, t0)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return lease
	}
	if l := req(a, "d1"); !l.Granted {
		t.Fatalf("first lease through a: %+v", l)
	}
	if l := req(b, "d2"); l.Granted || l.Holder != "d1" {
		t.Fatalf("a second drone through b: %+v, want d1's lease kept", l)
	}
	v := challenge("shared")
	if err := a.acmeStore().UpdateACMEState(t.Context(), func(st *plane.ACMEState) error {
		return (*acmeState)(st).setTXT(plane.ACMEChallenge{DroneID: "d1", Value: v}, t0)
	}); err != nil {
		t.Fatal(err)
	}
	if got, err := b.Challenges(t.Context()); err != nil || fmt.Sprint(got) != fmt.Sprint([]string{v}) {
		t.Errorf("b's DNS source serves %v (%v), want the value set through a", got, err)
	}
}
