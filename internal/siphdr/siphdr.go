package siphdr

import (
	"strings"

	gosip "github.com/emiago/sipgo/sip"
)

// Message is what has headers: a *sip.Request or a *sip.Response.
type Message interface {
	Headers() []gosip.Header
}

// Get returns the first header called name, or nil.
func Get(m Message, name string) gosip.Header {
	for _, h := range m.Headers() {
		if strings.EqualFold(h.Name(), name) {
			return h
		}
	}
	return nil
}

// All returns the headers called name, in order (nil when there is none).
func All(m Message, name string) []gosip.Header {
	var hs []gosip.Header
	for _, h := range m.Headers() {
		if strings.EqualFold(h.Name(), name) {
			hs = append(hs, h)
		}
	}
	return hs
}

// Count returns how many headers are called name.
func Count(m Message, name string) int {
	n := 0
	for _, h := range m.Headers() {
		if strings.EqualFold(h.Name(), name) {
			n++
		}
	}
	return n
}
