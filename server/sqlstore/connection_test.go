package sqlstore_test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"plane"
	"plane/server/sqlstore"
)

// connectionEvent is a join (or a leave) of user at t.
func connectionEvent(id, user string, joined bool, t time.Time) plane.BackendEvent {
	users := 0
	if joined {
		users = 1
	}
	return plane.BackendEvent{BackendID: id, Status: plane.StatusReady, Time: t, Connection: &plane.ConnectionChange{User: user, Joined: joined, Users: users}}
}

// connectionLog is a backend's joins and leaves as "+user:n" and "-user:n"
// (n the users connected after).
func connectionLog(tb testing.TB, db *sqlstore.DB, backendID string) []string {
	tb.Helper()
	evs, err := db.FindBackendEvents(context.Background(), backendID, 0, 0)
	if err != nil {
		tb.Fatal(err)
	}
	var out []string
	for _, ev := range evs {
		if ev.Type == plane.ProjectEventBackendStatus {
			continue
		}
		var d plane.ConnectionData
		if err := json.Unmarshal(ev.Data, &d); err != nil || d.BackendID != backendID || !d.Time.Equal(ev.Time) {
			tb.Fatalf("event %d: %v %+v", ev.ID, err, d)
		}
		sign := "-"
		if ev.Type == plane.ProjectEventUserJoined {
			sign = "+"
		}
		out = append(out, sign+d.User+":"+string(rune('0'+d.Users)))
	}
	return out
}

func connectedUsers(tb testing.TB, db *sqlstore.DB, backendID string) []string {
	tb.Helper()
	conns, err := db.FindConnections(context.Background(), backendID)
	if err != nil {
		tb.Fatal(err)
	}
	users := []string{}
	for _, c := range conns {
		users = append(users, c.User)
	}
	return users
}

// Joins and leaves of a ready backend are kept (who is connected, since
// when) and logged, once each: the drone's outbox delivers at least once,
// and a redelivery, or a change older than the latest of its user, changes
// nothing.
func TestConnections(t *testing.T) { eachStore(t, testConnections) }

func testConnections(t *testing.T, s store) {
	ctx := context.Background()
	t0 := ms(time.Now().UnixMilli())
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	tests := []struct {
		name      string
		events    []plane.BackendEvent // applied to a ready backend, in order
		applied   []bool
		log       []string
		connected []string
	}{
		{
			name:      "join and leave",
			events:    []plane.BackendEvent{connectionEvent("", "ada", true, at(1)), connectionEvent("", "ada", false, at(2))},
			applied:   []bool{true, true},
			log:       []string{"+ada:1", "-ada:0"},
			connected: []string{},
		},
		{
			name: "two users, in the order they joined",
			events: []plane.BackendEvent{connectionEvent("", "bob", true, at(1)), connectionEvent("", "ada", true, at(2)),
				connectionEvent("", "bob", false, at(3))},
			applied:   []bool{true, true, true},
			log:       []string{"+bob:1", "+ada:2", "-bob:1"},
			connected: []string{"ada"},
		},
		{
			name:      "a redelivered join",
			events:    []plane.BackendEvent{connectionEvent("", "ada", true, at(1)), connectionEvent("", "ada", true, at(1))},
			applied:   []bool{true, false},
			log:       []string{"+ada:1"},
			connected: []string{"ada"},
		},
		{
			name: "a join redelivered after its leave",
			events: []plane.BackendEvent{connectionEvent("", "ada", true, at(1)), connectionEvent("", "ada", false, at(2)),
				connectionEvent("", "ada", true, at(1)), connectionEvent("", "ada", false, at(2))},
			applied:   []bool{true, true, false, false},
			log:       []string{"+ada:1", "-ada:0"},
			connected: []string{},
		},
		{
			name:      "a leave that overtook its join",
			events:    []plane.BackendEvent{connectionEvent("", "ada", false, at(2)), connectionEvent("", "ada", true, at(1))},
			applied:   []bool{false, false},
			log:       nil,
			connected: []string{},
		},
		{
			name: "a join after a leave",
			events: []plane.BackendEvent{connectionEvent("", "ada", true, at(1)), connectionEvent("", "ada", false, at(2)),
				connectionEvent("", "ada", true, at(3))},
			applied:   []bool{true, true, true},
			log:       []string{"+ada:1", "-ada:0", "+ada:1"},
			connected: []string{"ada"},
		},
		{
			name:      "a leave in the millisecond of the join",
			events:    []plane.BackendEvent{connectionEvent("", "ada", true, at(1)), connectionEvent("", "ada", false, at(1))},
			applied:   []bool{true, true},
			log:       []string{"+ada:1", "-ada:0"},
			connected: []string{},
		},
		{
			name: "a second join without the leave between",
			events: []plane.BackendEvent{connectionEvent("", "ada", true, at(1)), connectionEvent("", "ada", true, at(5)),
				connectionEvent("", "ada", false, at(6))},
			applied:   []bool{true, false, true},
			log:       []string{"+ada:1", "-ada:0"},
			connected: []string{},
		},
	}
	db := s.MustOpen(t)
	p := MustCreateProject(t, db, "conns")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := mustCreateBackend(t, db, p.ID, "")
			mustApply(t, db, plane.BackendEvent{BackendID: b.ID, DroneID: "d1", Status: plane.StatusReady, Time: t0})
			for i, e := range tt.events {
				e.BackendID = b.ID
				got, applied, err := db.ApplyBackendEvent(ctx, e)
				if err != nil {
					t.Fatal(err)
				}
				if applied != tt.applied[i] {
					t.Errorf("event %d (%+v): applied %v, want %v", i, *e.Connection, applied, tt.applied[i])
				}
				if got.Status != plane.StatusReady || got.ID != b.ID {
					t.Errorf("event %d: backend %s %s", i, got.ID, got.Status)
				}
			}
			if got := connectionLog(t, db, b.ID); !slices.Equal(got, tt.log) {
				t.Errorf("log %v, want %v", got, tt.log)
			}
			if got := connectedUsers(t, db, b.ID); !slices.Equal(got, tt.connected) {
				t.Errorf("connected %v, want %v", got, tt.connected)
			}
		})
	}

	t.Run("since is the join", func(t *testing.T) {
		b := mustCreateBackend(t, db, p.ID, "")
		mustApply(t, db, plane.BackendEvent{BackendID: b.ID, DroneID: "d1", Status: plane.StatusReady, Time: t0})
		mustApply(t, db, connectionEvent(b.ID, "ada", true, at(7)))
		conns, err := db.FindConnections(ctx, b.ID)
		if err != nil || len(conns) != 1 || conns[0].User != "ada" || !conns[0].Since.Equal(at(7)) {
			t.Fatalf("connections %+v, %v", conns, err)
		}
	})

	t.Run("a backend that stops leaves no one connected", func(t *testing.T) {
		b := mustCreateBackend(t, db, p.ID, "")
		mustApply(t, db, plane.BackendEvent{BackendID: b.ID, DroneID: "d1", Status: plane.StatusReady, Time: t0})
		mustApply(t, db, connectionEvent(b.ID, "ada", true, at(1)))
		mustApply(t, db, connectionEvent(b.ID, "bob", true, at(2)))
		mustApply(t, db, plane.BackendEvent{BackendID: b.ID, Status: plane.StatusTerminating, Time: at(3)})
		if got := connectedUsers(t, db, b.ID); len(got) != 0 {
			t.Errorf("connected after terminating: %v", got)
		}
		// Each user left, the latest to join first, before the move.
		if got, want := connectionLog(t, db, b.ID), []string{"+ada:1", "+bob:2", "-bob:1", "-ada:0"}; !slices.Equal(got, want) {
			t.Errorf("log %v, want %v", got, want)
		}
		evs, err := db.FindBackendEvents(ctx, b.ID, 0, 0)
		if err != nil || evs[len(evs)-1].Type != plane.ProjectEventBackendStatus || statusData(t, evs[len(evs)-1]).Status != plane.StatusTerminating {
			t.Fatalf("the last event is not the move to terminating: %v %+v", err, evs)
		}
		// The drone's late leave, and a join, change nothing now.
		for _, e := range []plane.BackendEvent{connectionEvent(b.ID, "bob", false, at(4)), connectionEvent(b.ID, "cy", true, at(4))} {
			if _, applied, err := db.ApplyBackendEvent(ctx, e); err != nil || applied {
				t.Errorf("%+v after terminating: applied %v, %v", *e.Connection, applied, err)
			}
		}
		mustApply(t, db, plane.BackendEvent{BackendID: b.ID, Status: plane.StatusTerminated, Time: at(5), Reason: plane.ReasonRequested})
		if got := connectionLog(t, db, b.ID); len(got) != 4 {
			t.Errorf("log after terminated: %v", got)
		}
	})

	t.Run("a backend terminated at once", func(t *testing.T) {
		b := mustCreateBackend(t, db, p.ID, "")
		mustApply(t, db, plane.BackendEvent{BackendID: b.ID, DroneID: "d1", Status: plane.StatusReady, Time: t0})
		mustApply(t, db, connectionEvent(b.ID, "ada", true, at(1)))
		mustApply(t, db, plane.BackendEvent{BackendID: b.ID, Status: plane.StatusTerminated, Time: at(2), Reason: plane.ReasonLost})
		if got := connectedUsers(t, db, b.ID); len(got) != 0 {
			t.Errorf("connected after terminated: %v", got)
		}
		if got, want := connectionLog(t, db, b.ID), []string{"+ada:1", "-ada:0"}; !slices.Equal(got, want) {
			t.Errorf("log %v, want %v", got, want)
		}
	})

	t.Run("unknown backend", func(t *testing.T) {
		_, _, err := db.ApplyBackendEvent(ctx, connectionEvent("nosuchbackend", "ada", true, at(1)))
		wantCode(t, err, plane.ENOTFOUND)
	})
}
