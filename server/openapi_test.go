package server

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"plane"
	"plane/api"
	"plane/auth"
)

// openAPIMethods are the operation keys of an OpenAPI path item.
var openAPIMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// loadOpenAPI parses the embedded document.
func loadOpenAPI(t *testing.T) map[string]any {
	t.Helper()
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(openAPIDoc))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("openapi.json is not valid JSON: %v", err)
	}
	if dec.More() {
		t.Fatal("openapi.json holds data after the document")
	}
	return doc
}

func obj(t *testing.T, v any, where string) map[string]any {
	t.Helper()
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("%s: want an object, got %T", where, v)
	}
	return m
}

// echoPathRE matches Echo's path parameters (":id").
var echoPathRE = regexp.MustCompile(`:([A-Za-z0-9_]+)`)

// openAPIPath writes an Echo route path the OpenAPI way: ":id" → "{id}".
func openAPIPath(p string) string { return echoPathRE.ReplaceAllString(p, "{$1}") }

// routedOperations returns "METHOD path" for each route of a new server,
// paths written the OpenAPI way, without Echo's internal routes.
func routedOperations(t *testing.T) map[string]bool {
	t.Helper()
	s := New(Config{})
	ops := map[string]bool{}
	for _, r := range s.echo.Routes() {
		if r.Path == "" || r.Method == "" || r.Method == echo.RouteNotFound {
			continue
		}
		ops[r.Method+" "+openAPIPath(r.Path)] = true
	}
	if len(ops) == 0 {
		t.Fatal("the server registers no routes")
	}
	return ops
}

// documentedOperations returns "METHOD path" → operation for each operation
// of the document.
func documentedOperations(t *testing.T, doc map[string]any) map[string]map[string]any {
	t.Helper()
	ops := map[string]map[string]any{}
	for path, item := range obj(t, doc["paths"], "paths") {
		for key, op := range obj(t, item, "paths."+path) {
			if slices.Contains(openAPIMethods, key) {
				ops[strings.ToUpper(key)+" "+path] = obj(t, op, "paths."+path+"."+key)
			}
		}
	}
	return ops
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func TestOpenAPIDocument(t *testing.T) {
	t.Parallel()
	doc := loadOpenAPI(t)
	if v := doc["openapi"]; v != "3.0.3" {
		t.Errorf("openapi = %v, want 3.0.3", v)
	}
	info := obj(t, doc["info"], "info")
	for _, k := range []string{"title", "version"} {
		if s, _ := info[k].(string); s == "" {
			t.Errorf("info.%s is missing", k)
		}
	}
	schemes := obj(t, obj(t, doc["components"], "components")["securitySchemes"], "components.securitySchemes")
	bearer := obj(t, schemes["bearerAuth"], "bearerAuth")
	if bearer["type"] != "http" || bearer["scheme"] != "bearer" {
		t.Errorf("bearerAuth = %v, want an http bearer scheme", bearer)
	}
}

// TestOpenAPIRoutes checks that the document and the router describe the
// same operations.
func TestOpenAPIRoutes(t *testing.T) {
	t.Parallel()
	doc := loadOpenAPI(t)
	routed := routedOperations(t)
	documented := documentedOperations(t, doc)

	for _, op := range sortedKeys(routed) {
		t.Run("routed/"+op, func(t *testing.T) {
			if documented[op] == nil {
				t.Errorf("route %s is not in openapi.json", op)
			}
		})
	}
	paths := obj(t, doc["paths"], "paths")
	for _, op := range sortedKeys(documented) {
		t.Run("documented/"+op, func(t *testing.T) {
			if !routed[op] {
				t.Errorf("openapi.json describes %s, which the server does not route", op)
			}
			method, path, _ := strings.Cut(op, " ")
			o := documented[op]
			if s, _ := o["operationId"].(string); s == "" {
				t.Error("no operationId")
			}
			if s, _ := o["description"].(string); s == "" {
				t.Error("no description")
			}
			if len(obj(t, o["responses"], "responses")) == 0 {
				t.Error("no responses")
			}
			// Every {param} of the path is declared as a path parameter.
			declared := map[string]bool{}
			item := obj(t, paths[path], path)
			for _, list := range []any{item["parameters"], o["parameters"]} {
				ps, _ := list.([]any)
				for _, p := range ps {
					p := resolveParam(t, doc, p)
					if p["in"] == "path" {
						declared[p["name"].(string)] = true
						if p["required"] != true {
							t.Errorf("path parameter %v is not required", p["name"])
						}
					}
				}
			}
			for _, m := range regexp.MustCompile(`\{([^}]+)\}`).FindAllStringSubmatch(path, -1) {
				if !declared[m[1]] {
					t.Errorf("%s %s: path parameter {%s} is not declared", method, path, m[1])
				}
				delete(declared, m[1])
			}
			for name := range declared {
				t.Errorf("%s %s: declares path parameter %q that the path lacks", method, path, name)
			}
		})
	}
}

func resolveParam(t *testing.T, doc map[string]any, p any) map[string]any {
	t.Helper()
	m := obj(t, p, "parameter")
	if ref, ok := m["$ref"].(string); ok {
		v, err := resolvePointer(doc, ref)
		if err != "" {
			t.Fatalf("parameter %s: %s", ref, err)
		}
		return obj(t, v, ref)
	}
	return m
}

// resolvePointer follows a local reference ("#/a/b"); err says why it fails.
func resolvePointer(doc map[string]any, ref string) (v any, err string) {
	rest, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return nil, "not a local reference (#/...)"
	}
	v = doc
	for _, tok := range strings.Split(rest, "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch c := v.(type) {
		case map[string]any:
			next, ok := c[tok]
			if !ok {
				return nil, "no " + tok
			}
			v = next
		default:
			return nil, "cannot descend into " + tok
		}
	}
	return v, ""
}

// TestOpenAPIRefs checks that every $ref of the document resolves.
func TestOpenAPIRefs(t *testing.T) {
	t.Parallel()
	doc := loadOpenAPI(t)
	refs := map[string][]string{} // ref → where it appears
	var walk func(v any, where string)
	walk = func(v any, where string) {
		switch c := v.(type) {
		case map[string]any:
			for k, e := range c {
				if k == "$ref" {
					if s, ok := e.(string); ok {
						refs[s] = append(refs[s], where)
						continue
					}
				}
				walk(e, where+"/"+k)
			}
		case []any:
			for i, e := range c {
				walk(e, where+"/"+strconv.Itoa(i))
			}
		}
	}
	walk(doc, "#")
	if len(refs) == 0 {
		t.Fatal("the document has no $ref")
	}
	for _, ref := range sortedKeys(refs) {
		t.Run(ref, func(t *testing.T) {
			v, err := resolvePointer(doc, ref)
			if err != "" {
				t.Fatalf("%s (used at %s): %s", ref, strings.Join(refs[ref], ", "), err)
			}
			if _, ok := v.(map[string]any); !ok {
				t.Errorf("%s resolves to %T, want an object", ref, v)
			}
		})
	}
}

// TestOpenAPIServed checks the handler serves the document as JSON.
func TestOpenAPIServed(t *testing.T) {
	t.Parallel()
	s := New(Config{})
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/openapi.json", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("status = %d, want 200; body %s", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get(echo.HeaderContentType); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	if !bytes.Equal(rec.Body.Bytes(), openAPIDoc) {
		t.Error("the served body differs from openapi.json")
	}
}

// jsonFields returns the JSON names of t's fields and whether each is
// omitempty.
func jsonFields(t reflect.Type) map[string]bool {
	fields := map[string]bool{}
	for f := range t.Fields() {
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("json")
		if f.Anonymous && tag == "" && f.Type.Kind() == reflect.Struct {
			// encoding/json puts an embedded struct's fields in its parent.
			maps.Copy(fields, jsonFields(f.Type))
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" && opts == "" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		fields[name] = strings.Contains(","+opts+",", ",omitempty,")
	}
	return fields
}

// TestOpenAPISchemasMatchStructs checks each schema's properties against
// the Go type it describes: the same JSON names; for response types, the
// fields always present are required and nullable when they are pointers.
func TestOpenAPISchemasMatchStructs(t *testing.T) {
	t.Parallel()
	doc := loadOpenAPI(t)
	schemas := obj(t, obj(t, doc["components"], "components")["schemas"], "schemas")
	for _, tc := range []struct {
		schema   string
		typ      any
		response bool
	}{
		{"Backend", api.Backend{}, true},
		{"StatusChange", plane.StatusChange{}, true},
		{"StatusEvent", statusEvent{}, true},
		{"LogLine", plane.LogLine{}, true},
		{"Image", plane.Image{}, true},
		{"Error", api.ErrorResponse{}, true},
		{"ErrorDetail", api.ErrorDetail{}, true},
		{"SpawnRequest", plane.SpawnRequest{}, false},
		{"ImageInput", plane.ImageInput{}, false},
		{"TerminateRequest", api.TerminateRequest{}, false},
		{"Connect", api.Connect{}, true},
		{"ConnectRequest", api.ConnectRequest{}, false},
		{"Drone", plane.Drone{}, true},
		{"DroneList", api.Drones{}, true},
		{"DisconnectRequest", api.DisconnectRequest{}, false},
		{"KeepAliveRequest", api.KeepAliveRequest{}, false},
		{"Connection", api.Connection{}, true},
		{"ConnectionList", api.Connections{}, true},
		{"ProjectEvent", plane.ProjectEvent{}, true},
		{"BackendStatusData", plane.BackendStatusData{}, true},
		{"ConnectionData", plane.ConnectionData{}, true},
		{"WebhookInput", plane.WebhookInput{}, false},
		{"Webhook", api.Webhook{}, true},
		{"WebhookList", api.Webhooks{}, true},
		{"Delivery", api.Delivery{}, true},
		{"DeliveryAttempt", api.DeliveryAttempt{}, true},
		{"DeliveryList", api.Deliveries{}, true},
	} {
		t.Run(tc.schema+"/"+reflect.TypeOf(tc.typ).String(), func(t *testing.T) {
			sch := obj(t, schemas[tc.schema], tc.schema)
			props := obj(t, sch["properties"], tc.schema+".properties")
			typ := reflect.TypeOf(tc.typ)
			fields := jsonFields(typ)
			for name := range fields {
				if props[name] == nil {
					t.Errorf("field %q of %s is not in the schema", name, typ)
				}
			}
			for name := range props {
				if _, ok := fields[name]; !ok {
					t.Errorf("schema property %q is not a field of %s", name, typ)
				}
			}
			if !tc.response {
				if sch["additionalProperties"] != false {
					t.Error("request schema should have additionalProperties: false (unknown fields are rejected)")
				}
				return
			}
			var required []string
			if rs, ok := sch["required"].([]any); ok {
				for _, r := range rs {
					required = append(required, r.(string))
				}
			}
			for name, omitempty := range fields {
				if got := slices.Contains(required, name); got == omitempty {
					t.Errorf("field %q: required = %v, want %v", name, got, !omitempty)
				}
			}
			for f := range typ.Fields() {
				name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
				if f.Type.Kind() != reflect.Pointer || strings.Contains(opts, "omitempty") || name == "-" {
					continue
				}
				if p, _ := props[name].(map[string]any); p["nullable"] != true {
					t.Errorf("pointer field %q can be null but the schema is not nullable", name)
				}
			}
		})
	}
}

func enumOf(t *testing.T, schema map[string]any) []string {
	t.Helper()
	var out []string
	es, _ := schema["enum"].([]any)
	for _, e := range es {
		out = append(out, e.(string))
	}
	sort.Strings(out)
	return out
}

func sortedStrings[S ~string](vs ...S) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = string(v)
	}
	sort.Strings(out)
	return out
}

// TestOpenAPIEnums checks the enumerations against the Go constants.
func TestOpenAPIEnums(t *testing.T) {
	t.Parallel()
	doc := loadOpenAPI(t)
	schemas := obj(t, obj(t, doc["components"], "components")["schemas"], "schemas")
	var codes []plane.ErrorCode
	for c := range statusOf {
		codes = append(codes, c)
	}
	reasons := sortedStrings(plane.ReasonIdle, plane.ReasonLifetime, plane.ReasonRequested, plane.ReasonExited, plane.ReasonFailed, plane.ReasonLost)
	for _, tc := range []struct {
		name string
		got  []string
		want []string
	}{
		{"ErrorCode", enumOf(t, obj(t, schemas["ErrorCode"], "ErrorCode")), sortedStrings(codes...)},
		{"BackendStatus", enumOf(t, obj(t, schemas["BackendStatus"], "BackendStatus")), sortedStrings(plane.Statuses...)},
		{"TerminationReason", enumOf(t, obj(t, schemas["TerminationReason"], "TerminationReason")), reasons},
		{"Backend.termination_reason", enumOf(t, obj(t, obj(t, obj(t, schemas["Backend"], "Backend")["properties"], "props")["termination_reason"], "termination_reason")), append([]string{""}, reasons...)},
		{"PullPolicy", enumOf(t, obj(t, schemas["PullPolicy"], "PullPolicy")), sortedStrings(plane.PullIfNotPresent, plane.PullAlways, plane.PullNever)},
		{"DroneStatus", enumOf(t, obj(t, schemas["DroneStatus"], "DroneStatus")), sortedStrings(plane.DroneReady, plane.DroneDraining, plane.DroneUnreachable, plane.DroneLost, plane.DroneStopped)},
		{"ProjectEventType", enumOf(t, obj(t, schemas["ProjectEventType"], "ProjectEventType")), sortedStrings(plane.ProjectEventTypes...)},
		{"DeliveryStatus", enumOf(t, obj(t, schemas["DeliveryStatus"], "DeliveryStatus")), sortedStrings(plane.DeliveryPending, plane.DeliveryDelivered, plane.DeliveryFailed)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !slices.Equal(tc.got, tc.want) {
				t.Errorf("enum = %q, want %q", tc.got, tc.want)
			}
		})
	}
}

// openAPITokens is a token store holding one record.
type openAPITokens struct{ tok *plane.Token }

func (s *openAPITokens) CreateToken(context.Context, *plane.Token) error { return nil }
func (s *openAPITokens) FindTokenByID(_ context.Context, id string) (*plane.Token, error) {
	if id != s.tok.ID {
		return nil, plane.Errorf(plane.ENOTFOUND, "token %q not found", id)
	}
	return s.tok, nil
}
func (s *openAPITokens) FindTokens(context.Context, int64) ([]*plane.Token, error) { return nil, nil }
func (s *openAPITokens) RevokeToken(context.Context, string) error                 { return nil }
func (s *openAPITokens) TouchToken(context.Context, string, time.Time) error       { return nil }

var forbiddenScopeRE = regexp.MustCompile(`lacks the (\S+) scope`)

// TestOpenAPISecurity checks each operation's documented authentication
// against the server: public operations answer without a token; the others
// answer 401 without one and, to a token without scopes, 403 naming the
// scope the document gives in x-plane-scope.
func TestOpenAPISecurity(t *testing.T) {
	t.Parallel()
	doc := loadOpenAPI(t)
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	rec := &plane.Token{ID: auth.NewTokenID(), ProjectID: 1, Name: "none", CreatedAt: time.Now()}
	bearer, err := (&auth.Issuer{Key: priv}).IssueAPIToken(rec)
	if err != nil {
		t.Fatal(err)
	}
	s := New(Config{Auth: &auth.Authenticator{Key: pub, Tokens: &openAPITokens{tok: rec}}})
	do := func(method, path, token string) *httptest.ResponseRecorder {
		path = strings.NewReplacer("{id}", "abc123", "{name}", "demo").Replace(path)
		req := httptest.NewRequest(method, path, strings.NewReader("{}"))
		req.Header.Set(echo.HeaderContentType, "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		w := httptest.NewRecorder()
		s.Handler().ServeHTTP(w, req)
		return w
	}
	ops := documentedOperations(t, doc)
	for _, op := range sortedKeys(ops) {
		t.Run(op, func(t *testing.T) {
			method, path, _ := strings.Cut(op, " ")
			o := ops[op]
			sec, explicit := o["security"].([]any)
			scope, _ := o["x-plane-scope"].(string)
			if explicit && len(sec) == 0 {
				if scope != "" {
					t.Errorf("public operation has x-plane-scope %q", scope)
				}
				if path == "/metrics" {
					return // scraping reads the store, which this server lacks
				}
				if w := do(method, path, ""); w.Code == http.StatusUnauthorized || w.Code == http.StatusForbidden {
					t.Errorf("documented as public, but answers %d without a token: %s", w.Code, w.Body)
				}
				return
			}
			if !plane.Scope(scope).Valid() {
				t.Fatalf("x-plane-scope = %q, want a valid scope", scope)
			}
			if d, _ := o["description"].(string); !strings.Contains(d, "Required scope: `"+scope+"`") {
				t.Errorf("description does not say \"Required scope: `%s`\"", scope)
			}
			if w := do(method, path, ""); w.Code != http.StatusUnauthorized {
				t.Errorf("without a token: status %d, want 401: %s", w.Code, w.Body)
			}
			w := do(method, path, bearer)
			if w.Code != http.StatusForbidden {
				t.Fatalf("with a token without scopes: status %d, want 403: %s", w.Code, w.Body)
			}
			m := forbiddenScopeRE.FindStringSubmatch(w.Body.String())
			if m == nil {
				t.Fatalf("403 names no scope: %s", w.Body)
			}
			if m[1] != scope {
				t.Errorf("server requires %s, document says %s", m[1], scope)
			}
		})
	}
}
