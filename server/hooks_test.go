package server

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/manifest"
	"github.com/andromeda-runner/andromeda/store"
)

// The fake backend serves no webhook and holds no secret, so that the
// OpenAPI tests see the routes of HookBackend served.

func (f *fakeBackend) HookRoute(path string) (HookRoute, error) {
	return HookRoute{}, fmt.Errorf("webhook %s: %w", path, store.ErrNotFound)
}

func (f *fakeBackend) Hook(ctx context.Context, route HookRoute, method string, message json.RawMessage) (api.Run, error) {
	return api.Run{}, fmt.Errorf("no webhooks: %w", store.ErrNotFound)
}

func (f *fakeBackend) HookFlow(ctx context.Context, route HookRoute, method string, message json.RawMessage) (api.FlowRun, error) {
	return api.FlowRun{}, fmt.Errorf("no webhooks: %w", store.ErrNotFound)
}

func (f *fakeBackend) Secrets(ctx context.Context) ([]api.Secret, error) { return nil, nil }

func (f *fakeBackend) SetSecret(ctx context.Context, name string, value []byte) error { return nil }

func (f *fakeBackend) DeleteSecret(ctx context.Context, name string) error {
	return fmt.Errorf("secret %s: %w", name, store.ErrNotFound)
}

func mac(key, text string) []byte {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(text))
	return m.Sum(nil)
}

func TestCheckHMAC(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	ts := strconv.FormatInt(now.Unix(), 10)
	body := []byte(`{"a":1}`)
	plain := &manifest.HMACAuth{Secret: "k", Header: "X-Sig", Prefix: "sha256="}
	stamped := &manifest.HMACAuth{Secret: "k", Header: "X-Sig", TimestampHeader: "X-Ts"}
	hexSig := "sha256=" + hex.EncodeToString(mac("key", string(body)))
	for _, tc := range []struct {
		name    string
		a       *manifest.HMACAuth
		headers map[string]string
		want    string // "" for valid
	}{
		{"hex", plain, map[string]string{"X-Sig": hexSig}, ""},
		{"upper hex", plain, map[string]string{"X-Sig": "sha256=" + strings.ToUpper(hex.EncodeToString(mac("key", string(body))))}, ""},
		{"base64", plain, map[string]string{"X-Sig": "sha256=" + base64.StdEncoding.EncodeToString(mac("key", string(body)))}, ""},
		{"raw base64", plain, map[string]string{"X-Sig": "sha256=" + base64.RawStdEncoding.EncodeToString(mac("key", string(body)))}, ""},
		{"spaces", plain, map[string]string{"X-Sig": "  " + hexSig + " "}, ""},
		{"wrong key", plain, map[string]string{"X-Sig": "sha256=" + hex.EncodeToString(mac("other", string(body)))}, "signature does not match"},
		{"no prefix", plain, map[string]string{"X-Sig": hex.EncodeToString(mac("key", string(body)))}, "followed by 64 hex digits"},
		{"short", plain, map[string]string{"X-Sig": hexSig[:len(hexSig)-2]}, "followed by 64 hex digits"},
		{"missing", plain, nil, "missing signature header X-Sig"},
		{"stamped", stamped, map[string]string{"X-Ts": ts, "X-Sig": hex.EncodeToString(mac("key", ts+"."+string(body)))}, ""},
		{"stamped edge", stamped, map[string]string{"X-Ts": strconv.FormatInt(now.Add(-5*time.Minute).Unix(), 10), "X-Sig": hex.EncodeToString(mac("key", strconv.FormatInt(now.Add(-5*time.Minute).Unix(), 10)+"."+string(body)))}, ""},
		{"expired", stamped, map[string]string{"X-Ts": strconv.FormatInt(now.Add(-5*time.Minute-time.Second).Unix(), 10), "X-Sig": hex.EncodeToString(mac("key", "x"))}, "outside the replay window of 5m0s"},
		{"future", stamped, map[string]string{"X-Ts": strconv.FormatInt(now.Add(6*time.Minute).Unix(), 10), "X-Sig": hex.EncodeToString(mac("key", "x"))}, "outside the replay window"},
		{"body only", stamped, map[string]string{"X-Ts": ts, "X-Sig": hex.EncodeToString(mac("key", string(body)))}, "signature does not match"},
		{"bad timestamp", stamped, map[string]string{"X-Ts": "soon", "X-Sig": hex.EncodeToString(mac("key", "x"))}, "want Unix seconds"},
		{"no timestamp", stamped, map[string]string{"X-Sig": hex.EncodeToString(mac("key", "x"))}, "missing timestamp header X-Ts"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			for k, v := range tc.headers {
				h.Set(k, v)
			}
			got := CheckHMAC(tc.a, []byte("key"), h, body, now)
			if tc.want == "" && got != "" || !strings.Contains(got, tc.want) {
				t.Errorf("CheckHMAC = %q, want %q", got, tc.want)
			}
		})
	}
}

// FuzzParseSignature: whatever a caller sends, parsing never panics, and
// what it accepts is exactly a 32-byte digest that the canonical hex form
// of reads back the same.
func FuzzParseSignature(f *testing.F) {
	for _, s := range []string{"sha256=" + strings.Repeat("ab", 32), strings.Repeat("0", 64), base64.StdEncoding.EncodeToString(make([]byte, 32)), "", "sha256=", "sha256=zz", "  sha256=" + strings.Repeat("AB", 32)} {
		f.Add(s, "sha256=")
		f.Add(s, "")
	}
	f.Fuzz(func(t *testing.T, v, prefix string) {
		b, ok := ParseSignature(v, prefix)
		if !ok {
			if b != nil {
				t.Fatalf("ParseSignature(%q, %q) refused but returned %x", v, prefix, b)
			}
			return
		}
		if len(b) != sha256.Size {
			t.Fatalf("ParseSignature(%q, %q) = %d bytes, want %d", v, prefix, len(b), sha256.Size)
		}
		if strings.TrimSpace(prefix) == prefix && !strings.ContainsAny(prefix, " \t") {
			again, ok := ParseSignature(prefix+hex.EncodeToString(b), prefix)
			if !ok || !hmac.Equal(again, b) {
				t.Fatalf("the hex form of an accepted signature %x does not read back", b)
			}
		}
	})
}

func TestCheckBearer(t *testing.T) {
	for _, tc := range []struct{ auth, want string }{
		{"Bearer s3cret", ""},
		{"bearer   s3cret ", ""},
		{"Bearer s3cre", "invalid bearer token"},
		{"Bearer s3cret0", "invalid bearer token"},
		{"Basic s3cret", "missing bearer token"},
		{"", "missing bearer token"},
	} {
		h := http.Header{}
		if tc.auth != "" {
			h.Set("Authorization", tc.auth)
		}
		if got := checkBearer(h, []byte("s3cret")); got != tc.want && !strings.Contains(got, tc.want) || tc.want == "" && got != "" {
			t.Errorf("checkBearer(%q) = %q, want %q", tc.auth, got, tc.want)
		}
	}
}

// TestHookRequest: the message holds the request less its credentials,
// the body as JSON, text or base64.
func TestHookRequest(t *testing.T) {
	route := HookRoute{Path: "/hooks/x", Auth: manifest.HookAuth{HMAC: &manifest.HMACAuth{Header: "x-sig"}}}
	for _, tc := range []struct {
		ct, body, want string
	}{
		{"application/json", `{"a": 1}`, `"body":{"a":1}`},
		{"application/vnd.api+json; charset=utf-8", `[1]`, `"body":[1]`},
		{"application/json", `{"a": `, `"body":"{\"a\": "`},
		{"text/plain", `{"a": 1}`, `"body":"{\"a\": 1}"`},
		{"", "\xff\x00", `"body_base64":"/wA="`},
		{"", "", `{"method":"POST","path":"/hooks/x","query":{"q":["1"]},"headers":{"Content-Type":[""],"X-Other":["o"]}}`},
	} {
		r := httptest.NewRequest("POST", "/hooks/x?q=1", strings.NewReader(tc.body))
		r.Header.Set("Content-Type", tc.ct)
		r.Header.Set("Authorization", "Bearer t")
		r.Header.Set("X-Sig", "s")
		r.Header.Set("X-Other", "o")
		b, err := json.Marshal(hookRequest(r, route, []byte(tc.body)))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), tc.want) || strings.Contains(string(b), "Authorization") || strings.Contains(string(b), "X-Sig") {
			t.Errorf("hookRequest(%q, %q) = %s, want %s and no credentials", tc.ct, tc.body, b, tc.want)
		}
	}
}
