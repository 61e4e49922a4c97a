package usage_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/envelope"
	"github.com/andromeda-runner/andromeda/usage"
)

func key(seed byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
}

func record() usage.Record {
	return usage.Record{Service: "price-watch", Version: "1.0.0", Digest: "sha256:" + strings.Repeat("ab", 32),
		RunID: "r-1", Trigger: "cron", Start: time.Date(2026, 12, 2, 8, 0, 0, 123456789, time.FixedZone("x", 3600)),
		Outcome: "ok", Driver: "process", WallNS: 1500000, CPUNS: 900000, PeakMemory: 40 << 20, MemoryScope: "worker",
		Counters: map[string]float64{"rows": 1200, "bytes.out": 0.5}, CountersDropped: 1}
}

// TestSignVerify signs a record and verifies it with the node's key: the
// record comes back as signed, node set, start in UTC; a re-indented body
// still verifies.
func TestSignVerify(t *testing.T) {
	priv := key(1)
	pub := priv.Public().(ed25519.PublicKey)
	body, err := usage.Sign(record(), priv)
	if err != nil {
		t.Fatal(err)
	}
	got, err := usage.Verify(body, pub)
	if err != nil {
		t.Fatalf("Verify = %v\n%s", err, body)
	}
	want := record()
	if got.Node != usage.NodeID(pub) || !got.Start.Equal(want.Start) || got.Start.Location() != time.UTC ||
		got.Counters["rows"] != 1200 || got.Counters["bytes.out"] != 0.5 || got.WallNS != want.WallNS || got.MemoryScope != "worker" || got.CountersDropped != 1 {
		t.Errorf("Verify = %+v", got)
	}
	indented := bytes.ReplaceAll(body, []byte(`,"`), []byte(",\n  \""))
	if _, err := usage.Verify(indented, pub); err != nil {
		t.Errorf("Verify(re-indented) = %v", err)
	}
}

// TestTampered changes a signed body in each way a forger might: every
// one fails with the error that says why.
func TestTampered(t *testing.T) {
	priv := key(1)
	pub := priv.Public().(ed25519.PublicKey)
	body, err := usage.Sign(record(), priv)
	if err != nil {
		t.Fatal(err)
	}
	other := key(2)
	otherBody, err := usage.Sign(record(), other)
	if err != nil {
		t.Fatal(err)
	}
	// resigned is the record with rows changed, digest recomputed and
	// signed by another key, but claiming the node's key.
	forged := bytes.Replace(otherBody, []byte(base64.StdEncoding.EncodeToString(other.Public().(ed25519.PublicKey))), []byte(base64.StdEncoding.EncodeToString(pub)), -1)
	sig := func(b []byte) []byte {
		i := bytes.Index(b, []byte(`"value":"`)) + len(`"value":"`)
		out := append([]byte(nil), b...)
		if out[i] == 'A' {
			out[i] = 'B'
		} else {
			out[i] = 'A'
		}
		return out
	}
	for _, c := range []struct {
		name    string
		body    []byte
		trusted ed25519.PublicKey
		want    error
	}{
		{"counter changed", bytes.Replace(body, []byte(`"rows":1200`), []byte(`"rows":12`), 1), pub, usage.ErrDigest},
		{"wall changed", bytes.Replace(body, []byte(`"wall_ns":1500000`), []byte(`"wall_ns":15`), 1), pub, usage.ErrDigest},
		{"signature changed", sig(body), pub, usage.ErrSignature},
		{"another key", otherBody, pub, usage.ErrOtherKey},
		{"another key claiming the node's", forged, pub, usage.ErrInvalid},
		{"trusted key not the node's", body, other.Public().(ed25519.PublicKey), usage.ErrOtherKey},
		{"no trusted key", body, nil, usage.ErrOtherKey},
		{"not json", []byte(`{"digest":`), pub, usage.ErrInvalid},
		{"no signature", []byte(`{"digest":"sha256:00","record":{}}`), pub, usage.ErrInvalid},
	} {
		t.Run(c.name, func(t *testing.T) {
			if bytes.Equal(c.body, body) && c.trusted != nil && bytes.Equal(c.trusted, pub) {
				t.Fatal("the case changes nothing")
			}
			if _, err := usage.Verify(c.body, c.trusted); !errors.Is(err, c.want) {
				t.Errorf("Verify = %v, want %v", err, c.want)
			}
		})
	}
	// Digest recomputed for a changed counter: the signature still fails.
	changed := bytes.Replace(body, []byte(`"rows":1200`), []byte(`"rows":12`), 1)
	var parts struct{ Digest, Record json.RawMessage }
	if err := json.Unmarshal(changed, &parts); err != nil {
		t.Fatal(err)
	}
	canon, err := envelope.CanonicalJSON(parts.Record)
	if err != nil {
		t.Fatal(err)
	}
	changed = bytes.Replace(changed, parts.Digest, []byte(`"`+envelope.Digest(canon)+`"`), 1)
	if _, err := usage.Verify(changed, pub); !errors.Is(err, usage.ErrSignature) {
		t.Errorf("Verify(counter changed, digest recomputed) = %v, want %v", err, usage.ErrSignature)
	}
}

// TestSignRefuses refuses what canonical JSON cannot hold.
func TestSignRefuses(t *testing.T) {
	r := record()
	r.Counters["inf"] = math.Inf(1)
	if _, err := usage.Sign(r, key(1)); err == nil {
		t.Error("Sign(infinite counter) = nil error")
	}
}

// BenchmarkSign is what signing a run's usage record adds to recording it.
func BenchmarkSign(b *testing.B) {
	priv := key(1)
	r := record()
	for b.Loop() {
		if _, err := usage.Sign(r, priv); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerify is what a requestor pays per record.
func BenchmarkVerify(b *testing.B) {
	priv := key(1)
	body, err := usage.Sign(record(), priv)
	if err != nil {
		b.Fatal(err)
	}
	pub := priv.Public().(ed25519.PublicKey)
	for b.Loop() {
		if _, err := usage.Verify(body, pub); err != nil {
			b.Fatal(err)
		}
	}
}
