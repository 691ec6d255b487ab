package plane_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"plane"
)

func TestNewClusterID(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		id := plane.NewClusterID()
		if len(id) != plane.ClusterIDLen {
			t.Fatalf("NewClusterID() = %q: length %d, want %d", id, len(id), plane.ClusterIDLen)
		}
		if err := plane.ValidateClusterID(id); err != nil {
			t.Fatalf("NewClusterID() = %q: %v", id, err)
		}
		if seen[id] {
			t.Fatalf("NewClusterID() repeated %q", id)
		}
		seen[id] = true
	}
}

// A claim survives the trip through the bucket, and one that does not come
// from a controller of this version is refused before its fields reach an
// error message.
func TestDecodeClusterClaim(t *testing.T) {
	claim := plane.ClusterClaim{
		ID: "0123456789abcdef0123456789abcdef", CreatedAt: t0, ClaimedAt: t0.Add(time.Hour),
		Host: "ctrl-1", DataDir: "/var/lib/plane",
	}
	data, err := json.Marshal(claim)
	if err != nil {
		t.Fatal(err)
	}
	got, err := plane.Decode[plane.ClusterClaim](data)
	if err != nil {
		t.Fatalf("Decode(%s) = %v", data, err)
	}
	if !reflect.DeepEqual(got, claim) {
		t.Fatalf("round trip: got %+v, want %+v", got, claim)
	}
	if want := `{"id":"0123456789abcdef0123456789abcdef","created_at":"2025-01-02T03:04:05.678Z","claimed_at":"2025-01-02T04:04:05.678Z","host":"ctrl-1","data_dir":"/var/lib/plane"}`; string(data) != want {
		t.Errorf("JSON %s, want %s", data, want)
	}

	times := `"created_at":"2025-01-02T03:04:05Z","claimed_at":"2025-01-02T03:04:06Z"`
	cases := []decodeCase[plane.ClusterClaim]{
		{name: "minimal", json: `{"id":"abc",` + times + `}`, valid: true},
		{name: "unknown field ignored", json: `{"id":"abc",` + times + `,"region":"eu"}`, valid: true},
		{name: "no id", json: `{` + times + `}`, field: "id", contains: "is required"},
		{name: "upper-case id", json: `{"id":"ABC",` + times + `}`, field: "id", contains: "a-z"},
		{name: "id too long", json: `{"id":"` + strings.Repeat("a", 65) + `",` + times + `}`, field: "id", contains: "longer"},
		{name: "no created_at", json: `{"id":"abc","claimed_at":"2025-01-02T03:04:06Z"}`, field: "created_at"},
		{name: "no claimed_at", json: `{"id":"abc","created_at":"2025-01-02T03:04:05Z"}`, field: "claimed_at"},
		{name: "control character in host", json: `{"id":"abc",` + times + `,"host":"a\u001b[2Jb"}`, field: "host"},
		{name: "host too long", json: `{"id":"abc",` + times + `,"host":"` + strings.Repeat("h", 256) + `"}`, field: "host"},
		{name: "newline in data_dir", json: `{"id":"abc",` + times + `,"data_dir":"/a\nb"}`, field: "data_dir"},
		{name: "bad created_at", json: `{"id":"abc","created_at":"yesterday","claimed_at":"2025-01-02T03:04:06Z"}`, contains: "malformed message"},
	}
	cases = append(cases, malformed[plane.ClusterClaim]()...)
	runDecode(t, cases)
}
