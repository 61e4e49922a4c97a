package decision

import (
	"encoding/json"
	"testing"
)

// TestDecisionJSON pins the wire format: the API sends and the store keeps
// decisions in this exact form, so a renamed tag or a reordered field must
// fail here first.
func TestDecisionJSON(t *testing.T) {
	for _, tc := range []struct {
		name string
		d    Decision
		want string
	}{
		{
			"zero",
			Decision{},
			`{"verdict":"","driver":"","limits":{"memory_bytes":0,"cpu":0,"timeout_ms":0,"pids":0,"concurrency":0},"network":"","reasons":null}`,
		},
		{
			"every field",
			Decision{
				Verdict:    Forward,
				Driver:     "wasm",
				Limits:     Limits{Memory: 64 << 20, CPU: 0.5, TimeoutMS: 5000, Pids: 32, Concurrency: 2},
				Network:    "api.example:443",
				Reasons:    []Reason{{Rule: "keywords", OK: true, Detail: "none refused"}},
				Forward:    &ForwardTo{Peer: "https://peer.example", Depth: 1},
				Dormant:    true,
				Container:  "shared",
				Fallback:   "refuse",
				Registries: []string{"https://registry.example"},
				Growth:     []Growth{{What: "memory", From: "32Mi", To: "64Mi"}, {What: "action", To: "submit"}},
			},
			`{"verdict":"forward","driver":"wasm","limits":{"memory_bytes":67108864,"cpu":0.5,"timeout_ms":5000,"pids":32,"concurrency":2},"network":"api.example:443","reasons":[{"rule":"keywords","ok":true,"detail":"none refused"}],"forward":{"peer":"https://peer.example","depth":1},"dormant":true,"container":"shared","container_fallback":"refuse","registries":["https://registry.example"],"growth":[{"what":"memory","from":"32Mi","to":"64Mi"},{"what":"action","to":"submit"}]}`,
		},
	} {
		got, err := json.Marshal(tc.d)
		if err != nil || string(got) != tc.want {
			t.Errorf("%s: json.Marshal = %s, %v\nwant %s", tc.name, got, err, tc.want)
			continue
		}
		var back Decision
		if err := json.Unmarshal(got, &back); err != nil {
			t.Errorf("%s: json.Unmarshal: %v", tc.name, err)
		} else if again, _ := json.Marshal(back); string(again) != tc.want {
			t.Errorf("%s: round trip = %s, want %s", tc.name, again, tc.want)
		}
	}
}

func TestOriginClaimJSON(t *testing.T) {
	got, err := json.Marshal(OriginClaim{Kind: "hostchain", ID: "btc", Stake: 250})
	if want := `{"kind":"hostchain","id":"btc","stake":250}`; err != nil || string(got) != want {
		t.Errorf("json.Marshal(OriginClaim) = %s, %v, want %s", got, err, want)
	}
}

func TestGrowthString(t *testing.T) {
	for _, tc := range []struct {
		g    Growth
		want string
	}{
		{Growth{What: "memory", From: "64Mi", To: "128Mi"}, "memory 64Mi → 128Mi"},
		{Growth{What: "action", To: "submit"}, "action submit"},
		{Growth{What: "trigger", To: "http /hook"}, "trigger http /hook"},
		{Growth{What: "network", To: "api.x:443"}, "network +api.x:443"},
		{Growth{What: "network", From: "api.x:443", To: "any"}, "network api.x:443 → any"},
		{Growth{What: "state", To: "granted"}, "state granted"},
	} {
		if got := tc.g.String(); got != tc.want {
			t.Errorf("%+v.String() = %q, want %q", tc.g, got, tc.want)
		}
	}
}
