//go:build linux

package testbed

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// RequireChromium returns node's path once everything a playwright driver
// script in dir needs is there: node, Chromium ($CHROMIUM or
// /usr/bin/chromium) and playwright-core in dir/node_modules (npm ci). When
// something is missing the test is skipped, or fails when CI=true.
func RequireChromium(t testing.TB, dir string) string {
	t.Helper()
	node := RequireTool(t, "node")
	chromium := os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	missing := func(what string) {
		t.Helper()
		if InCI() {
			t.Fatalf("%s (CI=true): run test/install.sh", what)
		}
		t.Skip(what + ": run test/install.sh")
	}
	if _, err := os.Stat(chromium); err != nil {
		missing("chromium is not installed")
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "playwright-core", "package.json")); err != nil {
		missing("playwright-core is not installed in " + dir + " (npm ci)")
	}
	return node
}

// Chromium is a node script driving headless Chromium with playwright-core,
// one JSON request per line on its stdin ({id, op, ...args}), one JSON reply
// per line on its stdout ({id, ok, result} or {id, ok: false, error}),
// diagnostics on stderr.
type Chromium struct {
	// T is the test that Must fails; a subtest sets it to itself.
	T testing.TB

	proc  *exec.Cmd
	in    io.WriteCloser
	out   *bufio.Reader
	log   *syncBuffer
	seq   int
	mu    sync.Mutex
	ended chan struct{}
}

// StartChromium runs `node SCRIPT` in dir, inside ns (InNetns). When the
// test ends its stdin is closed (the script closes its browsers and exits),
// and after 15 s its process group is killed; on failure its stderr is
// logged.
func StartChromium(t testing.TB, ns, node, dir, script string) *Chromium {
	t.Helper()
	cmd := InNetns(ns, node, filepath.Join(dir, script))
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	d := &Chromium{T: t, proc: cmd, log: &syncBuffer{}, ended: make(chan struct{})}
	cmd.Stderr = d.log
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	d.in, d.out = in, bufio.NewReaderSize(out, 1<<20)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = cmd.Wait()
		close(d.ended)
	}()
	t.Cleanup(func() {
		d.in.Close() // the driver closes its browsers and exits
		select {
		case <-d.ended:
		case <-time.After(15 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-d.ended
		}
		if t.Failed() {
			t.Logf("driver log:\n%s", Tail(d.log.String(), 150))
		}
	})
	return d
}

// Do runs one driver operation and returns its result, waiting at most 60 s.
func (d *Chromium) Do(op string, args map[string]any) (json.RawMessage, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.seq++
	req := map[string]any{"id": d.seq, "op": op}
	for k, v := range args {
		req[k] = v
	}
	b, _ := json.Marshal(req)
	if _, err := d.in.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("driver: %w", err)
	}
	type resp struct {
		ID     int             `json:"id"`
		OK     bool            `json:"ok"`
		Result json.RawMessage `json:"result"`
		Error  string          `json:"error"`
	}
	ch := make(chan resp, 1)
	errc := make(chan error, 1)
	go func() {
		line, err := d.out.ReadBytes('\n')
		if err != nil {
			errc <- err
			return
		}
		var r resp
		if err := json.Unmarshal(line, &r); err != nil {
			errc <- fmt.Errorf("driver reply %q: %w", line, err)
			return
		}
		ch <- r
	}()
	select {
	case r := <-ch:
		if !r.OK {
			return nil, errors.New(r.Error)
		}
		return r.Result, nil
	case err := <-errc:
		return nil, fmt.Errorf("driver %s: %w", op, err)
	case <-time.After(60 * time.Second):
		return nil, fmt.Errorf("driver %s: no reply within 60s", op)
	}
}

// Must runs an operation or fails d.T.
func (d *Chromium) Must(op string, args map[string]any) json.RawMessage {
	d.T.Helper()
	r, err := d.Do(op, args)
	if err != nil {
		d.T.Fatalf("%s %v: %v", op, args, err)
	}
	return r
}
