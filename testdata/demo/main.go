// Command demo is the session backend that Plane's tests and demos start: one
// image, plane-demo:latest, whose behaviour environment variables choose.
//
// Build it static and package it FROM scratch:
//
//	CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o testdata/demo/demo ./testdata/demo
//	docker build -q -t plane-demo:latest testdata/demo
//
// Endpoints (on $PORT, default 8080):
//
//	GET  /          HTML page "Plane demo": backend id and key, and a script that
//	                echoes "ping" over /ws into the element data-testid="ws-echo"
//	GET  /ws        WebSocket echo, text and binary
//	GET  /env       JSON object of the PLANE_*, PORT* and DEMO_* variables
//	GET  /headers   JSON: method, URI, host, remote address, request headers
//	POST /echo      the request body, streamed back as it arrives
//	GET  /sse       Server-Sent Events: ?n=5 events (0: until the client leaves)
//	                every ?interval_ms=100, each flushed
//	POST /exit      exits the process with ?code=N (default 0) after answering
//	GET  /healthz   "ok"
//
// Environment:
//
//	PORT                 port to listen on (8080)
//	DEMO_MODE            "" (serve), "exit", "hang" or "record"
//	DEMO_EXIT_CODE       exit code in mode exit (0)
//	DEMO_EXIT_AFTER_MS   mode exit: serve for this long, then exit (0: exit at once,
//	                     before listening)
//	DEMO_READY_DELAY_MS  wait this long before listening
//	DEMO_IGNORE_SIGTERM  "1": ignore SIGTERM (only SIGKILL stops it)
//	DEMO_QUIET           "1": no log line per request (for benchmarks)
//
// Mode hang never listens. Mode record serves the proxy tests' recorder
// (plane/drone/proxy/proxytest): it reads each request with net/http's
// strict parser, records it, answers "answer to <method> <target>", and
// returns what it recorded at GET /__recorded (?clear=1 forgets it). SIGTERM and SIGINT end the process at once with
// code 0 in every mode unless DEMO_IGNORE_SIGTERM=1. Each request is logged as
// one line on stdout; the start-up line goes to stderr so that both streams
// carry something.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/coder/websocket"

	"plane/drone/proxy/proxytest"
)

func main() {
	os.Exit(run())
}

func run() int {
	mode := os.Getenv("DEMO_MODE")
	port := getenv("PORT", "8080")
	fmt.Fprintf(os.Stderr, "demo: starting backend %q mode=%q port=%s\n", os.Getenv("PLANE_BACKEND_ID"), mode, port)

	// As PID 1 in a container, a signal without a handler is ignored by the
	// kernel, so SIGTERM must be handled explicitly for a soft stop to work.
	sigs := make(chan os.Signal, 1)
	if os.Getenv("DEMO_IGNORE_SIGTERM") == "1" {
		signal.Ignore(syscall.SIGTERM)
		signal.Notify(sigs, syscall.SIGINT)
		fmt.Println("demo: ignoring SIGTERM")
	} else {
		signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	}
	// exit carries the code of a requested exit (mode exit, POST /exit).
	exit := make(chan int, 1)

	switch mode {
	case "", "serve":
	case "exit":
		code, err := strconv.Atoi(getenv("DEMO_EXIT_CODE", "0"))
		if err != nil || code < 0 || code > 255 {
			fmt.Fprintf(os.Stderr, "demo: DEMO_EXIT_CODE=%q is not a number from 0 to 255\n", os.Getenv("DEMO_EXIT_CODE"))
			return 2
		}
		after := durationMS("DEMO_EXIT_AFTER_MS")
		if after <= 0 {
			fmt.Printf("demo: exiting with code %d\n", code)
			return code
		}
		fmt.Printf("demo: will exit with code %d in %s\n", code, after)
		time.AfterFunc(after, func() { exit <- code })
	case "hang":
		fmt.Println("demo: hanging without listening")
		return waitSignal(sigs, exit)
	case "record":
		ln, err := net.Listen("tcp", ":"+port)
		if err != nil {
			fmt.Fprintf(os.Stderr, "demo: %v\n", err)
			return 1
		}
		go func() { _ = proxytest.NewRecorder().Serve(ln) }()
		fmt.Printf("demo: recording requests on %s\n", ln.Addr())
		return waitSignal(sigs, exit)
	default:
		fmt.Fprintf(os.Stderr, "demo: unknown DEMO_MODE %q (want exit, hang or record)\n", mode)
		return 2
	}

	if d := durationMS("DEMO_READY_DELAY_MS"); d > 0 {
		fmt.Printf("demo: waiting %s before listening\n", d)
		select {
		case <-time.After(d):
		case s := <-sigs:
			fmt.Printf("demo: got %s before listening, exiting\n", s)
			return 0
		case code := <-exit:
			fmt.Printf("demo: exiting with code %d\n", code)
			return code
		}
	}

	ln, err := net.Listen("tcp", ":"+port)
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		return 1
	}
	var handler http.Handler = newMux(exit)
	if os.Getenv("DEMO_QUIET") != "1" {
		handler = logRequests(handler)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintf(os.Stderr, "demo: %v\n", err)
			exit <- 1
		}
	}()
	fmt.Printf("demo: listening on %s\n", ln.Addr())
	// No graceful shutdown: a soft stop must be fast, and open WebSockets or
	// event streams would hold it up.
	return waitSignal(sigs, exit)
}

func waitSignal(sigs <-chan os.Signal, exit <-chan int) int {
	select {
	case s := <-sigs:
		fmt.Printf("demo: got %s, exiting\n", s)
		return 0
	case code := <-exit:
		fmt.Printf("demo: exiting with code %d\n", code)
		return code
	}
}

func newMux(exit chan<- int) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", handleIndex)
	mux.HandleFunc("GET /ws", handleWS)
	mux.HandleFunc("GET /env", handleEnv)
	mux.HandleFunc("GET /headers", handleHeaders)
	mux.HandleFunc("POST /echo", handleEcho)
	mux.HandleFunc("GET /sse", handleSSE)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok")
	})
	mux.HandleFunc("POST /exit", func(w http.ResponseWriter, r *http.Request) {
		code, err := strconv.Atoi(r.URL.Query().Get("code"))
		if r.URL.Query().Get("code") == "" {
			code, err = 0, nil
		}
		if err != nil || code < 0 || code > 255 {
			http.Error(w, "code must be a number from 0 to 255", http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "exiting with code %d\n", code)
		// Exit once the answer is out.
		time.AfterFunc(50*time.Millisecond, func() { exit <- code })
	})
	return mux
}

var indexTmpl = template.Must(template.New("index").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Plane demo</title>
<style>body{font-family:system-ui,sans-serif;margin:2rem}code{background:#eee;padding:0 .2em}</style>
</head>
<body>
<h1>Plane demo</h1>
<p>Backend <code data-testid="backend-id">{{.ID}}</code>, key <code data-testid="backend-key">{{.Key}}</code></p>
<p>WebSocket echo: <span data-testid="ws-echo">waiting…</span></p>
<script>
(function () {
  var out = document.querySelector('[data-testid="ws-echo"]');
  var ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
  ws.onopen = function () { ws.send("ping"); };
  ws.onmessage = function (e) { out.textContent = e.data; };
  ws.onerror = function () { out.textContent = "error"; };
})();
</script>
</body>
</html>
`))

func handleIndex(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	indexTmpl.Execute(w, struct{ ID, Key string }{os.Getenv("PLANE_BACKEND_ID"), os.Getenv("PLANE_BACKEND_KEY")})
}

func handleWS(w http.ResponseWriter, r *http.Request) {
	// Any origin: the demo sits behind Plane's proxy, which may present
	// another Host than the browser's origin.
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 20)
	ctx := r.Context()
	for {
		typ, msg, err := c.Read(ctx)
		if err != nil {
			return
		}
		if err := c.Write(ctx, typ, msg); err != nil {
			return
		}
	}
}

func handleEnv(w http.ResponseWriter, r *http.Request) {
	env := map[string]string{}
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "PLANE_") || strings.HasPrefix(k, "PORT") || strings.HasPrefix(k, "DEMO_") {
			env[k] = v
		}
	}
	writeJSON(w, env)
}

func handleHeaders(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, map[string]any{
		"method":      r.Method,
		"uri":         r.RequestURI,
		"host":        r.Host,
		"remote_addr": r.RemoteAddr,
		"headers":     r.Header,
	})
}

func handleEcho(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	// Answer while the body still arrives, so that a stream echoes as a stream.
	_ = rc.EnableFullDuplex()
	if ct := r.Header.Get("Content-Type"); ct != "" {
		w.Header().Set("Content-Type", ct)
	} else {
		w.Header().Set("Content-Type", "application/octet-stream")
	}
	w.WriteHeader(http.StatusOK)
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			_ = rc.Flush()
		}
		if err != nil {
			return
		}
	}
}

func handleSSE(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	n, err := queryInt(q.Get("n"), 5)
	if err != nil || n < 0 {
		http.Error(w, "n must be a number >= 0 (0: until the client leaves)", http.StatusBadRequest)
		return
	}
	ms, err := queryInt(q.Get("interval_ms"), 100)
	if err != nil || ms < 0 || ms > 3600_000 {
		http.Error(w, "interval_ms must be a number from 0 to 3600000", http.StatusBadRequest)
		return
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return
	}
	tick := time.NewTicker(time.Duration(max(ms, 1)) * time.Millisecond)
	defer tick.Stop()
	for i := 0; n == 0 || i < n; i++ {
		if i > 0 {
			select {
			case <-tick.C:
			case <-r.Context().Done():
				return
			}
		}
		if _, err := fmt.Fprintf(w, "id: %d\nevent: tick\ndata: {\"n\":%d,\"time\":%q}\n\n", i, i, time.Now().UTC().Format(time.RFC3339Nano)); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}

// logRequests logs one line per request on stdout, when it ends.
func logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		status := sw.status
		if status == 0 {
			status = http.StatusOK
		}
		if sw.hijacked {
			status = http.StatusSwitchingProtocols
		}
		fmt.Printf("demo: %s %s %d %s from %s\n", r.Method, r.URL.RequestURI(), status, time.Since(start).Round(time.Microsecond), r.RemoteAddr)
	})
}

type statusWriter struct {
	http.ResponseWriter
	status   int
	hijacked bool
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach Flush and EnableFullDuplex.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("hijack not supported")
	}
	w.hijacked = true
	return h.Hijack()
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func getenv(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func durationMS(k string) time.Duration {
	v := os.Getenv(k)
	if v == "" {
		return 0
	}
	ms, err := strconv.Atoi(v)
	if err != nil || ms < 0 {
		fmt.Fprintf(os.Stderr, "demo: %s=%q is not a number of milliseconds, using 0\n", k, v)
		return 0
	}
	return time.Duration(ms) * time.Millisecond
}

func queryInt(s string, def int) (int, error) {
	if s == "" {
		return def, nil
	}
	return strconv.Atoi(s)
}
