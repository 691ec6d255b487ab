package dispatch

import (
	"testing"

	"plane/test/paralleltest"
)

// The tests of this package wait more than they work: run them all at once.
func TestMain(m *testing.M) { paralleltest.Main(m) }
