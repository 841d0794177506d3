package registrar

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests when goroutines outlive them (Run,
// Watch and the SIP servers of the external tests must all stop).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
