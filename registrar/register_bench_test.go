package registrar

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"strconv"
	"testing"

	gosip "github.com/emiago/sipgo/sip"

	"github.com/switchboard/switchboard/internal/siptest"
	"github.com/switchboard/switchboard/internal/sqldb"
)

// benchUsers is the number of users the REGISTER benchmarks cycle through
// (each keeps one binding, refreshed with a new Call-ID, as SIPp's
// register.xml does in bench/sip).
const benchUsers = 1000

// benchRegistrar is a running Registrar over a SQLite file in b.TempDir
// with benchUsers users u000000.. (password "pw"), stopped at the end of
// the benchmark.
func benchRegistrar(b *testing.B) *Registrar {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	db, err := sqldb.Open(ctx, filepath.Join(b.TempDir(), "switchboard.db"))
	if err != nil {
		b.Fatal(err)
	}
	r, err := New(ctx, Config{Realm: testRealm, DB: db, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < benchUsers; i++ {
		if err := r.Users().Add(ctx, benchUser(i), "pw"); err != nil {
			b.Fatal(err)
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = r.Serve(ctx)
	}()
	b.Cleanup(func() {
		cancel()
		_ = r.Shutdown(context.Background())
		<-done
		_ = db.Close()
	})
	return r
}

func benchUser(i int) string { return fmt.Sprintf("u%06d", i%benchUsers) }

// benchRegister is the text of a REGISTER as SIPp's register.xml sends it:
// cseq 1 without credentials, 2 with auth.
func benchRegister(i, cseq int, auth string) string {
	user := benchUser(i)
	port := 10000 + i%benchUsers
	s := "REGISTER sip:" + testRealm + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:" + strconv.Itoa(port) + ";branch=z9hG4bK-" + strconv.Itoa(i) + "-" + strconv.Itoa(cseq) + ";rport\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:" + user + "@" + testRealm + ">;tag=" + strconv.Itoa(i) + "reg\r\n" +
		"To: <sip:" + user + "@" + testRealm + ">\r\n" +
		"Call-ID: " + strconv.Itoa(i) + "-bench@127.0.0.1\r\n" +
		"CSeq: " + strconv.Itoa(cseq) + " REGISTER\r\n" +
		"Contact: <sip:" + user + "@127.0.0.1:" + strconv.Itoa(port) + ";transport=UDP>\r\n" +
		"Expires: 3600\r\n"
	if auth != "" {
		s += "Authorization: " + auth + "\r\n"
	}
	return s + "User-Agent: sipp\r\nContent-Length: 0\r\n\r\n"
}

// registerOnce runs one REGISTER text through the path a UDP request takes:
// parse (sipgo's parser), Register (digest check, binding), and the
// response written out as sipgo's transport does.
func registerOnce(b *testing.B, r *Registrar, p *gosip.Parser, text []byte, src string, out *bytes.Buffer) *gosip.Response {
	msg, err := p.ParseSIP(text)
	if err != nil {
		b.Fatal(err)
	}
	req := msg.(*gosip.Request)
	req.SetTransport("UDP")
	req.SetSource(src)
	res, err := r.Register(context.Background(), req)
	if err != nil {
		res = errorResponse(req, err)
	}
	out.Reset()
	res.StringWrite(out)
	return res
}

// BenchmarkRegister measures one digest registration as bench/sip drives
// it — REGISTER → 401 → REGISTER with credentials → 200 — from the bytes of
// the requests to the bytes of the responses, bindings written to SQLite
// (write-behind: the writer's work and garbage count too). The second
// REGISTERs are prepared before the timer starts, answering one nonce with
// increasing nonce counts, so that the client's digest is not measured.
func BenchmarkRegister(b *testing.B) {
	r := benchRegistrar(b)
	p := gosip.NewParser()
	var out bytes.Buffer
	first := registerOnce(b, r, p, []byte(benchRegister(0, 1, "")), "127.0.0.1:10000", &out)
	chal := siptest.Challenge(first, "MD5")
	if first.StatusCode != 401 || chal == "" {
		b.Fatalf("first REGISTER: %d", first.StatusCode)
	}
	plain := make([][]byte, b.N)
	authed := make([][]byte, b.N)
	for i := range b.N {
		plain[i] = []byte(benchRegister(i, 1, ""))
		v, err := siptest.DigestValue(chal, "REGISTER", "sip:"+testRealm, siptest.Credentials{User: benchUser(i), Password: "pw", Count: i + 1, Cnonce: "c" + strconv.Itoa(i)})
		if err != nil {
			b.Fatal(err)
		}
		authed[i] = []byte(benchRegister(i, 2, v))
	}
	srcs := make([]string, benchUsers)
	for i := range srcs {
		srcs[i] = "127.0.0.1:" + strconv.Itoa(10000+i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		src := srcs[i%benchUsers]
		if res := registerOnce(b, r, p, plain[i], src, &out); res.StatusCode != 401 {
			b.Fatalf("REGISTER %d without credentials: %d", i, res.StatusCode)
		}
		if res := registerOnce(b, r, p, authed[i], src, &out); res.StatusCode != 200 {
			b.Fatalf("REGISTER %d with credentials: %d %s", i, res.StatusCode, res.Reason)
		}
	}
}

// BenchmarkRegisterParts splits BenchmarkRegister's work: parsing a
// REGISTER with credentials, the challenge (401) of one without, and the
// digest check of one with credentials.
func BenchmarkRegisterParts(b *testing.B) {
	r := benchRegistrar(b)
	p := gosip.NewParser()
	var out bytes.Buffer
	first := registerOnce(b, r, p, []byte(benchRegister(0, 1, "")), "127.0.0.1:10000", &out)
	chal := siptest.Challenge(first, "MD5")
	v, err := siptest.DigestValue(chal, "REGISTER", "sip:"+testRealm, siptest.Credentials{User: benchUser(0), Password: "pw", Count: 1, Cnonce: "c"})
	if err != nil {
		b.Fatal(err)
	}
	authed := []byte(benchRegister(0, 2, v))
	plain := []byte(benchRegister(0, 1, ""))

	b.Run("parse", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if _, err := p.ParseSIP(authed); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("challenge", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if res := registerOnce(b, r, p, plain, "127.0.0.1:10000", &out); res.StatusCode != 401 {
				b.Fatal(res.StatusCode)
			}
		}
	})
	b.Run("verify", func(b *testing.B) {
		msg, err := p.ParseSIP(authed)
		if err != nil {
			b.Fatal(err)
		}
		req := msg.(*gosip.Request)
		req.SetSource("127.0.0.1:10000")
		srcAddr := netip.MustParseAddrPort("127.0.0.1:10000")
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			// The nonce count is not advanced: the digest is checked in
			// full, then the repeated count is refused as a replay.
			if _, err := r.auth.Verify(context.Background(), req, false, srcAddr); err != nil && !errors.Is(err, ErrStaleNonce) {
				b.Fatal(err)
			}
		}
	})
}
