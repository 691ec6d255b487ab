// Package paralleltest runs a package's tests with all its parallel tests
// at once, for packages whose tests spend their time waiting (for
// timeouts, renewal times, elections) rather than on the CPU.
package paralleltest

import (
	"flag"
	"os"
	"strconv"
	"testing"
)

// Parallel is how many parallel tests run at once unless -parallel says.
const Parallel = 16

// Main is a package's TestMain: go test's default -parallel is GOMAXPROCS
// (2 on the machines this project is built on), which only queues waiting
// tests behind each other. An explicit -parallel wins.
func Main(m *testing.M) {
	flag.Parse()
	explicit := false
	flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "test.parallel" })
	if !explicit {
		_ = flag.Set("test.parallel", strconv.Itoa(Parallel))
	}
	os.Exit(m.Run())
}
