package hostile

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/switchboard/switchboard/test/interop"
)

// The switchboard binary, built once in TestMain for every test that needs
// it (with the race detector when the tests run with -race). SWITCHBOARD_BIN
// names a prebuilt binary to use instead.
var (
	serverBin      string
	serverBuildErr error
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if bin := os.Getenv("SWITCHBOARD_BIN"); bin != "" {
		serverBin = bin
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "switchboard-hostile-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	serverBin, serverBuildErr = interop.BuildServer(ctx, dir, interop.RaceEnabled())
	if serverBuildErr != nil {
		fmt.Fprintf(os.Stderr, "hostile: building the switchboard binary failed: %v\n", serverBuildErr)
	}
	return m.Run()
}

// serverBinary returns the switchboard binary, failing the test if it did not build.
func serverBinary(t testing.TB) string {
	t.Helper()
	if serverBuildErr != nil {
		t.Fatalf("switchboard binary: %v", serverBuildErr)
	}
	return serverBin
}
