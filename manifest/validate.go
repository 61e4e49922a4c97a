package manifest

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/andromeda-runner/andromeda/contract"
	"github.com/andromeda-runner/andromeda/strictdoc"
)

// A FieldError is one problem with a manifest: the path of the field as the
// manifest spells it (resources.memory, triggers[1].every, config["a b"])
// and the rule it breaks. An empty Path is the manifest as a whole, and its
// Error reads "manifest: rule".
type FieldError = strictdoc.FieldError[document]

// Errors is every problem Parse or Validate found, in the order of the
// fields in the manifest (Parse: as written; Validate: as Service declares
// them). Its Error has one problem per line. The API returns it as a list.
// It is a type of its own: errors.As tells it from a policy's Errors.
type Errors = strictdoc.Errors[document]

// Bounds checked by Validate; the field comments on Service state them.
const (
	maxNameLen        = 63
	maxVersionLen     = 64
	maxTitleLen       = 80
	maxDescriptionLen = 4096
	maxKeywords       = 16
	maxEntryLen       = 256
	maxImageLen       = 256
	maxArgs           = 64
	maxArgLen         = 4096
	maxTriggers       = 32
	maxHTTPPathLen    = 256
	maxScheduleLen    = 256
	maxHosts          = 64
	maxActions        = 32
	maxTargetLen      = 128
	maxURLLen         = 2048
	maxConfigSize     = 64 << 10
	maxInputSize      = 64 << 10

	minMemory      = 1 << 20
	maxMemory      = 16 << 30
	minCPU         = 0.01
	maxCPU         = 64
	minTimeout     = time.Millisecond
	maxTimeout     = time.Hour
	maxPids        = 4096
	maxConcurrency = 1024
	minEvery       = time.Second
	maxEvery       = 366 * 24 * time.Hour
)

var (
	nameRE     = regexp.MustCompile(`^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$`)
	versionRE  = regexp.MustCompile(`^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$`)
	keywordRE  = regexp.MustCompile(`^[a-z0-9-]{1,32}$`)
	languageRE = regexp.MustCompile(`^[a-z][a-z0-9+#.-]{0,31}$`)
	imageRE    = regexp.MustCompile(`^[a-z0-9][A-Za-z0-9._/:@-]*$`)
	segmentRE  = regexp.MustCompile(`^[A-Za-z0-9._~-]+$`)
	actionRE   = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)
	unitRE     = regexp.MustCompile(`^[A-Za-z0-9]{1,16}$`)
	digestRE   = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	hostnameRE = regexp.MustCompile(`^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)
)

// Validate checks every rule of the manifest and returns an Errors listing
// each broken one, or nil. It is meant for a normalized Service: fields
// left at their zero value where Normalize would fill a default are taken
// as that default, so Validate does not require Normalize, but the typed
// values the node reads are only set after it. Validate does not modify s.
func (s *Service) Validate() error {
	var v validator
	v.service(s)
	if len(v.errs) == 0 {
		return nil
	}
	return v.errs
}

type validator struct{ errs Errors }

func (v *validator) fail(path, rule string, args ...any) {
	if len(args) > 0 {
		rule = fmt.Sprintf(rule, args...)
	}
	v.errs = append(v.errs, FieldError{Path: path, Rule: rule})
}

// The rules of a service's name and version, which other documents naming
// services (a flow) state the same way.
const (
	NameRule    = "must match [a-z0-9-]{1,63}, start with a letter, not end with '-'"
	VersionRule = "must be MAJOR.MINOR.PATCH with an optional -prerelease, e.g. 1.2.0 or 1.2.0-rc.1"
)

// ValidName reports whether s follows NameRule.
func ValidName(s string) bool { return nameRE.MatchString(s) }

// ValidVersion reports whether s follows VersionRule and is at most 64
// characters.
func ValidVersion(s string) bool { return len(s) <= maxVersionLen && versionRE.MatchString(s) }

func (v *validator) service(s *Service) {
	switch {
	case s.Name == "":
		v.fail("name", "required")
	case !nameRE.MatchString(s.Name):
		v.fail("name", NameRule)
	}
	switch {
	case s.Version == "":
		v.fail("version", "required")
	case len(s.Version) > maxVersionLen:
		v.fail("version", "must be at most %d characters", maxVersionLen)
	case !versionRE.MatchString(s.Version):
		v.fail("version", VersionRule)
	}
	v.oneLine("title", s.Title, maxTitleLen)
	if n := utf8.RuneCountInString(s.Description); n > maxDescriptionLen {
		v.fail("description", "must be at most %d characters, got %d", maxDescriptionLen, n)
	}
	if strings.IndexFunc(s.Description, func(r rune) bool { return unicode.IsControl(r) && r != '\n' && r != '\t' }) >= 0 {
		v.fail("description", "must not contain control characters other than newline and tab")
	}
	v.names("keywords", s.Keywords, maxKeywords, keywordRE, "must match [a-z0-9-]{1,32}")
	v.runtime(&s.Runtime)
	switch s.Mode {
	case "", ModeServer, ModeCommand:
	default:
		v.fail("mode", "must be server or command")
	}
	v.triggers(s.Triggers)
	v.resources(&s.Resources)
	v.capabilities(&s.Capabilities)
	v.volumes(s.Volumes)
	v.oneLine("target", s.Target, maxTargetLen)
	v.source(&s.Source)
	v.reward(&s.Reward)
	v.placement(&s.Placement)
	if s.Config != nil {
		v.jsonSize("config", s.Config, maxConfigSize)
	}
}

// oneLine checks an optional one-line string of at most max characters.
func (v *validator) oneLine(path, s string, max int) {
	if n := utf8.RuneCountInString(s); n > max {
		v.fail(path, "must be at most %d characters, got %d", max, n)
	}
	if strings.IndexFunc(s, unicode.IsControl) >= 0 {
		v.fail(path, "must be one line without control characters")
	}
}

// names checks a list of distinct names.
func (v *validator) names(path string, list []string, max int, re *regexp.Regexp, rule string) {
	if len(list) > max {
		v.fail(path, "at most %d allowed, got %d", max, len(list))
	}
	first := make(map[string]int, len(list))
	for i, s := range list {
		p := strictdoc.IndexPath(path, i)
		if !re.MatchString(s) {
			v.fail(p, rule)
			continue
		}
		if j, dup := first[s]; dup {
			v.fail(p, "duplicate of %s", strictdoc.IndexPath(path, j))
			continue
		}
		first[s] = i
	}
}

func (v *validator) runtime(r *Runtime) {
	driver := r.Driver
	if driver == "" {
		driver = DefaultDriver
	}
	known := true
	switch driver {
	case DriverWasm, DriverProcess, DriverDocker:
	default:
		v.fail("runtime.driver", "must be one of wasm, process, docker")
		known = false
	}
	if r.Language != "" && !languageRE.MatchString(r.Language) {
		v.fail("runtime.language", "must match [a-z][a-z0-9+#.-]{0,31}")
	}
	switch {
	case r.Entry == "":
		if known && driver != DriverDocker {
			v.fail("runtime.entry", "required for driver %s", driver)
		}
	case len(r.Entry) > maxEntryLen:
		v.fail("runtime.entry", "must be at most %d characters", maxEntryLen)
	case !cleanRelative(r.Entry):
		v.fail("runtime.entry", "must be a clean relative path inside the service directory (no '..', not absolute, no backslash)")
	}
	switch {
	case r.Image == "":
		if driver == DriverDocker {
			v.fail("runtime.image", "required for driver docker")
		}
	case known && driver != DriverDocker:
		v.fail("runtime.image", "not allowed for driver %s", driver)
	case len(r.Image) > maxImageLen || !imageRE.MatchString(r.Image):
		v.fail("runtime.image", "must be an image reference like ghcr.io/org/app@sha256:<64 hex>, sha256:<64 hex> (an image ID) or alpine:3.20, at most %d characters", maxImageLen)
	}
	if len(r.Command) > 0 {
		switch {
		case driver == DriverWasm:
			v.fail("runtime.command", "not allowed for driver wasm")
		case len(r.Command) > maxArgs:
			v.fail("runtime.command", "at most %d arguments allowed, got %d", maxArgs, len(r.Command))
		default:
			for i, a := range r.Command {
				if len(a) > maxArgLen || strings.IndexByte(a, 0) >= 0 {
					v.fail(strictdoc.IndexPath("runtime.command", i), "must be at most %d bytes without NUL", maxArgLen)
				}
			}
		}
	}
}

// validHTTPPath reports whether p is a webhook path: /hooks/ and segments
// of [A-Za-z0-9._~-], none of them "." or "..", each after a '/'.
func validHTTPPath(p string) bool {
	if len(p) > maxHTTPPathLen || !strings.HasPrefix(p, HookPathPrefix) {
		return false
	}
	for _, seg := range strings.Split(p[1:], "/") {
		if seg == "." || seg == ".." || !segmentRE.MatchString(seg) {
			return false
		}
	}
	return true
}

// cleanRelative reports whether p is a clean path inside a directory.
func cleanRelative(p string) bool {
	if strings.HasPrefix(p, "/") || strings.ContainsAny(p, "\\\x00") {
		return false
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
	}
	return true
}

// CheckTriggers judges normalized triggers by the rules of a service's
// triggers (kinds, the fields each kind allows, schedules, intervals,
// topics, paths, auth, inputs), every problem at its path under
// "triggers" (triggers[1].every). Other documents that declare triggers
// (a flow) use it.
func CheckTriggers(ts []Trigger) Errors {
	var v validator
	v.triggers(ts)
	return v.errs
}

func (v *validator) triggers(ts []Trigger) {
	if len(ts) > maxTriggers {
		v.fail("triggers", "at most %d allowed, got %d", maxTriggers, len(ts))
	}
	manual := -1
	topics := map[string]int{}
	paths := map[string]int{}
	for i := range ts {
		t := &ts[i]
		p := strictdoc.IndexPath("triggers", i)
		allowed := map[string]bool{}
		switch t.Kind {
		case "":
			v.fail(p+".kind", "required")
			continue
		case KindCron:
			allowed = map[string]bool{"every": true, "schedule": true, "input": true, "catch_up": true, "catch_up_limit": true}
			v.cron(p, t)
			v.catchUp(p, t)
		case KindEvent:
			allowed["topic"], allowed["public"] = true, true
			switch {
			case t.Topic == "":
				v.fail(p+".topic", "required for kind event")
			case contract.CheckTopic(t.Topic) != nil:
				v.fail(p+".topic", contract.CheckTopic(t.Topic).Error())
			default:
				if j, dup := topics[t.Topic]; dup {
					v.fail(p+".topic", "duplicate of %s", strictdoc.IndexPath("triggers", j))
				} else {
					topics[t.Topic] = i
				}
			}
		case KindManual:
			allowed["input"] = true
			if manual >= 0 {
				v.fail(p+".kind", "duplicate of %s: at most one manual trigger", strictdoc.IndexPath("triggers", manual))
			} else {
				manual = i
			}
		case KindHTTP:
			allowed["path"], allowed["methods"], allowed["auth"] = true, true, true
			v.hook(p, t)
			switch {
			case t.Path == "":
				v.fail(p+".path", "required for kind http")
			case !validHTTPPath(t.Path):
				v.fail(p+".path", "must start with %s, use only [A-Za-z0-9._~/-], have no empty, '.' or '..' segment and be at most %d characters", HookPathPrefix, maxHTTPPathLen)
			default:
				if j, dup := paths[t.Path]; dup {
					v.fail(p+".path", "duplicate of %s", strictdoc.IndexPath("triggers", j))
				} else {
					paths[t.Path] = i
				}
			}
		default:
			v.fail(p+".kind", "must be one of cron, event, manual, http")
			continue
		}
		set := []struct {
			name string
			set  bool
		}{
			{"every", !t.Every.IsZero()},
			{"schedule", t.Schedule != ""},
			{"topic", t.Topic != ""},
			{"public", t.Public},
			{"path", t.Path != ""},
			{"methods", t.Methods != nil},
			{"auth", !t.Auth.IsZero()},
			{"input", t.Input != nil},
			{"catch_up", t.CatchUp != ""},
			{"catch_up_limit", t.CatchUpLimit != 0},
		}
		for _, f := range set {
			if f.set && !allowed[f.name] {
				v.fail(p+"."+f.name, "not allowed for kind %s", t.Kind)
			}
		}
		if t.Input != nil && allowed["input"] {
			v.jsonSize(p+".input", t.Input, maxInputSize)
		}
	}
}

// The catch-up policies of a cron trigger (Trigger.CatchUp).
const (
	CatchUpSkip = "skip"
	CatchUpOnce = "once"
	CatchUpAll  = "all"
	// DefaultCatchUpLimit is catch_up_limit when catch_up: all names none.
	DefaultCatchUpLimit = 10
	// MaxCatchUpLimit bounds catch_up_limit.
	MaxCatchUpLimit = 1000
)

// catchUp checks the catch-up policy of the cron trigger at path p.
func (v *validator) catchUp(p string, t *Trigger) {
	switch t.CatchUp {
	case "", CatchUpSkip, CatchUpOnce, CatchUpAll:
	default:
		v.fail(p+".catch_up", "must be skip, once or all")
	}
	switch {
	case t.CatchUpLimit != 0 && t.CatchUp != CatchUpAll:
		v.fail(p+".catch_up_limit", "only with catch_up: all")
	case t.CatchUpLimit < 0 || t.CatchUpLimit > MaxCatchUpLimit:
		v.fail(p+".catch_up_limit", "must be between 1 and %d", MaxCatchUpLimit)
	}
}

func (v *validator) cron(p string, t *Trigger) {
	switch {
	case t.Every.IsZero() && t.Schedule == "":
		v.fail(p, "cron needs every or schedule")
	case !t.Every.IsZero() && t.Schedule != "":
		v.fail(p+".schedule", "not allowed together with every")
	case !t.Every.IsZero():
		d, err := time.ParseDuration(t.Every.raw)
		switch {
		case err != nil:
			v.fail(p+".every", durationRule)
		case d < minEvery:
			v.fail(p+".every", "must be a duration ≥ 1s")
		case d > maxEvery:
			v.fail(p+".every", "must be a duration ≤ 8784h (366 days)")
		}
	default:
		if err := checkSchedule(t.Schedule); err != "" {
			v.fail(p+".schedule", "must be a cron expression with seconds or a descriptor: %s", err)
		}
	}
}

func (v *validator) resources(r *Resources) {
	if !r.Memory.IsZero() {
		n, err := parseBytes(r.Memory.raw)
		switch {
		case err != nil && err != errRange:
			v.fail("resources.memory", bytesRule)
		case err != nil || n < minMemory || n > maxMemory:
			v.fail("resources.memory", "must be between 1Mi and 16Gi")
		}
	}
	if !r.CPU.IsZero() {
		c, err := parseCPU(r.CPU.raw)
		switch {
		case err != nil && err != errRange:
			v.fail("resources.cpu", cpuRule)
		case err != nil || c < minCPU || c > maxCPU:
			v.fail("resources.cpu", "must be between %v and %v", minCPU, maxCPU)
		}
	}
	if !r.Timeout.IsZero() {
		d, err := time.ParseDuration(r.Timeout.raw)
		switch {
		case err != nil:
			v.fail("resources.timeout", durationRule)
		case d < minTimeout || d > maxTimeout:
			v.fail("resources.timeout", "must be between 1ms and 1h")
		}
	}
	if r.Pids < 0 || r.Pids > maxPids {
		v.fail("resources.pids", "must be between 1 and %d", maxPids)
	}
	if r.Concurrency < 0 || r.Concurrency > maxConcurrency {
		v.fail("resources.concurrency", "must be between 1 and %d", maxConcurrency)
	}
}

func (v *validator) capabilities(c *Capabilities) {
	n := &c.Network
	switch {
	case n.bad != "":
		v.fail("capabilities.network", networkRule)
	case n.Any && len(n.Hosts) > 0:
		v.fail("capabilities.network", "must be any or a list of hosts, not both")
	case len(n.Hosts) > maxHosts:
		v.fail("capabilities.network", "at most %d hosts allowed, got %d", maxHosts, len(n.Hosts))
	default:
		first := map[string]int{}
		for i, h := range n.Hosts {
			p := strictdoc.IndexPath("capabilities.network", i)
			if !validHostPort(h) {
				v.fail(p, "must be host:port with a DNS name or an IP address and a port from 1 to 65535")
				continue
			}
			key := strings.ToLower(h)
			if j, dup := first[key]; dup {
				v.fail(p, "duplicate of %s", strictdoc.IndexPath("capabilities.network", j))
				continue
			}
			first[key] = i
		}
	}
	v.names("capabilities.actions", c.Actions, maxActions, actionRE, "must match [a-z][a-z0-9-]{0,31}")
	v.caps(c)
}

func validHostPort(hp string) bool {
	host, port, err := net.SplitHostPort(hp)
	if err != nil || len(host) > 253 {
		return false
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 || port[0] == '0' || port[0] == '+' {
		return false
	}
	if strings.HasPrefix(hp, "[") {
		ip := net.ParseIP(host)
		return ip != nil && ip.To4() == nil && !strings.Contains(host, "%")
	}
	if net.ParseIP(host) != nil {
		return true
	}
	// A DNS name never ends in a numeric label: 999.1.1.1 is a bad address.
	last := host[strings.LastIndexByte(host, '.')+1:]
	return hostnameRE.MatchString(host) && strings.Trim(last, "0123456789") != ""
}

func (v *validator) source(s *Source) {
	switch {
	case s.Location != "" && s.Git != "":
		v.fail("source", "location and git exclude each other: name an archive or a repository")
	case s.Git != "":
		v.gitSource(s)
	case s.Location == "":
		for _, f := range []struct{ key, v string }{{"commit", s.Commit}, {"ref", s.Ref}, {"path", s.Path}} {
			if f.v != "" {
				v.fail("source."+f.key, "allowed only with source.git")
			}
		}
		if s.Digest != "" {
			v.fail("source.digest", "allowed only with source.location or source.git")
		}
		return
	default:
		for _, f := range []struct{ key, v string }{{"commit", s.Commit}, {"ref", s.Ref}, {"path", s.Path}} {
			if f.v != "" {
				v.fail("source."+f.key, "allowed only with source.git, not with source.location")
			}
		}
		v.httpsURL("source.location", s.Location)
	}
	switch {
	case s.Digest == "" && s.Git != "":
		v.fail("source.digest", "required with source.git: the canonical archive digest of the files at source.path (andromeda digest DIR on a checkout)")
	case s.Digest == "":
		v.fail("source.digest", "required with source.location")
	case !digestRE.MatchString(s.Digest):
		v.fail("source.digest", "must be sha256: followed by 64 lowercase hex digits")
	}
}

// httpsURL checks an https URL without credentials.
func (v *validator) httpsURL(key, s string) bool {
	if len(s) > maxURLLen {
		v.fail(key, "must be at most %d characters", maxURLLen)
		return false
	}
	u, err := url.Parse(s)
	switch {
	case err != nil || u.Scheme != "https" || u.Host == "" || u.Opaque != "" || u.Hostname() == "":
		v.fail(key, "must be an https:// URL")
	case u.User != nil:
		v.fail(key, "must not contain credentials")
	default:
		return true
	}
	return false
}

func (v *validator) reward(r *Reward) {
	if math.IsNaN(r.Amount) || math.IsInf(r.Amount, 0) || r.Amount < 0 {
		v.fail("reward.amount", "must be a finite number ≥ 0")
	}
	switch {
	case r.Unit != "" && !unitRE.MatchString(r.Unit):
		v.fail("reward.unit", "must match [A-Za-z0-9]{1,16}")
	case r.Unit == "" && r.Amount > 0:
		v.fail("reward.unit", "required when reward.amount > 0")
	}
}

// labelRE is a placement label's key or value (as a node's cluster.labels).
var labelRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,63}$`)

func (v *validator) placement(pl *Placement) {
	if len(pl.Labels) > MaxPlacementLabels {
		v.fail("placement.labels", "must hold at most %d labels, got %d", MaxPlacementLabels, len(pl.Labels))
	}
	for _, k := range slices.Sorted(maps.Keys(pl.Labels)) {
		if !labelRE.MatchString(k) {
			v.fail("placement.labels", "key %q: must be 1 to 63 of A-Z a-z 0-9 . _ -", k)
			continue
		}
		if !labelRE.MatchString(pl.Labels[k]) {
			v.fail("placement.labels."+k, "must be 1 to 63 of A-Z a-z 0-9 . _ -")
		}
	}
}

// jsonSize checks that x encodes to JSON of at most max bytes.
func (v *validator) jsonSize(path string, x any, max int) {
	b, err := json.Marshal(x)
	switch {
	case err != nil:
		v.fail(path, "must be JSON-encodable: %s", strings.TrimPrefix(err.Error(), "json: "))
	case len(b) > max:
		v.fail(path, "must be at most %d bytes as JSON, got %d", max, len(b))
	}
}
