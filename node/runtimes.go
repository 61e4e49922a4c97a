package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/sandbox/process"
	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
	"github.com/andromeda-runner/andromeda/strictdoc"
)

// RuntimesDirName is the directory of runtime descriptors beside the
// node's config file (andromeda serve --config FILE).
const RuntimesDirName = "runtimes.d"

// DefaultRuntimesDir is where serve looks for runtime descriptors when it
// has no --config file: $XDG_CONFIG_HOME/andromeda/runtimes.d, else
// ~/.config/andromeda/runtimes.d, else "" (none).
func DefaultRuntimesDir() string {
	if d := os.Getenv("XDG_CONFIG_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "andromeda", RuntimesDirName)
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".config", "andromeda", RuntimesDirName)
	}
	return ""
}

// RuntimesDirFor is the runtime descriptors' directory of a node started
// with config file name: runtimes.d beside it, or DefaultRuntimesDir
// without one.
func RuntimesDirFor(configFile string) string {
	if configFile == "" {
		return DefaultRuntimesDir()
	}
	return filepath.Join(filepath.Dir(configFile), RuntimesDirName)
}

// Descriptor is a runtime descriptor, runtimes.d/NAME.yaml (or .yml,
// .json): a language runtime the node registers with the process driver,
// like a plugin of Golem's provider. Decoded strictly.
type Descriptor struct {
	// Name is the runtime's name, the file's name without its extension,
	// and (unless Languages says otherwise) the language its services
	// name in runtime.language: [a-z][a-z0-9+#.-]{0,31}. Required.
	Name string `json:"name"`
	// Version is the runtime's version, as the offer shows it. Required.
	Version string `json:"version"`
	// Description is one line for the offer. Optional.
	Description string `json:"description,omitempty"`
	// Path is the executable speaking the runtime protocol: absolute, or
	// relative to the descriptor's directory and inside it. It must be a
	// regular file executable by others (workers run as an unprivileged
	// user). Required.
	Path string `json:"path"`
	// Args are passed to it, after its path. At most 64.
	Args []string `json:"args,omitempty"`
	// Languages are the runtime.language values it serves. Default
	// [Name]. None may be built in (node, python, exec) or another
	// runtime's.
	Languages []string `json:"languages,omitempty"`
	// Entry is the usual entry file of its services. Optional.
	Entry string `json:"entry,omitempty"`
	// Extensions are those an entry must have (".lua"). Default any.
	Extensions []string `json:"extensions,omitempty"`
	// Modes are the modes it serves, server and/or command (docs/design.md
	// section 5). Default both. The kit certifies each; the process driver
	// refuses a service in another.
	Modes []string `json:"modes,omitempty"`
	// Conformance is the conformance guest (the sandboxtest package's
	// "do" table) written for this runtime: its entry file, relative to
	// the descriptor's directory and inside it; the guest is that file's
	// directory. The node certifies the runtime with it at start and on
	// andromeda selftest. Required.
	Conformance string `json:"conformance"`
}

// descriptorDoc names a runtime descriptor in errors.
type descriptorDoc struct{}

func (descriptorDoc) Name() string { return "descriptor" }

var runtimeNameRE = regexp.MustCompile(`^[a-z][a-z0-9+#.-]{0,31}$`)

// maxDescriptor bounds a descriptor file.
const maxDescriptor = 64 << 10

// ReadDescriptor reads and checks the descriptor at path, resolving Path
// and Conformance to absolute paths. Every problem is named by its field
// (path: must be ...), and the error by the file.
func ReadDescriptor(path string) (Descriptor, error) {
	var d Descriptor
	fail := func(err error) (Descriptor, error) {
		return Descriptor{}, fmt.Errorf("runtime descriptor %s: %w", path, err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fail(err)
	}
	format := strictdoc.YAML
	if strings.EqualFold(filepath.Ext(path), ".json") {
		format = strictdoc.JSON
	}
	if err := (strictdoc.Decoder[descriptorDoc]{MaxSize: maxDescriptor, MaxDepth: 4}).Decode(format, data, &d); err != nil {
		return fail(err)
	}
	if err := d.check(path); err != nil {
		return fail(err)
	}
	return d, nil
}

// check validates d, read from file, and makes its paths absolute.
func (d *Descriptor) check(file string) error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	base := strings.TrimSuffix(filepath.Base(file), filepath.Ext(file))
	switch {
	case !runtimeNameRE.MatchString(d.Name):
		bad("name", "must match [a-z][a-z0-9+#.-]{0,31}, got %q", d.Name)
	case d.Name != base:
		bad("name", "must be the file's name %q, got %q", base, d.Name)
	}
	if strings.TrimSpace(d.Version) == "" || len(d.Version) > 64 {
		bad("version", "must be 1 to 64 characters")
	}
	if len(d.Description) > 200 || strings.ContainsAny(d.Description, "\n\r") {
		bad("description", "must be one line of at most 200 characters")
	}
	if len(d.Args) > 64 {
		bad("args", "at most 64 arguments, got %d", len(d.Args))
	}
	for i, l := range d.Languages {
		if !runtimeNameRE.MatchString(l) {
			bad(strictdoc.IndexPath("languages", i), "must match [a-z][a-z0-9+#.-]{0,31}, got %q", l)
		}
	}
	if len(d.Languages) > 16 {
		bad("languages", "at most 16, got %d", len(d.Languages))
	}
	for i, m := range d.Modes {
		if m != string(sandbox.ModeServer) && m != string(sandbox.ModeCommand) || slices.Index(d.Modes, m) < i {
			bad(strictdoc.IndexPath("modes", i), "must be server or command, each once, got %q", m)
		}
	}
	if d.Entry != "" && !filepath.IsLocal(d.Entry) {
		bad("entry", "must be a relative path inside a service's directory, got %q", d.Entry)
	}
	for i, e := range d.Extensions {
		if !strings.HasPrefix(e, ".") || len(e) < 2 || strings.ContainsAny(e, "/\\") {
			bad(strictdoc.IndexPath("extensions", i), "must be an extension such as .lua, got %q", e)
		}
	}
	dir := filepath.Dir(file)
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	if p, err := descriptorPath(dir, d.Path); err != nil {
		bad("path", "%v", err)
	} else if err := checkExecutable(p); err != nil {
		bad("path", "%v", err)
	} else {
		d.Path = p
	}
	if p, err := descriptorPath(dir, d.Conformance); err != nil {
		bad("conformance", "%v", err)
	} else if fi, err := os.Stat(p); err != nil {
		bad("conformance", "%v", err)
	} else if !fi.Mode().IsRegular() {
		bad("conformance", "%s is not a regular file", p)
	} else {
		d.Conformance = p
	}
	return errors.Join(errs...)
}

// descriptorPath resolves p, from a descriptor in dir: absolute, or
// relative to dir and inside it.
func descriptorPath(dir, p string) (string, error) {
	switch {
	case p == "":
		return "", errors.New("required")
	case filepath.IsAbs(p):
		return filepath.Clean(p), nil
	case !filepath.IsLocal(p):
		return "", fmt.Errorf("%q must be absolute, or relative to the descriptor's directory and inside it", p)
	}
	return filepath.Join(dir, p), nil
}

// checkExecutable checks that p is a regular file executable by others.
func checkExecutable(p string) error {
	fi, err := os.Stat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%s does not exist", p)
	case err != nil:
		return err
	case fi.IsDir():
		return fmt.Errorf("%s is a directory, want an executable file", p)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("%s is not a regular file", p)
	case fi.Mode().Perm()&0o001 == 0:
		return fmt.Errorf("%s has mode %v: it must be executable by others (o+x; workers run as an unprivileged user)", p, fi.Mode().Perm())
	}
	return nil
}

// Runtime states in the offer.
const (
	runtimeEnabled  = "enabled"
	runtimeDisabled = "disabled" // failed its certification
	runtimeRefused  = "refused"  // the descriptor is invalid
)

// runtimeState is one descriptor the node found, and what became of it.
type runtimeState struct {
	file string
	desc Descriptor // zero but for Name when refused

	mu         sync.Mutex
	status     string
	reason     string
	properties map[string]any
	certified  time.Time
	took       time.Duration
}

func (r *runtimeState) languages() []string {
	if len(r.desc.Languages) > 0 {
		return r.desc.Languages
	}
	return []string{r.desc.Name}
}

// loadRuntimes reads every descriptor in n.cfg.Runtimes, registers the
// valid ones with the process driver and certifies them. A refused
// descriptor or a runtime that fails its certification is logged and
// listed in the offer with the reason; neither stops the node.
func (n *Node) loadRuntimes(ctx context.Context) {
	dir := n.cfg.Runtimes
	if dir == "" {
		return
	}
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	if err != nil {
		n.log.Error("runtime descriptors unreadable", "dir", dir, logErr, err)
		return
	}
	for _, e := range entries {
		ext := strings.ToLower(filepath.Ext(e.Name()))
		if e.IsDir() || (ext != ".yaml" && ext != ".yml" && ext != ".json") {
			continue
		}
		file := filepath.Join(dir, e.Name())
		st := &runtimeState{file: file, desc: Descriptor{Name: strings.TrimSuffix(e.Name(), filepath.Ext(e.Name()))}}
		n.runtimes = append(n.runtimes, st)
		desc, err := ReadDescriptor(file)
		if err == nil && n.process != nil {
			err = n.process.AddRuntime(process.Runtime{
				Name: desc.Name, Version: desc.Version, Path: desc.Path, Args: desc.Args,
				Languages: desc.Languages, Entry: desc.Entry, Exts: desc.Extensions, Modes: desc.modes(),
			})
			if err != nil {
				err = fmt.Errorf("runtime descriptor %s: %w", file, err)
			}
		}
		if err != nil {
			st.status, st.reason = runtimeRefused, err.Error()
			n.log.Error("runtime refused", "runtime", st.desc.Name, logErr, err)
			continue
		}
		st.desc = desc
	}
	// Certified side by side: each runs its own workers.
	var wg sync.WaitGroup
	for _, st := range n.runtimes {
		if st.status != runtimeRefused {
			wg.Go(func() { n.certify(ctx, st) })
		}
	}
	wg.Wait()
}

// certify runs the conformance kit (andromeda conformance) against st's
// runtime with its conformance guest, in server and command mode, and
// enables its languages if it passes, disables them with the failed checks
// as the reason if not. A runtime that passes is then asked what it adds
// to the offer.
func (n *Node) certify(ctx context.Context, st *runtimeState) {
	p := n.process
	desc := st.desc
	start := time.Now()
	var failed []string
	err := n.processEnabled()
	if err == nil {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		dir, entry := filepath.Split(desc.Conformance)
		spec := process.ConformanceSpec(dir, desc.languages()[0], entry)
		// One mode at a time: a runtime that fails in the first is not
		// made to fail the other slowly.
		for _, mode := range desc.modes() {
			err = sandboxtest.Certify(cctx, sandboxtest.Kit{
				Driver:      p.Certifiable(),
				Spec:        func(mode sandbox.Mode) sandbox.Spec { s := spec(mode); s.Service = "certify-" + desc.Name; return s },
				Started:     process.WorkersStarted,
				CancelGrace: process.DefaultCancelGrace,
				Modes:       []sandbox.Mode{mode},
			}, func(c sandboxtest.Check) {
				if !c.OK {
					failed = append(failed, c.Name+": "+strings.Join(c.Failed, "; "))
				}
			})
			if err != nil {
				break
			}
		}
		if err != nil && len(failed) > 0 {
			err = fmt.Errorf("%w (%s)", err, clip(strings.Join(failed, "; "), 600))
		}
	}
	var props map[string]any
	if err == nil {
		octx, cancel := context.WithTimeout(ctx, 15*time.Second)
		dir, entry := filepath.Split(desc.Conformance)
		props, err = p.RuntimeOffer(octx, sandbox.Spec{Service: "offer-" + desc.Name, Dir: dir, Entry: entry, Language: desc.languages()[0]})
		cancel()
		if err == nil {
			err = checkInjected(props)
		}
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	st.took = time.Since(start)
	st.certified = time.Now().UTC()
	if err != nil {
		st.status, st.reason, st.properties = runtimeDisabled, "certification failed: "+err.Error(), nil
		for _, l := range desc.languages() {
			p.Disable(l, st.reason)
		}
		n.log.Warn("runtime disabled", "runtime", desc.Name, "reason", st.reason)
		return
	}
	st.status, st.reason, st.properties = runtimeEnabled, "", props
	for _, l := range desc.languages() {
		p.Enable(l)
	}
	n.log.Info("runtime ready", "runtime", desc.Name, "version", desc.Version, "languages", strings.Join(desc.languages(), ","), "took", st.took.Round(time.Millisecond))
}

// modes are the modes d's runtime serves.
func (d Descriptor) modes() []sandbox.Mode {
	if len(d.Modes) == 0 {
		return []sandbox.Mode{sandbox.ModeServer, sandbox.ModeCommand}
	}
	var out []sandbox.Mode
	for _, m := range d.Modes {
		out = append(out, sandbox.Mode(m))
	}
	return out
}

func (d Descriptor) languages() []string {
	if len(d.Languages) > 0 {
		return d.Languages
	}
	return []string{d.Name}
}

// processEnabled says why runtimes cannot run: no process driver, or a
// disabled one.
func (n *Node) processEnabled() error {
	ds, ok := n.drivers["process"]
	if n.process == nil || !ok {
		return errors.New("the process driver is not on this node")
	}
	<-ds.tested // its self-test at start, bounded by its timeout
	if on, why := ds.status(); !on {
		return fmt.Errorf("the process driver is disabled: %s", why)
	}
	return nil
}

// checkInjected checks the properties a runtime's offer message answered:
// at most 64, keys of [A-Za-z0-9_.-]{1,128} outside andromeda., values of
// at most 4 KiB of JSON.
func checkInjected(props map[string]any) error {
	if len(props) > 64 {
		return fmt.Errorf("offer: %d properties, at most 64", len(props))
	}
	for _, k := range slices.Sorted(maps.Keys(props)) {
		if !propertyKeyRE.MatchString(k) || strings.HasPrefix(k, reservedPrefix) {
			return fmt.Errorf("offer: property %q: must match [A-Za-z0-9_.-]{1,128} and not start with %q", k, reservedPrefix)
		}
		if b, err := json.Marshal(props[k]); err != nil || len(b) > 4<<10 {
			return fmt.Errorf("offer: property %q: must be JSON of at most 4 KiB", k)
		}
	}
	return nil
}

// disabledLanguages are the languages of driver that runtimes registered
// by descriptor serve but that are disabled, with the reason.
func (n *Node) disabledLanguages(driver string) map[string]string {
	if driver != "process" {
		return nil
	}
	out := map[string]string{}
	for _, st := range n.runtimes {
		st.mu.Lock()
		if st.status == runtimeDisabled {
			for _, l := range st.desc.languages() {
				out[l] = "runtime " + st.desc.Name + " " + st.reason
			}
		}
		st.mu.Unlock()
	}
	return out
}

// runtimeOffers are the runtimes as the offer lists them.
func (n *Node) runtimeOffers() []api.OfferRuntime {
	var out []api.OfferRuntime
	for _, st := range n.runtimes {
		st.mu.Lock()
		r := api.OfferRuntime{
			Name: st.desc.Name, Version: st.desc.Version, Description: st.desc.Description,
			Status: st.status, Reason: st.reason, Properties: st.properties,
		}
		if st.status != runtimeRefused {
			r.Languages = st.desc.languages()
			r.Certified = st.certified
		}
		st.mu.Unlock()
		out = append(out, r)
	}
	return out
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
