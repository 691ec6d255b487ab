package plane_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"plane"
)

// envOf returns n distinct valid variables.
func envOf(n int) map[string]string {
	env := make(map[string]string, n)
	for i := range n {
		env[fmt.Sprintf("VAR_%d", i)] = "v"
	}
	return env
}

// body marshals v, which the test controls, into a JSON body.
func body(tb testing.TB, v any) string {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

func TestDecodeSpawnRequestValid(t *testing.T) {
	// One variable of exactly MaxEnvBytes, name included.
	fullEnv := map[string]string{"BIG": strings.Repeat("x", plane.MaxEnvBytes-len("BIG"))}
	tests := []struct {
		name string
		body string
		want plane.SpawnRequest
	}{
		{"image only", `{"image":"demo"}`, plane.SpawnRequest{Image: "demo"}},
		{"surrounding whitespace", " \n\t{\"image\":\"demo\"}\r\n ", plane.SpawnRequest{Image: "demo"}},
		{"every field", `{"image":"demo-2.x_y","key":"room 42","env":{"A":"1","_b":"two words","EMPTY":""},"user":"Zoë <zoe@example.com>","max_idle_seconds":60,"lifetime_seconds":3600,"cpu_millis":500,"memory_mb":256,"wait":true}`,
			plane.SpawnRequest{
				Image: "demo-2.x_y", Key: "room 42", Env: map[string]string{"A": "1", "_b": "two words", "EMPTY": ""},
				User: "Zoë <zoe@example.com>", LimitsInput: plane.LimitsInput{MaxIdleSeconds: ptr(60), LifetimeSeconds: ptr(3600), CPUMillis: ptr(500), MemoryMB: ptr(256)}, Wait: true,
			}},
		{"zero limits", `{"image":"demo","max_idle_seconds":0,"lifetime_seconds":0,"cpu_millis":0,"memory_mb":0}`,
			plane.SpawnRequest{Image: "demo", LimitsInput: plane.LimitsInput{MaxIdleSeconds: ptr(0), LifetimeSeconds: ptr(0), CPUMillis: ptr(0), MemoryMB: ptr(0)}}},
		{"largest limits", body(t, map[string]any{"image": "demo", "max_idle_seconds": plane.MaxIdleSeconds, "lifetime_seconds": plane.MaxLifetimeSeconds, "cpu_millis": plane.MaxCPUMillis, "memory_mb": plane.MaxMemoryMB}),
			plane.SpawnRequest{Image: "demo", LimitsInput: plane.LimitsInput{MaxIdleSeconds: ptr(plane.MaxIdleSeconds), LifetimeSeconds: ptr(plane.MaxLifetimeSeconds), CPUMillis: ptr(plane.MaxCPUMillis), MemoryMB: ptr(plane.MaxMemoryMB)}}},
		{"smallest memory limit", `{"image":"demo","memory_mb":6}`, plane.SpawnRequest{Image: "demo", LimitsInput: plane.LimitsInput{MemoryMB: ptr(6)}}},
		{"null optional fields", `{"image":"demo","env":null,"max_idle_seconds":null,"key":null}`, plane.SpawnRequest{Image: "demo"}},
		{"empty env", `{"image":"demo","env":{}}`, plane.SpawnRequest{Image: "demo", Env: map[string]string{}}},
		{"most env vars", body(t, map[string]any{"image": "demo", "env": envOf(plane.MaxEnvVars)}), plane.SpawnRequest{Image: "demo", Env: envOf(plane.MaxEnvVars)}},
		{"most env bytes", body(t, map[string]any{"image": "demo", "env": fullEnv}), plane.SpawnRequest{Image: "demo", Env: fullEnv}},
		{"longest key and user", body(t, map[string]any{"image": "demo", "key": strings.Repeat("k", plane.MaxKeyLen), "user": strings.Repeat("u", plane.MaxUserLen)}),
			plane.SpawnRequest{Image: "demo", Key: strings.Repeat("k", plane.MaxKeyLen), User: strings.Repeat("u", plane.MaxUserLen)}},
		{"escaped unicode", `{"image":"demo","key":"\u00e9\ud83d\ude00"}`, plane.SpawnRequest{Image: "demo", Key: "é😀"}},
		{"longest image name", body(t, map[string]any{"image": strings.Repeat("i", 63)}), plane.SpawnRequest{Image: strings.Repeat("i", 63)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := plane.DecodeSpawnRequest(strings.NewReader(tt.body))
			if err != nil {
				t.Fatalf("DecodeSpawnRequest: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("DecodeSpawnRequest = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestDecodeSpawnRequestInvalid(t *testing.T) {
	type tc struct {
		name     string
		body     string
		field    string // "" for errors about the body as a whole
		contains string
	}
	tests := []tc{
		// Body as a whole.
		{"empty body", ``, "", "empty"},
		{"blank body", " \n\t ", "", "empty"},
		{"array", `[]`, "", "JSON object"},
		{"string", `"demo"`, "", "JSON object"},
		{"number", `42`, "", "JSON object"},
		{"null", `null`, "image", "is required"},
		{"truncated", `{"image":`, "", "malformed JSON"},
		{"syntax", `{image:"demo"}`, "", "malformed JSON"},
		{"single quotes", `{'image':'demo'}`, "", "malformed JSON"},
		{"trailing comma", `{"image":"demo",}`, "", "malformed JSON"},
		{"trailing object", `{"image":"demo"} {}`, "", "after the JSON object"},
		{"trailing garbage", `{"image":"demo"}x`, "", "after the JSON object"},
		{"trailing value", `{"image":"demo"} 1`, "", "after the JSON object"},
		// dec.More() is false before '}' and ']': the fuzzer found these.
		{"trailing brace", `{"image":"demo"}}`, "", "after the JSON object"},
		{"trailing bracket", `{"image":"demo"}]`, "", "after the JSON object"},
		{"over MaxSpawnBodyBytes", `{"image":"demo"}` + strings.Repeat(" ", plane.MaxSpawnBodyBytes), "", "larger than"},

		// Unknown fields.
		{"unknown field", `{"image":"demo","imag":"x"}`, "imag", "unknown field"},
		{"unknown field first", `{"cpu":1,"image":"demo"}`, "cpu", "unknown field"},

		// Wrong types.
		{"image number", `{"image":5}`, "image", "must be a string"},
		{"key number", `{"image":"demo","key":123}`, "key", "must be a string"},
		{"user bool", `{"image":"demo","user":true}`, "user", "must be a string"},
		{"env array", `{"image":"demo","env":["A=1"]}`, "env", "must be an object"},
		{"env string", `{"image":"demo","env":"A=1"}`, "env", "must be an object"},
		{"max_idle_seconds string", `{"image":"demo","max_idle_seconds":"60"}`, "max_idle_seconds", "must be a number"},
		{"lifetime_seconds bool", `{"image":"demo","lifetime_seconds":true}`, "lifetime_seconds", "must be a number"},
		{"cpu_millis fraction", `{"image":"demo","cpu_millis":1.5}`, "cpu_millis", "must be a number"},
		{"memory_mb object", `{"image":"demo","memory_mb":{}}`, "memory_mb", "must be a number"},
		{"memory_mb overflows int", `{"image":"demo","memory_mb":99999999999999999999}`, "memory_mb", "must be a number"},
		{"wait string", `{"image":"demo","wait":"yes"}`, "wait", "must be true or false"},

		// Image.
		{"no image", `{}`, "image", "is required"},
		{"empty image", `{"image":""}`, "image", "is required"},
		{"image uppercase", `{"image":"Demo"}`, "image", "not an image name"},
		{"image ref instead of name", `{"image":"plane-demo:latest"}`, "image", "not an image name"},
		{"image too long", body(t, map[string]any{"image": strings.Repeat("i", 64)}), "image", "not an image name"},

		// Memory limits Docker refuses.
		{"memory_mb 1", `{"image":"demo","memory_mb":1}`, "memory_mb", "at least 6"},
		{"memory_mb 2", `{"image":"demo","memory_mb":2}`, "memory_mb", "at least 6"},
		{"memory_mb 3", `{"image":"demo","memory_mb":3}`, "memory_mb", "at least 6"},
		{"memory_mb 4", `{"image":"demo","memory_mb":4}`, "memory_mb", "at least 6"},
		{"memory_mb 5", `{"image":"demo","memory_mb":5}`, "memory_mb", "at least 6"},

		// Env.
		{"too many env vars", body(t, map[string]any{"image": "demo", "env": envOf(plane.MaxEnvVars + 1)}), "env", "at most 64"},
		{"too many env bytes", body(t, map[string]any{"image": "demo", "env": map[string]string{"BIG": strings.Repeat("x", plane.MaxEnvBytes-len("BIG")+1)}}), "env", "bytes"},
		{"env PORT", `{"image":"demo","env":{"PORT":"1"}}`, "env", "PORT is set by Plane"},
		{"env PLANE_BACKEND_ID", `{"image":"demo","env":{"PLANE_BACKEND_ID":"x"}}`, "env", "PLANE_BACKEND_ID is set by Plane"},
		{"env PLANE_BACKEND_KEY", `{"image":"demo","env":{"PLANE_BACKEND_KEY":"x"}}`, "env", "PLANE_BACKEND_KEY is set by Plane"},
		{"env empty name", `{"image":"demo","env":{"":"x"}}`, "env", "not a valid variable name"},
		{"env name starts with digit", `{"image":"demo","env":{"1A":"x"}}`, "env", "not a valid variable name"},
		{"env name with dash", `{"image":"demo","env":{"A-B":"x"}}`, "env", "not a valid variable name"},
		{"env name with space", `{"image":"demo","env":{"A B":"x"}}`, "env", "not a valid variable name"},
		{"env name with equals", `{"image":"demo","env":{"A=B":"x"}}`, "env", "not a valid variable name"},
		{"env name non-ASCII", `{"image":"demo","env":{"É":"x"}}`, "env", "not a valid variable name"},
		{"env name too long", body(t, map[string]any{"image": "demo", "env": map[string]string{strings.Repeat("A", 257): "x"}}), "env", "not a valid variable name"},
		{"env value with NUL", `{"image":"demo","env":{"A":"a\u0000b"}}`, "env", "NUL"},
		{"env value wrong type", `{"image":"demo","env":{"A":1}}`, "env", "must be a string"},

		// Key and user.
		{"key too long", body(t, map[string]any{"image": "demo", "key": strings.Repeat("k", plane.MaxKeyLen+1)}), "key", "longer than 256"},
		{"key with newline", `{"image":"demo","key":"a\nb"}`, "key", "printable"},
		{"key with NUL", `{"image":"demo","key":"a\u0000b"}`, "key", "printable"},
		{"key with escape", `{"image":"demo","key":"\u001b[31m"}`, "key", "printable"},
		{"key with DEL", `{"image":"demo","key":"a\u007f"}`, "key", "printable"},
		{"user too long", body(t, map[string]any{"image": "demo", "user": strings.Repeat("u", plane.MaxUserLen+1)}), "user", "longer than 256"},
		{"user with tab", `{"image":"demo","user":"a\tb"}`, "user", "printable"},
		{"user with CR", `{"image":"demo","user":"a\rb"}`, "user", "printable"},
	}
	// Negative and too large values of every limit.
	for _, l := range []struct {
		field string
		max   int
	}{
		{"max_idle_seconds", plane.MaxIdleSeconds},
		{"lifetime_seconds", plane.MaxLifetimeSeconds},
		{"cpu_millis", plane.MaxCPUMillis},
		{"memory_mb", plane.MaxMemoryMB},
	} {
		tests = append(tests,
			tc{l.field + " -1", fmt.Sprintf(`{"image":"demo",%q:-1}`, l.field), l.field, "must not be negative"},
			tc{l.field + " min int", fmt.Sprintf(`{"image":"demo",%q:-9223372036854775808}`, l.field), l.field, "must not be negative"},
			tc{l.field + " max+1", fmt.Sprintf(`{"image":"demo",%q:%d}`, l.field, l.max+1), l.field, fmt.Sprintf("at most %d", l.max)},
			tc{l.field + " max int", fmt.Sprintf(`{"image":"demo",%q:9223372036854775807}`, l.field), l.field, "at most"},
		)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := plane.DecodeSpawnRequest(strings.NewReader(tt.body))
			if err == nil {
				t.Fatalf("DecodeSpawnRequest(%.80q) = %+v, nil; want an error", tt.body, req)
			}
			assertInvalid(t, err, tt.field, tt.contains)
		})
	}
}

// TestDecodeSpawnRequestBodyLimit checks the edge of MaxSpawnBodyBytes: a body
// of exactly that size is read whole.
func TestDecodeSpawnRequestBodyLimit(t *testing.T) {
	const obj = `{"image":"demo"}`
	exact := obj + strings.Repeat(" ", plane.MaxSpawnBodyBytes-len(obj))
	if _, err := plane.DecodeSpawnRequest(strings.NewReader(exact)); err != nil {
		t.Errorf("body of exactly MaxSpawnBodyBytes: %v", err)
	}
	_, err := plane.DecodeSpawnRequest(strings.NewReader(exact + " "))
	assertInvalid(t, err, "", fmt.Sprintf("larger than %d bytes", plane.MaxSpawnBodyBytes))
}

// ValidateEnv sees values that JSON cannot carry (invalid UTF-8), from
// forms and the command line.
func TestValidateEnv(t *testing.T) {
	tests := []struct {
		name     string
		env      map[string]string
		valid    bool
		contains string
	}{
		{"nil", nil, true, ""},
		{"empty", map[string]string{}, true, ""},
		{"ordinary", map[string]string{"A": "1", "_": "", "a_B_9": "x=y z"}, true, ""},
		{"unicode value", map[string]string{"GREETING": "héllo 世界"}, true, ""},
		{"reserved names differ in case", map[string]string{"port": "1", "Plane_Backend_Id": "x"}, true, ""},
		{"invalid UTF-8 value", map[string]string{"A": "\xff"}, false, "UTF-8"},
		{"NUL value", map[string]string{"A": "\x00"}, false, "NUL"},
		{"reserved", map[string]string{"PORT": "80"}, false, "PORT is set by Plane"},
		{"bad name", map[string]string{"A.B": "x"}, false, "not a valid variable name"},
		{"long name", map[string]string{strings.Repeat("N", 300): "x"}, false, "not a valid variable name"},
		{"invalid UTF-8 name", map[string]string{"\xff": "x"}, false, "not a valid variable name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := plane.ValidateEnv("image_env", tt.env)
			if tt.valid {
				if err != nil {
					t.Fatalf("ValidateEnv = %v, want nil", err)
				}
				return
			}
			assertInvalid(t, err, "image_env", tt.contains)
			if !utf8.ValidString(err.Error()) {
				t.Errorf("message %q is not valid UTF-8", err.Error())
			}
		})
	}
}
