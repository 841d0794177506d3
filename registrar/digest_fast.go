package registrar

import (
	"crypto/md5" //nolint:gosec // RFC 3261 / RFC 7616 MD5 digest
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/switchboard/switchboard/internal/siphdr"
)

// The request path of digest authentication without garbage: parsing the
// Authorization header in place (its values are substrings of the header,
// unless they hold escapes) and computing the expected response into stack
// buffers. The icholy/digest package it replaces on this path allocated a
// 4 KiB bufio.Reader and ~40 objects per parse, and ~15 per response.

// credentials are the parameters of a Digest Authorization or
// Proxy-Authorization header (RFC 7616 §3.4, RFC 3261 §22.4) the server
// reads.
type credentials struct {
	username, realm, nonce, uri, response, algorithm, cnonce, qop, nc string
}

// parseCredentials parses a "Digest k=v, k=\"v\"" header value. Parameter
// names are case-insensitive (RFC 7235 §2.1); unknown ones are skipped.
// ok is false when the value is not Digest or is malformed.
func parseCredentials(v string) (c credentials, ok bool) {
	v = strings.TrimLeft(v, " \t")
	if len(v) < 7 || !strings.EqualFold(v[:6], "Digest") || (v[6] != ' ' && v[6] != '\t') {
		return c, false
	}
	s := v[7:]
	for {
		s = strings.TrimLeft(s, " \t,")
		if s == "" {
			return c, true
		}
		eq := strings.IndexByte(s, '=')
		if eq <= 0 {
			return c, false
		}
		key := strings.TrimRight(s[:eq], " \t")
		s = strings.TrimLeft(s[eq+1:], " \t")
		var val string
		if strings.HasPrefix(s, `"`) {
			var rest string
			if val, rest, ok = unquote(s); !ok {
				return c, false
			}
			s = rest
		} else {
			end := strings.IndexAny(s, ", \t")
			if end < 0 {
				end = len(s)
			}
			val, s = s[:end], s[end:]
		}
		switch strings.ToLower(key) {
		case "username":
			c.username = val
		case "realm":
			c.realm = val
		case "nonce":
			c.nonce = val
		case "uri":
			c.uri = val
		case "response":
			c.response = val
		case "algorithm":
			c.algorithm = val
		case "cnonce":
			c.cnonce = val
		case "qop":
			c.qop = val
		case "nc":
			c.nc = val
		}
	}
}

// unquote reads the quoted-string at the start of s (RFC 3261 §25.1:
// backslash escapes one character) and returns its value and what follows.
func unquote(s string) (val, rest string, ok bool) {
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '"':
			return s[1:i], s[i+1:], true
		case '\\':
			// Rare: copy, dropping the escapes.
			var b strings.Builder
			b.WriteString(s[1:i])
			for ; i < len(s); i++ {
				switch s[i] {
				case '\\':
					if i+1 == len(s) {
						return "", "", false
					}
					i++
					b.WriteByte(s[i])
				case '"':
					return b.String(), s[i+1:], true
				default:
					b.WriteByte(s[i])
				}
			}
			return "", "", false
		}
	}
	return "", "", false
}

// parseNC reads a nonce count: 8 hex digits (RFC 7616 §3.4), at most 8
// accepted.
func parseNC(s string) (uint32, bool) {
	if s == "" || len(s) > 8 {
		return 0, false
	}
	var n uint32
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		n = n<<4 | uint32(c)
	}
	return n, true
}

// digestHex writes the lower-case hex digest (MD5 or SHA-256) of the
// parts joined by ':' into out and returns it.
func digestHex(out []byte, alg string, parts ...string) []byte {
	var buf [512]byte
	b := buf[:0]
	for i, p := range parts {
		if i > 0 {
			b = append(b, ':')
		}
		b = append(b, p...)
	}
	if alg == AlgSHA256 {
		sum := sha256.Sum256(b)
		return hex.AppendEncode(out[:0], sum[:])
	}
	sum := md5.Sum(b) //nolint:gosec // RFC 3261 digest
	return hex.AppendEncode(out[:0], sum[:])
}

// responseMatches reports whether got is the digest response (RFC 7616
// §3.4.1, RFC 2617 §3.2.2.1 without qop) of the credentials c for method,
// with the stored HA1 of the user for algorithm alg.
func responseMatches(c *credentials, alg, ha1, method string) bool {
	var a2, want [64]byte
	ha2 := digestHex(a2[:], alg, method, c.uri)
	var w []byte
	if c.qop != "" {
		w = digestHex(want[:], alg, ha1, c.nonce, c.nc, c.cnonce, c.qop, string(ha2))
	} else {
		w = digestHex(want[:], alg, ha1, c.nonce, string(ha2))
	}
	if len(c.response) != len(w) {
		return false
	}
	var got [64]byte
	for i := 0; i < len(w); i++ {
		ch := c.response[i]
		if ch >= 'A' && ch <= 'Z' {
			ch += 'a' - 'A'
		}
		got[i] = ch
	}
	return subtle.ConstantTimeCompare(got[:len(w)], w) == 1
}

// nonceSalt identifies the request a challenge answers (siphdr.RequestID),
// so that the challenge to a retransmission of it carries the same nonce
// (see newNonce).
func (a *Authenticator) nonceSalt(req *sip.Request) uint64 {
	if req == nil {
		return 0
	}
	return siphdr.RequestID(a.ncSeed, req, "")
}
