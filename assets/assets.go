// Package assets embeds the dashboard's static files (stylesheet, scripts,
// icons) and serves them under content-hashed names, so a browser may cache
// each one forever and a new build still reaches it with a new URL.
//
// The vendored htmx files in static/ are reproduced by vendor.sh.
package assets

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"
)

// Prefix is the URL path under which Handler serves the files.
const Prefix = "/assets/"

//go:embed static
var static embed.FS

// file is one embedded file with its hashed URL.
type file struct {
	name        string // as embedded under static/, e.g. "plane.css"
	url         string // e.g. "/assets/plane.3f2a9c01de.css"
	contentType string
	etag        string
	body        []byte
}

var (
	byName = map[string]*file{} // key: name
	byURL  = map[string]*file{} // key: url
)

func init() {
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		name := strings.TrimPrefix(p, "static/")
		h := hash(body)
		f := &file{
			name:        name,
			url:         Prefix + hashedName(name, h),
			contentType: contentType(name),
			etag:        `"` + h + `"`,
			body:        body,
		}
		byName[name] = f
		byURL[f.url] = f
		return nil
	})
	if err != nil {
		panic("assets: read embedded files: " + err.Error())
	}
}

// hash is the first 10 hex digits of the content's sha256: enough to tell
// builds apart, short enough to read in a URL.
func hash(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])[:10]
}

// hashedName puts h before the last extension: "htmx.min.js" becomes
// "htmx.min.<h>.js", so the served name keeps the extension browsers and
// proxies look at.
func hashedName(name, h string) string {
	ext := path.Ext(name)
	return strings.TrimSuffix(name, ext) + "." + h + ext
}

// contentTypes is fixed here rather than read from the machine's mime.types,
// so a file is served with the same type everywhere.
var contentTypes = map[string]string{
	".css":   "text/css; charset=utf-8",
	".js":    "text/javascript; charset=utf-8",
	".svg":   "image/svg+xml",
	".png":   "image/png",
	".ico":   "image/x-icon",
	".woff2": "font/woff2",
	".txt":   "text/plain; charset=utf-8",
	".json":  "application/json",
	".map":   "application/json",
}

func contentType(name string) string {
	ext := strings.ToLower(path.Ext(name))
	if t, ok := contentTypes[ext]; ok {
		return t
	}
	if t := mime.TypeByExtension(ext); t != "" {
		return t
	}
	return "application/octet-stream"
}

// Path returns the content-hashed URL of an embedded file, e.g.
// Path("plane.css") == "/assets/plane.3f2a9c01de.css". It panics for a name
// that is not embedded: that is a typo in a template, which the view tests
// catch, not a run-time condition.
func Path(name string) string {
	f, ok := byName[name]
	if !ok {
		panic("assets: no embedded file " + name)
	}
	return f.url
}

// Handler serves the embedded files at their hashed URLs under Prefix. It
// expects the full request path (mount it at /assets/, without stripping
// the prefix). Any other path, including a stale hash, is 404.
func Handler() http.Handler { return http.HandlerFunc(serve) }

func serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	f, ok := byURL[r.URL.Path]
	if !ok {
		// A stale hash must not be cached as if it were the file: the next
		// deploy may serve it again.
		w.Header().Set("Cache-Control", "no-store")
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", f.contentType)
	h.Set("Cache-Control", "public, max-age=31536000, immutable")
	h.Set("ETag", f.etag)
	h.Set("X-Content-Type-Options", "nosniff")
	// ServeContent answers HEAD, Range and If-None-Match for us.
	http.ServeContent(w, r, f.name, time.Time{}, bytes.NewReader(f.body))
}
