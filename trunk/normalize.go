package trunk

import (
	"net/url"
	"strings"

	gosip "github.com/emiago/sipgo/sip"
)

// E.164 (ITU-T): a country code and subscriber number of at most 15 digits.
const (
	maxE164Digits = 15
	minE164Digits = 3
)

// Normalize returns the E.164 form ("+" and digits) of a number as
// dialled, or false when it is not a telephone number the plan can
// normalise. Visual separators (space, '-', '.', '(', ')': RFC 3966 §5.1.1)
// and %-escapes are ignored. The forms, for country code 49 with the
// default prefixes:
//
//	+49 30 1234567   international         → +49301234567
//	0049 30 1234567  international prefix  → +49301234567
//	030 1234567      national prefix       → +49301234567
//
// A number without either prefix (a subscriber number, an extension) is
// not normalised: without an area code it names no E.164 number.
func (d Dialplan) Normalize(dialled string) (string, bool) {
	s := clean(dialled)
	if strings.HasPrefix(s, "+") || d.InternationalPrefix != "" && strings.HasPrefix(s, d.InternationalPrefix) {
		// "+49 (0)30 …": the national prefix shown for those dialling
		// from inside the country, not dialled from outside.
		s = clean(strings.ReplaceAll(unescape(dialled), "(0)", ""))
	}
	var digits string
	switch {
	case strings.HasPrefix(s, "+"):
		digits = s[1:]
	case d.InternationalPrefix != "" && strings.HasPrefix(s, d.InternationalPrefix):
		digits = s[len(d.InternationalPrefix):]
	case d.NationalPrefix != "" && d.CountryCode != "" && strings.HasPrefix(s, d.NationalPrefix):
		rest := s[len(d.NationalPrefix):]
		if rest == "" || rest[0] == '0' {
			return "", false
		}
		digits = d.CountryCode + rest
	default:
		return "", false
	}
	if len(digits) < minE164Digits || len(digits) > maxE164Digits || digits[0] == '0' || !allDigits(digits) {
		return "", false
	}
	return "+" + digits, true
}

// clean drops %-escapes (a user part may carry "030%201234567") and visual
// separators.
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case ' ', '-', '.', '(', ')', '\t':
			return -1
		}
		return r
	}, unescape(s))
}

func unescape(s string) string {
	if u, err := url.PathUnescape(s); err == nil {
		return u
	}
	return s
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// dialledNumber returns the number a URI names, as dialled: the whole of
// a tel: URI (RFC 3966) up to its parameters, or the user part of a sip:
// or sips: URI up to its user parameters (";isub=", ";phone-context=").
// telephone reports whether the URI says it is a telephone number (tel:,
// or user=phone: RFC 3261 §19.1.6).
func dialledNumber(u gosip.Uri) (number string, telephone bool) {
	switch u.Scheme {
	case "tel":
		n := strings.TrimPrefix(u.String(), "tel:")
		n, _, _ = strings.Cut(n, ";")
		return n, true
	case "sip", "sips":
		n, _, _ := strings.Cut(u.User, ";")
		v, _ := u.UriParams.Get("user")
		return n, strings.EqualFold(v, "phone")
	}
	return "", false
}

// inboundNumber is Normalize for what a carrier sends: besides the forms
// users dial, the international number without its '+' ("4930123456"),
// which many carriers send in the Request-URI.
func (d Dialplan) inboundNumber(dialled string) (string, bool) {
	if n, ok := d.Normalize(dialled); ok {
		return n, true
	}
	s := clean(dialled)
	if d.CountryCode != "" && strings.HasPrefix(s, d.CountryCode) && allDigits(s) {
		return d.Normalize("+" + s)
	}
	return "", false
}
