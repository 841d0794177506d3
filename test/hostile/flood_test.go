package hostile

import (
	"context"
	"net"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	gosip "github.com/emiago/sipgo/sip"

	"github.com/switchboard/switchboard/internal/siptest"
	"github.com/switchboard/switchboard/test/internal/testbed"
)

// Flood size in the test; bench/hostile runs the full-size floods.
const (
	floodRate     = 2000 // INVITEs per second
	floodDuration = 2 * time.Second
)

// TestFloodInvitesFromStrangers floods the switch with INVITEs from a
// foreign From (sip:x@198.51.100.9) to a registered local user, from one
// source address and from 50 rotating ones (under any per-source limit).
// With the shipped security.external_callers: false the switch must refuse
// them (403), never ring the user, write no call record for them and take no
// media ports, while legitimate REGISTERs and an authenticated call between
// two local users from 127.0.0.1 succeed during the flood and right after.
func TestFloodInvitesFromStrangers(t *testing.T) {
	for _, tc := range []struct {
		name    string
		sources int
	}{
		{"one-source", 1},
		{"50-sources", 50},
	} {
		t.Run(tc.name, func(t *testing.T) { floodInvites(t, tc.sources) })
	}
}

func floodInvites(t *testing.T, sources int) {
	v := startVictim(t, "")
	bob := v.registered("bob")
	alice := v.registered("alice")
	lo, hi := v.rtpRange()
	srcs := newUDPSources(t, 100, sources)

	run := siptest.Rand(3)
	n := floodRate * int(floodDuration/time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), floodDuration+10*time.Second)
	var wg sync.WaitGroup
	defer wg.Wait() // after cancel: the flood ends with the test
	defer cancel()
	sent := make(chan int, 1)
	start := time.Now()
	wg.Add(1)
	go func() {
		defer wg.Done()
		sent <- blast(ctx, srcs, v.udp, n, floodRate, func(i int, local net.Addr) []byte {
			return StrangerInvite(run, i, "sip:bob@switchboard.local", local.String())
		})
	}()

	// During the flood: REGISTERs every 100 ms and one call.
	regs, regOK := 0, 0
	var during *call
	var total int
	for done := false; !done; {
		select {
		case total = <-sent:
			done = true
			continue
		default:
		}
		regs++
		if code := tryRegister(alice); code == 200 {
			regOK++
		} else {
			t.Errorf("alice's REGISTER %d during the flood (%.1fs in): got %d, want 200", regs, time.Since(start).Seconds(), code)
		}
		if during == nil && time.Since(start) > floodDuration/3 {
			during = placeCall(t, alice, bob)
			during.hangUp(t)
		}
		time.Sleep(100 * time.Millisecond)
	}
	floodTime := time.Since(start)
	if during == nil {
		t.Errorf("the flood ended (%s) before the call during it was placed", floodTime.Round(time.Millisecond))
	}

	// Right after: a REGISTER and a call that gets relayed media.
	if code := tryRegister(alice); code != 200 {
		t.Errorf("alice's REGISTER right after the flood: got %d, want 200", code)
	}
	after := placeCall(t, alice, bob)
	if p := mediaPort(after.relayedSDP); p < lo || p > hi {
		t.Errorf("the call after the flood reached bob with media port %d, want a relay port in %d-%d:\n%s", p, lo, hi, after.relayedSDP)
	}
	if p := mediaPort(after.answerSDP); p < lo || p > hi {
		t.Errorf("the call after the flood answered alice with media port %d, want a relay port in %d-%d:\n%s", p, lo, hi, after.answerSDP)
	}
	after.hangUp(t)

	// Give the switch's last answers a moment to arrive, then count.
	time.Sleep(500 * time.Millisecond)
	byCode := responses(srcs)
	fin := finals(srcs)
	refused := 0
	other := map[int]int{}
	for _, c := range fin {
		if c == 403 {
			refused++
		} else {
			other[c]++
		}
	}
	t.Logf("%d INVITEs sent in %s from %d source(s); responses by status (with retransmissions): %v; first final per INVITE: 403 x%d, others %v; %d of %d REGISTERs ok",
		total, floodTime.Round(time.Millisecond), sources, byCode, refused, other, regOK, regs)
	if total < n*9/10 {
		t.Errorf("only %d of %d flood INVITEs could be sent", total, n)
	}
	for code, k := range byCode {
		if code > 100 && code < 300 {
			t.Errorf("strangers' INVITEs got %d responses %d (want 403 only)", k, code)
		}
	}
	if len(other) > 0 {
		t.Errorf("strangers' INVITEs got final answers other than 403: %v", other)
	}
	if refused == 0 {
		t.Errorf("no flood INVITE was answered 403")
	}
	if sources > 1 && refused < total*95/100 {
		t.Errorf("%d of %d INVITEs from %d sources (%d/s each, under any per-source limit) were answered 403, want at least 95%%",
			refused, total, sources, floodRate/sources)
	}
	rung := 0
	for _, m := range bob.Drain() {
		if r, ok := m.(*gosip.Request); ok && strings.Contains(r.From().Address.Host, Stranger) {
			rung++
		}
	}
	if rung > 0 {
		t.Errorf("bob received %d requests from the strangers", rung)
	}

	// Call records: the two calls, none for the flood.
	rows := v.waitCDR(after.caller.CallID, "ended", func(r testbed.CDR) bool { return r["ended"] != "-" })
	if bad := cdrsWith(rows, "flood-", Stranger); len(bad) > 0 {
		sort.Slice(bad, func(i, j int) bool { return bad[i]["call-id"] < bad[j]["call-id"] })
		t.Errorf("%d call records written for the strangers' INVITEs (want 0), e.g. %v", len(bad), bad[0])
	}
}
