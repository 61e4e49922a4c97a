package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/andromeda-runner/andromeda/internal/golden"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// manifests returns the manifests under testdata/dir, by name.
func manifests(t testing.TB, dir string) map[string][]byte {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join("testdata", dir))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	seen := map[string]bool{}
	for _, e := range entries {
		if _, ok := FormatOf(e.Name()); !ok {
			continue
		}
		base := strings.TrimSuffix(e.Name(), filepath.Ext(e.Name()))
		if seen[base] {
			t.Fatalf("testdata/%s: two manifests named %s share one golden file", dir, base)
		}
		seen[base] = true
		data, err := os.ReadFile(filepath.Join("testdata", dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = data
	}
	return files
}

// checkGolden compares got with testdata/name, or rewrites it under -update.
func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	golden.Check(t, filepath.Join("testdata", name), got, *update, "go test ./manifest -update")
}

func TestValid(t *testing.T) {
	for name, data := range manifests(t, "valid") {
		t.Run(name, func(t *testing.T) {
			s, err := CheckFile(name, data)
			if err != nil {
				t.Fatalf("CheckFile(%s) = %v, want no error", name, err)
			}
			out, err := json.MarshalIndent(s, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			checkGolden(t, filepath.Join("valid", strings.TrimSuffix(name, filepath.Ext(name))+".golden"), append(out, '\n'))
			roundTrip(t, s)
		})
	}
}

func TestInvalid(t *testing.T) {
	files := manifests(t, "invalid")
	if len(files) < 25 {
		t.Errorf("testdata/invalid holds %d manifests, want at least 25", len(files))
	}
	for name, data := range files {
		t.Run(name, func(t *testing.T) {
			s, err := CheckFile(name, data)
			if err == nil {
				t.Fatalf("CheckFile(%s) = %+v, want an error", name, s)
			}
			var errs Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Errorf("CheckFile(%s) error is %T, want a non-empty Errors", name, err)
			}
			checkGolden(t, filepath.Join("invalid", strings.TrimSuffix(name, filepath.Ext(name))+".err"), []byte(err.Error()+"\n"))
		})
	}
}

// roundTrip checks that the canonical JSON of an accepted manifest parses
// back to an equal Service with the same canonical JSON.
func roundTrip(t testing.TB, s *Service) {
	t.Helper()
	canon, err := json.Marshal(s)
	if err != nil {
		t.Fatalf("json.Marshal(%+v) = %v", s, err)
	}
	back, err := Check(canon, JSON)
	if err != nil {
		t.Fatalf("Check(canonical %s) = %v, want no error", canon, err)
	}
	again, err := json.Marshal(back)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(canon, again) {
		t.Fatalf("canonical JSON changed on a round trip:\n%s\n%s", canon, again)
	}
	if !reflect.DeepEqual(s, back) {
		t.Fatalf("Service changed on a round trip:\n%#v\n%#v", s, back)
	}
	// Normalize is idempotent.
	back.Normalize()
	if !reflect.DeepEqual(s, back) {
		t.Fatalf("Normalize is not idempotent:\n%#v\n%#v", s, back)
	}
	// yaml.Marshal writes a manifest that reads back the same.
	y, err := yaml.Marshal(s)
	if err != nil {
		t.Fatalf("yaml.Marshal(%+v) = %v", s, err)
	}
	if back, err := Check(y, YAML); err != nil {
		t.Fatalf("Check(yaml.Marshal(s) = %s) = %v, want no error", y, err)
	} else if again, _ := json.Marshal(back); !bytes.Equal(canon, again) {
		t.Fatalf("canonical JSON changed on a trip through YAML:\n%s\n%s", canon, again)
	}
	// encoding/json alone reads the canonical form back too.
	var plain Service
	if err := json.Unmarshal(canon, &plain); err != nil {
		t.Fatalf("json.Unmarshal(canonical %s) = %v", canon, err)
	}
	if again, _ := json.Marshal(&plain); !bytes.Equal(canon, again) {
		t.Fatalf("json.Unmarshal changed the canonical JSON:\n%s\n%s", canon, again)
	}
}

func TestTypedValues(t *testing.T) {
	s, err := Check([]byte(`
name: typed
version: 1.0.0
runtime: {entry: a.wasm}
triggers: [{kind: cron, every: 1m30s}, {kind: cron, schedule: "0 */5 * * * *"}]
resources: {memory: 1Gi, cpu: 250m, timeout: 2s, pids: 7, concurrency: 3}
capabilities: {network: [a.example:443]}
`), YAML)
	if err != nil {
		t.Fatal(err)
	}
	r := s.Resources
	checks := []struct {
		name      string
		got, want any
	}{
		{"memory", r.Memory.Int64(), int64(1 << 30)},
		{"memory as written", r.Memory.String(), "1Gi"},
		{"cpu", r.CPU.Cores(), 0.25},
		{"timeout", r.Timeout.Std(), 2 * time.Second},
		{"pids", r.Pids, 7},
		{"concurrency", r.Concurrency, 3},
		{"network", s.Capabilities.Network.Hosts, []string{"a.example:443"}},
		{"network any", s.Capabilities.Network.Any, false},
		{"every", s.Triggers[0].Every.Std(), 90 * time.Second},
		{"schedule", s.Triggers[1].Schedule, "0 */5 * * * *"},
		{"mode", s.Mode, ModeServer},
		{"driver", s.Runtime.Driver, DriverWasm},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %#v, want %#v", c.name, c.got, c.want)
		}
	}
}

func TestDefaults(t *testing.T) {
	s, err := Check([]byte(`{"name":"d","version":"1.0.0","runtime":{"entry":"d.wasm"}}`), JSON)
	if err != nil {
		t.Fatal(err)
	}
	want := Service{
		Name: "d", Version: "1.0.0",
		Runtime:  Runtime{Driver: DriverWasm, Entry: "d.wasm"},
		Mode:     ModeServer,
		Triggers: []Trigger{{Kind: KindManual}},
		Resources: Resources{
			Memory: mustBytes("64Mi"), CPU: mustCPU("1"), Timeout: mustDuration("5s"),
			Pids: 32, Concurrency: 4,
		},
	}
	if !reflect.DeepEqual(*s, want) {
		t.Errorf("Check(minimal) = %#v, want %#v", *s, want)
	}
	if got := s.Resources.Memory.Int64(); got != 64<<20 {
		t.Errorf("default memory = %d, want %d", got, 64<<20)
	}
	if !s.Capabilities.Network.None() {
		t.Errorf("default network = %v, want none", s.Capabilities.Network)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name   string
		format Format
		in     string
		want   string
	}{
		{"unknown format", "ini", "name = 1", `unknown manifest format: want yaml, json or toml: "ini"`},
		{"toml syntax", TOML, "name = \"a\"\nversion = 1.0.0\n", "manifest: toml syntax: line 2, column 14: expected newline but got U+002E '.'"},
		{"toml unknown", TOML, "name = \"a\"\n[runtime]\nentyr = \"a.wasm\"\n", `runtime.entyr: unknown field "entyr" (did you mean "entry"?)`},
		{"toml wrong type", TOML, "[resources]\npids = \"4\"\n", "resources.pids: must be an integer, not a string"},
		{"toml duplicate", TOML, "[[triggers]]\nkind = \"manual\"\nkind = \"cron\"\n", "triggers[0].kind: duplicate key"},
		{"toml duplicate table", TOML, "[runtime]\nentry = \"a.wasm\"\n[runtime]\n", "runtime: duplicate key"},
		{"too large", YAML, "#" + strings.Repeat("x", MaxSize), "manifest: must be at most 262144 bytes, got 262145"},
		{"invalid utf-8", JSON, "{\"name\": \"\xff\"}", "manifest: must be valid UTF-8"},
		{"json whitespace", JSON, " \n\t", "manifest: must not be empty"},
		{"yaml comment only", YAML, "# nothing\n", "manifest: must not be empty"},
		{"json truncated", JSON, `{"name": "x"`, "manifest: json syntax: line 1, column 13: unexpected end of input"},
		{"json second line", JSON, "{\n  \"name\": x}", "manifest: json syntax: line 2, column 11: invalid character 'x' looking for beginning of value"},
		{"json array root", JSON, `[1]`, "manifest: must be a mapping, not a list"},
		{"yaml null root", YAML, "~", "manifest: must not be null"},
		{"json null root", JSON, "null", "manifest: must not be null"},
		{"json deep", JSON, `{"config":` + strings.Repeat(`[`, 70) + strings.Repeat(`]`, 70) + `}`, "config" + strings.Repeat("[0]", 64) + ": must not nest deeper than 64 levels"},
		{"yaml merge key", YAML, "name: a\n<<: {version: 1.0.0}\n", `["<<"]: YAML merge keys are not supported`},
		{"yaml binary", YAML, "name: !!binary aGVsbG8=\n", "name: YAML tag !!binary is not supported"},
		{"yaml custom tag", YAML, "name: !thing a\n", "name: YAML tag !thing is not supported"},
		{"config key quoting", YAML, "config: {\"a b\": .nan}\n", `config["a b"]: must be a finite number`},
		{"config nested duplicate", JSON, `{"config": {"a": {"b": 1, "b": 2}}}`, "config.a.b: duplicate key"},
		{"network item", YAML, "capabilities: {network: [1]}\n", "capabilities.network[0]: must be a string (quote 1 to make it one)"},
		{"network mapping", YAML, "capabilities: {network: {a: 1}}\n", "capabilities.network: must be none, any or a list of host:port"},
		{"unit as list", YAML, "resources: {memory: [1]}\n", "resources.memory: must be a string or a number, not a list"},
		{"int overflow", JSON, `{"resources": {"pids": 1e30}}`, "resources.pids: must be an integer from -9223372036854775808 to 9223372036854775807"},
		{"int fraction", YAML, "resources: {pids: 1.5}\n", "resources.pids: must be an integer, not 1.5"},
		{"null field", YAML, "title: null\n", "title: must not be null"},
		{"empty value", YAML, "title:\n", "title: must not be null (an empty value is null)"},
		{"null unit", JSON, `{"resources": {"memory": null}}`, "resources.memory: must not be null"},
		{"null network", YAML, "capabilities: {network: ~}\n", "capabilities.network: must not be null"},
		{"null config", YAML, "config: null\n", "config: must not be null"},
		{"null input", YAML, "triggers: [{kind: manual, input: null}]\n", "triggers[0].input: must not be null"},
		{"null item", YAML, "keywords: [a, null]\n", "keywords[1]: must not be null"},
		{"typo", YAML, "resources: {memroy: 1Gi}\n", `resources.memroy: unknown field "memroy" (did you mean "memory"?)`},
		{"prefix", YAML, "runtime: {lang: go}\n", `runtime.lang: unknown field "lang" (did you mean "language"?)`},
		{"wrong case", JSON, `{"Name": "a"}`, `Name: unknown field "Name" (did you mean "name"?)`},
		{"far from every field", YAML, "colour: blue\n", `colour: unknown field "colour"`},
		{"key not a string", YAML, "config: {1: one}\n", "config.1: key must be a string (quote 1 to make it one)"},
		{"amount not finite", JSON, `{"reward": {"amount": 1e400}}`, "reward.amount: must be a finite number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.in), tt.format)
			if err == nil || err.Error() != tt.want {
				t.Errorf("Parse(%.40q) = %v, want %s", tt.in, err, tt.want)
			}
		})
	}
}

// TestDecoderCoversService parses a manifest that sets every field, so a
// field type the decoder cannot handle panics here rather than in a node.
func TestDecoderCoversService(t *testing.T) {
	data, err := os.ReadFile("testdata/valid/design-example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s, err := Check(data, YAML)
	if err != nil {
		t.Fatal(err)
	}
	full := *s
	full.Triggers = append(full.Triggers, Trigger{Kind: KindCron, Schedule: "@daily", Input: map[string]any{"a": int64(1)}})
	full.Runtime = Runtime{Driver: DriverDocker, Language: "go", Entry: "x", Image: "alpine:3", Command: []string{"a"}}
	full.Config = map[string]any{"k": []any{"v", 1.5, false, nil}}
	full.Volumes = []Volume{{Name: "out", Path: "/out", Size: mustBytes("64Mi")}}
	full.Placement = Placement{Labels: map[string]string{"zone": "eu-west"}, Spread: true}
	canon, err := json.Marshal(&full)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Check(canon, JSON)
	if err != nil {
		t.Fatalf("Check(%s) = %v", canon, err)
	}
	if !reflect.DeepEqual(&full, back) {
		t.Errorf("round trip of a full Service:\n got %#v\nwant %#v", back, &full)
	}
	for i := range reflect.TypeOf(full).NumField() {
		if reflect.ValueOf(full).Field(i).IsZero() {
			t.Errorf("field %s is not set by the test manifest", reflect.TypeOf(full).Field(i).Name)
		}
	}
}

func TestUnits(t *testing.T) {
	bytesTests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"67108864", 67108864, true},
		{"64Mi", 64 << 20, true},
		{"1Gi", 1 << 30, true},
		{"512k", 512000, true},
		{"2M", 2e6, true},
		{"1Ti", 1 << 40, true},
		{"64MB", 0, false},
		{"64mi", 0, false},
		{"1.5Gi", 0, false},
		{"Mi", 0, false},
		{"", 0, false},
		{" 1Mi", 0, false},
		{"-1Mi", -1 << 20, true},
	}
	for _, tt := range bytesTests {
		b, err := ParseBytes(tt.in)
		if (err == nil) != tt.ok || b.Int64() != tt.want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d, ok %v", tt.in, b.Int64(), err, tt.want, tt.ok)
		}
	}
	cpuTests := []struct {
		in   string
		want float64
		ok   bool
	}{
		{"1", 1, true},
		{"0.5", 0.5, true},
		{".5", 0.5, true},
		{"500m", 0.5, true},
		{"1.5m", 0, false},
		{"1e3", 0, false},
		{"NaN", 0, false},
		{"half", 0, false},
	}
	for _, tt := range cpuTests {
		c, err := ParseCPU(tt.in)
		if (err == nil) != tt.ok || c.Cores() != tt.want {
			t.Errorf("ParseCPU(%q) = %v, %v; want %v, ok %v", tt.in, c.Cores(), err, tt.want, tt.ok)
		}
	}
	if d, err := ParseDuration("1m30s"); err != nil || d.Std() != 90*time.Second || d.String() != "1m30s" {
		t.Errorf("ParseDuration(1m30s) = %v (%v), %v", d.Std(), d.String(), err)
	}
	if _, err := ParseDuration("5"); err == nil {
		t.Error("ParseDuration(5) succeeded, want an error: a duration needs a unit")
	}
	marshal := []struct {
		v    any
		want string
	}{
		{mustBytes("64Mi"), `"64Mi"`},
		{mustBytes("1048576"), `1048576`},
		{mustCPU("0.5"), `0.5`},
		{mustCPU(".5"), `".5"`},
		{mustCPU("500m"), `"500m"`},
		{mustDuration("5s"), `"5s"`},
		{Network{}, `"none"`},
		{Network{Any: true}, `"any"`},
		{Network{Hosts: []string{"a:1"}}, `["a:1"]`},
	}
	for _, tt := range marshal {
		got, err := json.Marshal(tt.v)
		if err != nil || string(got) != tt.want {
			t.Errorf("json.Marshal(%v) = %s, %v; want %s", tt.v, got, err, tt.want)
		}
	}
	var b Bytes
	if err := json.Unmarshal([]byte(`"64MB"`), &b); err == nil {
		t.Error(`json.Unmarshal("64MB", &Bytes) succeeded, want an error`)
	}
	var n Network
	if err := json.Unmarshal([]byte(`"some"`), &n); err == nil {
		t.Error(`json.Unmarshal("some", &Network) succeeded, want an error`)
	}
}

func TestLoad(t *testing.T) {
	const yamlManifest = "name: a\nversion: 1.0.0\nruntime: {entry: a.wasm}\n"
	tests := []struct {
		name  string
		files map[string]string
		want  error
	}{
		{"yaml", map[string]string{"andromeda.yaml": yamlManifest}, nil},
		{"yml", map[string]string{"andromeda.yml": yamlManifest}, nil},
		{"json", map[string]string{"andromeda.json": `{"name":"a","version":"1.0.0","runtime":{"entry":"a.wasm"}}`}, nil},
		{"toml", map[string]string{"andromeda.toml": "name = \"a\"\nversion = \"1.0.0\"\nruntime = {entry = \"a.wasm\"}\n"}, nil},
		{"toml and yaml", map[string]string{"andromeda.yaml": yamlManifest, "andromeda.toml": "name = \"a\""}, ErrManyManifests},
		{"none", map[string]string{"main.wasm": ""}, ErrNoManifest},
		{"two", map[string]string{"andromeda.yaml": yamlManifest, "andromeda.json": "{}"}, ErrManyManifests},
		{"invalid", map[string]string{"andromeda.yaml": "name: A\n"}, Errors{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, content := range tt.files {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			s, err := Load(dir)
			switch want := tt.want.(type) {
			case nil:
				if err != nil || s.Name != "a" {
					t.Errorf("Load = %v, %v; want service a", s, err)
				}
			case Errors:
				var errs Errors
				if !errors.As(err, &errs) || !strings.HasPrefix(err.Error(), filepath.Join(dir, "andromeda.yaml")+": ") {
					t.Errorf("Load = %v, want Errors naming the file", err)
				}
			default:
				if !errors.Is(err, want) {
					t.Errorf("Load = %v, want %v", err, want)
				}
			}
		})
	}
}

func TestValidateProgrammatic(t *testing.T) {
	s := &Service{
		Name: "p", Version: "1.0.0", Runtime: Runtime{Entry: "p.wasm"},
		Config: map[string]any{"f": func() {}},
		Reward: Reward{Amount: -1},
	}
	err := s.Validate()
	want := "reward.amount: must be a finite number ≥ 0\nconfig: must be JSON-encodable: unsupported type: func()"
	if err == nil || err.Error() != want {
		t.Errorf("Validate() = %v, want %s", err, want)
	}
	big := &Service{
		Name: "p", Version: "1.0.0", Runtime: Runtime{Entry: "p.wasm"},
		Config: map[string]any{"s": strings.Repeat("x", maxConfigSize)},
	}
	want = "config: must be at most 65536 bytes as JSON, got 65544"
	if err := big.Validate(); err == nil || err.Error() != want {
		t.Errorf("Validate() = %v, want %s", err, want)
	}
}

// FuzzParse checks that no input makes Parse, Normalize or Validate panic,
// and that every accepted manifest survives a trip through its canonical
// JSON unchanged.
func FuzzParse(f *testing.F) {
	for _, dir := range []string{"valid", "invalid"} {
		for name, data := range manifests(f, dir) {
			format, _ := FormatOf(name)
			f.Add(data, format == JSON)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, isJSON bool) {
		format := YAML
		if isJSON {
			format = JSON
		}
		s, err := Parse(data, format)
		if err != nil {
			if s != nil {
				t.Fatalf("Parse returned a Service and an error %v", err)
			}
			return
		}
		s.Normalize()
		if err := s.Validate(); err != nil {
			var errs Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("Validate error %T %v is not a non-empty Errors", err, err)
			}
			return
		}
		checkAccepted(t, s)
	})
}

// FuzzFields puts fuzzed strings into the fields of a valid manifest, so the
// field rules and the round trip see far more accepted manifests than byte
// mutations reach.
func FuzzFields(f *testing.F) {
	f.Add("price-watch", "1.2.0", "./main.wasm", "64Mi", "0.5", "5s", "30s", "*/5 * * * * mon-fri", "prices.updated", "/hooks/price", "api.example.com:443", "KLY")
	f.Add("a", "0.0.1-rc.1", "a/b.wasm", "1048576", "500m", "1ms", "@every 1s", "@hourly", "a", "/", "[::1]:1", "")
	f.Fuzz(func(t *testing.T, name, version, entry, memory, cpu, timeout, every, schedule, topic, path, host, unit string) {
		m := map[string]any{
			"name": name, "version": version,
			"runtime": map[string]any{"entry": entry},
			"triggers": []any{
				map[string]any{"kind": "cron", "every": every},
				map[string]any{"kind": "cron", "schedule": schedule, "input": map[string]any{topic: unit}},
				map[string]any{"kind": "event", "topic": topic},
				map[string]any{"kind": "http", "path": path},
			},
			"resources":    map[string]any{"memory": memory, "cpu": cpu, "timeout": timeout},
			"capabilities": map[string]any{"network": []any{host}},
			"reward":       map[string]any{"amount": 1, "unit": unit},
			"config":       map[string]any{name: []any{version, entry}},
		}
		data, err := json.Marshal(m)
		if err != nil {
			t.Skip()
		}
		s, err := Check(data, JSON)
		if err != nil {
			return
		}
		checkAccepted(t, s)
	})
}

// checkAccepted holds for every manifest a fuzz target got accepted: it
// survives a round trip, and go-cron, which fires it, takes its schedules.
func checkAccepted(t *testing.T, s *Service) {
	t.Helper()
	roundTrip(t, s)
	for i, tr := range s.Triggers {
		if tr.Schedule != "" {
			if err := goCronParse(tr.Schedule); err != nil {
				t.Fatalf("triggers[%d].schedule %q accepted here, rejected by go-cron: %v", i, tr.Schedule, err)
			}
		}
	}
}
