package policy

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/andromeda-runner/andromeda/manifest"
	"github.com/andromeda-runner/andromeda/strictdoc"
)

// TestOriginsDecode: origins is a bare list (an allowlist) or a mapping (a
// preference, or an allowlist with required: true), in YAML, JSON and
// TOML alike.
func TestOriginsDecode(t *testing.T) {
	btc := Origin{Kind: "hostchain", ID: "btc", MinStake: 2}
	for _, tc := range []struct {
		name   string
		format strictdoc.Format
		in     string
		want   Origins
	}{
		{"bare list is an allowlist", strictdoc.YAML, "origins:\n  - {kind: hostchain, id: btc, min_stake: 2}\n", Origins{Required: true, Prefer: []Origin{btc}, list: true}},
		{"empty list is none", strictdoc.YAML, "origins: []\n", Origins{list: true}},
		{"absent is none", strictdoc.YAML, "keywords: [defi]\n", Origins{}},
		{"mapping is a preference", strictdoc.YAML, "origins:\n  prefer: [{kind: hostchain, id: btc, min_stake: 2}]\n  min_stake: 1.5\n", Origins{Prefer: []Origin{btc}, MinStake: 1.5}},
		{"mapping required", strictdoc.YAML, "origins: {required: true, prefer: [{kind: hostchain, id: btc, min_stake: 2}]}\n", Origins{Required: true, Prefer: []Origin{btc}}},
		{"json list", strictdoc.JSON, `{"origins": [{"kind": "hostchain", "id": "btc", "min_stake": 2}]}`, Origins{Required: true, Prefer: []Origin{btc}, list: true}},
		{"json mapping", strictdoc.JSON, `{"origins": {"required": false, "prefer": [{"kind": "hostchain", "id": "btc", "min_stake": 2}], "min_stake": 0}}`, Origins{Prefer: []Origin{btc}}},
		{"toml list", strictdoc.TOML, "[[origins]]\nkind = \"hostchain\"\nid = \"btc\"\nmin_stake = 2\n", Origins{Required: true, Prefer: []Origin{btc}, list: true}},
		{"toml mapping", strictdoc.TOML, "[origins]\nmin_stake = 1.5\n[[origins.prefer]]\nkind = \"hostchain\"\nid = \"btc\"\nmin_stake = 2\n", Origins{Prefer: []Origin{btc}, MinStake: 1.5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ParseFormat([]byte(tc.in), tc.format)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(p.Origins, tc.want) {
				t.Errorf("origins = %#v, want %#v", p.Origins, tc.want)
			}
		})
	}
}

// TestOriginsErrors: a bad origins section is an error naming the path as
// the document wrote it, in every format.
func TestOriginsErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		format strictdoc.Format
		in     string
		want   []string
	}{
		{"scalar", strictdoc.YAML, "origins: btc\n", []string{"origins: must be a list of origins (an allowlist) or a mapping {required, prefer, min_stake}, not a string"}},
		{"unknown key", strictdoc.YAML, "origins: {requird: false}\n", []string{`origins.requird: unknown field "requird" (did you mean "required"?)`}},
		{"unknown key in prefer", strictdoc.YAML, "origins:\n  prefer: [{kind: hostchain, id: btc, min_stak: 1}]\n", []string{`origins.prefer[0].min_stak: unknown field "min_stak" (did you mean "min_stake"?)`}},
		{"bad entry in prefer", strictdoc.YAML, "origins:\n  prefer: [{kind: Hostchain, id: 'b t c', min_stake: -1}]\n", []string{"origins.prefer[0].kind: must be [a-z0-9-]{1,32}", "origins.prefer[0].id: must be 1 to 128", "origins.prefer[0].min_stake: must be a number ≥ 0"}},
		{"bad entry in list", strictdoc.YAML, "origins:\n  - {kind: Hostchain, id: btc}\n", []string{"origins[0].kind: must be [a-z0-9-]{1,32}"}},
		{"duplicate in prefer", strictdoc.YAML, "origins:\n  prefer: [{kind: hostchain, id: btc}, {kind: hostchain, id: btc, min_stake: 1}]\n", []string{"origins.prefer[1]: duplicate: origins.prefer[0] has the same kind and id"}},
		{"negative min_stake", strictdoc.YAML, "origins: {min_stake: -1}\n", []string{"origins.min_stake: must be a number ≥ 0"}},
		{"min_stake with required", strictdoc.YAML, "origins: {required: true, min_stake: 2, prefer: [{kind: hostchain, id: btc}]}\n", []string{"origins.min_stake: must be 0 when required is true"}},
		{"required lists none", strictdoc.YAML, "origins: {required: true}\n", []string{"origins.prefer: must list at least one origin when required is true"}},
		{"json wrong type", strictdoc.JSON, `{"origins": {"required": "no"}}`, []string{"origins.required: must be true or false, not a string"}},
		{"json null", strictdoc.JSON, `{"origins": {"prefer": null}}`, []string{"origins.prefer: must not be null"}},
		{"toml unknown key", strictdoc.TOML, "[origins]\nmin_stak = 1\n", []string{`origins.min_stak: unknown field "min_stak"`}},
		{"toml duplicate", strictdoc.TOML, "[[origins.prefer]]\nkind = \"hostchain\"\nid = \"btc\"\n[[origins.prefer]]\nkind = \"hostchain\"\nid = \"btc\"\n", []string{"origins.prefer[1]: duplicate: origins.prefer[0] has the same kind and id"}},
		{"services negative", strictdoc.YAML, "limits: {services: -1}\n", []string{"limits.services: must be from 0 to 1048576"}},
		{"services type", strictdoc.YAML, "limits: {services: many}\n", []string{"limits.services: must be an integer, not a string"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseFormat([]byte(tc.in), tc.format)
			if err == nil {
				t.Fatalf("ParseFormat(%q) = nil error, want %q", tc.in, tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// TestOriginsCanonical: the canonical form of an allowlist is the bare
// list, so a list-form policy keeps its digest and the mapping with
// required: true is the same policy; a preference round-trips through JSON
// and YAML.
func TestOriginsCanonical(t *testing.T) {
	list, err := Parse([]byte("origins:\n  - {kind: hostchain, id: btc, min_stake: 2}\n"))
	if err != nil {
		t.Fatal(err)
	}
	obj, err := Parse([]byte("origins: {required: true, prefer: [{kind: hostchain, id: btc, min_stake: 2}]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if list.Digest() != obj.Digest() {
		t.Errorf("a bare list and {required: true} with the same origins digest differently")
	}
	data, _ := json.Marshal(list)
	if !strings.Contains(string(data), `"origins":[{"kind":"hostchain","id":"btc","min_stake":2}]`) {
		t.Errorf("allowlist marshals to %s, want the bare list", data)
	}
	if def, _ := json.Marshal(DefaultPolicy()); strings.Contains(string(def), "origins") || strings.Contains(string(def), `"services"`) {
		t.Errorf("the default policy's canonical JSON names origins or limits.services: %s", def)
	}

	pref, err := Parse([]byte("origins: {prefer: [{kind: hostchain, id: btc, min_stake: 2}], min_stake: 1}\nlimits: {services: 3}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if pref.Digest() == obj.Digest() {
		t.Error("a preference and an allowlist of the same origins digest alike")
	}
	data, err = json.Marshal(pref)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(data)
	if err != nil {
		t.Fatalf("Parse(json.Marshal(preference)) = %v\n%s", err, data)
	}
	ydata, err := yaml.Marshal(pref)
	if err != nil {
		t.Fatal(err)
	}
	yback, err := Parse(ydata)
	if err != nil {
		t.Fatalf("Parse(yaml.Marshal(preference)) = %v\n%s", err, ydata)
	}
	for _, got := range []Policy{back, yback} {
		if !reflect.DeepEqual(got.Origins, pref.Origins) || got.Limits.Services != 3 || got.Digest() != pref.Digest() {
			t.Errorf("round trip: origins %#v, services %d; want %#v, 3", got.Origins, got.Limits.Services, pref.Origins)
		}
	}
}

// TestOriginsAdmit: a preference admits listed origins at their min_stake
// (preferred) and others at origins.min_stake; an allowlist (bare list or
// required: true) refuses everything it does not list. Each reason says
// which, and OriginRank puts preferred origins first.
func TestOriginsAdmit(t *testing.T) {
	m, err := manifest.Check([]byte("name: s\nversion: 1.0.0\nruntime: {entry: main.wasm}\n"), manifest.YAML)
	if err != nil {
		t.Fatal(err)
	}
	abc := func(stake float64) OriginClaim { return OriginClaim{Kind: "symbiote", ID: "abc", Stake: stake} }
	eth := func(stake float64) OriginClaim { return OriginClaim{Kind: "hostchain", ID: "eth", Stake: stake} }
	const (
		preference = "origins: {prefer: [{kind: symbiote, id: abc, min_stake: 2}]}\n"
		staked     = "origins: {prefer: [{kind: symbiote, id: abc, min_stake: 2}], min_stake: 3}\n"
		bareList   = "origins: [{kind: symbiote, id: abc, min_stake: 2}]\n"
		required   = "origins: {required: true, prefer: [{kind: symbiote, id: abc, min_stake: 2}]}\n"
	)
	for _, tc := range []struct {
		name, policy string
		origin       OriginClaim
		ok           bool
		detail       string
		rank         int
	}{
		{"preferred", preference, abc(5), true, "symbiote:abc preferred (stake 5 ≥ min_stake 2)", RankPreferred},
		{"preferred at the bar", preference, abc(2), true, "symbiote:abc preferred (stake 2 ≥ min_stake 2)", RankPreferred},
		{"no origin", preference, OriginClaim{}, true, "no origin named: not preferred; unlisted origins need min_stake 0", RankOther},
		{"unlisted", preference, eth(0), true, "hostchain:eth: not preferred; unlisted origins need min_stake 0", RankOther},
		{"listed below its bar", preference, abc(1), true, "symbiote:abc stake 1 is below origins.prefer[0].min_stake 2: not preferred; unlisted origins need min_stake 0", RankOther},
		{"no origin under a stake", staked, OriginClaim{}, false, "no origin named: not preferred; unlisted origins need min_stake 3, it has stake 0", RankOther},
		{"unlisted under a stake", staked, eth(1), false, "hostchain:eth: not preferred; unlisted origins need min_stake 3, it has stake 1", RankOther},
		{"unlisted meets the stake", staked, eth(3), true, "hostchain:eth: not preferred; unlisted origins need min_stake 3 (stake 3)", RankOther},
		{"listed below its bar and the stake", staked, abc(1), false, "symbiote:abc stake 1 is below origins.prefer[0].min_stake 2: not preferred; unlisted origins need min_stake 3, it has stake 1", RankOther},
		{"bare list: no origin", bareList, OriginClaim{}, false, "the submission names no origin; origins lists symbiote:abc", RankOther},
		{"bare list: unlisted", bareList, eth(9), false, "hostchain:eth is not in origins (symbiote:abc)", RankOther},
		{"bare list: listed", bareList, abc(2), true, "symbiote:abc with stake 2 (min_stake 2)", RankPreferred},
		{"bare list: listed below", bareList, abc(1), false, "symbiote:abc stake 1 is below origins[0].min_stake 2", RankOther},
		{"required: no origin", required, OriginClaim{}, false, "the submission names no origin; origins lists symbiote:abc", RankOther},
		{"required: listed", required, abc(3), true, "symbiote:abc with stake 3 (min_stake 2)", RankPreferred},
		{"default: no origin", "", OriginClaim{}, true, "any origin accepted", RankOther},
		{"default: any origin", "", eth(0), true, "any origin accepted (submission from hostchain:eth)", RankOther},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse([]byte(tc.policy))
			if err != nil {
				t.Fatal(err)
			}
			c, err := Compile(p)
			if err != nil {
				t.Fatal(err)
			}
			d := c.Admit(Submission{Manifest: m, Digest: digestA, Origin: tc.origin}, testNode())
			r := reasonOf(d, "origins")
			if r.OK != tc.ok || r.Detail != tc.detail {
				t.Errorf("origins reason = %+v, want ok %v %q", r, tc.ok, tc.detail)
			}
			if want := map[bool]Verdict{true: Run, false: Reject}[tc.ok]; d.Verdict != want {
				t.Errorf("verdict %s, want %s", d.Verdict, want)
			}
			if got := c.OriginRank(tc.origin); got != tc.rank {
				t.Errorf("OriginRank(%v) = %d, want %d", tc.origin, got, tc.rank)
			}
		})
	}
}

// TestImportKlyntarPrefers: the seed's own runner configuration, imported,
// admits a service that names no origin (PREFER_SYMBIOTES and
// PREFER_HOSTCHAINS are a preference, not an allowlist), and ranks a
// listed origin at its MIN_FREEZE first.
func TestImportKlyntarPrefers(t *testing.T) {
	k := importSeed(t)
	c, err := Compile(k.Policy)
	if err != nil {
		t.Fatal(err)
	}
	none := seedSubmission(t, func(_ *manifest.Service, s *Submission) { s.Origin = OriginClaim{} })
	d := c.Admit(none, seedNode())
	if r := reasonOf(d, "origins"); d.Verdict != Run || !r.OK || r.Detail != "no origin named: not preferred; unlisted origins need min_stake 0" {
		t.Fatalf("a service naming no origin under the seed's config: %s", mustJSON(t, d))
	}
	other := seedSubmission(t, func(_ *manifest.Service, s *Submission) { s.Origin = OriginClaim{Kind: "hostchain", ID: "eth"} })
	if d := c.Admit(other, seedNode()); d.Verdict != Run {
		t.Errorf("an unlisted hostchain under the seed's config: %s", mustJSON(t, d))
	}
	listed := seedSubmission(t, nil) // symbiote QfzhbW…, MIN_FREEZE 0
	d = c.Admit(listed, seedNode())
	if r := reasonOf(d, "origins"); d.Verdict != Run || !strings.Contains(r.Detail, "preferred (stake 0 ≥ min_stake 0)") || strings.Contains(r.Detail, "not preferred") {
		t.Errorf("a listed symbiote: %s", mustJSON(t, d))
	}
	if c.OriginRank(listed.Origin) != RankPreferred || c.OriginRank(OriginClaim{}) != RankOther || c.OriginRank(OriginClaim{Kind: "hostchain", ID: "btc"}) != RankPreferred {
		t.Errorf("ranks: listed %d, none %d, btc %d; want 0, 1, 0", c.OriginRank(listed.Origin), c.OriginRank(OriginClaim{}), c.OriginRank(OriginClaim{Kind: "hostchain", ID: "btc"}))
	}
	// The imported policy, written out as the CLI writes it (YAML) and
	// read back, is the same preference.
	out, err := yaml.Marshal(k.Policy)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(out)
	if err != nil {
		t.Fatalf("Parse(imported policy as YAML) = %v\n%s", err, out)
	}
	if back.Digest() != k.Policy.Digest() || back.Origins.Required {
		t.Errorf("the imported policy read back: origins %+v", back.Origins)
	}
}
