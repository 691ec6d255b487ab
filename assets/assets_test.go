package assets

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// serveTest runs one request against Handler.
func serveTest(tb testing.TB, method, target string, header http.Header) *http.Response {
	tb.Helper()
	req := httptest.NewRequest(method, target, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	Handler().ServeHTTP(rec, req)
	return rec.Result()
}

func TestEmbedded(t *testing.T) {
	// The files the templates rely on: a missing one would panic in Path.
	for _, name := range []string{"plane.css", "app.js", "htmx.min.js", "htmx-ext-sse.min.js", "favicon.svg"} {
		if _, ok := byName[name]; !ok {
			t.Errorf("%s is not embedded", name)
		}
	}
}

func TestServeEveryFile(t *testing.T) {
	want := map[string]string{
		".css": "text/css; charset=utf-8",
		".js":  "text/javascript; charset=utf-8",
		".svg": "image/svg+xml",
	}
	urlRe := regexp.MustCompile(`^/assets/[A-Za-z0-9._/-]+\.[0-9a-f]{10}\.[a-z0-9]+$`)
	for name, f := range byName {
		t.Run(name, func(t *testing.T) {
			p := Path(name)
			if !urlRe.MatchString(p) {
				t.Fatalf("Path(%q) = %q, want /assets/<name>.<10 hex>.<ext>", name, p)
			}
			for _, method := range []string{http.MethodGet, http.MethodHead} {
				res := serveTest(t, method, p, nil)
				body, _ := io.ReadAll(res.Body)
				if res.StatusCode != http.StatusOK {
					t.Fatalf("%s %s: status %d", method, p, res.StatusCode)
				}
				ext := name[strings.LastIndex(name, "."):]
				if ct := res.Header.Get("Content-Type"); ct != want[ext] {
					t.Errorf("%s %s: Content-Type %q, want %q", method, p, ct, want[ext])
				}
				if cc := res.Header.Get("Cache-Control"); cc != "public, max-age=31536000, immutable" {
					t.Errorf("%s %s: Cache-Control %q", method, p, cc)
				}
				if res.Header.Get("Content-Length") != strconv.Itoa(len(f.body)) {
					t.Errorf("%s %s: Content-Length %q, want %d", method, p, res.Header.Get("Content-Length"), len(f.body))
				}
				switch method {
				case http.MethodGet:
					if string(body) != string(f.body) {
						t.Errorf("GET %s: body differs from the embedded file", p)
					}
				case http.MethodHead:
					if len(body) != 0 {
						t.Errorf("HEAD %s: %d body bytes", p, len(body))
					}
				}
			}
		})
	}
}

func TestNotFound(t *testing.T) {
	css := Path("plane.css")
	tests := []struct {
		name, target string
	}{
		{"stale hash", "/assets/plane.0000000000.css"},
		{"unhashed name", "/assets/plane.css"},
		{"hash of another file", strings.Replace(Path("app.js"), "app.", "plane.", 1)},
		{"prefix only", "/assets/"},
		{"no prefix", strings.TrimPrefix(css, "/assets")},
		{"dot dot", "/assets/../assets" + strings.TrimPrefix(css, "/assets")},
		{"dot dot to go file", "/assets/../assets.go"},
		{"encoded dot dot", "/assets/%2e%2e/static" + strings.TrimPrefix(css, "/assets")},
		{"static dir", "/assets/static" + strings.TrimPrefix(css, "/assets")},
		{"double slash", "/assets//" + strings.TrimPrefix(css, "/assets/")},
		{"trailing slash", css + "/"},
		{"upper case", strings.ToUpper(css)},
		{"dot segment", "/assets/./" + strings.TrimPrefix(css, "/assets/")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := serveTest(t, http.MethodGet, tt.target, nil)
			if res.StatusCode != http.StatusNotFound {
				t.Errorf("GET %s: status %d, want 404", tt.target, res.StatusCode)
			}
			if cc := res.Header.Get("Cache-Control"); strings.Contains(cc, "immutable") {
				t.Errorf("GET %s: a 404 is cached: %q", tt.target, cc)
			}
		})
	}
}

func TestMethodNotAllowed(t *testing.T) {
	for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
		res := serveTest(t, method, Path("plane.css"), nil)
		if res.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("%s: status %d, want 405", method, res.StatusCode)
		}
		if res.Header.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s: Allow %q", method, res.Header.Get("Allow"))
		}
	}
}

func TestNotModified(t *testing.T) {
	p := Path("app.js")
	res := serveTest(t, http.MethodGet, p, nil)
	etag := res.Header.Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}
	res = serveTest(t, http.MethodGet, p, http.Header{"If-None-Match": {etag}})
	if res.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match %s: status %d, want 304", etag, res.StatusCode)
	}
}

func TestPathPanicsForUnknownName(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("Path of an unknown name did not panic")
		}
	}()
	Path("nope.css")
}

func TestHash(t *testing.T) {
	tests := []struct {
		name string
		a, b string
		same bool
	}{
		{"same content", "body{}", "body{}", true},
		{"one byte changed", "body{}", "body{ }", false},
		{"empty vs newline", "", "\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ha, hb := hash([]byte(tt.a)), hash([]byte(tt.b))
			if len(ha) != 10 || strings.Trim(ha, "0123456789abcdef") != "" {
				t.Errorf("hash(%q) = %q, want 10 lower-case hex digits", tt.a, ha)
			}
			if (ha == hb) != tt.same {
				t.Errorf("hash(%q) = %s, hash(%q) = %s, same = %v, want %v", tt.a, ha, tt.b, hb, ha == hb, tt.same)
			}
			if na, nb := hashedName("x.css", ha), hashedName("x.css", hb); (na == nb) != tt.same {
				t.Errorf("hashedName: %s vs %s", na, nb)
			}
		})
	}
	// sha256("") starts e3b0c44298fc1c14...
	if got := hash(nil); got != "e3b0c44298" {
		t.Errorf("hash(nil) = %s, want e3b0c44298", got)
	}
}

func TestHashedName(t *testing.T) {
	tests := []struct{ name, want string }{
		{"plane.css", "plane.abc.css"},
		{"htmx.min.js", "htmx.min.abc.js"},
		{"icons/x.svg", "icons/x.abc.svg"},
	}
	for _, tt := range tests {
		if got := hashedName(tt.name, "abc"); got != tt.want {
			t.Errorf("hashedName(%q) = %q, want %q", tt.name, got, tt.want)
		}
	}
}
