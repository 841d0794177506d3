package main

import (
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// runtimeConfig is the runtime section: how Go's garbage collector trades
// memory for CPU.
type runtimeConfig struct {
	// GCPercent is GOGC: how far the heap may grow past what was live at
	// the last collection before the next one, in percent.
	GCPercent int `yaml:"gc_percent"`
	// MemoryLimit is GOMEMLIMIT: a soft limit on the memory the Go
	// runtime uses, as bytes or with a unit (512MiB, 2GiB); "0": none.
	MemoryLimit string `yaml:"memory_limit"`
}

// check validates the section.
func (r runtimeConfig) check() error {
	if r.GCPercent < 10 || r.GCPercent > 10000 {
		return fmt.Errorf("runtime.gc_percent: %d is not between 10 and 10000", r.GCPercent)
	}
	if _, err := parseBytes(r.MemoryLimit); err != nil {
		return fmt.Errorf("runtime.memory_limit: %w", err)
	}
	return nil
}

// applyRuntime sets the collector's target and memory limit, unless the
// GOGC or GOMEMLIMIT environment variable already set it (the runtime has
// read them at start; an operator's habit with any Go service wins over
// the file).
func applyRuntime(r runtimeConfig, log *slog.Logger) {
	gc, limit := os.Getenv("GOGC"), os.Getenv("GOMEMLIMIT")
	if gc == "" {
		debug.SetGCPercent(r.GCPercent)
		gc = strconv.Itoa(r.GCPercent)
	}
	if limit == "" {
		if n, _ := parseBytes(r.MemoryLimit); n > 0 {
			debug.SetMemoryLimit(n)
			limit = r.MemoryLimit
		} else {
			limit = "none"
		}
	}
	log.Debug("garbage collector", "gc_percent", gc, "memory_limit", limit)
}

// parseBytes reads a size: a number of bytes, or a number with one of
// the units KiB, MiB, GiB (1024-based) or KB, MB, GB (1000-based). Empty
// and "0" are 0 (no limit).
func parseBytes(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "0" {
		return 0, nil
	}
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = strings.TrimSpace(num), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is not a size (bytes, or a number with KiB, MiB, GiB, KB, MB or GB)", s)
	}
	return n * mult, nil
}
