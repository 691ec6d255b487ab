package plane_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"plane"
)

// decodeCase is one wire message given to plane.Decode.
type decodeCase[T any] struct {
	name     string
	json     string
	want     *T     // checked when valid
	field    string // expected Error.Field when invalid; "" with contains for malformed input
	contains string
	valid    bool
}

// runDecode runs cases through plane.Decode[T].
func runDecode[T any, P interface {
	*T
	Validate() error
}](t *testing.T, cases []decodeCase[T]) {
	t.Helper()
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			got, err := plane.Decode[T, P]([]byte(tt.json))
			if tt.valid {
				if err != nil {
					t.Fatalf("Decode(%s) = %v, want nil", tt.json, err)
				}
				if tt.want != nil && !reflect.DeepEqual(got, *tt.want) {
					t.Errorf("Decode(%s) =\n %+v, want\n %+v", tt.json, got, *tt.want)
				}
				return
			}
			assertInvalid(t, err, tt.field, tt.contains)
		})
	}
}

// malformed are bodies no message type accepts.
func malformed[T any]() []decodeCase[T] {
	return []decodeCase[T]{
		{name: "empty", json: ``, contains: "malformed message"},
		{name: "truncated", json: `{"backend_id":`, contains: "malformed message"},
		{name: "array", json: `[]`, contains: "malformed message"},
		{name: "string", json: `"x"`, contains: "malformed message"},
		{name: "trailing data", json: `{} {}`, contains: "malformed message"},
	}
}

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 678_000_000, time.UTC)

func TestDecodeSpawnSpec(t *testing.T) {
	ok := `"backend_id":"abc123","image_ref":"plane-demo:latest","pull_policy":"if_not_present","port":8080`
	cases := []decodeCase[plane.SpawnSpec]{
		{name: "minimal", json: `{` + ok + `}`, valid: true, want: &plane.SpawnSpec{BackendID: "abc123", ImageRef: "plane-demo:latest", PullPolicy: plane.PullIfNotPresent, Port: 8080}},
		{name: "every field", valid: true,
			json: `{` + ok + `,"key":"k","env":{"A":"1"},"user":"u","max_idle_seconds":60,"lifetime_seconds":120,"cpu_millis":100,"memory_mb":64}`,
			want: &plane.SpawnSpec{BackendID: "abc123", Key: "k", ImageRef: "plane-demo:latest", PullPolicy: plane.PullIfNotPresent, Port: 8080,
				Env: map[string]string{"A": "1"}, User: "u", Limits: plane.Limits{MaxIdleSeconds: 60, LifetimeSeconds: 120, CPUMillis: 100, MemoryMB: 64}}},
		// Newer controllers may add fields: older drones ignore them.
		{name: "unknown field ignored", json: `{` + ok + `,"gpu":1}`, valid: true},
		{name: "no backend_id", json: `{"image_ref":"plane-demo:latest","pull_policy":"always","port":80}`, field: "id", contains: "is required"},
		{name: "bad backend_id", json: `{"backend_id":"A.B","image_ref":"x","pull_policy":"always","port":80}`, field: "id"},
		{name: "no image_ref", json: `{"backend_id":"abc","pull_policy":"always","port":80}`, field: "ref", contains: "is required"},
		{name: "bad image_ref", json: `{"backend_id":"abc","image_ref":"Bad Ref","pull_policy":"always","port":80}`, field: "ref"},
		{name: "no pull_policy", json: `{"backend_id":"abc","image_ref":"x","port":80}`, field: "pull_policy"},
		{name: "bad pull_policy", json: `{"backend_id":"abc","image_ref":"x","pull_policy":"maybe","port":80}`, field: "pull_policy", contains: "maybe"},
		{name: "no port", json: `{"backend_id":"abc","image_ref":"x","pull_policy":"never"}`, field: "port"},
		{name: "port too large", json: `{` + ok + `,"port":65536}`, field: "port"},
		{name: "key too long", json: `{` + ok + `,"key":"` + strings.Repeat("k", plane.MaxKeyLen+1) + `"}`, field: "key"},
		// The drone's proxy writes the key into a request header.
		{name: "key with a line break", json: `{` + ok + `,"key":"a\r\nX-Plane-User: admin"}`, field: "key", contains: "printable"},
		{name: "reserved env", json: `{` + ok + `,"env":{"PLANE_BACKEND_ID":"other"}}`, field: "env", contains: "PLANE_BACKEND_ID"},
		{name: "negative idle", json: `{` + ok + `,"max_idle_seconds":-1}`, field: "max_idle_seconds"},
		{name: "lifetime too long", json: fmt.Sprintf(`{%s,"lifetime_seconds":%d}`, ok, plane.MaxLifetimeSeconds+1), field: "lifetime_seconds"},
		{name: "negative cpu", json: `{` + ok + `,"cpu_millis":-5}`, field: "cpu_millis"},
		{name: "memory 3", json: `{` + ok + `,"memory_mb":3}`, field: "memory_mb"},
		{name: "port string", json: `{"backend_id":"abc","port":"80"}`, contains: "malformed message"},
	}
	runDecode(t, append(cases, malformed[plane.SpawnSpec]()...))
}

func TestDecodeTerminateRequest(t *testing.T) {
	cases := []decodeCase[plane.TerminateRequest]{
		{name: "soft", json: `{"backend_id":"abc","reason":"requested"}`, valid: true, want: &plane.TerminateRequest{BackendID: "abc", Reason: plane.ReasonRequested}},
		{name: "hard", json: `{"backend_id":"abc","hard":true,"reason":"idle"}`, valid: true, want: &plane.TerminateRequest{BackendID: "abc", Hard: true, Reason: plane.ReasonIdle}},
		{name: "no backend", json: `{"reason":"idle"}`, field: "id"},
		{name: "bad backend", json: `{"backend_id":"ABC","reason":"idle"}`, field: "id"},
		{name: "no reason", json: `{"backend_id":"abc"}`, field: "reason"},
		{name: "bad reason", json: `{"backend_id":"abc","reason":"bored"}`, field: "reason", contains: "bored"},
		{name: "hard string", json: `{"backend_id":"abc","hard":"yes","reason":"idle"}`, contains: "malformed message"},
	}
	runDecode(t, append(cases, malformed[plane.TerminateRequest]()...))
}

func TestDecodeHeartbeat(t *testing.T) {
	ok := `"protocol_version":2,"drone_id":"drone-1","time":"2025-01-02T03:04:05.678Z"`
	cases := []decodeCase[plane.Heartbeat]{
		{name: "minimal", json: `{` + ok + `}`, valid: true, want: &plane.Heartbeat{ProtocolVersion: 2, DroneID: "drone-1", Time: t0}},
		{name: "full", valid: true,
			json: `{` + ok + `,"address":"127.0.0.1","proxy_address":"127.0.0.1:9090","version":"v1.2.3","draining":true,"stopping":true,"capacity":10,"cpu_percent":12.5,"memory_bytes":1048576,"live_backends":["abc","def"],"images":["plane-demo:latest"]}`,
			want: &plane.Heartbeat{ProtocolVersion: 2, DroneID: "drone-1", Address: "127.0.0.1", ProxyAddress: "127.0.0.1:9090", Version: "v1.2.3",
				Draining: true, Stopping: true, Capacity: 10, CPUPercent: 12.5, MemoryBytes: 1 << 20, LiveBackends: []string{"abc", "def"},
				Images: []string{"plane-demo:latest"}, Time: t0}},
		{name: "no drone_id", json: `{"protocol_version":2}`, field: "drone_id", contains: "is required"},
		{name: "bad drone_id", json: `{"protocol_version":2,"drone_id":"drone.1"}`, field: "drone_id"},
		{name: "wildcard drone_id", json: `{"protocol_version":2,"drone_id":"*"}`, field: "drone_id"},
		{name: "no protocol_version", json: `{"drone_id":"d1"}`, field: "protocol_version", contains: "version 0"},
		{name: "newer protocol_version", json: `{"protocol_version":4,"drone_id":"d1"}`, field: "protocol_version", contains: "drone speaks version 4, controller speaks 2 to 3: upgrade the controller"},
		{name: "protocol_version before the last", json: `{"protocol_version":1,"drone_id":"d1"}`, field: "protocol_version", contains: "upgrade the drone"},
		{name: "previous protocol_version", json: `{"protocol_version":2,"drone_id":"d1"}`, valid: true, want: &plane.Heartbeat{ProtocolVersion: 2, DroneID: "d1"}},
		{name: "negative protocol_version", json: `{"protocol_version":-1,"drone_id":"d1"}`, field: "protocol_version"},
		{name: "negative capacity", json: `{` + ok + `,"capacity":-1}`, field: "capacity"},
		{name: "bad live backend", json: `{` + ok + `,"live_backends":["abc","NOPE"]}`, field: "id"},
		{name: "empty live backend", json: `{` + ok + `,"live_backends":[""]}`, field: "id"},
		{name: "bad time", json: `{"protocol_version":2,"drone_id":"d1","time":"yesterday"}`, contains: "malformed message"},
		{name: "negative memory", json: `{` + ok + `,"memory_bytes":-1}`, contains: "malformed message"},
	}
	runDecode(t, append(cases, malformed[plane.Heartbeat]()...))
}

func TestDecodeBackendEvent(t *testing.T) {
	exit := 3
	cases := []decodeCase[plane.BackendEvent]{
		{name: "ready", valid: true, json: `{"backend_id":"abc","drone_id":"d1","status":"ready","time":"2025-01-02T03:04:05.678Z","address":"127.0.0.1:32768"}`,
			want: &plane.BackendEvent{BackendID: "abc", DroneID: "d1", Status: plane.StatusReady, Time: t0, Address: "127.0.0.1:32768"}},
		{name: "exited", valid: true, json: `{"backend_id":"abc","status":"terminated","time":"2025-01-02T03:04:05.678Z","reason":"exited","exit_code":3}`,
			want: &plane.BackendEvent{BackendID: "abc", Status: plane.StatusTerminated, Time: t0, Reason: plane.ReasonExited, ExitCode: &exit}},
		{name: "failed", valid: true, json: `{"backend_id":"abc","status":"terminated","time":"2025-01-02T03:04:05Z","reason":"failed","error":"pull access denied"}`},
		{name: "no backend", json: `{"status":"ready","time":"2025-01-02T03:04:05Z"}`, field: "id"},
		{name: "bad backend", json: `{"backend_id":"a b","status":"ready","time":"2025-01-02T03:04:05Z"}`, field: "id"},
		{name: "no status", json: `{"backend_id":"abc","time":"2025-01-02T03:04:05Z"}`, field: "status"},
		{name: "unknown status", json: `{"backend_id":"abc","status":"running","time":"2025-01-02T03:04:05Z"}`, field: "status", contains: "running"},
		{name: "no time", json: `{"backend_id":"abc","status":"ready"}`, field: "time", contains: "is required"},
		{name: "zero time", json: `{"backend_id":"abc","status":"ready","time":"0001-01-01T00:00:00Z"}`, field: "time"},
		{name: "terminated without reason", json: `{"backend_id":"abc","status":"terminated","time":"2025-01-02T03:04:05Z"}`, field: "reason"},
		{name: "terminated with unknown reason", json: `{"backend_id":"abc","status":"terminated","time":"2025-01-02T03:04:05Z","reason":"bored"}`, field: "reason", contains: "bored"},
		{name: "error too long", json: `{"backend_id":"abc","status":"terminated","time":"2025-01-02T03:04:05Z","reason":"failed","error":"` + strings.Repeat("e", plane.MaxErrorLen+1) + `"}`, field: "error"},
		{name: "longest error", valid: true, json: `{"backend_id":"abc","status":"terminated","time":"2025-01-02T03:04:05Z","reason":"failed","error":"` + strings.Repeat("e", plane.MaxErrorLen) + `"}`},
		{name: "bad time", json: `{"backend_id":"abc","status":"ready","time":"2025-13-02T03:04:05Z"}`, contains: "malformed message"},
	}
	// Every reason is accepted with terminated and refused with every other status.
	for _, r := range []plane.TerminationReason{plane.ReasonIdle, plane.ReasonLifetime, plane.ReasonRequested, plane.ReasonExited, plane.ReasonFailed, plane.ReasonLost} {
		for _, s := range plane.Statuses {
			c := decodeCase[plane.BackendEvent]{
				name: fmt.Sprintf("%s with reason %s", s, r),
				json: fmt.Sprintf(`{"backend_id":"abc","status":%q,"time":"2025-01-02T03:04:05Z","reason":%q}`, s, r),
			}
			if s == plane.StatusTerminated {
				c.valid = true
			} else {
				c.field, c.contains = "reason", "only a terminated backend"
			}
			cases = append(cases, c)
		}
	}
	runDecode(t, append(cases, malformed[plane.BackendEvent]()...))
}

func TestDecodeBackendStats(t *testing.T) {
	cases := []decodeCase[plane.BackendStats]{
		{name: "full", valid: true, json: `{"backend_id":"abc","time":"2025-01-02T03:04:05.678Z","cpu_percent":150.5,"memory_bytes":10,"memory_limit":20,"connections":2,"last_activity":"2025-01-02T03:04:05.678Z"}`,
			want: &plane.BackendStats{BackendID: "abc", Time: t0, CPUPercent: 150.5, MemoryBytes: 10, MemoryLimit: 20, Connections: 2, LastActivity: t0}},
		{name: "no backend", json: `{"connections":1}`, field: "id"},
		{name: "bad backend", json: `{"backend_id":"abc.def"}`, field: "id"},
	}
	runDecode(t, append(cases, malformed[plane.BackendStats]()...))
}

func TestDecodeLogLine(t *testing.T) {
	cases := []decodeCase[plane.LogLine]{
		{name: "stdout", valid: true, json: `{"backend_id":"abc","time":"2025-01-02T03:04:05.678Z","stream":"stdout","text":"listening on :8080"}`,
			want: &plane.LogLine{BackendID: "abc", Time: t0, Stream: "stdout", Text: "listening on :8080"}},
		{name: "no backend", json: `{"stream":"stderr","text":"x"}`, field: "id"},
		{name: "bad backend", json: `{"backend_id":"*","text":"x"}`, field: "id"},
	}
	runDecode(t, append(cases, malformed[plane.LogLine]()...))
}

func TestDecodeDrainRequest(t *testing.T) {
	cases := []decodeCase[plane.DrainRequest]{
		{name: "drain", valid: true, json: `{"draining":true}`, want: &plane.DrainRequest{Draining: true}},
		{name: "undrain", valid: true, json: `{"draining":false}`, want: &plane.DrainRequest{}},
		{name: "empty object", valid: true, json: `{}`, want: &plane.DrainRequest{}},
		{name: "draining string", json: `{"draining":"yes"}`, contains: "malformed message"},
	}
	runDecode(t, append(cases, malformed[plane.DrainRequest]()...))
}

func TestDecodePullRequest(t *testing.T) {
	cases := []decodeCase[plane.PullRequest]{
		{name: "ref", valid: true, json: `{"image_ref":"registry.example.com:5000/team/app:v1"}`, want: &plane.PullRequest{ImageRef: "registry.example.com:5000/team/app:v1"}},
		{name: "no ref", json: `{}`, field: "ref", contains: "is required"},
		{name: "bad ref", json: `{"image_ref":"a::b"}`, field: "ref"},
	}
	runDecode(t, append(cases, malformed[plane.PullRequest]()...))
}

// TestWireRoundTrip checks that what a sender marshals, the receiver decodes
// to the same value.
func TestWireRoundTrip(t *testing.T) {
	exit := 0
	ev := plane.BackendEvent{BackendID: plane.NewBackendID(), DroneID: "d1", Status: plane.StatusTerminated, Time: t0, Reason: plane.ReasonExited, ExitCode: &exit}
	data, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	got, err := plane.Decode[plane.BackendEvent](data)
	if err != nil {
		t.Fatalf("Decode(%s): %v", data, err)
	}
	if !reflect.DeepEqual(got, ev) {
		t.Errorf("round trip: %+v, want %+v", got, ev)
	}
	hb := plane.Heartbeat{ProtocolVersion: plane.ProtocolVersion, DroneID: "d1", Capacity: 4, LiveBackends: []string{ev.BackendID}, Time: t0}
	if data, err = json.Marshal(hb); err != nil {
		t.Fatal(err)
	}
	gotHB, err := plane.Decode[plane.Heartbeat](data)
	if err != nil {
		t.Fatalf("Decode(%s): %v", data, err)
	}
	if !reflect.DeepEqual(gotHB, hb) {
		t.Errorf("round trip: %+v, want %+v", gotHB, hb)
	}
}

// subjectMatches reports whether a NATS subject matches a filter with * and >.
func subjectMatches(filter, subject string) bool {
	f, s := strings.Split(filter, "."), strings.Split(subject, ".")
	for i, tok := range f {
		if tok == ">" {
			return i < len(s)
		}
		if i >= len(s) || tok != "*" && tok != s[i] {
			return false
		}
	}
	return len(f) == len(s)
}

func TestSubjects(t *testing.T) {
	tests := []struct {
		got, want string
	}{
		{plane.SubjectSpawn("d1"), "plane.drone.d1.spawn"},
		{plane.SubjectTerminate("d1"), "plane.drone.d1.terminate"},
		{plane.SubjectDrain("drone-2"), "plane.drone.drone-2.drain"},
		{plane.SubjectPull("drone-2"), "plane.drone.drone-2.pull"},
		{plane.SubjectBackendStatus("abc"), "plane.backend.abc.status"},
		{plane.SubjectBackendLogs("abc"), "plane.backend.abc.logs"},
		{plane.SubjectBackendStats("abc"), "plane.backend.abc.stats"},
		{plane.SubjectHeartbeat, "plane.drone.heartbeat"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("subject %q, want %q", tt.got, tt.want)
		}
	}

	id := plane.NewBackendID()
	for _, tt := range []struct {
		filters []string
		subject string
	}{
		{plane.StatusSubjects, plane.SubjectBackendStatus(id)},
		{plane.LogSubjects, plane.SubjectBackendLogs(id)},
		{[]string{plane.SubjectBackendStatsAll}, plane.SubjectBackendStats(id)},
	} {
		if len(tt.filters) == 0 || !subjectMatches(tt.filters[0], tt.subject) {
			t.Errorf("filters %v do not match %q", tt.filters, tt.subject)
		}
	}
	// The streams must not swallow each other's subjects.
	for _, f := range plane.StatusSubjects {
		for _, s := range []string{plane.SubjectBackendLogs(id), plane.SubjectBackendStats(id), plane.SubjectHeartbeat, plane.SubjectSpawn("d1")} {
			if subjectMatches(f, s) {
				t.Errorf("status filter %q matches %q", f, s)
			}
		}
	}
	for _, f := range plane.LogSubjects {
		for _, s := range []string{plane.SubjectBackendStatus(id), plane.SubjectBackendStats(id)} {
			if subjectMatches(f, s) {
				t.Errorf("logs filter %q matches %q", f, s)
			}
		}
	}
	// Valid IDs give subjects of exactly four tokens, none empty or a wildcard.
	for _, s := range []string{plane.SubjectSpawn("drone-1"), plane.SubjectBackendStatus(id)} {
		toks := strings.Split(s, ".")
		if len(toks) != 4 {
			t.Errorf("subject %q has %d tokens, want 4", s, len(toks))
		}
		for _, tok := range toks {
			if tok == "" || tok == "*" || tok == ">" || strings.ContainsAny(tok, " \t\r\n") {
				t.Errorf("subject %q has a bad token %q", s, tok)
			}
		}
	}
	if plane.StreamStatus == plane.StreamLogs {
		t.Errorf("status and logs streams share the name %q", plane.StreamStatus)
	}
}
