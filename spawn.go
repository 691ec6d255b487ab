package plane

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"unicode/utf8"
)

// Limits on a spawn request, so that one request cannot exhaust the store,
// the wire or a drone.
const (
	MaxKeyLen          = 256
	MaxUserLen         = 256
	MaxEnvVars         = 64
	MaxEnvBytes        = 32 << 10 // names and values together
	MaxIdleSeconds     = 7 * 24 * 3600
	MaxLifetimeSeconds = 30 * 24 * 3600
	MaxCPUMillis       = 256_000
	MaxMemoryMB        = 1 << 20
	MaxSpawnBodyBytes  = 1 << 20
)

// SpawnRequest asks for a backend: POST /api/v1/backends. Pointer fields are
// optional; when nil the image's default applies.
type SpawnRequest struct {
	Image string            `json:"image"`
	Key   string            `json:"key,omitempty"`
	Env   map[string]string `json:"env,omitempty"`
	User  string            `json:"user,omitempty"`
	LimitsInput
	Wait bool `json:"wait,omitempty"`
}

// DecodeSpawnRequest reads one JSON spawn request, rejecting unknown fields,
// trailing data and invalid values with an EINVALID error naming the field.
func DecodeSpawnRequest(r io.Reader) (SpawnRequest, error) {
	var req SpawnRequest
	if err := DecodeJSON(r, MaxSpawnBodyBytes, &req); err != nil {
		return req, err
	}
	return req, req.Validate()
}

// Validate checks every field.
func (r *SpawnRequest) Validate() error {
	if r.Image == "" {
		return FieldErrorf("image", "is required")
	}
	if !imageNameRE.MatchString(r.Image) {
		return FieldErrorf("image", "%q is not an image name (1-63 characters of a-z, 0-9, '.', '_' and '-')", truncate(r.Image, 64))
	}
	if len(r.Key) > MaxKeyLen {
		return FieldErrorf("key", "longer than %d bytes", MaxKeyLen)
	}
	if !printable(r.Key) {
		return FieldErrorf("key", "must be printable UTF-8")
	}
	if len(r.User) > MaxUserLen {
		return FieldErrorf("user", "longer than %d bytes", MaxUserLen)
	}
	if !printable(r.User) {
		return FieldErrorf("user", "must be printable UTF-8")
	}
	if err := ValidateEnv("env", r.Env); err != nil {
		return err
	}
	return r.LimitsInput.Validate()
}

// Limits bound a backend's life and resources. Zero is no limit: no idle
// limit, no lifetime, no CPU or memory cap.
type Limits struct {
	MaxIdleSeconds  int `json:"max_idle_seconds"`
	LifetimeSeconds int `json:"lifetime_seconds"`
	CPUMillis       int `json:"cpu_millis"`
	MemoryMB        int `json:"memory_mb"`
	// SuspendSeconds > 0: a backend idle for MaxIdleSeconds is suspended
	// (its container paused) instead of terminated, resumed by the next
	// request, and terminated (idle) once suspended this long.
	SuspendSeconds int `json:"suspend_seconds"`
}

// LimitsInput are the limits a request sets: nil ones keep the default
// (the image's, for a spawn; the current value, for an image update).
type LimitsInput struct {
	MaxIdleSeconds  *int `json:"max_idle_seconds,omitempty"`
	LifetimeSeconds *int `json:"lifetime_seconds,omitempty"`
	CPUMillis       *int `json:"cpu_millis,omitempty"`
	MemoryMB        *int `json:"memory_mb,omitempty"`
	SuspendSeconds  *int `json:"suspend_seconds,omitempty"`
}

// With returns l with the limits in set.
func (l Limits) With(in LimitsInput) Limits {
	for _, f := range []struct {
		dst *int
		src *int
	}{{&l.MaxIdleSeconds, in.MaxIdleSeconds}, {&l.LifetimeSeconds, in.LifetimeSeconds}, {&l.CPUMillis, in.CPUMillis}, {&l.MemoryMB, in.MemoryMB}, {&l.SuspendSeconds, in.SuspendSeconds}} {
		if f.src != nil {
			*f.dst = *f.src
		}
	}
	return l
}

// Validate checks every limit.
func (l Limits) Validate() error {
	return LimitsInput{&l.MaxIdleSeconds, &l.LifetimeSeconds, &l.CPUMillis, &l.MemoryMB, &l.SuspendSeconds}.Validate()
}

// Validate checks the limits that are set.
func (in LimitsInput) Validate() error {
	mem := in.MemoryMB
	for _, f := range []struct {
		name string
		v    *int
		max  int
	}{
		{"max_idle_seconds", in.MaxIdleSeconds, MaxIdleSeconds},
		{"lifetime_seconds", in.LifetimeSeconds, MaxLifetimeSeconds},
		{"cpu_millis", in.CPUMillis, MaxCPUMillis},
		{"memory_mb", in.MemoryMB, MaxMemoryMB},
		{"suspend_seconds", in.SuspendSeconds, MaxLifetimeSeconds},
	} {
		if f.v == nil {
			continue
		}
		if *f.v < 0 {
			return FieldErrorf(f.name, "must not be negative (got %d)", *f.v)
		}
		if *f.v > f.max {
			return FieldErrorf(f.name, "must be at most %d (got %d)", f.max, *f.v)
		}
	}
	if mem != nil && *mem > 0 && *mem < 6 {
		// Docker refuses memory limits under 6 MB.
		return FieldErrorf("memory_mb", "must be 0 (no limit) or at least 6 (got %d)", *mem)
	}
	return nil
}

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// ReservedEnv lists the variables Plane sets itself in every container.
var ReservedEnv = []string{"PORT", "PLANE_BACKEND_ID", "PLANE_BACKEND_KEY"}

// ValidateEnv checks environment variables given by a user: field names the
// input field in messages.
func ValidateEnv(field string, env map[string]string) error {
	if len(env) > MaxEnvVars {
		return FieldErrorf(field, "has %d variables, at most %d allowed", len(env), MaxEnvVars)
	}
	size := 0
	for k, v := range env {
		if !envNameRE.MatchString(k) || len(k) > 256 {
			return FieldErrorf(field, "%q is not a valid variable name (letters, digits and _, not starting with a digit)", truncate(k, 64))
		}
		for _, r := range ReservedEnv {
			if k == r {
				return FieldErrorf(field, "%s is set by Plane and cannot be overridden", k)
			}
		}
		if strings.ContainsRune(v, 0) || !utf8.ValidString(v) {
			return FieldErrorf(field, "value of %s must be UTF-8 without NUL bytes", k)
		}
		size += len(k) + len(v)
	}
	if size > MaxEnvBytes {
		return FieldErrorf(field, "is %d bytes, at most %d allowed", size, MaxEnvBytes)
	}
	return nil
}

// DecodeJSON decodes exactly one JSON value of at most limit bytes into v,
// rejecting unknown fields and trailing data. Errors are EINVALID and name the
// field when the decoder knows it.
func DecodeJSON(r io.Reader, limit int64, v any) error {
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return Errorf(EINVALID, "reading request body: %v", err)
	}
	if int64(len(data)) > limit {
		return Errorf(EINVALID, "request body larger than %d bytes", limit)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return Errorf(EINVALID, "request body is empty: a JSON object is expected")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	// dec.More() misses a stray '}' or ']', so look at the rest directly.
	if len(bytes.TrimSpace(data[dec.InputOffset():])) > 0 {
		return Errorf(EINVALID, "request body holds data after the JSON object")
	}
	return nil
}

// jsonPath is an UnmarshalTypeError's field path without the Go names of
// embedded structs (LimitsInput.memory_mb is memory_mb): the JSON names of
// this package are lowercase, Go's type names are not.
func jsonPath(field string) string {
	parts := strings.Split(field, ".")
	kept := parts[:0]
	for _, p := range parts {
		if p != "" && (p[0] < 'A' || p[0] > 'Z') {
			kept = append(kept, p)
		}
	}
	return strings.Join(kept, ".")
}

func jsonError(err error) error {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr):
		field := jsonPath(typeErr.Field)
		if field == "" {
			return Errorf(EINVALID, "request body must be a JSON object, not %s", typeErr.Value)
		}
		return &Error{Code: EINVALID, Field: field, Message: fmt.Sprintf("%s: must be %s, not %s", field, jsonKind(typeErr.Type.Kind().String()), typeErr.Value)}
	case errors.As(err, &syntaxErr):
		return Errorf(EINVALID, "malformed JSON at byte %d: %v", syntaxErr.Offset, syntaxErr)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return Errorf(EINVALID, "malformed JSON: unexpected end of input")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := truncate(strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`), 64)
		return &Error{Code: EINVALID, Field: field, Message: fmt.Sprintf("%s: unknown field", field)}
	}
	return Errorf(EINVALID, "malformed JSON: %v", err)
}

func jsonKind(k string) string {
	switch k {
	case "int", "int64", "int32", "uint", "uint64", "float64":
		return "a number"
	case "string":
		return "a string"
	case "bool":
		return "true or false"
	case "map", "struct":
		return "an object"
	case "slice":
		return "an array"
	}
	return k
}

// ValidateName checks a name people give (a user's, a team's, a token's):
// at most max bytes of printable UTF-8. Control characters and invalid
// UTF-8 would be stored by one database and refused by another.
func ValidateName(field, s string, max int) error {
	if len(s) > max {
		return FieldErrorf(field, "use at most %d characters", max)
	}
	if !printable(s) {
		return FieldErrorf(field, "must be printable text")
	}
	return nil
}

func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
