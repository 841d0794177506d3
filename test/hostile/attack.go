package hostile

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
)

// Stranger is the host of the attackers' From: a documentation address
// (RFC 5737) that is nobody's domain on the switch under attack.
const Stranger = "198.51.100.9"

// StrangerInvite returns the i-th INVITE of a flood from sip:x@198.51.100.9
// to the Request-URI to, sent from local (host:port, written into Via and
// Contact so that answers come back), with an SDP offer so that a switch
// that processes it would set up media. run keeps the Call-IDs and branches
// of one flood apart from another's ("flood-RUN-I").
func StrangerInvite(run string, i int, to, local string) []byte {
	body := "v=0\r\no=- 1 1 IN IP4 " + Stranger + "\r\ns=-\r\nc=IN IP4 " + Stranger +
		"\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\n"
	return []byte(fmt.Sprintf("INVITE %[1]s SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP %[2]s;branch=z9hG4bKfl%[3]s%[4]d;rport\r\n"+
		"Max-Forwards: 70\r\n"+
		"From: <sip:x@%[7]s>;tag=f%[4]d\r\n"+
		"To: <%[1]s>\r\n"+
		"Call-ID: flood-%[3]s-%[4]d\r\n"+
		"CSeq: 1 INVITE\r\n"+
		"Contact: <sip:x@%[2]s>\r\n"+
		"User-Agent: friendly-scanner\r\n"+
		"Content-Type: application/sdp\r\n"+
		"Content-Length: %[5]d\r\n\r\n%[6]s", to, local, run, i, len(body), body, Stranger))
}

// Mutator turns valid SIP requests (an INVITE with SDP, a REGISTER, an
// OPTIONS) into hostile datagrams, as a fuzzer or a broken scanner sends
// them: flipped bytes, cut messages, duplicated and huge headers, bad
// Content-Length, NULs, invalid UTF-8, broken start lines, and pure binary
// junk. The sequence depends only on the seed, so a failure can be replayed.
// A Mutator is not safe for concurrent use.
type Mutator struct {
	rng    *rand.Rand
	domain string // the switch's SIP domain
	user   string // a user that exists on the switch
}

// NewMutator returns a Mutator whose requests address user@domain.
func NewMutator(seed uint64, domain, user string) *Mutator {
	return &Mutator{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), domain: domain, user: user}
}

// MaxDatagram bounds what Next returns: below the 65,507-byte payload of a
// UDP datagram over IPv4.
const MaxDatagram = 65000

// seed returns a valid request, sent from local, with a fresh Call-ID and
// branch (so that a switch does not take it for a retransmission).
func (m *Mutator) seed(local string) []byte {
	id := strconv.FormatUint(m.rng.Uint64(), 36)
	from := "<sip:x@" + Stranger + ">;tag=" + id[:4]
	switch m.rng.IntN(3) {
	case 0:
		body := "v=0\r\no=- 1 1 IN IP4 " + Stranger + "\r\ns=-\r\nc=IN IP4 " + Stranger +
			"\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
		return []byte("INVITE sip:" + m.user + "@" + m.domain + " SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP " + local + ";branch=z9hG4bKmu" + id + ";rport\r\n" +
			"Max-Forwards: 70\r\nFrom: " + from + "\r\nTo: <sip:" + m.user + "@" + m.domain + ">\r\n" +
			"Call-ID: mut-" + id + "\r\nCSeq: 1 INVITE\r\nContact: <sip:x@" + local + ">\r\n" +
			"Content-Type: application/sdp\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
	case 1:
		return []byte("REGISTER sip:" + m.domain + " SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP " + local + ";branch=z9hG4bKmu" + id + ";rport\r\n" +
			"Max-Forwards: 70\r\nFrom: <sip:" + m.user + "@" + m.domain + ">;tag=" + id[:4] + "\r\n" +
			"To: <sip:" + m.user + "@" + m.domain + ">\r\nCall-ID: mut-" + id + "\r\nCSeq: 1 REGISTER\r\n" +
			"Contact: <sip:" + m.user + "@" + local + ">\r\nExpires: 3600\r\nContent-Length: 0\r\n\r\n")
	default:
		return []byte("OPTIONS sip:" + m.domain + " SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP " + local + ";branch=z9hG4bKmu" + id + ";rport\r\n" +
			"Max-Forwards: 70\r\nFrom: " + from + "\r\nTo: <sip:" + m.domain + ">\r\n" +
			"Call-ID: mut-" + id + "\r\nCSeq: 1 OPTIONS\r\nAccept: application/sdp\r\nContent-Length: 0\r\n\r\n")
	}
}

// Next returns the next hostile datagram, sent from local (host:port).
func (m *Mutator) Next(local string) []byte {
	if m.rng.IntN(20) == 0 {
		return m.junk()
	}
	b := m.seed(local)
	for range 1 + m.rng.IntN(3) {
		if len(b) == 0 {
			break
		}
		b = mutations[m.rng.IntN(len(mutations))](m, b)
	}
	if len(b) > MaxDatagram {
		b = b[:MaxDatagram]
	}
	return b
}

// junk is random bytes: mostly short, sometimes up to a full datagram.
func (m *Mutator) junk() []byte {
	n := 1 + m.rng.IntN(1500)
	if m.rng.IntN(10) == 0 {
		n = 1 + m.rng.IntN(MaxDatagram)
	}
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(m.rng.UintN(256))
	}
	return b
}

// lines splits a message into its header lines (start line first) and its
// body.
func lines(b []byte) ([][]byte, []byte) {
	head, body, _ := bytes.Cut(b, []byte("\r\n\r\n"))
	return bytes.Split(head, []byte("\r\n")), body
}

func join(ls [][]byte, body []byte) []byte {
	out := bytes.Join(ls, []byte("\r\n"))
	out = append(out, "\r\n\r\n"...)
	return append(out, body...)
}

// mutations each change a message in one way.
var mutations = []func(m *Mutator, b []byte) []byte{
	// Flip up to 16 bytes.
	func(m *Mutator, b []byte) []byte {
		b = bytes.Clone(b)
		for range 1 + m.rng.IntN(16) {
			b[m.rng.IntN(len(b))] = byte(m.rng.UintN(256))
		}
		return b
	},
	// Cut anywhere.
	func(m *Mutator, b []byte) []byte { return b[:m.rng.IntN(len(b))] },
	// Repeat one header line 2-300 times.
	func(m *Mutator, b []byte) []byte {
		ls, body := lines(b)
		if len(ls) < 2 {
			return b
		}
		i := 1 + m.rng.IntN(len(ls)-1)
		rep := make([][]byte, 0, len(ls)+300)
		rep = append(rep, ls[:i+1]...)
		for range 1 + m.rng.IntN(300) {
			rep = append(rep, ls[i])
		}
		return join(append(rep, ls[i+1:]...), body)
	},
	// A huge header, up to 60 kB.
	func(m *Mutator, b []byte) []byte {
		ls, body := lines(b)
		names := []string{"Subject", "Via", "From", "Contact", "Route", "X-Junk", "Call-ID", "Authorization"}
		v := bytes.Repeat([]byte{"Aa;=,<>\"%: "[m.rng.IntN(11)]}, 1000+m.rng.IntN(59000))
		h := append([]byte(names[m.rng.IntN(len(names))]+": "), v...)
		at := 1 + m.rng.IntN(len(ls))
		out := append([][]byte{}, ls[:min(at, len(ls))]...)
		out = append(out, h)
		return join(append(out, ls[min(at, len(ls)):]...), body)
	},
	// A bad Content-Length.
	func(m *Mutator, b []byte) []byte {
		ls, body := lines(b)
		vals := []string{"-1", "999999999", "abc", "1099511627776", "", "0 0", "65536", strconv.Itoa(len(body) + 1 + m.rng.IntN(1000))}
		out := ls[:0:0]
		for _, l := range ls {
			if !bytes.HasPrefix(bytes.ToLower(l), []byte("content-length")) {
				out = append(out, l)
			}
		}
		out = append(out, []byte("Content-Length: "+vals[m.rng.IntN(len(vals))]))
		return join(out, body)
	},
	// NUL bytes and invalid UTF-8 inserted.
	func(m *Mutator, b []byte) []byte {
		ins := [][]byte{{0}, {0xff, 0xfe}, {0xc3, 0x28}, {0xed, 0xa0, 0x80}, {0}, {'\r'}, {'\n'}}
		for range 1 + m.rng.IntN(8) {
			i := m.rng.IntN(len(b) + 1)
			b = append(b[:i:i], append(ins[m.rng.IntN(len(ins))], b[i:]...)...)
		}
		return b
	},
	// A broken start line.
	func(m *Mutator, b []byte) []byte {
		ls, body := lines(b)
		starts := []string{"INVITE  SIP/2.0", "INVITE sip: SIP/2.0", "INVITE sip:@ SIP/2.0", "INVITE sip:a@b SIP/3.0",
			"IN\x00VITE sip:a@b SIP/2.0", "INVITE sip:a@[::1 SIP/2.0", "INVITE sip:a@b:99999 SIP/2.0", "SIP/2.0 200 OK",
			"SIP/2.0 999", "INVITE <sip:a@b> SIP/2.0", "INVITE tel:+1;;;; SIP/2.0", "INVITE", "", " ",
			"INVITE sip:" + string(bytes.Repeat([]byte("a"), 5000)) + "@b SIP/2.0"}
		ls[0] = []byte(starts[m.rng.IntN(len(starts))])
		return join(ls, body)
	},
	// Mandatory headers removed.
	func(m *Mutator, b []byte) []byte {
		ls, body := lines(b)
		if len(ls) < 2 {
			return b
		}
		i := 1 + m.rng.IntN(len(ls)-1)
		return join(append(ls[:i:i], ls[i+1:]...), body)
	},
	// A Via with hundreds of parameters, or a Route list of hundreds.
	func(m *Mutator, b []byte) []byte {
		ls, body := lines(b)
		var h bytes.Buffer
		if m.rng.IntN(2) == 0 {
			h.WriteString("Via: SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bKx")
			for i := range 100 + m.rng.IntN(900) {
				fmt.Fprintf(&h, ";p%d=%d", i, i)
			}
		} else {
			h.WriteString("Route: ")
			for i := range 100 + m.rng.IntN(900) {
				if i > 0 {
					h.WriteString(", ")
				}
				fmt.Fprintf(&h, "<sip:203.0.113.%d;lr>", i%250)
			}
		}
		out := append([][]byte{ls[0], h.Bytes()}, ls[1:]...)
		return join(out, body)
	},
	// Conflicting duplicates of single-valued headers, in compact form.
	func(m *Mutator, b []byte) []byte {
		ls, body := lines(b)
		extra := [][]byte{[]byte("i: other-call-id"), []byte("CSeq: 4294967296 INVITE"), []byte("l: 5"),
			[]byte("f: <sip:y@" + Stranger + ">"), []byte("t: <sip:z@" + Stranger + ">;tag=1"), []byte("Max-Forwards: -5"),
			[]byte("Expires: 99999999999"), []byte("v: SIP/2.0/UDP ;branch="), []byte("m: *"), []byte("Contact: <sip:\x7f@\x01>")}
		for range 1 + m.rng.IntN(4) {
			ls = append(ls, extra[m.rng.IntN(len(extra))])
		}
		return join(ls, body)
	},
	// Header folding and odd whitespace.
	func(m *Mutator, b []byte) []byte {
		ls, body := lines(b)
		for i := 1; i < len(ls); i++ {
			if m.rng.IntN(3) == 0 {
				ls[i] = bytes.Replace(ls[i], []byte(": "), []byte(" :\r\n \t "), 1)
			}
		}
		return join(ls, body)
	},
	// Two or more messages in one datagram.
	func(m *Mutator, b []byte) []byte {
		return append(append(bytes.Clone(b), b...), b[:m.rng.IntN(len(b))]...)
	},
	// Only line ends, or a line that never ends.
	func(m *Mutator, b []byte) []byte {
		if m.rng.IntN(2) == 0 {
			return bytes.Repeat([]byte("\r\n"), 1+m.rng.IntN(2000))
		}
		return append(bytes.Clone(b[:min(len(b), 40)]), bytes.Repeat([]byte("x"), 1000+m.rng.IntN(60000))...)
	},
}

// HeaderValue returns the first value of a header (long or compact name)
// in SIP text, or "".
func HeaderValue(text, name, compact string) string {
	for _, l := range strings.Split(text, "\r\n") {
		if l == "" {
			break
		}
		k, v, ok := strings.Cut(l, ":")
		k = strings.TrimSpace(k)
		if ok && (strings.EqualFold(k, name) || strings.EqualFold(k, compact)) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
