package attest

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

var (
	t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	t1 = t0.Add(30 * 24 * time.Hour)
)

func testDelegation(t *testing.T) Delegation {
	t.Helper()
	d, err := Delegate(testKey("hub"), Delegation{
		Delegate: testKey("reviewer").Public().String(), Share: 0.5,
		Scope: Scope{Services: []string{"weather-*"}}, MaxDepth: 1, IssuedAt: t0, Expires: t1,
	})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestDelegationVerifies(t *testing.T) {
	d := testDelegation(t)
	p, err := VerifyDelegation(d, t0.Add(time.Hour))
	if err != nil {
		t.Fatalf("VerifyDelegation = %v", err)
	}
	if !p.Parent.Equal(testKey("hub").Public()) || p.Share != 0.5 || !strings.HasPrefix(p.ID, "sha256:") || len(p.ID) != 71 {
		t.Fatalf("parsed %+v", p)
	}
	// The id is stable: the same delegation decoded from its file form
	// has the same id.
	back, err := DecodeDelegationsHeader(EncodeDelegationsHeader([]Delegation{d}))
	if err != nil {
		t.Fatal(err)
	}
	p2, err := back[0].Parse()
	if err != nil || p2.ID != p.ID {
		t.Fatalf("id after a round trip %s (%v), want %s", p2.ID, err, p.ID)
	}
	if _, err := VerifyDelegation(d, t1); !errors.Is(err, ErrExpired) || !strings.HasPrefix(err.Error(), "expires: ") {
		t.Fatalf("VerifyDelegation at its expiry = %v, want expires: expired", err)
	}
}

func TestDelegationErrorsNameTheField(t *testing.T) {
	good := testDelegation(t)
	for _, tc := range []struct {
		name   string
		change func(*Delegation)
		want   string
		is     error
	}{
		{"parent", func(d *Delegation) { d.Parent = "ed25519:AAAA" }, "parent: ", ErrKey},
		{"delegate", func(d *Delegation) { d.Delegate = "" }, "delegate: ", ErrKey},
		{"self", func(d *Delegation) { d.Delegate = d.Parent }, "delegate: ", ErrMalformed},
		{"share zero", func(d *Delegation) { d.Share = 0 }, "share: ", ErrMalformed},
		{"share above one", func(d *Delegation) { d.Share = 1.5 }, "share: ", ErrMalformed},
		{"scope service", func(d *Delegation) { d.Scope.Services = []string{"ok", "Bad,name"} }, "scope.services[1]: ", ErrMalformed},
		{"scope keyword", func(d *Delegation) { d.Scope.Keywords = []string{"a\nb"} }, "scope.keywords[0]: ", ErrMalformed},
		{"max_depth", func(d *Delegation) { d.MaxDepth = -1 }, "max_depth: ", ErrMalformed},
		{"issued_at", func(d *Delegation) { d.IssuedAt = time.Time{} }, "issued_at: ", ErrMalformed},
		{"expires missing", func(d *Delegation) { d.Expires = time.Time{} }, "expires: ", ErrMalformed},
		{"expires before", func(d *Delegation) { d.Expires = d.IssuedAt }, "expires: ", ErrMalformed},
		{"signature", func(d *Delegation) { d.Signature = "AAAA" }, "signature: ", ErrMalformed},
		{"changed share", func(d *Delegation) { d.Share = 1 }, "signature: ", ErrInvalid},
		{"widened scope", func(d *Delegation) { d.Scope = Scope{} }, "signature: ", ErrInvalid},
		{"deeper", func(d *Delegation) { d.MaxDepth = 2 }, "signature: ", ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := good
			d.Scope.Services = append([]string(nil), good.Scope.Services...)
			tc.change(&d)
			_, err := VerifyDelegation(d, t0)
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) || !errors.Is(err, tc.is) {
				t.Fatalf("VerifyDelegation = %v, want %q… wrapping %v", err, tc.want, tc.is)
			}
		})
	}
}

func TestScopeContains(t *testing.T) {
	for _, tc := range []struct {
		scope    Scope
		name     string
		keywords []string
		want     bool
	}{
		{Scope{}, "anything", nil, true},
		{Scope{Services: []string{"weather-*"}}, "weather-eu", nil, true},
		{Scope{Services: []string{"weather-*"}}, "maps", nil, false},
		{Scope{Services: []string{"maps"}}, "maps", nil, true},
		{Scope{Services: []string{"maps"}}, "maps-2", nil, false},
		{Scope{Services: []string{"*"}}, "x", nil, true},
		{Scope{Keywords: []string{"geo"}}, "x", []string{"a", "geo"}, true},
		{Scope{Keywords: []string{"geo"}}, "x", nil, false},
		{Scope{Services: []string{"x*"}, Keywords: []string{"geo"}}, "xy", []string{"other"}, false},
	} {
		if got := tc.scope.Contains(tc.name, tc.keywords); got != tc.want {
			t.Errorf("%v.Contains(%q, %v) = %v, want %v", tc.scope, tc.name, tc.keywords, got, tc.want)
		}
	}
}

func TestRevocation(t *testing.T) {
	d := testDelegation(t)
	p, _ := d.Parse()
	r, err := Revoke(testKey("hub"), p.ID, t0)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := jsonMarshal(r)
	back, err := DecodeRevocation(data)
	if err != nil || !reflect.DeepEqual(back, r) {
		t.Fatalf("DecodeRevocation = %+v, %v; want %+v", back, err, r)
	}
	r.Delegation = "sha256:" + strings.Repeat("0", 64)
	data, _ = jsonMarshal(r)
	if _, err := DecodeRevocation(data); !errors.Is(err, ErrInvalid) || !strings.HasPrefix(err.Error(), "signature: ") {
		t.Fatalf("DecodeRevocation of a changed id = %v, want signature: does not verify", err)
	}
	for in, want := range map[string]string{
		`{"delegation": "x", "key": "", "revoked_at": "2026-01-01T00:00:00Z", "signature": ""}`: "delegation: ",
		`{"delegation": "` + p.ID + `", "key": "k", "revoked_at": "2026-01-01T00:00:00Z"}`:      "key: ",
		`{"delegation": "` + p.ID + `", "key": "` + r.Key + `"}`:                                "revoked_at: ",
		`{"delegation": "` + p.ID + `", "extra": 1}`:                                            "extra: ",
	} {
		if _, err := DecodeRevocation([]byte(in)); err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("DecodeRevocation(%s) = %v, want %q…", in, err, want)
		}
	}
}

func TestFileKeepsDelegationsAndAttestations(t *testing.T) {
	dir := t.TempDir()
	d := testDelegation(t)
	if err := AddDelegationToDir(dir, d); err != nil {
		t.Fatal(err)
	}
	a := SignAt(testKey("reviewer"), digestA, t0)
	if err := AddToDir(dir, a); err != nil {
		t.Fatal(err)
	}
	again := d
	if err := AddDelegationToDir(dir, again); err != nil { // same pair: replaced, not added
		t.Fatal(err)
	}
	f, err := ReadDirFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Attestations) != 1 || len(f.Delegations) != 1 || f.Delegations[0].Signature != d.Signature {
		t.Fatalf("file holds %d attestations, %d delegations", len(f.Attestations), len(f.Delegations))
	}
	if _, err := DecodeFileAll([]byte(`{"delegations": [{"parent": "", "shares": 1}]}`)); err == nil || !strings.HasPrefix(err.Error(), "delegations[0].shares") {
		t.Fatalf("DecodeFileAll with an unknown field = %v, want delegations[0].shares: …", err)
	}
}

// FuzzDecodeDelegationsHeader feeds arbitrary header values to
// DecodeDelegationsHeader and every decoded delegation to VerifyDelegation:
// none may panic, and what decodes survives a round trip.
func FuzzDecodeDelegationsHeader(f *testing.F) {
	d, _ := Delegate(testKey("hub"), Delegation{Delegate: testKey("r").Public().String(), Share: 1, IssuedAt: t0, Expires: t1})
	f.Add(EncodeDelegationsHeader([]Delegation{d}))
	f.Add(EncodeDelegationsHeader([]Delegation{{Parent: "ed25519:AAAA", Share: 2}}))
	f.Add("W3sicGFyZW50IjoiIn1d")
	f.Add("")
	f.Fuzz(func(t *testing.T, v string) {
		ds, err := DecodeDelegationsHeader(v)
		if err != nil {
			return
		}
		for _, d := range ds {
			if p, err := VerifyDelegation(d, t0); err == nil && (len(p.Parent) != 32 || !(p.Share > 0 && p.Share <= 1)) {
				t.Fatalf("VerifyDelegation accepted %+v", p)
			}
		}
		if _, err := DecodeDelegationsHeader(EncodeDelegationsHeader(ds)); err != nil {
			t.Fatalf("round trip of %v: %v", ds, err)
		}
	})
}

// FuzzDecodeFileAll feeds arbitrary files to DecodeFileAll: no panic, and
// never more than the bounds.
func FuzzDecodeFileAll(f *testing.F) {
	f.Add([]byte(`{"attestations": [], "delegations": [{"parent": "ed25519:", "share": 0.5}]}`))
	f.Add([]byte(`{"delegations": null}`))
	f.Add([]byte(`{"attestations": [{"key": "k"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := DecodeFileAll(data)
		if err != nil {
			return
		}
		if len(file.Attestations) > MaxAttestations || len(file.Delegations) > MaxDelegations {
			t.Fatalf("decoded %d attestations, %d delegations", len(file.Attestations), len(file.Delegations))
		}
		for _, d := range file.Delegations {
			_, _ = d.Parse()
		}
	})
}

// FuzzDecodeRevocation: no panic; what decodes verifies.
func FuzzDecodeRevocation(f *testing.F) {
	r, _ := Revoke(testKey("hub"), digestA, t0)
	data, _ := jsonMarshal(r)
	f.Add(data)
	f.Add([]byte(`{"delegation": "sha256:", "key": "ed25519:", "revoked_at": "2026-01-01T00:00:00Z", "signature": "AAAA"}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := DecodeRevocation(data)
		if err != nil {
			return
		}
		if _, err := r.Verify(); err != nil {
			t.Fatalf("DecodeRevocation accepted %+v that does not verify: %v", r, err)
		}
	})
}
