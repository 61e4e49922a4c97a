// Package manifest holds the service manifest (docs/design.md section 3): the
// Service type and its parts, a strict Parse for the YAML, JSON and TOML
// forms, Normalize, which fills the documented defaults, and Validate, which
// reports every broken rule at once, each naming the field's path and the
// rule.
//
// The lifecycle is Parse → Normalize → Validate; Check does all three on
// bytes and Load on a service directory. Parsing is strict: unknown fields,
// duplicate keys (in TOML also tables defined twice), wrong types, YAML
// aliases, several YAML documents and trailing JSON data are errors,
// because a typo must never silently weaken a limit. Values written with units (memory 64Mi, cpu 500m, timeout 5s) keep
// the notation the author used, and expose typed values (bytes, cores,
// time.Duration) for the node. json.Marshal of a Service is its canonical
// form: deterministic, and parsed back to an equal Service.
//
// The package does not decide whether a service may run here (that is
// policy), does not know drivers or the sandbox (the node translates a
// Service into a sandbox.Spec), does not schedule cron triggers (the trigger
// package does, with github.com/netresearch/go-cron) and does no I/O except
// Load. It imports only the standard library, go.yaml.in/yaml/v3 (for the
// units' UnmarshalYAML), package strictdoc, which reads the three formats,
// and package contract.
package manifest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"

	"github.com/andromeda-runner/andromeda/strictdoc"
)

// MaxSize is the largest manifest source, in bytes, that Parse accepts.
const MaxSize = 256 << 10

// Format is the syntax a manifest is written in.
type Format string

// The manifest formats. JSON is parsed with encoding/json, YAML with
// go.yaml.in/yaml/v3, TOML with github.com/pelletier/go-toml/v2; all map
// onto the same fields and rules (package strictdoc).
const (
	YAML Format = "yaml"
	JSON Format = "json"
	TOML Format = "toml"
)

// fileNames are the names a manifest may have at the root of a service
// directory, in the order Load looks for them.
var fileNames = [...]string{"andromeda.yaml", "andromeda.yml", "andromeda.json", "andromeda.toml"}

// FileNames returns the names a manifest may have at the root of a service
// directory: andromeda.yaml, andromeda.yml, andromeda.json and
// andromeda.toml. Exactly one of them must exist.
func FileNames() []string { return fileNames[:] }

// FormatOf returns the format of a manifest file by its extension (.yaml,
// .yml, .json or .toml, in any case) and false for any other name.
func FormatOf(name string) (Format, bool) {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".yaml", ".yml":
		return YAML, true
	case ".json":
		return JSON, true
	case ".toml":
		return TOML, true
	}
	return "", false
}

var (
	// ErrNoManifest is returned by Load for a directory with no manifest file.
	ErrNoManifest = errors.New("no manifest: want andromeda.yaml, andromeda.yml, andromeda.json or andromeda.toml")
	// ErrManyManifests is returned by Load for a directory with more than one
	// manifest file.
	ErrManyManifests = errors.New("more than one manifest")
	// ErrFormat is returned for a format or file name that is not YAML,
	// JSON or TOML.
	ErrFormat = errors.New("unknown manifest format: want yaml, json or toml")
)

// Mode is how the node keeps a service's instances between invocations.
type Mode string

// The modes. The default is ModeServer.
const (
	// ModeServer keeps a long-lived instance serving many invocations.
	ModeServer Mode = "server"
	// ModeCommand starts a fresh instance for every invocation.
	ModeCommand Mode = "command"
)

// Driver names the way a service is run.
type Driver string

// The drivers. The default is DriverWasm.
const (
	DriverWasm    Driver = "wasm"    // WebAssembly in-process (wazero)
	DriverProcess Driver = "process" // a host toolchain in a Linux sandbox
	DriverDocker  Driver = "docker"  // a container through the Docker Engine API
)

// TriggerKind is what fires a trigger.
type TriggerKind string

// The trigger kinds.
const (
	KindCron   TriggerKind = "cron"   // a fixed interval (every) or a cron schedule
	KindEvent  TriggerKind = "event"  // a message on a bus topic
	KindManual TriggerKind = "manual" // andromeda fire NAME, or the API
	KindHTTP   TriggerKind = "http"   // a request to a webhook path
)

// Service is a manifest: a named, versioned unit of code and how to run it.
//
// Fields without a default are required unless marked optional. The bounds
// listed are checked by Validate; policy may lower them on a node.
type Service struct {
	// Name identifies the service on a node: [a-z0-9-], 1 to 63
	// characters, starting with a letter and not ending with '-'. Required.
	Name string `json:"name" yaml:"name"`
	// Version is MAJOR.MINOR.PATCH with an optional -prerelease
	// (1.2.0, 1.2.0-rc.1), no leading v, at most 64 characters. Required.
	Version string `json:"version" yaml:"version"`
	// Title is a one-line name for people, at most 80 characters. Optional.
	Title string `json:"title,omitempty" yaml:"title,omitempty"`
	// Description is at most 4096 characters; newlines and tabs are the
	// only control characters allowed. Optional.
	Description string `json:"description,omitempty" yaml:"description,omitempty"`
	// Keywords are at most 16 distinct [a-z0-9-]{1,32}; Normalize
	// lowercases them. Optional.
	Keywords []string `json:"keywords,omitempty" yaml:"keywords,omitempty"`
	// Runtime says what code runs and how.
	Runtime Runtime `json:"runtime" yaml:"runtime"`
	// Mode is server (the default) or command.
	Mode Mode `json:"mode,omitempty" yaml:"mode,omitempty"`
	// Triggers fire the service; at most 32. Default: one manual trigger.
	Triggers []Trigger `json:"triggers,omitempty" yaml:"triggers,omitempty"`
	// Resources are the limits the service asks for.
	Resources Resources `json:"resources" yaml:"resources"`
	// Capabilities are what the service may reach and ask for.
	Capabilities Capabilities `json:"capabilities" yaml:"capabilities"`
	// Volumes are directories kept across runs and versions (see Volume),
	// at most 8. Default none.
	Volumes []Volume `json:"volumes,omitempty" yaml:"volumes,omitempty"`
	// Target is the one external thing this service operates (docs/design.md
	// section 8): one line, at most 128 characters. Optional.
	Target string `json:"target,omitempty" yaml:"target,omitempty"`
	// Source is where the node fetches the code instead of an uploaded
	// archive. Optional.
	Source Source `json:"source,omitzero" yaml:"source,omitempty"`
	// Reward is what the submitter offers for running the service. Optional.
	Reward Reward `json:"reward,omitzero" yaml:"reward,omitempty"`
	// Placement constrains which node of a cluster runs the service.
	// Optional; ignored by a node alone.
	Placement Placement `json:"placement,omitzero" yaml:"placement,omitempty"`
	// Config is passed to the service on every invocation (the contract's
	// Input.Config). Any JSON object, at most 64 KiB encoded. Numbers are
	// int64 when integral, float64 otherwise. Optional.
	Config map[string]any `json:"config,omitempty" yaml:"config,omitempty"`
}

// Runtime is what code runs and how.
type Runtime struct {
	// Driver is wasm (the default), process or docker.
	Driver Driver `json:"driver,omitempty" yaml:"driver,omitempty"`
	// Language is go, node, python, exec, rust, ...: [a-z][a-z0-9+#.-]{0,31}.
	// Informational for wasm and docker. Optional.
	Language string `json:"language,omitempty" yaml:"language,omitempty"`
	// Entry is the file to run, a clean path relative to the service
	// directory (no '..', not absolute, no backslash, at most 256
	// characters); Normalize drops a leading "./". Required for wasm and
	// process, optional for docker.
	Entry string `json:"entry,omitempty" yaml:"entry,omitempty"`
	// Image is the container image reference. Required for docker, not
	// allowed otherwise. A node's policy admits it pinned, REF@sha256:<64
	// hex> or an image ID sha256:<64 hex>, unless it allows tags
	// (policy.images.allow_tags), and from the registries.docker it lists.
	Image string `json:"image,omitempty" yaml:"image,omitempty"`
	// Command is the container command for docker and the arguments passed
	// to the entry for process; at most 64 arguments of at most 4096
	// bytes. Not allowed for wasm. Optional.
	Command []string `json:"command,omitempty" yaml:"command,omitempty"`
}

// Trigger is one way the service is fired. Which fields a trigger may set
// depends on its kind; any other field set is an error:
//
//	cron    exactly one of every and schedule; input optional
//	event   topic
//	manual  input optional; at most one manual trigger per service
//	http    path, unique among the service's http triggers; methods and
//	        auth optional
type Trigger struct {
	// Kind is cron, event, manual or http. Required.
	Kind TriggerKind `json:"kind" yaml:"kind"`
	// Every is the interval of a cron trigger, between 1s and 366 days
	// (8784h), e.g. 30s, 5m, 1h30m.
	Every Duration `json:"every,omitzero" yaml:"every,omitempty"`
	// Schedule is a cron expression of a cron trigger, with seconds: six
	// fields "second minute hour day-of-month month day-of-week". A field is
	// a comma list of *, a value, a range a-b, each optionally with a /step;
	// ? is * in the two day fields; months and week days may be named (jan,
	// mon). Descriptors @yearly, @annually, @monthly, @weekly, @daily,
	// @midnight, @hourly and @every <duration ≥ 1s> are accepted too. At
	// most 256 characters. Normalize collapses white space and lowercases
	// names. Every schedule Validate accepts is accepted by go-cron's
	// parser with Second|Minute|Hour|Dom|Month|Dow|Descriptor.
	Schedule string `json:"schedule,omitempty" yaml:"schedule,omitempty"`
	// Topic is the topic of an event trigger, by the one rule every topic
	// follows (contract.CheckTopic): dot-separated tokens of [a-z0-9_-],
	// no wildcards, at most 128 characters.
	Topic string `json:"topic,omitempty" yaml:"topic,omitempty"`
	// Public lets any submitter, and any NATS credential, publish on the
	// topic of an event trigger, not only its owner's namespace. A
	// submitter's service may make public only topics under its owner's
	// name (OWNER.…); the operator's any topic. Only on kind event.
	// Default false.
	Public bool `json:"public,omitempty" yaml:"public,omitempty"`
	// Path is the webhook path of an http trigger: it starts with
	// /hooks/, uses only [A-Za-z0-9._~/-], has no empty, '.' or '..'
	// segment and is at most 256 characters. One path is mounted by one
	// trigger of one service on a node.
	Path string `json:"path,omitempty" yaml:"path,omitempty"`
	// Methods are the HTTP methods an http trigger answers: GET, POST,
	// PUT, PATCH or DELETE, without duplicates; Normalize uppercases them.
	// A request with another method is answered 405. Default [POST].
	Methods []string `json:"methods,omitempty" yaml:"methods,omitempty"`
	// Auth is how an http trigger authenticates requests: none,
	// {bearer: SECRET} or {hmac: {...}} (see HookAuth). A trigger without
	// auth is admitted and answers 401 to every request.
	Auth HookAuth `json:"auth,omitzero" yaml:"auth,omitempty"`
	// CatchUp is what a cron trigger does about the ticks that fell due
	// while the node was down, when the node starts again: skip (the
	// default) records them as one missed evaluation and runs none; once
	// runs once for the newest of them and records the rest as missed; all
	// runs the newest catch_up_limit of them, oldest first, and records
	// the rest as missed. Only on kind cron. Every evaluation, missed ones
	// included, is listed by andromeda why.
	CatchUp string `json:"catch_up,omitempty" yaml:"catch_up,omitempty"`
	// CatchUpLimit bounds how many missed ticks catch_up: all runs, 1 to
	// 1000. Only with catch_up: all. Default 10.
	CatchUpLimit int `json:"catch_up_limit,omitempty" yaml:"catch_up_limit,omitempty"`
	// Input is the message (any JSON value) passed to the service when a
	// cron or manual trigger fires it, at most 64 KiB encoded. Optional.
	Input any `json:"input,omitempty" yaml:"input,omitempty"`
}

// CatchUpLimitOrDefault is how many missed ticks catch_up: all runs:
// CatchUpLimit, or DefaultCatchUpLimit when it is zero.
func (t Trigger) CatchUpLimitOrDefault() int {
	if t.CatchUpLimit == 0 {
		return DefaultCatchUpLimit
	}
	return t.CatchUpLimit
}

// Resources are the limits a service asks for. Zero values mean "the
// default" until Normalize fills them in.
type Resources struct {
	// Memory is the memory ceiling, between 1Mi and 16Gi. Default 64Mi.
	Memory Bytes `json:"memory,omitzero" yaml:"memory,omitempty"`
	// CPU is the CPU share in cores, between 0.01 and 64. Default 1.
	CPU CPU `json:"cpu,omitzero" yaml:"cpu,omitempty"`
	// Timeout bounds one invocation, between 1ms and 1h. Default 5s.
	Timeout Duration `json:"timeout,omitzero" yaml:"timeout,omitempty"`
	// Pids caps processes and threads, between 1 and 4096; only the process
	// and docker drivers enforce it. Default 32 (0 means the default).
	Pids int `json:"pids,omitempty" yaml:"pids,omitempty"`
	// Concurrency is how many invocations may run at once, between 1 and
	// 1024; firings beyond it are skipped. Default 4 (0 means the
	// default): runs are parallel unless the service asks for fewer, and
	// a service makes itself safe under that with its state's
	// compare-and-swap, not a lock.
	Concurrency int `json:"concurrency,omitempty" yaml:"concurrency,omitempty"`
}

// Capabilities are what a service may reach and ask the node to do.
type Capabilities struct {
	// Network is none (the default), any, or at most 64 host:port endpoints.
	Network Network `json:"network" yaml:"network"`
	// Actions are the executor kinds the service may return, at most 32
	// distinct [a-z][a-z0-9-]{0,31}. Default none.
	Actions []string `json:"actions,omitempty" yaml:"actions,omitempty"`
	// State grants a key-value namespace. Default false.
	State bool `json:"state,omitempty" yaml:"state,omitempty"`
	// Caps bound the actions one run may return (see Caps). Default:
	// only the contract's limit of 256 actions per run.
	Caps Caps `json:"caps,omitzero" yaml:"caps,omitempty"`
}

// Source is where the node fetches a service's code itself: an archive at
// Location, or the files at Path of a git repository's Commit. Location
// and Git exclude each other.
type Source struct {
	// Location is an https URL of a tar.gz archive, without credentials,
	// at most 2048 characters.
	Location string `json:"location,omitempty" yaml:"location,omitempty"`
	// Git is the https URL of a git repository (https://host/owner/repo),
	// without credentials, query or fragment, at most 2048 characters.
	Git string `json:"git,omitempty" yaml:"git,omitempty"`
	// Commit is the full commit hash, 40 lowercase hex digits (lowercased
	// by Normalize). Required with Git, not allowed without it.
	Commit string `json:"commit,omitempty" yaml:"commit,omitempty"`
	// Ref is a tag or branch name (v1.2, main, or refs/tags/v1.2) that must
	// point at Commit when the node fetches; optional, only with Git.
	Ref string `json:"ref,omitempty" yaml:"ref,omitempty"`
	// Path is the repository directory holding the service, clean,
	// relative and without "..". Default the repository's root; only with
	// Git.
	Path string `json:"path,omitempty" yaml:"path,omitempty"`
	// Digest is the expected canonical archive digest, "sha256:" and 64
	// hex digits (lowercased by Normalize): of the archive at Location, or
	// of the files at Path of Commit. Required with Location or Git, not
	// allowed without them.
	Digest string `json:"digest,omitempty" yaml:"digest,omitempty"`
}

// Reward is what a submitter offers for running the service.
type Reward struct {
	// Amount is a finite number ≥ 0.
	Amount float64 `json:"amount" yaml:"amount"`
	// Unit is [A-Za-z0-9]{1,16}, e.g. KLY; required when Amount > 0.
	Unit string `json:"unit,omitempty" yaml:"unit,omitempty"`
}

// Placement constrains where a cluster places a service: the node that
// runs it has every label asked for (its config's cluster.labels), and
// with Spread the cluster picks the node holding the fewest services
// rather than the one the service was submitted to.
type Placement struct {
	// Labels a node must all have, key to value; at most 16. Keys and
	// values: 1 to 63 of A-Z a-z 0-9 . _ -.
	Labels map[string]string `json:"labels,omitempty" yaml:"labels,omitempty"`
	// Spread places the service on the eligible node holding the fewest
	// services (ties broken by a hash of node and service), not on the
	// node it was submitted to.
	Spread bool `json:"spread,omitempty" yaml:"spread,omitempty"`
}

// MaxPlacementLabels bounds placement.labels.
const MaxPlacementLabels = 16

// Defaults filled in by Normalize.
const (
	DefaultMode        = ModeServer
	DefaultDriver      = DriverWasm
	DefaultMemory      = "64Mi"
	DefaultCPU         = "1"
	DefaultTimeout     = "5s"
	DefaultPids        = 32
	DefaultConcurrency = 4
)

// Parse decodes a manifest strictly: the source must be valid UTF-8 of at
// most MaxSize bytes holding exactly one mapping (one YAML document, or one
// JSON object with nothing after it), with no unknown field, no duplicate
// key, no YAML alias or merge key, no nesting deeper than 64 levels, and
// values of the right types. It does not fill defaults or check rules; see
// Normalize, Validate and Check. The error is an Errors listing every
// problem found.
func Parse(data []byte, format Format) (*Service, error) {
	if len(data) > MaxSize {
		return nil, Errors{{Rule: fmt.Sprintf("must be at most %d bytes, got %d", MaxSize, len(data))}}
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	var (
		root *strictdoc.Value
		err  error
	)
	switch format {
	case YAML:
		root, err = readYAML(data)
	case JSON:
		root, err = readJSON(data)
	case TOML:
		root, err = read(strictdoc.TOML, data)
	default:
		return nil, fmt.Errorf("%w: %q", ErrFormat, format)
	}
	if err != nil {
		return nil, err
	}
	if root.Kind != strictdoc.Map {
		return nil, Errors{{Rule: "must be a mapping"}}
	}
	s := new(Service)
	var d decoder
	d.decode(root, reflect.ValueOf(s).Elem(), "")
	if len(d.errs) > 0 {
		return nil, d.errs
	}
	return s, nil
}

// Check parses, normalizes and validates a manifest: what the node does with
// the manifest of an uploaded archive. The error is an Errors listing every
// problem, or ErrFormat.
func Check(data []byte, format Format) (*Service, error) {
	s, err := Parse(data, format)
	if err != nil {
		return nil, err
	}
	s.Normalize()
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return s, nil
}

// CheckFile is Check with the format taken from the file name's extension.
func CheckFile(name string, data []byte) (*Service, error) {
	f, ok := FormatOf(name)
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrFormat, name)
	}
	return Check(data, f)
}

// Load reads the manifest of the service directory dir (exactly one of
// FileNames must exist), then parses, normalizes and validates it. Errors
// name the file and wrap ErrNoManifest, ErrManyManifests or the Errors of
// Check.
func Load(dir string) (*Service, error) {
	var found []string
	for _, name := range fileNames {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			found = append(found, p)
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("load %s: %w", dir, err)
		}
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("load %s: %w", dir, ErrNoManifest)
	case 1:
	default:
		names := make([]string, len(found))
		for i, f := range found {
			names[i] = filepath.Base(f)
		}
		return nil, fmt.Errorf("load %s: %w: %s; keep one", dir, ErrManyManifests, strings.Join(names, ", "))
	}
	data, err := readFile(found[0])
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", dir, err)
	}
	s, err := CheckFile(found[0], data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", found[0], err)
	}
	return s, nil
}

// readFile reads at most MaxSize+1 bytes, so Parse reports an oversized
// manifest without the whole file being read.
func readFile(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, MaxSize+1))
}

// Normalize trims white space around every string except command
// arguments and fills the documented defaults: mode server, driver wasm,
// memory 64Mi, cpu 1, timeout 5s, pids 32, concurrency 4, network none,
// methods [POST] for http triggers and one manual trigger when there is
// none. It lowercases keywords, network
// hosts and the source digest, drops a leading "./" from the entry,
// canonicalizes cron schedules (single spaces, lowercase names) and turns
// empty lists and maps into nil. It never fails and is idempotent: whatever
// it cannot mend, Validate reports.
func (s *Service) Normalize() {
	s.Name = strings.TrimSpace(s.Name)
	s.Version = strings.TrimSpace(s.Version)
	s.Title = strings.TrimSpace(s.Title)
	s.Description = strings.TrimSpace(s.Description)
	for i, k := range s.Keywords {
		s.Keywords[i] = strings.ToLower(strings.TrimSpace(k))
	}
	s.Keywords = nilIfEmpty(s.Keywords)

	r := &s.Runtime
	r.Driver = Driver(strings.TrimSpace(string(r.Driver)))
	if r.Driver == "" {
		r.Driver = DefaultDriver
	}
	r.Language = strings.TrimSpace(r.Language)
	r.Entry = strings.TrimSpace(r.Entry)
	for strings.HasPrefix(r.Entry, "./") {
		r.Entry = strings.TrimSpace(strings.TrimLeft(r.Entry[2:], "/"))
	}
	r.Image = strings.TrimSpace(r.Image)
	r.Command = nilIfEmpty(r.Command)

	s.Mode = Mode(strings.TrimSpace(string(s.Mode)))
	if s.Mode == "" {
		s.Mode = DefaultMode
	}

	NormalizeTriggers(s.Triggers)
	if len(s.Triggers) == 0 {
		s.Triggers = []Trigger{{Kind: KindManual}}
	}

	res := &s.Resources
	if res.Memory.IsZero() {
		res.Memory = mustBytes(DefaultMemory)
	}
	if res.CPU.IsZero() {
		res.CPU = mustCPU(DefaultCPU)
	}
	if res.Timeout.IsZero() {
		res.Timeout = mustDuration(DefaultTimeout)
	}
	if res.Pids == 0 {
		res.Pids = DefaultPids
	}
	if res.Concurrency == 0 {
		res.Concurrency = DefaultConcurrency
	}

	c := &s.Capabilities
	for i, h := range c.Network.Hosts {
		c.Network.Hosts[i] = strings.ToLower(strings.TrimSpace(h))
	}
	c.Network.Hosts = nilIfEmpty(c.Network.Hosts)
	for i, a := range c.Actions {
		c.Actions[i] = strings.TrimSpace(a)
	}
	c.Actions = nilIfEmpty(c.Actions)
	c.Caps.normalize()
	s.normalizeVolumes()

	s.Target = strings.TrimSpace(s.Target)
	s.Source.Location = strings.TrimSpace(s.Source.Location)
	s.Source.Git = strings.TrimSpace(s.Source.Git)
	s.Source.Commit = strings.ToLower(strings.TrimSpace(s.Source.Commit))
	s.Source.Ref = strings.TrimSpace(s.Source.Ref)
	s.Source.Path = strings.TrimSpace(s.Source.Path)
	s.Source.Digest = strings.ToLower(strings.TrimSpace(s.Source.Digest))
	s.Reward.Unit = strings.TrimSpace(s.Reward.Unit)
	if len(s.Config) == 0 {
		s.Config = nil
	}
}

func nilIfEmpty(l []string) []string {
	if len(l) == 0 {
		return nil
	}
	return l
}

// NormalizeTriggers normalizes ts in place as Normalize does a service's
// triggers: white space trimmed, schedules collapsed and lowercased,
// methods uppercased (an http trigger's default [POST] filled in), auth
// normalized. Other documents that declare triggers (a flow) use it.
func NormalizeTriggers(ts []Trigger) {
	for i := range ts {
		t := &ts[i]
		t.Kind = TriggerKind(strings.TrimSpace(string(t.Kind)))
		t.Schedule = normalizeSchedule(t.Schedule)
		t.Topic = strings.TrimSpace(t.Topic)
		t.Path = strings.TrimSpace(t.Path)
		for i, m := range t.Methods {
			t.Methods[i] = strings.ToUpper(strings.TrimSpace(m))
		}
		t.Methods = nilIfEmpty(t.Methods)
		if t.Kind == KindHTTP && t.Methods == nil {
			t.Methods = slices.Clone(DefaultHookMethods)
		}
		t.Auth.normalize()
	}
}
