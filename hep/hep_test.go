package hep

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/switchboard/switchboard/sip"
)

func TestEncodeDecode(t *testing.T) {
	for _, p := range []Packet{
		{Src: netip.MustParseAddrPort("127.0.0.1:5060"), Dst: netip.MustParseAddrPort("10.1.2.3:5070"), Proto: ProtoUDP},
		{Src: netip.MustParseAddrPort("[::1]:5060"), Dst: netip.MustParseAddrPort("[2001:db8::1]:5070"), Proto: ProtoTCP, AuthKey: "secret"},
	} {
		p.Time = time.Unix(1700000000, 123456000)
		p.CaptureID = 2001
		p.CorrID = "abc@host"
		p.Payload = []byte("OPTIONS sip:a@b SIP/2.0\r\nCall-ID: abc@host\r\n\r\n")
		b := Append(nil, &p)
		if string(b[:4]) != "HEP3" || int(b[4])<<8|int(b[5]) != len(b) {
			t.Fatalf("header %q, length %d", b[:6], len(b))
		}
		got, err := Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		if got.Src != p.Src || got.Dst != p.Dst || got.Proto != p.Proto || !got.Time.Equal(p.Time) ||
			got.CaptureID != 2001 || got.AuthKey != p.AuthKey || got.CorrID != p.CorrID || !bytes.Equal(got.Payload, p.Payload) {
			t.Fatalf("decoded %+v\nwant %+v", got, p)
		}
	}
	if _, err := Decode([]byte("HEP3\x00\x07x")); err == nil {
		t.Fatal("a truncated packet decoded")
	}
}

func TestSender(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	s, err := New(Config{Address: "udp://" + pc.LocalAddr().String(), ID: 7, Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(context.Background()) }()
	defer func() {
		s.Shutdown(context.Background())
		<-done
	}()
	data := []byte("INVITE sip:bob@x SIP/2.0\r\ni: call-1\r\n\r\n")
	s.Observe(sip.NewMessage(time.Now(), true, "udp",
		netip.MustParseAddrPort("127.0.0.1:5060"), netip.MustParseAddrPort("127.0.0.2:5070"), data))
	buf := make([]byte, 65535)
	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err := pc.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Decode(buf[:n])
	if err != nil {
		t.Fatal(err)
	}
	if p.Src.String() != "127.0.0.1:5060" || p.Dst.String() != "127.0.0.2:5070" || p.CaptureID != 7 || p.AuthKey != "pw" ||
		p.CorrID != "call-1" || !bytes.Equal(p.Payload, data) || p.Proto != ProtoUDP {
		t.Fatalf("got %+v", p)
	}
	if _, err := New(Config{Address: "http://x:1"}); err == nil {
		t.Fatal("a bad address was accepted")
	}
}
