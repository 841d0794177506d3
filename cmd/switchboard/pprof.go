//go:build pprof

package main

// Built with -tags pprof (benchmarks only; never in a release), the binary
// serves net/http/pprof on the loopback address SWITCHBOARD_PPROF names
// (default 127.0.0.1:6060), for the heap and goroutine profiles that
// perf(1) cannot give.

import (
	"log/slog"
	"net/http"
	_ "net/http/pprof" // registers /debug/pprof on http.DefaultServeMux
	"os"
)

func init() {
	addr := os.Getenv("SWITCHBOARD_PPROF")
	if addr == "" {
		addr = "127.0.0.1:6060"
	}
	go func() {
		// Lives as long as the process: a profiling build's own listener.
		if err := http.ListenAndServe(addr, nil); err != nil {
			slog.Error("pprof listener", "error", err)
		}
	}()
}
