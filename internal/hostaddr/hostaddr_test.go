package hostaddr

import (
	"net"
	"net/netip"
	"testing"
)

// TestPrimary: the address is an IPv4 address of an interface that is up
// and not loopback, or 127.0.0.1 exactly when there is none.
func TestPrimary(t *testing.T) {
	ip := Primary()
	if !ip.Is4() {
		t.Fatalf("Primary = %v, want IPv4", ip)
	}
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		if a, ok := firstIPv4(ifc); ok {
			if !found && a != ip {
				t.Fatalf("Primary = %v, want the first such address %v", ip, a)
			}
			found = true
		}
	}
	if !found && ip != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("no usable interface address, but Primary = %v", ip)
	}
	if found && (ip.IsLoopback() || ip.IsLinkLocalUnicast()) {
		t.Fatalf("Primary = %v", ip)
	}
}
