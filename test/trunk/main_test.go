package trunk

import (
	"os"
	"testing"

	"github.com/switchboard/switchboard/test/internal/testbed"
)

// TestMain builds the switchboard binary once for every test (see
// testbed.Main).
func TestMain(m *testing.M) { os.Exit(testbed.Main(m)) }
