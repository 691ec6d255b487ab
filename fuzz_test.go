package plane_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"plane"
)

// checkDecodeError fails unless err, from decoding untrusted input, is a
// user-facing EINVALID *plane.Error whose message names its field.
func checkDecodeError(t *testing.T, err error) {
	t.Helper()
	var e *plane.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %q is a %T, want a *plane.Error", err, err)
	}
	if e.Code != plane.EINVALID {
		t.Fatalf("code %q, want %q: %v", e.Code, plane.EINVALID, err)
	}
	if e.Message == "" {
		t.Fatalf("empty message")
	}
	if e.Field != "" && !strings.HasPrefix(e.Message, e.Field+": ") {
		t.Fatalf("message %q does not start with its field %q", e.Message, e.Field)
	}
}

// roundTrip marshals v, decodes the result with decode and checks that the
// value survives and that marshalling is stable.
func roundTrip[T any](t *testing.T, v T, decode func([]byte) (T, error), normalize func(*T)) {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("marshalling accepted value %+v: %v", v, err)
	}
	back, err := decode(data)
	if err != nil {
		t.Fatalf("re-decoding %s: %v", data, err)
	}
	again, err := json.Marshal(back)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(data, again) {
		t.Fatalf("marshalling is not stable:\n%s\n%s", data, again)
	}
	if normalize != nil {
		normalize(&v)
		normalize(&back)
	}
	if !reflect.DeepEqual(v, back) {
		t.Fatalf("round trip changed the value:\n %+v\n %+v", v, back)
	}
}

// nilIfEmpty treats an empty env like an absent one: `"env":{}` and no env
// mean the same, and omitempty drops the former on the way out.
func nilIfEmpty(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return m
}

var spawnRequestSeeds = []string{
	`{"image":"demo"}`,
	`{"image":"demo","key":"room 42","env":{"A":"1","_b":""},"user":"Zoë","max_idle_seconds":60,"lifetime_seconds":3600,"cpu_millis":500,"memory_mb":256,"wait":true}`,
	`{"image":"demo","env":{}}`,
	`{"image":"demo","memory_mb":0}`,
	`{"IMAGE":"demo"}`,
	` {"image":"demo"} `,
	``,
	`null`,
	`[]`,
	`{"image":5}`,
	`{"image":"demo","imag":"x"}`,
	`{"image":"demo","memory_mb":3}`,
	`{"image":"demo","cpu_millis":-1}`,
	`{"image":"demo","lifetime_seconds":99999999999}`,
	`{"image":"demo","env":{"PORT":"1"}}`,
	`{"image":"demo","env":{"1A":"x"}}`,
	`{"image":"demo","env":{"A":"\u0000"}}`,
	`{"image":"demo","key":"\n"}`,
	`{"image":"demo"} {}`,
	`{"image":"demo","env":{"A":1}}`,
	`{"image":"Demo"}`,
	`{"image":"demo","wait":"yes"}`,
	`{"image":"demo","key":"\ud800"}`,
}

func FuzzDecodeSpawnRequest(f *testing.F) {
	for _, s := range spawnRequestSeeds {
		f.Add([]byte(s))
	}
	decode := func(data []byte) (plane.SpawnRequest, error) {
		return plane.DecodeSpawnRequest(bytes.NewReader(data))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := decode(data)
		if err != nil {
			checkDecodeError(t, err)
			return
		}
		// An accepted body is exactly one JSON value.
		if !json.Valid(data) {
			t.Fatalf("accepted %q, which is not one JSON value", data)
		}
		if err := req.Validate(); err != nil {
			t.Fatalf("accepted request does not validate: %v", err)
		}
		roundTrip(t, req, decode, func(r *plane.SpawnRequest) { r.Env = nilIfEmpty(r.Env) })
	})
}

func FuzzDecodeSpawnSpec(f *testing.F) {
	for _, s := range []string{
		`{"backend_id":"abc","image_ref":"plane-demo:latest","pull_policy":"if_not_present","port":8080}`,
		`{"backend_id":"abc","key":"k","image_ref":"registry.example.com:5000/team/app:v1","pull_policy":"always","port":1,"env":{"A":"1"},"user":"u","max_idle_seconds":60,"lifetime_seconds":120,"cpu_millis":100,"memory_mb":64}`,
		`{"backend_id":"abc","image_ref":"x","pull_policy":"never","port":65535,"env":{}}`,
		`{"backend_id":"abc","image_ref":"x","pull_policy":"never","port":65536}`,
		`{"backend_id":"ABC","image_ref":"x","pull_policy":"never","port":80}`,
		`{"backend_id":"abc","image_ref":"a::b","pull_policy":"never","port":80}`,
		`{"backend_id":"abc","image_ref":"x","pull_policy":"never","port":80,"env":{"PORT":"1"}}`,
		`{"backend_id":"abc","image_ref":"x","pull_policy":"never","port":80,"memory_mb":2}`,
		`{}`, ``, `[`, `null`,
	} {
		f.Add([]byte(s))
	}
	decode := func(data []byte) (plane.SpawnSpec, error) { return plane.Decode[plane.SpawnSpec](data) }
	f.Fuzz(func(t *testing.T, data []byte) {
		spec, err := decode(data)
		if err != nil {
			checkDecodeError(t, err)
			return
		}
		if err := spec.Validate(); err != nil {
			t.Fatalf("accepted spec does not validate: %v", err)
		}
		if plane.ValidateBackendID(spec.BackendID) != nil || plane.ValidateImageRef(spec.ImageRef) != nil || !spec.PullPolicy.Valid() || spec.Port < 1 || spec.Port > 65535 {
			t.Fatalf("accepted spec %+v breaks an invariant", spec)
		}
		roundTrip(t, spec, decode, func(s *plane.SpawnSpec) { s.Env = nilIfEmpty(s.Env) })
	})
}

// eventUTC makes times comparable with reflect.DeepEqual: the location of a
// parsed time depends on the offset written and the local zone.
func eventUTC(e *plane.BackendEvent) { e.Time = e.Time.UTC() }

func FuzzDecodeBackendEvent(f *testing.F) {
	for _, s := range []string{
		`{"backend_id":"abc","drone_id":"d1","status":"ready","time":"2025-01-02T03:04:05.678Z","address":"127.0.0.1:32768"}`,
		`{"backend_id":"abc","status":"terminated","time":"2025-01-02T03:04:05+02:00","reason":"exited","exit_code":3}`,
		`{"backend_id":"abc","status":"terminated","time":"2025-01-02T03:04:05Z","reason":"failed","error":"pull access denied"}`,
		`{"backend_id":"abc","status":"terminated","time":"2025-01-02T03:04:05Z"}`,
		`{"backend_id":"abc","status":"ready","time":"2025-01-02T03:04:05Z","reason":"idle"}`,
		`{"backend_id":"abc","status":"running","time":"2025-01-02T03:04:05Z"}`,
		`{"backend_id":"abc","status":"ready"}`,
		`{"backend_id":"abc","status":"ready","time":"0000-01-01T00:00:00-23:59"}`,
		`{"backend_id":"abc","status":"ready","time":"9999-12-31T23:59:59.999999999+23:59"}`,
		`{"backend_id":"","status":"ready","time":"2025-01-02T03:04:05Z"}`,
		`{}`, ``, `"`, `null`,
	} {
		f.Add([]byte(s))
	}
	decode := func(data []byte) (plane.BackendEvent, error) { return plane.Decode[plane.BackendEvent](data) }
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := decode(data)
		if err != nil {
			checkDecodeError(t, err)
			return
		}
		if err := plane.ValidateBackendID(e.BackendID); err != nil {
			t.Fatalf("accepted event with a bad backend ID: %v", err)
		}
		if !e.Status.Valid() || e.Time.IsZero() || len(e.Error) > plane.MaxErrorLen {
			t.Fatalf("accepted event %+v breaks an invariant", e)
		}
		if (e.Status == plane.StatusTerminated) != e.Reason.Valid() || e.Status != plane.StatusTerminated && e.Reason != "" {
			t.Fatalf("accepted event with status %q and reason %q", e.Status, e.Reason)
		}
		roundTrip(t, e, decode, eventUTC)
	})
}

func FuzzDecodeHeartbeat(f *testing.F) {
	for _, s := range []string{
		`{"protocol_version":1,"drone_id":"drone-1","time":"2025-01-02T03:04:05.678Z"}`,
		`{"protocol_version":1,"drone_id":"d1","address":"127.0.0.1","proxy_address":"127.0.0.1:9090","version":"v1","draining":true,"stopping":true,"capacity":10,"cpu_percent":12.5,"memory_bytes":1048576,"live_backends":["abc","def"],"images":["plane-demo:latest"],"time":"2025-01-02T03:04:05Z"}`,
		`{"protocol_version":1,"drone_id":"d1","live_backends":[],"images":null,"cpu_percent":-0}`,
		`{"protocol_version":1,"drone_id":"d1","cpu_percent":1e308}`,
		`{"protocol_version":2,"drone_id":"d1"}`,
		`{"protocol_version":1,"drone_id":"-d1"}`,
		`{"protocol_version":1,"drone_id":"d1","capacity":-1}`,
		`{"protocol_version":1,"drone_id":"d1","live_backends":["A"]}`,
		`{"protocol_version":3,"drone_id":"d1","pools":[{"id":"i7","hash":"ab","size":2,"ready":["abc"],"starting":1,"refill_ms":250}]}`,
		`{"protocol_version":3,"drone_id":"d1","pools":[{"id":"","ready":["A"],"starting":-1}]}`,
		`{}`, ``, `{"protocol_version":1.5}`, `null`,
	} {
		f.Add([]byte(s))
	}
	decode := func(data []byte) (plane.Heartbeat, error) { return plane.Decode[plane.Heartbeat](data) }
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := decode(data)
		if err != nil {
			checkDecodeError(t, err)
			return
		}
		if plane.ValidateDroneID(h.DroneID) != nil || h.ProtocolVersion < plane.MinProtocolVersion || h.ProtocolVersion > plane.ProtocolVersion || h.Capacity < 0 {
			t.Fatalf("accepted heartbeat %+v breaks an invariant", h)
		}
		for _, id := range h.LiveBackends {
			if err := plane.ValidateBackendID(id); err != nil {
				t.Fatalf("accepted heartbeat with live backend %q: %v", id, err)
			}
		}
		for _, p := range h.Pools {
			if p.ID == "" || p.Starting < 0 || len(p.Ready) > plane.MaxWarmPool {
				t.Fatalf("accepted heartbeat with pool %+v", p)
			}
			for _, id := range p.Ready {
				if err := plane.ValidateBackendID(id); err != nil {
					t.Fatalf("accepted heartbeat with pool member %q: %v", id, err)
				}
			}
		}
		roundTrip(t, h, decode, func(h *plane.Heartbeat) { h.Time = h.Time.UTC() })
	})
}

func FuzzDecodePoolsRequest(f *testing.F) {
	for _, s := range []string{
		`{"pools":[]}`,
		`{"pools":[{"id":"i7","image":"demo","size":2,"spec":{"image_ref":"plane-demo:latest","pull_policy":"never","port":8080},"hash":"x"}]}`,
		`{"pools":[{"id":"i7","image":"demo","size":-1}]}`,
		`{"pools":[{"id":"i7","image":"demo","size":2,"spec":{"backend_id":"abc","image_ref":"x","pull_policy":"never","port":80}}]}`,
		`{}`, ``, `null`, `{"pools":null}`,
	} {
		f.Add([]byte(s))
	}
	decode := func(data []byte) (plane.PoolsRequest, error) { return plane.Decode[plane.PoolsRequest](data) }
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := decode(data)
		if err != nil {
			checkDecodeError(t, err)
			return
		}
		for _, p := range req.Pools {
			if p.Size < 0 || p.Size > plane.MaxWarmPool || p.Spec.BackendID != "" || p.Hash != p.SpecHash() {
				t.Fatalf("accepted pool %+v breaks an invariant", p)
			}
		}
		roundTrip(t, req, decode, func(r *plane.PoolsRequest) {
			for i := range r.Pools {
				r.Pools[i].Spec.Env = nilIfEmpty(r.Pools[i].Spec.Env)
			}
		})
	})
}

func FuzzValidateImageRef(f *testing.F) {
	for _, s := range []string{
		"plane-demo:latest", "nginx", "registry.example.com:5000/team/app:v1", "app@" + digest64,
		"app:v1@" + digest64, "localhost/x/y:z", "[::1]:5000/app", "a__b", "a---b",
		"", "Plane-Demo", "plane demo", "a::b", "app/", "/app", "app@sha256:abc", strings.Repeat("a", 256),
		"http://registry/app", "app:-x", "ápp",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, ref string) {
		err := plane.ValidateImageRef(ref)
		if err != nil {
			var e *plane.Error
			if !errors.As(err, &e) || e.Code != plane.EINVALID || e.Field != "ref" || !strings.HasPrefix(e.Message, "ref: ") {
				t.Fatalf("ValidateImageRef(%q) = %#v, want an invalid error about ref", ref, err)
			}
			// The reference is cut to 80 bytes, then quoted: at most 4 bytes each.
			if len(e.Message) > 512 || !utf8.ValidString(e.Message) {
				t.Fatalf("message %q of %d bytes: long references should be cut and quoted", e.Message, len(e.Message))
			}
			return
		}
		// What a valid reference looks like, whatever the grammar's details.
		if ref == "" || len(ref) > 255 {
			t.Fatalf("accepted %q of length %d", ref, len(ref))
		}
		for _, r := range ref {
			if r > unicode.MaxASCII || unicode.IsSpace(r) || unicode.IsControl(r) {
				t.Fatalf("accepted %q holding %q", ref, r)
			}
		}
		if strings.HasPrefix(ref, "/") || strings.HasSuffix(ref, "/") || strings.HasSuffix(ref, ":") || strings.HasSuffix(ref, "@") || strings.Contains(ref, "//") {
			t.Fatalf("accepted malformed %q", ref)
		}
		if strings.Count(ref, "@") > 1 {
			t.Fatalf("accepted %q with several digests", ref)
		}
		// The repository part (without tag and digest) is itself a valid
		// reference, and lowercase after its registry host.
		name := ref
		if i := strings.IndexByte(name, '@'); i >= 0 {
			name = name[:i]
		}
		if i := strings.LastIndexByte(name, ':'); i > strings.LastIndexByte(name, '/') {
			name = name[:i]
		}
		if err := plane.ValidateImageRef(name); err != nil {
			t.Fatalf("accepted %q, but not its repository %q: %v", ref, name, err)
		}
		path := name[strings.IndexByte(name, '/')+1:] // all of name when it holds no '/'
		if strings.ToLower(path) != path {
			t.Fatalf("accepted %q with uppercase in the repository path %q", ref, path)
		}
	})
}
