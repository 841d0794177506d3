package siphdr

import (
	"hash/maphash"
	"strings"
	"testing"

	gosip "github.com/emiago/sipgo/sip"
)

// A request and its retransmission have one id; a change in Call-ID, From
// tag, CSeq number, method or top branch gives another, as does another
// seed.
func TestRequestID(t *testing.T) {
	seed := maphash.MakeSeed()
	id := func(text string, method gosip.RequestMethod) uint64 {
		m, err := gosip.NewParser().ParseSIP([]byte(text))
		if err != nil {
			t.Fatal(err)
		}
		return RequestID(seed, m.(*gosip.Request), method)
	}
	base := id(register, gosip.REGISTER)
	if id(register, gosip.REGISTER) != base {
		t.Fatal("a retransmission got another id")
	}
	for _, c := range []struct{ old, new string }{
		{"Call-ID: c1", "Call-ID: c2"},
		{"tag=1", "tag=2"},
		{"CSeq: 1 REGISTER", "CSeq: 2 REGISTER"},
		{"branch=z9hG4bK1", "branch=z9hG4bK9"},
	} {
		if id(strings.Replace(register, c.old, c.new, 1), gosip.REGISTER) == base {
			t.Errorf("%q -> %q: same id", c.old, c.new)
		}
	}
	if id(register, gosip.INVITE) == base {
		t.Error("another method: same id")
	}
	if id(register, "") != base {
		t.Error(`method "" is not the CSeq's`)
	}
	if RequestID(maphash.MakeSeed(), parse(t), gosip.REGISTER) == base {
		t.Error("another seed: same id")
	}
	// The second Via's branch is not the top one: it does not count.
	if id(strings.Replace(register, "branch=z9hG4bK2", "branch=z9hG4bK7", 1), gosip.REGISTER) != base {
		t.Error("a lower Via changed the id")
	}
}
