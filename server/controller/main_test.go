package controller_test

import (
	"testing"

	"plane/test/paralleltest"
)

// The tests that wait (for the next second, for WaitSettled's rechecks of
// the store) run in parallel, all at once, and beside them the one that
// works longest (hashing passwords). TestReconcileConnections changes
// package variables (SetGhostTimes): it stays sequential, and so never
// runs beside a parallel test.
func TestMain(m *testing.M) { paralleltest.Main(m) }
