package plane_test

import (
	"strings"
	"testing"

	"plane"
)

func TestDecodeConnectionEvent(t *testing.T) {
	at := `"time":"2025-01-02T03:04:05.678Z"`
	cases := []decodeCase[plane.BackendEvent]{
		{name: "joined", valid: true, json: `{"backend_id":"abc","status":"ready",` + at + `,"connection":{"user":"ann","joined":true,"users":2}}`,
			want: &plane.BackendEvent{BackendID: "abc", Status: plane.StatusReady, Time: t0, Connection: &plane.ConnectionChange{User: "ann", Joined: true, Users: 2}}},
		{name: "left, nobody stays", valid: true, json: `{"backend_id":"abc","status":"ready",` + at + `,"connection":{"user":"","users":0}}`},
		{name: "joined, nobody there", json: `{"backend_id":"abc","status":"ready",` + at + `,"connection":{"user":"ann","joined":true,"users":0}}`, field: "users"},
		{name: "not ready", json: `{"backend_id":"abc","status":"waiting",` + at + `,"connection":{"user":"ann","joined":true,"users":1}}`, field: "connection"},
		{name: "with a suspension", json: `{"backend_id":"abc","status":"ready",` + at + `,"suspended":true,"connection":{"user":"ann","users":0}}`, field: "connection"},
		{name: "control in user", json: `{"backend_id":"abc","status":"ready",` + at + `,"connection":{"user":"a\u0000","users":0}}`, field: "user"},
		{name: "user too long", json: `{"backend_id":"abc","status":"ready",` + at + `,"connection":{"user":"` + strings.Repeat("u", plane.MaxUserLen+1) + `","users":0}}`, field: "user"},
	}
	runDecode(t, cases)
}

func TestDecodeDisconnectRequest(t *testing.T) {
	cases := []decodeCase[plane.DisconnectRequest]{
		{name: "a user", valid: true, json: `{"backend_id":"abc","user":"ann","tokens_expiring_before":"2025-01-02T03:04:05Z"}`},
		{name: "everyone", valid: true, json: `{"backend_id":"abc","all":true,"tokens_expiring_before":"2025-01-02T03:04:05Z"}`},
		{name: "everyone and a user", json: `{"backend_id":"abc","all":true,"user":"ann"}`, field: "user"},
		{name: "bad backend", json: `{"backend_id":"ABC"}`, field: "id"},
	}
	runDecode(t, append(cases, malformed[plane.DisconnectRequest]()...))
}

func TestDecodeKeepAliveRequest(t *testing.T) {
	cases := []decodeCase[plane.KeepAliveRequest]{
		{name: "until", valid: true, json: `{"backend_id":"abc","until":"2025-01-02T03:04:05Z"}`},
		{name: "no until", json: `{"backend_id":"abc"}`, field: "until"},
	}
	runDecode(t, append(cases, malformed[plane.KeepAliveRequest]()...))
}

func TestDecodeStatsUsers(t *testing.T) {
	cases := []decodeCase[plane.BackendStats]{
		{name: "users", valid: true, json: `{"backend_id":"abc","users":[{"user":"ann","connections":2,"since":"2025-01-02T03:04:05Z"}]}`},
		{name: "negative count", json: `{"backend_id":"abc","users":[{"user":"ann","connections":-1}]}`, field: "users"},
	}
	runDecode(t, cases)
}
