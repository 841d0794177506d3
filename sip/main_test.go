package sip

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests when goroutines outlive them: every
// test switch is closed at the end of its test, and Close must stop what the
// server started.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
