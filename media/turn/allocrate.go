package turn

import (
	"encoding/binary"
	"net/netip"
	"time"
)

// STUN attributes that make a request authenticated (RFC 8489 §14.5, §14.6).
const (
	attrMessageIntegrity       = 0x0008
	attrMessageIntegritySHA256 = 0x001C
)

// unauthenticatedFactor is how many unauthenticated Allocate requests (the
// first round, answered 401 with a NONCE) one source may send per
// authenticated one allowed by Config.AllocateRate. A new allocation takes
// at most one such round (RFC 8656 §7.2 / RFC 8489 §9.2); twice leaves room
// for retransmissions and clients that start over.
const unauthenticatedFactor = 2

// allocateLimiter holds the per-source limits of Config.AllocateRate:
//
//   - authenticated Allocate requests (with MESSAGE-INTEGRITY) per second,
//     burst twice that: each can create an allocation and a relay socket;
//   - unauthenticated Allocate requests, unauthenticatedFactor times that:
//     pion answers them with a 401 and a NONCE, work of the size of a Binding
//     response, so they only need a generous bound that keeps one source
//     from taking the read loops for itself;
//   - TCP/TLS connections accepted per second, at the authenticated rate
//     (one allocation per connection, RFC 6062 aside).
//
// Counting the two rounds apart is what lets a NAT address with hundreds of
// clients through: with one shared bucket the 401 round halved the rate of
// new allocations. A request that carries MESSAGE-INTEGRITY but does not
// verify counts as authenticated; the Guard bans the source for it.
type allocateLimiter struct {
	authenticated   *sourceLimiter
	unauthenticated *sourceLimiter
	conns           *sourceLimiter
}

// newAllocateLimiter returns the limits for perSecond authenticated
// Allocate requests per source (<= 0: no limit).
func newAllocateLimiter(perSecond int) *allocateLimiter {
	return &allocateLimiter{
		authenticated:   newSourceLimiter(perSecond),
		unauthenticated: newSourceLimiter(perSecond * unauthenticatedFactor),
		conns:           newSourceLimiter(perSecond),
	}
}

// allowAllocate takes a token for the Allocate request msg (a whole STUN
// message, header checked by the caller) from src's bucket of its kind.
func (l *allocateLimiter) allowAllocate(msg []byte, src netip.Addr, now time.Time) bool {
	if hasIntegrity(msg) {
		return l.authenticated.allow(src, now)
	}

	return l.unauthenticated.allow(src, now)
}

// allowConn takes a token for a TCP or TLS connection accepted from src.
func (l *allocateLimiter) allowConn(src netip.Addr, now time.Time) bool {
	return l.conns.allow(src, now)
}

// hasIntegrity reports whether the STUN message msg carries a
// MESSAGE-INTEGRITY or MESSAGE-INTEGRITY-SHA256 attribute. It walks the
// attributes' type-length headers (RFC 8489 §14: values padded to 4 bytes)
// without decoding them; a truncated attribute ends the walk.
func hasIntegrity(msg []byte) bool {
	for i := 20; i+4 <= len(msg); {
		typ := binary.BigEndian.Uint16(msg[i:])
		if typ == attrMessageIntegrity || typ == attrMessageIntegritySHA256 {
			return true
		}
		n := int(binary.BigEndian.Uint16(msg[i+2:]))
		i += 4 + (n+3)&^3
	}

	return false
}
