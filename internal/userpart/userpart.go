// Package userpart checks the user part of a SIP URI (RFC 3261 §25.1) as
// the switch accepts it from people: a short run of letters, digits and a
// few marks, so that it needs no escaping anywhere. It must not import any
// other package of the switch (registrar and gateway, which must not import
// each other, both use it).
package userpart

import "strings"

// MaxLen is the longest user part accepted, in bytes.
const MaxLen = 64

// Valid reports whether s is 1 to MaxLen characters, each an ASCII letter,
// an ASCII digit or one of marks (the caller's choice of RFC 3261 §25.1
// unreserved and user-unreserved characters).
func Valid(s, marks string) bool {
	if s == "" || len(s) > MaxLen {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case strings.ContainsRune(marks, r):
		default:
			return false
		}
	}
	return true
}
