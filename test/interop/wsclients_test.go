package interop

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/test/internal/testbed"
)

// TestWebSocketClientsRegister: JsSIP 3.13 and SIP.js 0.21 — the SIP stacks
// of most browser softphones — register over ws://…/sip on the shipped digest
// defaults. Both keep only the last WWW-Authenticate of a 401 and give up
// unless it is MD5, so this fails when the switch offers [MD5, SHA-256] to
// them (as it did by default before). The libraries run in Node with the ws
// package as their WebSocket: the digest and SIP code is the same as in a
// browser (their calls in Chromium belong to the WebRTC relay's tests).
func TestWebSocketClientsRegister(t *testing.T) {
	node := testbed.RequireTool(t, "node")
	dir, err := filepath.Abs("wsclients")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "jssip")); err != nil {
		t.Fatalf("JsSIP is not installed in %s (test/install.sh runs npm ci there): %v", dir, err)
	}
	srv := testbed.StartServer(t, testbed.Binary(t), testbed.ServerConfig{})
	addUsers(t, srv, []testbed.Cred{{User: "alice", Password: "alice-ws-pw"}})
	url := "ws://" + srv.Addr(t, "http") + "/sip"

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "register.mjs", url, "alice", "alice-ws-pw", srv.Domain)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node register.mjs: %v\n%s", err, out)
	}
	got := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		var r struct {
			Lib    string `json:"lib"`
			OK     bool   `json:"ok"`
			Detail string `json:"detail"`
		}
		if json.Unmarshal([]byte(line), &r) != nil || r.Lib == "" {
			continue
		}
		got[r.Lib] = r.OK
		if !r.OK {
			t.Errorf("%s did not register: %s", r.Lib, r.Detail)
		}
	}
	for _, lib := range []string{"jssip", "sip.js"} {
		if _, ok := got[lib]; !ok {
			t.Errorf("%s: no result\n%s", lib, out)
		}
	}
	// And the wrong password is refused, for both (the 401 is final).
	cmd = exec.CommandContext(ctx, node, "register.mjs", url, "alice", "wrong", srv.Domain)
	cmd.Dir = dir
	out, _ = cmd.CombinedOutput()
	if strings.Contains(string(out), `"ok":true`) {
		t.Errorf("a wrong password registered:\n%s", out)
	}
}
