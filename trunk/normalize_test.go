package trunk

import (
	"testing"

	gosip "github.com/emiago/sipgo/sip"
)

var germany = Dialplan{CountryCode: "49", InternationalPrefix: "00", NationalPrefix: "0"}

func TestNormalize(t *testing.T) {
	for _, c := range []struct {
		in, want string
		ok       bool
	}{
		{"+4930123456", "+4930123456", true},
		{"+49 30 123456", "+4930123456", true},
		{"+49 (0)30 123456", "+4930123456", true},
		{"004930123456", "+4930123456", true},
		{"0049 30 1234567", "+49301234567", true},
		{"030 1234567", "+49301234567", true},
		{"030-123 45.67", "+49301234567", true},
		{"(030) 1234567", "+49301234567", true},
		{"030%201234567", "+49301234567", true},
		{"0044 20 7946 0000", "+442079460000", true},
		{"+1 212 555 0100", "+12125550100", true},
		{"1234567", "", false},            // a subscriber number without area code
		{"100", "", false},                // an extension
		{"alice", "", false},              // a user
		{"+", "", false},                  //
		{"0", "", false},                  // the national prefix alone
		{"00", "", false},                 // the international prefix alone
		{"000123", "", false},             // no country code starts with 0
		{"+0123456", "", false},           //
		{"+49301234567890123", "", false}, // over 15 digits
		{"030 12a4567", "", false},
		{"*21#", "", false},
	} {
		got, ok := germany.Normalize(c.in)
		if got != c.want || ok != c.ok {
			t.Errorf("Normalize(%q) = %q, %v; want %q, %v", c.in, got, ok, c.want, c.ok)
		}
	}
	// Without a country code only international forms are numbers.
	d := Dialplan{InternationalPrefix: "00", NationalPrefix: "0"}
	if _, ok := d.Normalize("030123456"); ok {
		t.Error("a national number normalised without a country code")
	}
	if n, ok := d.Normalize("004930123456"); !ok || n != "+4930123456" {
		t.Errorf("004930123456 → %q, %v", n, ok)
	}
	// NANP: international prefix 011, national 1.
	us := Dialplan{CountryCode: "1", InternationalPrefix: "011", NationalPrefix: "1"}
	if n, ok := us.Normalize("1 212 555 0100"); !ok || n != "+12125550100" {
		t.Errorf("NANP national → %q, %v", n, ok)
	}
	if n, ok := us.Normalize("011 49 30 123456"); !ok || n != "+4930123456" {
		t.Errorf("NANP international → %q, %v", n, ok)
	}
}

func TestDialledNumber(t *testing.T) {
	for _, c := range []struct {
		uri, number string
		telephone   bool
	}{
		{"tel:+4930123456", "+4930123456", true},
		{"tel:030-1234567;phone-context=+49", "030-1234567", true},
		{"sip:+4930123456@carrier.example;user=phone", "+4930123456", true},
		{"sip:+4930123456;isub=12@carrier.example;user=phone", "+4930123456", true},
		{"sip:0301234567@switchboard.local", "0301234567", false},
		{"sips:004930123456@switchboard.local", "004930123456", false},
		{"sip:030%201234567@switchboard.local", "030%201234567", false},
		{"sip:switchboard.local", "", false},
	} {
		var u gosip.Uri
		if err := gosip.ParseUri(c.uri, &u); err != nil {
			t.Fatalf("%s: %v", c.uri, err)
		}
		n, tel := dialledNumber(u)
		if n != c.number || tel != c.telephone {
			t.Errorf("dialledNumber(%s) = %q, %v; want %q, %v", c.uri, n, tel, c.number, c.telephone)
		}
		// Every form normalises to the same number where it is one.
		if c.number != "" && c.number != "0301234567" {
			if _, ok := germany.Normalize(c.number); !ok {
				t.Errorf("%s: %q does not normalise", c.uri, c.number)
			}
		}
	}
}

func TestInboundNumber(t *testing.T) {
	for in, want := range map[string]string{
		"+4930123456":  "+4930123456",
		"4930123456":   "+4930123456", // what many carriers send
		"030123456":    "+4930123456",
		"004930123456": "+4930123456",
	} {
		if got, ok := germany.inboundNumber(in); !ok || got != want {
			t.Errorf("inboundNumber(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	if _, ok := germany.inboundNumber("alice"); ok {
		t.Error("alice is a number")
	}
}

func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"+4930123456", "030 1234567", "0049", "%2", "+49 (0)30", "((((", "0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, ok := germany.Normalize(s)
		if !ok {
			return
		}
		if len(n) < 1+minE164Digits || len(n) > 1+maxE164Digits || n[0] != '+' || !allDigits(n[1:]) || n[1] == '0' {
			t.Fatalf("Normalize(%q) = %q: not E.164", s, n)
		}
		// E.164 is a fixed point.
		if again, ok := germany.Normalize(n); !ok || again != n {
			t.Fatalf("Normalize(%q) = %q, but Normalize(%q) = %q, %v", s, n, n, again, ok)
		}
	})
}
