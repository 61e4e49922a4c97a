package decision

import (
	"strings"
	"testing"
)

func TestParseOriginClaim(t *testing.T) {
	for in, want := range map[string]OriginClaim{
		"hostchain:btc":               {Kind: "hostchain", ID: "btc"},
		" symbiote:Qfz;stake=12.5 ":   {Kind: "symbiote", ID: "Qfz", Stake: 12.5},
		"hostchain:btc; stake=0":      {Kind: "hostchain", ID: "btc"},
		"tenant:acme:eu;stake=100000": {Kind: "tenant", ID: "acme:eu", Stake: 100000},
	} {
		got, err := ParseOriginClaim(in)
		if err != nil || got != want {
			t.Errorf("ParseOriginClaim(%q) = %+v, %v; want %+v", in, got, err, want)
		}
		if back, err := ParseOriginClaim(got.String()); err != nil || back != got {
			t.Errorf("ParseOriginClaim(%q.String()) = %+v, %v", in, back, err)
		}
	}
	for in, want := range map[string]string{
		"btc":                      "must be kind:id",
		"Host:btc":                 "must be kind:id",
		"hostchain:":               "id must be",
		"hostchain:b c":            "id must be",
		"hostchain:btc;stake=-1":   "stake must be",
		"hostchain:btc;stake=lots": "stake must be",
		"hostchain:btc;weight=1":   "stake must be",
	} {
		if _, err := ParseOriginClaim(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseOriginClaim(%q) = %v, want %q", in, err, want)
		}
	}
}

// FuzzParseOriginClaim: the origin header never panics and round-trips.
func FuzzParseOriginClaim(f *testing.F) {
	f.Add("hostchain:btc;stake=250")
	f.Add("symbiote:Qfz")
	f.Fuzz(func(t *testing.T, s string) {
		o, err := ParseOriginClaim(s)
		if err != nil {
			return
		}
		back, err := ParseOriginClaim(o.String())
		if err != nil || back != o {
			t.Fatalf("ParseOriginClaim(%q) = %+v; its String %q reads back as %+v, %v", s, o, o.String(), back, err)
		}
	})
}

func TestValidOrigin(t *testing.T) {
	for _, tc := range []struct {
		name, kind, id string
		kindOK, idOK   bool
	}{
		{"symbiote", "symbiote", "QfzhbWJsPa9N", true, true},
		{"digits and dash", "host-chain2", "btc:main", true, true},
		{"upper case kind", "Hostchain", "btc", false, true},
		{"empty", "", "", false, false},
		{"too long", strings.Repeat("a", 33), strings.Repeat("b", 129), false, false},
		{"longest", strings.Repeat("a", 32), strings.Repeat("b", 128), true, true},
		{"space in id", "hostchain", "b c", true, false},
		{"control in id", "hostchain", "b\x00c", true, false},
	} {
		if got := ValidOriginKind(tc.kind); got != tc.kindOK {
			t.Errorf("%s: ValidOriginKind(%q) = %v, want %v", tc.name, tc.kind, got, tc.kindOK)
		}
		if got := ValidOriginID(tc.id); got != tc.idOK {
			t.Errorf("%s: ValidOriginID(%q) = %v, want %v", tc.name, tc.id, got, tc.idOK)
		}
	}
}
