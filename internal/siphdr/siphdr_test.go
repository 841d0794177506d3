package siphdr

import (
	"testing"

	gosip "github.com/emiago/sipgo/sip"
)

const register = "REGISTER sip:example.com SIP/2.0\r\n" +
	"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1\r\n" +
	"via: SIP/2.0/UDP 192.0.2.2:5060;branch=z9hG4bK2\r\n" +
	"From: <sip:alice@example.com>;tag=1\r\nTo: <sip:alice@example.com>\r\n" +
	"Call-ID: c1\r\nCSeq: 1 REGISTER\r\nContact: <sip:alice@192.0.2.1>\r\n" +
	"EXPIRES: 600\r\nUser-Agent: test\r\nsupported: path\r\nSupported: outbound\r\nContent-Length: 0\r\n\r\n"

func parse(t testing.TB) *gosip.Request {
	m, err := gosip.NewParser().ParseSIP([]byte(register))
	if err != nil {
		t.Fatal(err)
	}
	return m.(*gosip.Request)
}

// Every lookup agrees with sipgo's, whatever the case of the name.
func TestAgreesWithSipgo(t *testing.T) {
	req := parse(t)
	for _, name := range []string{"Via", "VIA", "expires", "Expires", "user-agent", "Supported", "Authorization", "Contact", "call-id"} {
		want := req.GetHeaders(name)
		got := All(req, name)
		if len(got) != len(want) || Count(req, name) != len(want) {
			t.Fatalf("%s: %d headers, want %d", name, len(got), len(want))
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("%s #%d: %v, want %v", name, i, got[i], want[i])
			}
		}
		if g, w := Get(req, name), req.GetHeader(name); g != w {
			t.Fatalf("Get(%s) = %v, want %v", name, g, w)
		}
	}
	if Get(req, "Authorization") != nil || All(req, "Authorization") != nil {
		t.Fatal("found a header the message does not have")
	}
}

func TestNoAllocations(t *testing.T) {
	req := parse(t)
	if n := testing.AllocsPerRun(100, func() { _ = Get(req, "Authorization"); _ = Count(req, "Via") }); n != 0 {
		t.Fatalf("%v allocations", n)
	}
}

func BenchmarkGet(b *testing.B) {
	req := parse(b)
	b.Run("siphdr", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = Get(req, "Authorization")
		}
	})
	b.Run("sipgo", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = req.GetHeader("Authorization")
		}
	})
}
