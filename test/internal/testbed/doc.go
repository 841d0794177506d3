// Package testbed is the rig every interop suite (test/interop, test/nat,
// test/browser, test/hostile) drives the real switchboard binary with:
//
//   - Main and Binary: ./cmd/switchboard built once per test binary, with
//     the race detector when the tests run with -race (or $SWITCHBOARD_BIN);
//   - StartServer: `switchboard serve` on a generated config (keys it does
//     not set keep the shipped defaults) with a throw-away database, on
//     ephemeral or given addresses, optionally in a network namespace, with
//     Signal, WaitExit, Restart, the CLI and the call records;
//   - StartBaresip: baresip driven over ctrl_tcp, also inside a namespace;
//     StartSIPp and RunSIPp: SIPp scenarios;
//   - MakeTone, ReadWAV and MeasureTone: audio checks;
//   - NewNetns, InNetns, DialIn, NewNATNet and Capture: network namespaces,
//     NAT routers and packet captures (Linux, root);
//   - StartChromium: headless Chromium under a playwright driver script;
//   - Eventually (and Poll for waits that are not a test's check),
//     StartProcess, FreePort, RequireTool, ParseLogfmt and ParseTable.
//
// A tool a test needs that is missing skips the test, or fails it when
// CI=true (test/install.sh installs them all). Like the suites, this package
// imports nothing from the switch: it only knows the binary's command line,
// its config file and its log lines. It is internal to test/: bench/ reuses
// only test/hostile's attack.go.
package testbed
