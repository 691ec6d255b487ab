package plane_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"plane"
)

func TestProjectEventTypeValid(t *testing.T) {
	for _, tt := range []struct {
		t    plane.ProjectEventType
		want bool
	}{
		{"backend.status", true},
		{"backend.user_joined", true},
		{"backend.user_left", true},
		{"backend.created", false},
		{"", false},
		{"Backend.Status", false},
	} {
		if got := tt.t.Valid(); got != tt.want {
			t.Errorf("%q.Valid() = %v", tt.t, got)
		}
	}
}

// A status event's body is the Standard Webhooks payload (type, timestamp,
// data) with the log id; the data says which backend, its status, the
// reason of a terminated one and when: never the environment.
func TestNewBackendStatusEvent(t *testing.T) {
	at := time.Date(2025, 1, 2, 3, 4, 5, 6e6, time.UTC)
	b := &plane.Backend{ID: "b1", ProjectID: 7, Status: plane.StatusTerminated, TerminationReason: plane.ReasonIdle,
		Env: map[string]string{"SECRET": "s3cret"}, Address: "10.0.0.1:8080", Key: "room"}
	ev := plane.NewBackendStatusEvent(b, at)
	ev.ID = 12
	if ev.ProjectID != 7 || ev.BackendID != "b1" || ev.Type != plane.ProjectEventBackendStatus || !ev.Time.Equal(at) {
		t.Fatalf("event %+v", ev)
	}
	body, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":12,"type":"backend.status","timestamp":"2025-01-02T03:04:05.006Z","data":{"backend_id":"b1","status":"terminated","reason":"idle","time":"2025-01-02T03:04:05.006Z"}}`
	if string(body) != want {
		t.Errorf("body\n%s\nwant\n%s", body, want)
	}
	b.Status, b.TerminationReason = plane.StatusReady, ""
	if data := string(plane.NewBackendStatusEvent(b, at).Data); strings.Contains(data, "reason") || strings.Contains(data, "s3cret") || strings.Contains(data, "10.0.0.1") {
		t.Errorf("ready: %s", data)
	}
}

func TestNewConnectionEvent(t *testing.T) {
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tt := range []struct {
		joined bool
		users  int
		typ    plane.ProjectEventType
		data   string
	}{
		{true, 2, plane.ProjectEventUserJoined, `{"backend_id":"b1","user":"ada","users":2,"time":"2025-01-02T03:04:05Z"}`},
		{false, 0, plane.ProjectEventUserLeft, `{"backend_id":"b1","user":"ada","users":0,"time":"2025-01-02T03:04:05Z"}`},
	} {
		ev := plane.NewConnectionEvent(7, "b1", "ada", tt.joined, tt.users, at)
		if ev.Type != tt.typ || string(ev.Data) != tt.data || ev.ProjectID != 7 || ev.BackendID != "b1" {
			t.Errorf("joined %v: %+v %s", tt.joined, ev, ev.Data)
		}
	}
}

// A drone's clock beyond what JSON can hold makes an event all the same:
// a change must never fail to be stored for its announcement.
func TestProjectEventOutOfRangeTime(t *testing.T) {
	far := time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, ev := range []*plane.ProjectEvent{
		plane.NewBackendStatusEvent(&plane.Backend{ID: "b1", Status: plane.StatusReady}, far),
		plane.NewConnectionEvent(1, "b1", "ada", true, 1, far),
	} {
		if !ev.Time.IsZero() || !json.Valid(ev.Data) {
			t.Errorf("event %+v with data %s", ev, ev.Data)
		}
		if _, err := json.Marshal(ev); err != nil {
			t.Errorf("encode: %v", err)
		}
	}
}

// An announcement of the log goes to the project's log topic and the
// backend's, never to the topics whose readers expect a backend.
func TestProjectLogTopics(t *testing.T) {
	e := plane.Event{Kind: plane.EventProjectLog, ProjectLog: &plane.ProjectLogGrown{ProjectID: 7, BackendID: "b1"}}
	if got, want := e.Topics(), []string{plane.TopicProjectLog(7), plane.TopicBackendLog("b1")}; !slices.Equal(got, want) {
		t.Errorf("topics %v, want %v", got, want)
	}
	for _, topic := range e.Topics() {
		if topic == "b1" || topic == plane.TopicProject(7) || topic == plane.TopicBackends {
			t.Errorf("topic %q is a backend topic", topic)
		}
	}
	e.ProjectLog.BackendID = ""
	if got := e.Topics(); !slices.Equal(got, []string{plane.TopicProjectLog(7)}) {
		t.Errorf("project only: %v", got)
	}
}

func TestEventEnvelopeProjectLog(t *testing.T) {
	for _, tt := range []struct {
		msg string
		ok  bool
	}{
		{`{"origin":"x","event":{"kind":"project_log","project_log":{"project_id":7,"backend_id":"b1"}}}`, true},
		{`{"origin":"x","event":{"kind":"project_log","project_log":{"project_id":7}}}`, true},
		{`{"origin":"x","event":{"kind":"project_log"}}`, false},
		{`{"origin":"x","event":{"kind":"project_log","project_log":{"project_id":0}}}`, false},
		{`{"origin":"x","event":{"kind":"project_log","project_log":{"project_id":7,"backend_id":"../x"}}}`, false},
	} {
		_, err := plane.Decode[plane.EventEnvelope]([]byte(tt.msg))
		if (err == nil) != tt.ok {
			t.Errorf("%s: %v", tt.msg, err)
		}
	}
}
