package node

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/andromeda-runner/andromeda/manifest"
	"github.com/andromeda-runner/andromeda/policy"
)

// Config is the node's configuration file (YAML or JSON, decoded strictly:
// an unknown key is an error naming it). Every field has a documented
// default, applied by DefaultConfig.
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
	// Runs bounds the run history.
	Runs RunsConfig `json:"runs" yaml:"runs"`
	// Policy decides what runs here: see package policy for every key and
	// its default. Resource ceilings are policy.limits.
	Policy policy.Policy `json:"policy" yaml:"policy"`
	// State bounds per-service state.
	State StateConfig `json:"state" yaml:"state"`
	// SeedEndpoint configures POST /service, the KLYNTAR worker's endpoint.
	SeedEndpoint SeedEndpointConfig `json:"seed_endpoint" yaml:"seed_endpoint"`
	// Upload bounds submitted archives.
	Upload UploadConfig `json:"upload" yaml:"upload"`
	// Log selects the log format and level.
	Log LogConfig `json:"log" yaml:"log"`
	// HTTP bounds the API's connections and timeouts, and /metrics: see HTTPConfig.
	HTTP HTTPConfig `json:"http" yaml:"http"`
	// Disk says how much of the data directory's filesystem the node keeps
	// free; below it new work is refused. See DiskConfig.
	Disk DiskConfig `json:"disk" yaml:"disk"`
	// Wasm configures the WebAssembly driver.
	Wasm WasmConfig `json:"wasm" yaml:"wasm"`
	// Deps configures dependency installs for process services.
	Deps DepsConfig `json:"deps" yaml:"deps"`
	// Repair starts the node on a damaged store, dropping (and listing)
	// what cannot be read. Not in the config file: serve --repair.
	Repair bool `json:"-" yaml:"-"`
}

// NATSConfig selects the bus.
type NATSConfig struct {
	// URL of an external NATS cluster with JetStream. Default "": embed one.
	URL string `json:"url" yaml:"url"`
	// Listen makes the embedded server accept NATS clients on host:port.
	// Default "": in-process only.
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
// description (a manifest with source.location) the way the KLYNTAR worker
// does and answers OK or ERR.
type SeedEndpointConfig struct {
	// Enabled serves the endpoint. Default true.
	Enabled bool `json:"enabled" yaml:"enabled"`
	// Anonymous accepts submissions without a token, owned by
	// "anonymous", as the seed's worker does. Default false: a submitter
	// token is required as everywhere else.
	Anonymous bool `json:"anonymous" yaml:"anonymous"`
}

// UploadConfig bounds submitted archives.
type UploadConfig struct {
	MaxArchive  string `json:"max_archive" yaml:"max_archive"`   // compressed; default 16Mi
	MaxUnpacked string `json:"max_unpacked" yaml:"max_unpacked"` // default 64Mi
	MaxFiles    int    `json:"max_files" yaml:"max_files"`       // default 4096
}

// LogConfig selects logging.
type LogConfig struct {
	// Format is "json", "text" or "auto" (JSON unless stderr is a terminal).
	// Default auto.
	Format string `json:"format" yaml:"format"`
	// Level is debug, info, warn or error. Default info.
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
		Upload:       UploadConfig{MaxArchive: "16Mi", MaxUnpacked: "64Mi", MaxFiles: 4096},
		Log:          LogConfig{Format: "auto", Level: "info"},
		Disk:         DefaultDiskConfig(),
		Wasm:         WasmConfig{MemoryBudget: "1Gi"},
		HTTP:         DefaultHTTPConfig(),
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

// LoadConfig reads a YAML or JSON config file strictly on top of the
// defaults: keys not in the file keep their default.
func LoadConfig(name string) (Config, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	cfg, err := ParseConfig(data, strings.EqualFold(filepath.Ext(name), ".json"))
	if err != nil {
		return Config{}, fmt.Errorf("config %s: %w", name, err)
	}
	return cfg, nil
}

// ParseConfig decodes a config strictly over DefaultConfig and validates it.
func ParseConfig(data []byte, isJSON bool) (Config, error) {
	cfg := DefaultConfig()
	if isJSON {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&cfg); err != nil {
			return Config{}, policyPrefix(fmt.Errorf("%w", err), "json: ")
		}
		if dec.More() {
			return Config{}, errors.New("trailing data after the config object")
		}
	} else if len(bytes.TrimSpace(data)) > 0 {
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(&cfg); err != nil {
			return Config{}, policyPrefix(err, "yaml: ")
		}
		var extra any
		if dec.Decode(&extra) == nil {
			return Config{}, errors.New("more than one YAML document")
		}
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	// Compile the rules now, so a rule that does not compile is reported at
	// load, with its name, and never reaches a running node.
	if _, err := policy.Compile(cfg.Policy); err != nil {
		return Config{}, policyPrefix(err, "")
	}
	return cfg, nil
}

// policyPrefix puts "policy." before the paths of the policy's own errors
// (decoded inside the policy section) and trims a decoder's prefix from
// others.
func policyPrefix(err error, trim string) error {
	var pe policy.Errors
	if !errors.As(err, &pe) {
		return errors.New(strings.TrimPrefix(err.Error(), trim))
	}
	lines := make([]string, len(pe))
	for i, fe := range pe {
		if strings.HasPrefix(fe.Path, "policy.") {
			lines[i] = fe.Error()
		} else {
			lines[i] = "policy." + fe.Error()
		}
	}
	return errors.New(strings.Join(lines, "\n"))
}

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
	if err := c.Disk.Validate(); err != nil {
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
