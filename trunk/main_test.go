package trunk

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine (a registration
// loop, a fake transaction) outlives them.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
