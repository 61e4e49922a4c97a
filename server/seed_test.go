package server

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/decision"
)

var seedArchive = base64.StdEncoding.EncodeToString([]byte("\x1f\x8bnot really a tar.gz"))

func TestDecodeSeedService(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string
		want api.SeedService
	}{
		{"archive", `{"title":" Weather ","desc":"Rain.\n","archive":"` + seedArchive + `"}`,
			api.SeedService{Title: "Weather", Desc: "Rain.", Archive: []byte("\x1f\x8bnot really a tar.gz")}},
		{"location, empty desc", `{"title":"W","desc":"","location":"https://x.example/a.tar.gz"}`,
			api.SeedService{Title: "W", Location: "https://x.example/a.tar.gz"}},
		{"base64 wrapped in lines", `{"title":"W","desc":"d","archive":"` + seedArchive[:8] + `\r\n` + seedArchive[8:] + `"}`,
			api.SeedService{Title: "W", Desc: "d", Archive: []byte("\x1f\x8bnot really a tar.gz")}},
		{"every field", `{"title":"W","desc":"d","location":"https://x/a","keywords":["a","b"],"reward":12.5,"symbiote":"Qfz","freeze":300}`,
			api.SeedService{Title: "W", Desc: "d", Location: "https://x/a", Keywords: []string{"a", "b"}, Reward: &api.SeedReward{Amount: 12.5, Unit: "KLY"},
				Origin: decision.OriginClaim{Kind: "symbiote", ID: "Qfz", Stake: 300}}},
		{"reward object, origin string", `{"title":"W","desc":"d","location":"https://x/a","reward":{"amount":3,"unit":"USDC"},"origin":"hostchain:btc;stake=2"}`,
			api.SeedService{Title: "W", Desc: "d", Location: "https://x/a", Reward: &api.SeedReward{Amount: 3, Unit: "USDC"},
				Origin: decision.OriginClaim{Kind: "hostchain", ID: "btc", Stake: 2}}},
		{"unknown fields are listed, not refused", `{"zeta":1,"title":"W","desc":"d","location":"https://x/a","author":{"a":[1]},"Title":"case counts"}`,
			api.SeedService{Title: "W", Desc: "d", Location: "https://x/a", Unused: []string{"Title", "author", "zeta"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeSeedService([]byte(tc.body), 1<<20)
			if err != nil {
				t.Fatalf("DecodeSeedService: %v", err)
			}
			g, _ := json.Marshal(got)
			w, _ := json.Marshal(tc.want)
			if string(g) != string(w) {
				t.Fatalf("DecodeSeedService = %s\nwant %s", g, w)
			}
		})
	}
}

func TestDecodeSeedServiceRefusals(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		kind       error
		want       string
	}{
		{"not JSON", `{"title":`, ErrInvalid, "service object: json syntax"},
		{"a list", `["title"]`, ErrInvalid, "must be a JSON object"},
		{"null", `null`, ErrInvalid, "must be a JSON object"},
		{"trailing data", `{"title":"W"} {}`, ErrInvalid, "trailing data"},
		{"no title", `{"desc":"d","location":"https://x/a"}`, ErrInvalid, "title: required"},
		{"empty title", `{"title":"  ","desc":"d","location":"https://x/a"}`, ErrInvalid, "title: must not be empty"},
		{"long title", `{"title":"` + strings.Repeat("é", 81) + `","desc":"d","location":"https://x/a"}`, ErrInvalid, "title: must be at most 80 characters, got 81"},
		{"title on two lines", `{"title":"a\nb","desc":"d","location":"https://x/a"}`, ErrInvalid, "title: must be one line"},
		{"title null", `{"title":null,"desc":"d","location":"https://x/a"}`, ErrInvalid, "title: must be a string"},
		{"no desc", `{"title":"W","location":"https://x/a"}`, ErrInvalid, "desc: required"},
		{"desc a number", `{"title":"W","desc":5,"location":"https://x/a"}`, ErrInvalid, "desc: must be a string"},
		{"long desc", `{"title":"W","desc":"` + strings.Repeat("x", 4097) + `","location":"https://x/a"}`, ErrInvalid, "desc: must be at most 4096 characters"},
		{"neither", `{"title":"W","desc":"d"}`, ErrInvalid, "archive: required: give the service as archive"},
		{"both", `{"title":"W","desc":"d","location":"https://x/a","archive":"` + seedArchive + `"}`, ErrInvalid, "location, archive: give one of them, not both"},
		{"bad base64", `{"title":"W","desc":"d","archive":"a*b="}`, ErrInvalid, "archive: must be standard base64"},
		{"url-safe base64", `{"title":"W","desc":"d","archive":"-_-_"}`, ErrInvalid, "archive: must be standard base64"},
		{"empty archive", `{"title":"W","desc":"d","archive":""}`, ErrInvalid, "archive: must not be empty"},
		{"archive too large", `{"title":"W","desc":"d","archive":"` + base64.StdEncoding.EncodeToString(make([]byte, 65)) + `"}`, ErrTooLarge, "archive: the archive is 65 bytes, more than the 64"},
		{"empty location", `{"title":"W","desc":"d","location":" "}`, ErrInvalid, "location: must not be empty"},
		{"keywords not strings", `{"title":"W","desc":"d","location":"https://x/a","keywords":[1]}`, ErrInvalid, "keywords: must be a list of strings"},
		{"negative reward", `{"title":"W","desc":"d","location":"https://x/a","reward":-1}`, ErrInvalid, "reward: must be ≥ 0"},
		{"reward with a typo", `{"title":"W","desc":"d","location":"https://x/a","reward":{"amout":1}}`, ErrInvalid, "reward.amout: unknown field"},
		{"reward without amount", `{"title":"W","desc":"d","location":"https://x/a","reward":{"unit":"KLY"}}`, ErrInvalid, "reward.amount: required"},
		{"reward a string", `{"title":"W","desc":"d","location":"https://x/a","reward":"lots"}`, ErrInvalid, "reward: must be a number of KLY or {amount, unit}"},
		{"bad origin", `{"title":"W","desc":"d","location":"https://x/a","origin":"btc"}`, ErrInvalid, "origin: origin \"btc\": must be kind:id"},
		{"two origins", `{"title":"W","desc":"d","location":"https://x/a","origin":"hostchain:btc","symbiote":"Q"}`, ErrInvalid, "origin, symbiote: give at most one origin"},
		{"symbiote with a space", `{"title":"W","desc":"d","location":"https://x/a","symbiote":"a b"}`, ErrInvalid, "symbiote: must be an id"},
		{"freeze alone", `{"title":"W","desc":"d","location":"https://x/a","freeze":5}`, ErrInvalid, "freeze: only with symbiote or hostchain"},
		{"negative freeze", `{"title":"W","desc":"d","location":"https://x/a","hostchain":"btc","freeze":-5}`, ErrInvalid, "freeze: must be a number ≥ 0"},
		{"every problem at once", `{"title":1,"desc":2}`, ErrInvalid, "service object: 3 problems"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeSeedService([]byte(tc.body), 64)
			var e *Error
			if !errors.As(err, &e) || !errors.Is(err, tc.kind) {
				t.Fatalf("DecodeSeedService = %v, want an *Error of kind %v", err, tc.kind)
			}
			if full := toAPIError(err).Error(); !strings.Contains(full, tc.want) {
				t.Fatalf("DecodeSeedService = %q, want it to say %q", full, tc.want)
			}
		})
	}
}

func TestIsSeedService(t *testing.T) {
	for _, tc := range []struct {
		body string
		want bool
	}{
		{`{"title":"W","desc":"d"}`, true},
		{`{"title":"W"}`, true},
		{`{"archive":"x"}`, true},
		{`{"location":"https://x/a"}`, true},
		{`{"name":"w","version":"1.0.0","title":"W","source":{"location":"https://x/a"}}`, false},
		{`{"name":"w","version":"1.0.0","desc":"a seed field wins"}`, true},
		{`{"name":"w"}`, false},
		{`{}`, false},
	} {
		var fields map[string]json.RawMessage
		json.Unmarshal([]byte(tc.body), &fields)
		if got := IsSeedService(fields); got != tc.want {
			t.Errorf("IsSeedService(%s) = %v, want %v", tc.body, got, tc.want)
		}
	}
}

// seedFake is fakeBackend taking the seed object, recording what it got.
type seedFake struct {
	fakeBackend
	seed   *api.SeedService
	opts   api.SubmitOptions
	source []byte
}

func (f *seedFake) SubmitSeed(ctx context.Context, p Principal, obj api.SeedService, o api.SubmitOptions) (api.SubmitResult, error) {
	f.seed, f.opts = &obj, o
	return api.SubmitResult{Service: api.Service{Name: "w", Version: "0.0.0-seed-abc", Digest: "sha256:00"}}, nil
}

func (f *seedFake) SubmitSource(ctx context.Context, p Principal, m []byte, o api.SubmitOptions) (api.SubmitResult, error) {
	f.source = m
	return api.SubmitResult{}, nil
}

// TestSeedEndpointShapes: POST /service sends the seed object to
// SubmitSeed and a manifest to SubmitSource, each within its own bound.
func TestSeedEndpointShapes(t *testing.T) {
	post := func(h http.Handler, body string, header ...string) (int, string, string) {
		req := httptest.NewRequest("POST", "/service", strings.NewReader(body))
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w.Code, w.Body.String(), w.Header().Get("Andromeda-Reason")
	}
	f := &seedFake{}
	s := New(f, Config{SeedEndpoint: true, SeedAnonymous: true, MaxJSONBytes: 128, MaxArchiveBytes: 1 << 10}, nil)

	// The seed object, with an archive far above MaxJSONBytes.
	arc := base64.StdEncoding.EncodeToString(make([]byte, 900))
	code, out, reason := post(s, `{"title":"W","desc":"d","archive":"`+arc+`","tags":["x"]}`)
	if code != 200 || out != "OK" || reason != "admitted w 0.0.0-seed-abc (sha256:00)" || f.seed == nil || len(f.seed.Archive) != 900 || !slices.Equal(f.seed.Unused, []string{"tags"}) {
		t.Fatalf("seed object = %d %q %q, backend got %+v", code, out, reason, f.seed)
	}
	// Its origin and the header's must agree.
	code, out, reason = post(s, `{"title":"W","desc":"d","location":"https://x/a","hostchain":"btc"}`, decision.OriginHeader, "hostchain:sol")
	if code != 400 || out != "ERR" || !strings.Contains(reason, "origin hostchain:btc differs from the Andromeda-Origin header's hostchain:sol") {
		t.Fatalf("origin conflict = %d %q %q", code, out, reason)
	}
	// A manifest goes to SubmitSource, as before, within MaxJSONBytes.
	f.seed = nil
	manifest := `{"name":"w","version":"1.0.0","source":{"location":"https://x/a"}}`
	if code, out, _ := post(s, manifest); code != 200 || out != "OK" || string(f.source) != manifest || f.seed != nil {
		t.Fatalf("manifest = %d %q, backend got %q", code, out, f.source)
	}
	big := `{"name":"w","version":"1.0.0","title":"` + strings.Repeat("x", 200) + `"}`
	if code, out, reason := post(s, big); code != 413 || out != "ERR" || !strings.Contains(reason, "at most 128 bytes") {
		t.Fatalf("large manifest = %d %q %q", code, out, reason)
	}
	// Over the seed body's own bound.
	huge := `{"title":"W","desc":"d","archive":"` + base64.StdEncoding.EncodeToString(make([]byte, 4<<10)) + `"}`
	if code, out, _ := post(s, huge); code != 413 || out != "ERR" {
		t.Fatalf("huge body = %d %q", code, out)
	}
	// A backend without SubmitSeed takes manifests only.
	plain := New(&fakeBackend{}, Config{SeedEndpoint: true, SeedAnonymous: true}, nil)
	if code, out, reason := post(plain, `{"title":"W","desc":"d","location":"https://x/a"}`); code != 400 || out != "ERR" || !strings.Contains(reason, "takes only manifests") {
		t.Fatalf("no SeedBackend = %d %q %q", code, out, reason)
	}
}

// FuzzSeedService: the decoder never panics, and what it accepts keeps
// its promises.
func FuzzSeedService(f *testing.F) {
	for _, s := range []string{
		`{"title":"W","desc":"d","archive":"` + seedArchive + `"}`,
		`{"title":"W","desc":"","location":"https://x.example/a.tar.gz","keywords":["a"],"reward":{"amount":1,"unit":"KLY"}}`,
		`{"title":"W","desc":"d","location":"https://x/a","symbiote":"Q","freeze":1,"extra":{"x":[null]}}`,
		`{"title":"W","desc":"d","location":"https://x/a","origin":"hostchain:btc;stake=2","reward":3}`,
		`{"title":1,"desc":null,"archive":"=="}`,
		`[]`, `null`, `{"title":"\u0000"}`, ``,
	} {
		f.Add([]byte(s))
	}
	known := []string{"title", "desc", "location", "archive", "keywords", "reward", "origin", "symbiote", "hostchain", "freeze"}
	f.Fuzz(func(t *testing.T, body []byte) {
		obj, err := DecodeSeedService(body, 1<<10)
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error %v is neither ErrInvalid nor ErrTooLarge", err)
			}
			return
		}
		if obj.Title == "" || (obj.Location == "") == (obj.Archive == nil) || len(obj.Archive) > 1<<10 {
			t.Fatalf("accepted %+v", obj)
		}
		if !slices.IsSorted(obj.Unused) || slices.ContainsFunc(obj.Unused, func(k string) bool { return slices.Contains(known, k) }) {
			t.Fatalf("unused %q", obj.Unused)
		}
		if obj.Origin.Stake < 0 || obj.Reward != nil && obj.Reward.Amount < 0 {
			t.Fatalf("accepted a negative amount: %+v", obj)
		}
	})
}

// outageBackend is seedFake with two more tokens: "rt" of the runtime
// role, and "down", which the store cannot check.
type outageBackend struct{ seedFake }

func (b *outageBackend) Authenticate(ctx context.Context, token string) (Principal, error) {
	switch token {
	case "rt":
		return Principal{Name: "kiosk", Role: api.RoleRuntime}, nil
	case "down":
		return Principal{}, &Error{Kind: ErrUnavailable, Msg: "the node could not check the token: its store did not answer", RetryAfter: time.Second}
	}
	return b.seedFake.Authenticate(ctx, token)
}

// TestSeedEndpointRoles: POST /service takes submitter and operator
// tokens only (a runtime token sits in a browser page), and a token the
// store could not check is a 503 to retry, there and on the API, never a
// 401 that would have the client drop it.
func TestSeedEndpointRoles(t *testing.T) {
	f := &outageBackend{}
	s := New(f, Config{SeedEndpoint: true}, nil)
	arc := base64.StdEncoding.EncodeToString(make([]byte, 100))
	post := func(token string) (int, string, string) {
		req := httptest.NewRequest("POST", "/service", strings.NewReader(`{"title":"W","desc":"d","archive":"`+arc+`"}`))
		req.Header.Set("Authorization", "Bearer "+token)
		w := httptest.NewRecorder()
		s.ServeHTTP(w, req)
		return w.Code, w.Body.String(), w.Header().Get("Andromeda-Reason")
	}
	if code, out, reason := post("rt"); code != 403 || out != "ERR" || !strings.Contains(reason, "runtime role") || f.seed != nil {
		t.Errorf("runtime token = %d %q %q, backend got %+v; want 403 ERR and nothing submitted", code, out, reason, f.seed)
	}
	if code, out, reason := post("down"); code != 503 || out != "ERR" || !strings.Contains(reason, "could not check the token") || f.seed != nil {
		t.Errorf("token not checked = %d %q %q; want 503 ERR", code, out, reason)
	}
	if code, out, _ := post("sub"); code != 200 || out != "OK" || f.seed == nil {
		t.Errorf("submitter token = %d %q; want 200 OK", code, out)
	}
	req := httptest.NewRequest("GET", "/v1/services", nil)
	req.Header.Set("Authorization", "Bearer down")
	w := httptest.NewRecorder()
	s.ServeHTTP(w, req)
	if w.Code != 503 || w.Header().Get("Retry-After") == "" || w.Header().Get("WWW-Authenticate") != "" {
		t.Errorf("GET /v1/services with a token the store could not check = %d (Retry-After %q, WWW-Authenticate %q); want 503 with Retry-After", w.Code, w.Header().Get("Retry-After"), w.Header().Get("WWW-Authenticate"))
	}
}
