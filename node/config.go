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
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/andromeda-runner/andromeda/manifest"
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
	// Limits are the ceilings every service is clamped to.
	Limits LimitsConfig `json:"limits" yaml:"limits"`
	// Upload bounds submitted archives.
	Upload UploadConfig `json:"upload" yaml:"upload"`
	// Log selects the log format and level.
	Log LogConfig `json:"log" yaml:"log"`
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

// LimitsConfig holds the ceilings a service's requested resources are
// clamped to. Sizes accept 64Mi-style units; durations Go syntax.
type LimitsConfig struct {
	Memory      string  `json:"memory" yaml:"memory"`           // default 512Mi
	CPU         float64 `json:"cpu" yaml:"cpu"`                 // default 2
	Timeout     string  `json:"timeout" yaml:"timeout"`         // default 60s
	Pids        int     `json:"pids" yaml:"pids"`               // default 256
	Concurrency int     `json:"concurrency" yaml:"concurrency"` // default 16
	// State caps one service's state object. Default 1Mi.
	State string `json:"state" yaml:"state"`
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
		Listen: "127.0.0.1:7070",
		Data:   DefaultDataDir(),
		Name:   host,
		Runs:   RunsConfig{PerService: 1000, MaxRecordBytes: 64 << 10, MaxTotalBytes: 512 << 20},
		Limits: LimitsConfig{Memory: "512Mi", CPU: 2, Timeout: "60s", Pids: 256, Concurrency: 16, State: "1Mi"},
		Upload: UploadConfig{MaxArchive: "16Mi", MaxUnpacked: "64Mi", MaxFiles: 4096},
		Log:    LogConfig{Format: "auto", Level: "info"},
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
			return Config{}, fmt.Errorf("%s", strings.TrimPrefix(err.Error(), "json: "))
		}
		if dec.More() {
			return Config{}, errors.New("trailing data after the config object")
		}
	} else if len(bytes.TrimSpace(data)) > 0 {
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(&cfg); err != nil {
			return Config{}, fmt.Errorf("%s", strings.TrimPrefix(err.Error(), "yaml: "))
		}
		var extra any
		if dec.Decode(&extra) == nil {
			return Config{}, errors.New("more than one YAML document")
		}
	}
	return cfg, cfg.Validate()
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
	sizes := []struct {
		key, v   string
		min, max int64
	}{
		{"limits.memory", c.Limits.Memory, 1 << 20, 64 << 30},
		{"limits.state", c.Limits.State, 1 << 10, 64 << 20},
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
	if d, err := time.ParseDuration(c.Limits.Timeout); err != nil || d < time.Millisecond || d > 24*time.Hour {
		bad("limits.timeout", "must be a duration from 1ms to 24h")
	}
	if c.Limits.CPU <= 0 || c.Limits.CPU > 1024 {
		bad("limits.cpu", "must be more than 0 and at most 1024")
	}
	if c.Limits.Pids < 1 || c.Limits.Pids > 1<<20 {
		bad("limits.pids", "must be from 1 to 1048576")
	}
	if c.Limits.Concurrency < 1 || c.Limits.Concurrency > 4096 {
		bad("limits.concurrency", "must be from 1 to 4096")
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
	return errors.Join(errs...)
}

func parseBytes(s string) (int64, error) {
	b, err := manifest.ParseBytes(s)
	if err != nil {
		return 0, errors.New("must be a size like 64Mi, 1Gi or a number of bytes")
	}
	return b.Int64(), nil
}
