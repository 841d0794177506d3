package main

import (
	"log/slog"
	"syscall"
)

// raiseFDLimit raises the soft limit on open files (RLIMIT_NOFILE) to the
// hard limit and logs the limit the switch runs with: every accepted SIP
// connection, media socket and TURN allocation takes a descriptor, and the
// default cap on SIP connections (sip.connections.max: 0) is derived from
// it. Go already raises the soft limit when a program starts (Go 1.19+, on
// Linux), so normally there is nothing to raise and this only logs.
func raiseFDLimit(log *slog.Logger) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		log.Warn("file descriptor limit unknown", "error", err)
		return
	}
	if rl.Cur < rl.Max {
		was := rl.Cur
		rl.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			log.Warn("file descriptor limit not raised", "soft", was, "hard", rl.Max, "error", err)
			return
		}
		log.Info("file descriptor limit raised", "from", was, "to", rl.Cur)
		return
	}
	log.Info("file descriptor limit", "limit", rl.Cur)
}
