package cluster_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
)

// T is a scenario's *testing.T that keeps its failure messages and says
// them again when the scenario has ended, after the logs of every process
// that a failed scenario prints (hundreds of lines): whoever reads only
// the end of the output, as a CI summary does, still reads why it failed.
type T struct {
	*testing.T
	mu       sync.Mutex
	failures []string
}

// scenario wraps a cluster test's t. Call it first: its cleanup, which
// repeats the failures, then runs last.
func scenario(t *testing.T) *T {
	st := &T{T: t}
	t.Cleanup(st.repeatFailures)
	return st
}

func (t *T) record(msg string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.failures = append(t.failures, msg)
}

func (t *T) Errorf(format string, args ...any) {
	t.T.Helper()
	msg := fmt.Sprintf(format, args...)
	t.record(msg)
	t.T.Error(msg)
}

func (t *T) Error(args ...any) {
	t.T.Helper()
	msg := fmt.Sprint(args...)
	t.record(msg)
	t.T.Error(msg)
}

func (t *T) Fatalf(format string, args ...any) {
	t.T.Helper()
	msg := fmt.Sprintf(format, args...)
	t.record(msg)
	t.T.Fatal(msg)
}

func (t *T) Fatal(args ...any) {
	t.T.Helper()
	msg := fmt.Sprint(args...)
	t.record(msg)
	t.T.Fatal(msg)
}

func (t *T) repeatFailures() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.failures) == 0 {
		return
	}
	t.T.Logf("%s failed (%d failures, repeated here after the processes' logs):\n  %s",
		t.Name(), len(t.failures), strings.Join(t.failures, "\n  "))
}
