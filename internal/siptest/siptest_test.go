package siptest

import (
	"strings"
	"testing"

	"github.com/icholy/digest"
)

func TestMsg(t *testing.T) {
	m := &Msg{Start: "INVITE sip:bob@example.com SIP/2.0"}
	m.Add("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKabc;rport")
	m.Add("Contact", "<sip:a@1.2.3.4>").Add("Contact", "<sip:b@1.2.3.4>")
	m.Add("CSeq", "7 INVITE")
	m.Set("Contact", "<sip:c@1.2.3.4>")
	m.Body = "hello"
	if got := m.Values("Contact"); len(got) != 1 || got[0] != "<sip:c@1.2.3.4>" {
		t.Errorf("Set kept %q", got)
	}
	if m.Branch() != "z9hG4bKabc" || m.CSeq() != 7 || m.Method() != "INVITE" || m.RequestURI() != "sip:bob@example.com" {
		t.Errorf("branch %q cseq %d method %q uri %q", m.Branch(), m.CSeq(), m.Method(), m.RequestURI())
	}
	s := m.String()
	if !strings.HasSuffix(s, "Content-Length: 5\r\n\r\nhello") {
		t.Errorf("rendered:\n%s", s)
	}
	if _, err := Parse(s); err != nil {
		t.Errorf("rendered message does not parse: %v", err)
	}
	if Param(`<sip:a@b;lr>;tag=x;expires="60"`, "expires") != "60" || Param(`<sip:a@b;lr>;tag=x`, "lr") != "" {
		t.Errorf("Param")
	}
}

// TestDigestValue checks the digest against RFC 2617 §3.5's example.
func TestDigestValue(t *testing.T) {
	chal := `Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"`
	v, err := DigestValue(chal, "GET", "/dir/index.html", Credentials{User: "Mufasa", Password: "Circle Of Life", Cnonce: "0a4f113b"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := digest.ParseCredentials(v)
	if err != nil {
		t.Fatal(err)
	}
	if c.Response != "6629fae49393a05397450978507c4ef1" || c.Nc != 1 || c.QOP != "auth" {
		t.Errorf("credentials %+v", c)
	}
}
