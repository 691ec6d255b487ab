package cert

import (
	"context"
	"log"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"

	legolog "github.com/go-acme/lego/v4/log"
)

// legoLogger receives lego's log lines: the logger of the Manager made
// last (a drone has one). lego logs through a package variable, set once
// here before anything runs, so that its lines join the drone's structured
// log instead of going to stderr on their own.
var legoLogger atomic.Pointer[slog.Logger]

func init() {
	legolog.Logger = log.New(legoWriter{}, "", 0)
	// lego follows CNAMEs at _acme-challenge.<zone> through the system's
	// resolvers before each order. Plane's DNS serves that name itself and
	// never with a CNAME, so the lookups could only cost time (a resolver
	// that does not answer: 10 s an order). An operator's own setting wins.
	if _, set := os.LookupEnv("LEGO_DISABLE_CNAME_SUPPORT"); !set {
		_ = os.Setenv("LEGO_DISABLE_CNAME_SUPPORT", "true")
	}
}

// legoWriter turns lego's lines into slog records: its [INFO] chatter (each
// step of an order) at debug level, its warnings as warnings.
type legoWriter struct{}

func (legoWriter) Write(p []byte) (int, error) {
	l := legoLogger.Load()
	if l == nil {
		l = slog.Default()
	}
	msg := strings.TrimSpace(string(p))
	level := slog.LevelDebug
	if rest, ok := strings.CutPrefix(msg, "[WARN] "); ok {
		level, msg = slog.LevelWarn, rest
	} else if rest, ok := strings.CutPrefix(msg, "[INFO] "); ok {
		msg = rest
	}
	l.Log(context.Background(), level, msg, "from", "lego")
	return len(p), nil
}
