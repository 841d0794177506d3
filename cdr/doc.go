// Package cdr stores call detail records: one row per call with its parties,
// times, final status, who hung up and, when media was relayed, per-leg media
// statistics.
//
// The proxy reports call events through the small Recorder methods; writes are
// batched off the request path. cdr imports nothing of the switch's other
// packages.
package cdr
