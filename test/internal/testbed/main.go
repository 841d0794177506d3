package testbed

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"
)

// The switchboard binary of this test binary, built once by Main.
var (
	serverBin      string
	serverBuildErr error
)

// Main is a suite's TestMain body: it builds ./cmd/switchboard once for the
// whole test binary (with the race detector when the tests run with -race,
// so that the server reports its own data races), runs the tests and
// removes the build. SWITCHBOARD_BIN names a prebuilt binary to use
// instead. A failed build does not stop the run: every test that asks
// Binary for the server fails with the build's error.
//
//	func TestMain(m *testing.M) { os.Exit(testbed.Main(m)) }
func Main(m *testing.M) int {
	if bin := os.Getenv("SWITCHBOARD_BIN"); bin != "" {
		serverBin = bin
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "switchboard-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	serverBin, serverBuildErr = BuildServer(ctx, dir, RaceEnabled())
	if serverBuildErr != nil {
		fmt.Fprintf(os.Stderr, "testbed: building the switchboard binary failed: %v\n", serverBuildErr)
	}
	return m.Run()
}

// Binary returns the switchboard binary Main built (or SWITCHBOARD_BIN),
// failing the test if it did not build.
func Binary(t testing.TB) string {
	t.Helper()
	if serverBuildErr != nil {
		t.Fatalf("switchboard binary: %v", serverBuildErr)
	}
	if serverBin == "" {
		t.Fatal("switchboard binary: not built (the package's TestMain must call testbed.Main)")
	}
	return serverBin
}
