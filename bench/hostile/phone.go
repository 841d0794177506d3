package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gosip "github.com/emiago/sipgo/sip"

	"github.com/switchboard/switchboard/internal/siptest"
	"github.com/switchboard/switchboard/test/hostile"
)

// phone is a UDP user agent on 127.0.0.1 that registers with digest
// authentication (MD5) and answers what the switch sends it: 486 to an
// INVITE, 200 to anything else but ACK. It counts the requests that come
// from the stranger.
type phone struct {
	pc     net.PacketConn
	server *net.UDPAddr
	domain string
	cred   cred
	callID string
	cseq   int

	mu      sync.Mutex
	waiters map[string]chan *gosip.Response // top Via branch -> waiter
	fromBad atomic.Int64
	done    chan struct{}
}

func newPhone(server, domain string, c cred) (*phone, error) {
	ua, err := net.ResolveUDPAddr("udp", server)
	if err != nil {
		return nil, err
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &phone{pc: pc, server: ua, domain: domain, cred: c, callID: randHex(8) + "@bench",
		waiters: map[string]chan *gosip.Response{}, done: make(chan struct{})}
	go p.read()
	return p, nil
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func (p *phone) close() {
	p.pc.Close()
	<-p.done
}

// strangers returns how many requests from the stranger reached the phone.
func (p *phone) strangers() int { return int(p.fromBad.Load()) }

func (p *phone) read() {
	defer close(p.done)
	parser := gosip.NewParser()
	buf := make([]byte, 65536)
	for {
		n, from, err := p.pc.ReadFrom(buf)
		if err != nil {
			return
		}
		msg, err := parser.ParseSIP(append([]byte(nil), buf[:n]...))
		if err != nil {
			continue
		}
		switch m := msg.(type) {
		case *gosip.Response:
			br := ""
			if v := m.Via(); v != nil {
				br, _ = v.Params.Get("branch")
			}
			p.mu.Lock()
			ch := p.waiters[br]
			p.mu.Unlock()
			if ch != nil {
				select {
				case ch <- m:
				default:
				}
			}
		case *gosip.Request:
			if f := m.From(); f != nil && strings.Contains(f.Address.Host, hostile.Stranger) {
				p.fromBad.Add(1)
			}
			if m.IsAck() {
				continue
			}
			m.SetSource(from.String())
			code, reason := 200, "OK"
			if m.IsInvite() {
				code, reason = 486, "Busy Here"
			}
			res := gosip.NewResponseFromRequest(m, code, reason, nil)
			if to := res.To(); to != nil && !to.Params.Has("tag") {
				to.Params.Add("tag", randHex(4))
			}
			p.pc.WriteTo([]byte(res.String()), from)
		}
	}
}

// register sends a REGISTER (Expires 3600), answers a 401 with MD5
// credentials, and returns the final status (0: no answer in time).
func (p *phone) register() int {
	res, err := p.transact(p.registerMsg())
	if err != nil {
		return 0
	}
	if res.StatusCode == 401 {
		m := p.registerMsg()
		chal := siptest.Challenge(res, "MD5")
		if chal == "" {
			return res.StatusCode
		}
		v, err := siptest.DigestValue(chal, "REGISTER", "sip:"+p.domain, siptest.Credentials{User: p.cred.user, Password: p.cred.password})
		if err != nil {
			return res.StatusCode
		}
		m.Add("Authorization", v)
		if res, err = p.transact(m); err != nil {
			return 0
		}
	}
	return res.StatusCode
}

func (p *phone) registerMsg() *siptest.Msg {
	p.cseq++
	local := p.pc.LocalAddr().String()
	aor := "sip:" + p.cred.user + "@" + p.domain
	m := &siptest.Msg{Start: "REGISTER sip:" + p.domain + " SIP/2.0"}
	m.Add("Via", "SIP/2.0/UDP "+local+";branch="+siptest.NewBranch()+";rport")
	m.Add("Max-Forwards", "70")
	m.Add("From", "<"+aor+">;tag="+p.callID[:6])
	m.Add("To", "<"+aor+">")
	m.Add("Call-ID", p.callID)
	m.Add("CSeq", fmt.Sprintf("%d REGISTER", p.cseq))
	m.Add("Contact", "<sip:"+p.cred.user+"@"+local+">")
	m.Add("Expires", "3600")
	m.Add("User-Agent", "bench-hostile legitimate")
	return m
}

var errNoAnswer = errors.New("no final response within 4s")

// transact sends m and waits for its final response, retransmitting at
// 500 ms, 1 s, 2 s (RFC 3261 §17.1.2.2 Timer E) for at most 4 s.
func (p *phone) transact(m *siptest.Msg) (*gosip.Response, error) {
	br := siptest.Param(m.Get("Via"), "branch")
	ch := make(chan *gosip.Response, 8)
	p.mu.Lock()
	p.waiters[br] = ch
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.waiters, br)
		p.mu.Unlock()
	}()
	text := []byte(m.String())
	deadline := time.Now().Add(4 * time.Second)
	interval := 500 * time.Millisecond
	for {
		if _, err := p.pc.WriteTo(text, p.server); err != nil {
			return nil, err
		}
		timer := time.NewTimer(min(interval, time.Until(deadline)))
	wait:
		for {
			select {
			case res := <-ch:
				if res.StatusCode >= 200 {
					timer.Stop()
					return res, nil
				}
			case <-timer.C:
				break wait
			}
		}
		if !time.Now().Before(deadline) {
			return nil, errNoAnswer
		}
		interval *= 2
	}
}

// legit registers a phone every interval and counts the outcomes, "during"
// until mark and "after" it.
type legit struct {
	p     *phone
	every time.Duration
	quit  chan struct{}
	done  chan struct{}

	mu                  sync.Mutex
	after               bool
	ok, all             int
	okDuring, allDuring int
	failures            []string
}

func newLegit(p *phone, every time.Duration) *legit {
	return &legit{p: p, every: every, quit: make(chan struct{}), done: make(chan struct{})}
}

func (l *legit) run(ctx interface{ Done() <-chan struct{} }) {
	defer close(l.done)
	next := time.Now()
	for {
		select {
		case <-l.quit:
			return
		case <-ctx.Done():
			return
		case <-time.After(time.Until(next)):
		}
		next = next.Add(l.every)
		if d := time.Since(next); d > l.every {
			next = time.Now() // a slow registration: do not burst to catch up
		}
		t0 := time.Now()
		code := l.p.register()
		l.mu.Lock()
		l.all++
		if !l.after {
			l.allDuring++
		}
		if code == 200 {
			l.ok++
			if !l.after {
				l.okDuring++
			}
		} else if len(l.failures) < 100 {
			l.failures = append(l.failures, fmt.Sprintf("at %s: status %d after %s", t0.Format("15:04:05.000"), code, time.Since(t0).Round(time.Millisecond)))
		}
		l.mu.Unlock()
	}
}

// mark starts the "after" count.
func (l *legit) mark() {
	l.mu.Lock()
	l.after = true
	l.mu.Unlock()
}

func (l *legit) stop() {
	select {
	case <-l.quit:
	default:
		close(l.quit)
	}
	<-l.done
}

func (l *legit) counts() (ok, all int, during [2]int, failures []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ok, l.all, [2]int{l.okDuring, l.allDuring}, append([]string(nil), l.failures...)
}
