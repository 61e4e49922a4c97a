package node

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/andromeda-runner/andromeda/archive"
	"github.com/andromeda-runner/andromeda/manifest"
	"github.com/andromeda-runner/andromeda/policy"
	"github.com/andromeda-runner/andromeda/strictdoc"
)

// Config is the node's configuration file (YAML, JSON or TOML, decoded
// strictly: an unknown key is an error naming it). Every field has a
// documented default, applied by DefaultConfig.
type Config struct {
	// Listen is the HTTP API address. Default 127.0.0.1:7070.
	Listen string `json:"listen" yaml:"listen"`
	// Data is the data directory: JetStream files, unpacked services, the
	// compile cache and the operator token. Default $XDG_DATA_HOME/andromeda
	// (~/.local/share/andromeda).
	Data string `json:"data" yaml:"data"`
	// Cache is where compiled WebAssembly modules and the built demo
	// services are kept; safe to delete. Default <data>/cache.
	Cache string `json:"cache" yaml:"cache"`
	// Name identifies the node in logs and on the bus. Default the host name.
	Name string `json:"name" yaml:"name"`
	// NATS selects the bus.
	NATS NATSConfig `json:"nats" yaml:"nats"`
	// Cluster makes the node one of several sharing one NATS JetStream
	// cluster: see ClusterConfig. Default: alone.
	Cluster ClusterConfig `json:"cluster" yaml:"cluster"`
	// Runs bounds the run history.
	Runs RunsConfig `json:"runs" yaml:"runs"`
	// Policy decides what runs here: see package policy for every key and
	// its default. Resource ceilings are policy.limits.
	Policy policy.Policy `json:"policy" yaml:"policy"`
	// State bounds per-service state.
	State StateConfig `json:"state" yaml:"state"`
	// SeedEndpoint configures POST /service, the KLYNTAR worker's endpoint.
	SeedEndpoint SeedEndpointConfig `json:"seed_endpoint" yaml:"seed_endpoint"`
	// Browser configures the browser runtime served at /runtime/browser.
	Browser BrowserConfig `json:"browser" yaml:"browser"`
	// Upload bounds submitted archives.
	Upload UploadConfig `json:"upload" yaml:"upload"`
	// Sources says how the node reaches the hosts of services' sources
	// (source.location, source.git): see SourcesConfig.
	Sources SourcesConfig `json:"sources" yaml:"sources"`
	// Forwarding says how the node reaches the peers policy.peers names
	// and how they know it: see ForwardingConfig.
	Forwarding ForwardingConfig `json:"forwarding" yaml:"forwarding"`
	// Log selects the log format and level.
	Log LogConfig `json:"log" yaml:"log"`
	// HTTP bounds the API's connections and timeouts, and /metrics: see HTTPConfig.
	HTTP HTTPConfig `json:"http" yaml:"http"`
	// Disk says how much of the data directory's filesystem the node keeps
	// free; below it new work is refused. See DiskConfig.
	Disk DiskConfig `json:"disk" yaml:"disk"`
	// Wasm configures the WebAssembly driver.
	Wasm WasmConfig `json:"wasm" yaml:"wasm"`
	// Docker configures the docker driver: see DockerConfig.
	Docker DockerConfig `json:"docker" yaml:"docker"`
	// Deps configures dependency installs for process services.
	Deps DepsConfig `json:"deps" yaml:"deps"`
	// Events bounds the bus's events stream and their delivery to event
	// triggers: see EventsConfig.
	Events EventsConfig `json:"events" yaml:"events"`
	// Executors: how the node performs the actions runs return (see
	// ExecutorsConfig).
	Executors ExecutorsConfig `json:"executors" yaml:"executors"`
	// Lifecycle tunes stop and rm: see LifecycleConfig.
	Lifecycle LifecycleConfig `json:"lifecycle" yaml:"lifecycle"`
	// Admission bounds the queue new services wait in while the node is
	// at capacity (policy.limits.services): see AdmissionConfig.
	Admission AdmissionConfig `json:"admission" yaml:"admission"`
	// Secrets are the values webhooks are checked with, by name
	// ([a-z0-9_-]{1,64}); a manifest names them (auth: {bearer: NAME}).
	// They win over secrets of the same name set at run time (andromeda
	// secrets set), which cannot set or remove them. Keep a config file
	// holding secrets readable by the node's user alone. Default none.
	Secrets map[string]string `json:"secrets" yaml:"secrets"`
	// Offer is what the node's offer (GET /v1/offer) says beyond what it
	// measures: the operator's properties and prices. See OfferConfig.
	Offer OfferConfig `json:"offer" yaml:"offer"`
	// Services are services the node submits to itself at every start,
	// once it serves its API, through the policy like any submission
	// (the seed's services.json): each entry exactly one of dir,
	// archive or source, a path relative to the config file's directory;
	// required: true makes its failure fail the start, else it is logged
	// and skipped. One already registered with the same digest is left
	// as it is. Default none.
	Services []StartService `json:"services" yaml:"services"`
	// Runtimes is the directory of runtime descriptors (NAME.yaml) the
	// node registers with the process driver at start. Not in the config
	// file: serve uses runtimes.d beside --config, else
	// $XDG_CONFIG_HOME/andromeda/runtimes.d (RuntimesDirFor). Default ""
	// (none).
	Runtimes string `json:"-" yaml:"-"`
	// Repair starts the node on a damaged store, dropping (and listing)
	// what cannot be read. Not in the config file: serve --repair.
	Repair bool `json:"-" yaml:"-"`
}

// NATSConfig selects the bus.
type NATSConfig struct {
	// URL of an external NATS cluster with JetStream. Default "": embed one.
	URL string `json:"url" yaml:"url"`
	// Listen makes the embedded server accept NATS clients on host:port,
	// each with a credential the node issued (andromeda nats creds
	// create); it never serves an open bus. Default "": in-process only.
	Listen string `json:"listen" yaml:"listen"`
}

// RunsConfig bounds the run history (see store.Config).
type RunsConfig struct {
	// PerService is how many runs are kept per service. Default 1000.
	PerService int64 `json:"per_service" yaml:"per_service"`
	// MaxRecordBytes caps one run record; larger records drop their output.
	// Default 65536.
	MaxRecordBytes int `json:"max_record_bytes" yaml:"max_record_bytes"`
	// MaxTotalBytes caps all run records. Default 536870912 (512 MiB).
	MaxTotalBytes int64 `json:"max_total_bytes" yaml:"max_total_bytes"`
}

// StateConfig bounds per-service state.
type StateConfig struct {
	// Max caps one service's state object. Default 1Mi.
	Max string `json:"max" yaml:"max"`
	// Attempts is how many times in all a run is invoked when its state
	// write keeps conflicting with other runs' (compare-and-swap), with
	// jittered backoff from 5 ms to 250 ms between attempts; after the
	// last the run is an error with its actions dropped. Default 10, so
	// eight concurrent writers of one key all commit. From 1 to 100.
	Attempts int `json:"attempts" yaml:"attempts"`
}

// WasmConfig configures the WebAssembly driver.
type WasmConfig struct {
	// MemoryBudget bounds the memory of all live wasm instances together
	// (each reserves its memory limit); an instance that does not fit
	// waits for room until its run's deadline, then the run is skipped
	// with the reason. Default 1Gi; at least the policy's memory ceiling.
	MemoryBudget string `json:"memory_budget" yaml:"memory_budget"`
}

// DepsConfig configures dependency installs.
type DepsConfig struct {
	// AnySource lets a service's requirements.txt and package.json name
	// local paths, URLs and VCS sources, which makes installers build and
	// run the service's own code at install (still sandboxed, with a
	// network that reaches only the registries). Default false: only
	// registry packages, installed from wheels (pip) and without scripts
	// (npm).
	AnySource bool `json:"any_source" yaml:"any_source"`
}

// SeedEndpointConfig configures POST /service, which takes a service
// description the way the KLYNTAR worker does (the seed's service object,
// translated to a manifest: node/seed.go; or a manifest with
// source.location) and answers OK or ERR.
type SeedEndpointConfig struct {
	// Enabled serves the endpoint. Default true.
	Enabled bool `json:"enabled" yaml:"enabled"`
	// Anonymous accepts submissions without a token, owned by
	// "anonymous", as the seed's worker does. Default false: a submitter
	// token is required as everywhere else.
	Anonymous bool `json:"anonymous" yaml:"anonymous"`
}

// BrowserConfig configures the browser runtime: a page the node serves at
// /runtime/browser that, opened with a token of the runtime role
// (andromeda token create NAME --role runtime), connects back over a
// WebSocket and runs JavaScript modules (runtimes/browser).
type BrowserConfig struct {
	// Enabled serves the page and accepts its connections. Default true:
	// nothing connects without a runtime token, which only the operator
	// makes.
	Enabled bool `json:"enabled" yaml:"enabled"`
}

// UploadConfig bounds submitted archives.
type UploadConfig struct {
	// MaxArchive is the largest submitted archive, compressed, as sent (a
	// size); a larger upload is refused with 413. Default 16Mi.
	MaxArchive string `json:"max_archive" yaml:"max_archive"`
	// MaxUnpacked is the most an archive may unpack to (a size); one that
	// grows past it is refused while it is read. Default 64Mi.
	MaxUnpacked string `json:"max_unpacked" yaml:"max_unpacked"`
	// MaxFiles is the most files and directories an archive may hold.
	// Default 4096.
	MaxFiles int `json:"max_files" yaml:"max_files"`
}

// LogConfig selects logging.
type LogConfig struct {
	// Format is "json", "text" or "auto" (JSON unless stderr is a terminal).
	// Default auto.
	Format string `json:"format" yaml:"format"`
	// Level is the least severe level logged: debug, info, warn or error.
	// Default info.
	Level string `json:"level" yaml:"level"`
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	host, _ := os.Hostname()
	if host == "" {
		host = "andromeda"
	}
	return Config{
		Listen:       "127.0.0.1:7070",
		Data:         DefaultDataDir(),
		Name:         host,
		Runs:         RunsConfig{PerService: 1000, MaxRecordBytes: 64 << 10, MaxTotalBytes: 512 << 20},
		Policy:       policy.DefaultPolicy(),
		State:        StateConfig{Max: "1Mi", Attempts: 10},
		SeedEndpoint: SeedEndpointConfig{Enabled: true},
		Browser:      BrowserConfig{Enabled: true},
		Upload:       UploadConfig{MaxArchive: "16Mi", MaxUnpacked: "64Mi", MaxFiles: 4096},
		Log:          LogConfig{Format: "auto", Level: "info"},
		Disk:         DefaultDiskConfig(),
		Wasm:         WasmConfig{MemoryBudget: "1Gi"},
		Docker:       DefaultDockerConfig(),
		HTTP:         DefaultHTTPConfig(),
		Events:       DefaultEventsConfig(),
		Executors:    DefaultExecutorsConfig(),
		Lifecycle:    DefaultLifecycleConfig(),
		Admission:    DefaultAdmissionConfig(),
		Cluster:      DefaultClusterConfig(),
	}
}

// DefaultDataDir is $XDG_DATA_HOME/andromeda, else ~/.local/share/andromeda,
// else ./andromeda-data.
func DefaultDataDir() string {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "andromeda")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "share", "andromeda")
	}
	return "andromeda-data"
}

// LoadConfig reads a config file strictly on top of the defaults: keys not
// in the file keep their default. The format is the one its extension
// names: .json JSON, .toml TOML, .yaml, .yml or any other YAML. The
// services list's relative paths are made relative to the file's
// directory.
func LoadConfig(name string) (Config, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	format, ok := strictdoc.FormatOf(name)
	if !ok {
		format = strictdoc.YAML
	}
	cfg, err := ParseConfigFormat(data, format)
	if err != nil {
		return Config{}, fmt.Errorf("config %s: %w", name, err)
	}
	if abs, err := filepath.Abs(filepath.Dir(name)); err == nil {
		cfg.Services = resolveStartPaths(cfg.Services, abs)
	}
	return cfg, nil
}

// ParseConfig decodes a config over DefaultConfig and validates it. The
// decoding is package strictdoc's, the same as the manifest's and the
// policy's: an unknown or duplicate key, null or a value of the wrong type
// is an error naming its path (runs.per_service, policy.limits.memory);
// an empty YAML document is the defaults. The sizes and durations the
// config holds as strings (state.max, disk.interval, ...) are a string or
// a number, as written, judged by Validate. The policy section is decoded
// as policy.Parse decodes a policy, and its rules are compiled, so that
// one that does not compile is reported here, with its name.
func ParseConfig(data []byte, isJSON bool) (Config, error) {
	format := strictdoc.YAML
	if isJSON {
		format = strictdoc.JSON
	}
	return ParseConfigFormat(data, format)
}

// ParseConfigFormat is ParseConfig for a document in any of strictdoc's
// formats: YAML, JSON or TOML. An empty YAML or TOML document is the
// defaults.
func ParseConfigFormat(data []byte, format strictdoc.Format) (Config, error) {
	text := strictdoc.Scalar(func(s string, out *string) error { *out = s; return nil })
	dec := strictdoc.Decoder[configDoc]{
		MaxDepth:   policy.MaxDepth + 1,
		AllowEmpty: true,
		Hooks: append(policy.Hooks(),
			strictdoc.Field[StateConfig]("max", text),
			strictdoc.Field[WasmConfig]("memory_budget", text),
			strictdoc.Field[UploadConfig]("max_archive", text),
			strictdoc.Field[UploadConfig]("max_unpacked", text),
			strictdoc.Field[HTTPConfig]("upload_min_rate", text),
			strictdoc.Field[HTTPConfig]("max_header_bytes", text),
			strictdoc.Field[HTTPConfig]("max_hook_body", text),
			strictdoc.Field[DiskConfig]("min_free", text),
			strictdoc.Field[DiskConfig]("interval", text),
			strictdoc.Field[LifecycleConfig]("stop_grace", text),
			strictdoc.Field[LifecycleConfig]("prewarm", text),
			strictdoc.Field[AdmissionConfig]("wait", text),
			strictdoc.Field[DockerConfig]("scratch", text),
		),
	}
	cfg := DefaultConfig()
	if err := dec.Decode(format, data, &cfg); err != nil {
		return Config{}, err
	}
	cfg.Policy.Normalize()
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	if _, err := policy.Compile(cfg.Policy); err != nil {
		var pe policy.Errors
		if !errors.As(err, &pe) {
			return Config{}, fmt.Errorf("policy: %w", err)
		}
		return Config{}, strictdoc.Nest[configDoc]("policy", pe)
	}
	return cfg, nil
}

// configDoc names the node config in errors about it as a whole.
type configDoc struct{}

// Name returns "config".
func (configDoc) Name() string { return "config" }

// Validate checks every field and reports every problem with its key.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, rule string) { errs = append(errs, fmt.Errorf("%s: %s", key, rule)) }
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		bad("listen", "must be host:port")
	}
	if c.Data == "" {
		bad("data", "must not be empty")
	}
	if c.NATS.Listen != "" {
		if _, _, err := net.SplitHostPort(c.NATS.Listen); err != nil {
			bad("nats.listen", "must be host:port")
		}
	}
	if c.NATS.URL != "" && !strings.HasPrefix(c.NATS.URL, "nats://") && !strings.HasPrefix(c.NATS.URL, "tls://") {
		bad("nats.url", "must start with nats:// or tls://")
	}
	if c.Runs.PerService < 1 || c.Runs.PerService > 1_000_000 {
		bad("runs.per_service", "must be from 1 to 1000000")
	}
	if c.Runs.MaxRecordBytes < 4096 || c.Runs.MaxRecordBytes > 8<<20 {
		bad("runs.max_record_bytes", "must be from 4096 to 8388608")
	}
	if c.Runs.MaxTotalBytes < 1<<20 {
		bad("runs.max_total_bytes", "must be at least 1048576")
	}
	if c.State.Attempts < 1 || c.State.Attempts > 100 {
		bad("state.attempts", "must be from 1 to 100")
	}
	sizes := []struct {
		key, v   string
		min, max int64
	}{
		{"state.max", c.State.Max, 1 << 10, 64 << 20},
		{"wasm.memory_budget", c.Wasm.MemoryBudget, 64 << 20, 1 << 40},
		{"upload.max_archive", c.Upload.MaxArchive, 1 << 10, 1 << 30},
		{"upload.max_unpacked", c.Upload.MaxUnpacked, 1 << 10, 4 << 30},
	}
	for _, s := range sizes {
		n, err := parseBytes(s.v)
		if err != nil {
			bad(s.key, err.Error())
		} else if n < s.min || n > s.max {
			bad(s.key, fmt.Sprintf("must be from %d to %d bytes", s.min, s.max))
		}
	}
	if c.Upload.MaxFiles < 1 || c.Upload.MaxFiles > 1_000_000 {
		bad("upload.max_files", "must be from 1 to 1000000")
	}
	switch c.Log.Format {
	case "auto", "json", "text":
	default:
		bad("log.format", "must be auto, json or text")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "must be debug, info, warn or error")
	}
	if err := c.HTTP.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := checkSecrets(c.Secrets); err != nil {
		errs = append(errs, err)
	}
	if err := c.Disk.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Events.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Executors.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Lifecycle.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Admission.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Cluster.Validate(c.NATS); err != nil {
		errs = append(errs, err)
	}
	if err := c.Forwarding.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Offer.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Docker.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := validateStartServices(c.Services); err != nil {
		errs = append(errs, err)
	}
	if err := c.Policy.Validate(); err != nil {
		var pe policy.Errors
		if errors.As(err, &pe) {
			for _, fe := range pe {
				bad("policy."+fe.Path, fe.Rule)
			}
		} else {
			bad("policy", err.Error())
		}
	}
	return errors.Join(errs...)
}

func parseBytes(s string) (int64, error) {
	b, err := manifest.ParseBytes(s)
	if err != nil {
		return 0, errors.New("must be a size like 64Mi, 1Gi or a number of bytes")
	}
	return b.Int64(), nil
}

// ceilings are the config's limits in typed form.
type ceilings struct {
	state      int64
	maxArchive int64
	archive    archive.Limits
}

func (c Config) ceilings() (ceilings, error) {
	var out ceilings
	var err error
	if out.state, err = parseBytes(c.State.Max); err != nil {
		return out, err
	}
	if out.maxArchive, err = parseBytes(c.Upload.MaxArchive); err != nil {
		return out, err
	}
	unpacked, err := parseBytes(c.Upload.MaxUnpacked)
	if err != nil {
		return out, err
	}
	out.archive = archive.DefaultLimits()
	out.archive.MaxCompressed = out.maxArchive
	out.archive.MaxSize = unpacked
	out.archive.MaxFileSize = min(out.archive.MaxFileSize, unpacked)
	out.archive.MaxEntries = c.Upload.MaxFiles
	return out, nil
}
