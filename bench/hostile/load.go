package main

import (
	"context"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/switchboard/switchboard/test/hostile"
)

// source is one attacker socket; its reader notes the first final status
// per Call-ID of what the switch answers.
type source struct {
	pc    net.PacketConn
	local string
	mu    sync.Mutex
	final map[string]int
	done  chan struct{}
}

func openSources(first, n int) ([]*source, error) {
	var out []*source
	for i := range n {
		pc, err := net.ListenPacket("udp", net.JoinHostPort(localIP4(first+i).String(), "0"))
		if err != nil {
			closeSources(out)
			return nil, err
		}
		s := &source{pc: pc, local: pc.LocalAddr().String(), final: map[string]int{}, done: make(chan struct{})}
		go s.read()
		out = append(out, s)
	}
	return out, nil
}

func closeSources(srcs []*source) {
	for _, s := range srcs {
		s.pc.Close()
		<-s.done
	}
}

func (s *source) read() {
	defer close(s.done)
	buf := make([]byte, 65536)
	for {
		n, _, err := s.pc.ReadFrom(buf)
		if err != nil {
			return
		}
		text := string(buf[:n])
		line, _, _ := strings.Cut(text, "\r\n")
		code, ok := strings.CutPrefix(line, "SIP/2.0 ")
		if !ok || len(code) < 3 {
			continue
		}
		c, err := strconv.Atoi(code[:3])
		if err != nil || c < 200 {
			continue
		}
		id := callID(text)
		s.mu.Lock()
		if _, seen := s.final[id]; !seen {
			s.final[id] = c
		}
		s.mu.Unlock()
	}
}

// callID returns the Call-ID of SIP text, or "".
func callID(text string) string { return hostile.HeaderValue(text, "Call-ID", "i") }

// answers counts the first final statuses over sources, per Call-ID (each
// INVITE or datagram answered counts once).
func answers(srcs []*source) map[int]int {
	out := map[int]int{}
	for _, s := range srcs {
		s.mu.Lock()
		for _, c := range s.final {
			out[c]++
		}
		s.mu.Unlock()
	}
	return out
}

// blast sends c.n datagrams at c.rate round-robin over srcs and returns how
// many it sent; it stops early when ctx ends.
func blast(ctx context.Context, c config, srcs []*source) int {
	dst, err := net.ResolveUDPAddr("udp", c.server)
	if err != nil {
		return 0
	}
	mut := hostile.NewMutator(c.seed, c.domain, c.alice.user)
	run := randHex(3)
	to := "sip:" + c.bob.user + "@" + c.domain
	start := time.Now()
	sent := 0
	for i := 0; i < c.n && ctx.Err() == nil; i++ {
		if d := time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(c.rate))); d > 0 {
			time.Sleep(d)
		}
		s := srcs[i%len(srcs)]
		var b []byte
		if c.scenario == "flood" {
			b = hostile.StrangerInvite(run, i, to, s.local)
		} else {
			b = mut.Next(s.local)
		}
		if _, err := s.pc.WriteTo(b, dst); err == nil {
			sent++
		}
	}
	return sent
}
