package sip

import (
	"strconv"
	"testing"
)

func TestStreamSplitter(t *testing.T) {
	msg := func(body string) string {
		return "MESSAGE sip:a@b SIP/2.0\r\nCall-ID: x\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	}
	one, two := msg("hello"), msg("")
	stream := "\r\n\r\n" + one + two + one
	p := &streamSplitter{partial: map[string][]byte{}}
	var got []string
	// Every way of cutting the stream in two reads gives the same messages.
	for cut := 0; cut <= len(stream); cut++ {
		got = got[:0]
		emit := func(b []byte) { got = append(got, string(b)) }
		p.split("l", "r", []byte(stream[:cut]), emit)
		p.split("l", "r", []byte(stream[cut:]), emit)
		if len(got) != 3 || got[0] != one || got[1] != two || got[2] != one {
			t.Fatalf("cut at %d: %q", cut, got)
		}
		if len(p.partial) != 0 {
			t.Fatalf("cut at %d: a partial message is left: %q", cut, p.partial)
		}
	}
}

// BenchmarkTraceWire is what every message costs the switch when an
// observer is set: finding its listener, and the observer (here a no-op).
func BenchmarkTraceWire(b *testing.B) {
	s := &Server{}
	s.cfg.Observer = func(*Message) {}
	updateObserved(func(l []observedIface) []observedIface {
		return append(l, observedIface{sipgo: "UDP", port: 5060, transport: "udp", obs: s.cfg.Observer, owner: s})
	})
	defer s.unobserve()
	data := []byte("REGISTER sip:switchboard.local SIP/2.0\r\nCall-ID: abc\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n")
	for b.Loop() {
		traceWire(false, "UDP", "127.0.0.1:5060", "127.0.0.1:40000", data)
	}
}
