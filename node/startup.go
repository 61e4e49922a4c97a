package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/archive"
	"github.com/andromeda-runner/andromeda/manifest"
	"github.com/andromeda-runner/andromeda/policy"
	"github.com/andromeda-runner/andromeda/server"
	"github.com/andromeda-runner/andromeda/store"
)

// Services at start, the node's counterpart of the KLYNTAR daemon's
// services.json (SERVICES, EXTERNAL_SERVICES): the node config's services
// list names service directories, archives and source manifests the node
// submits to itself once it is up, through the same path as any
// submission (Submit, SubmitSource): the same unpacking rules, the same
// policy, the same record. Nothing is trusted for being in the config: a
// service the policy refuses is refused here too. An entry whose service
// is registered with the same digest is "already deployed" (Submit's
// Unchanged), so a restart with an unchanged list changes nothing. serve
// --demo feeds the demo services through the same path.

// StartService is one entry of the node config's services list: exactly
// one of Dir, Archive and Source.
//
//	services:
//	  - {dir: ./services/weather}
//	  - {archive: ./dist/feed.tar.gz, required: true}
//	  - {source: ./manifests/remote.yaml, owner: alice}
type StartService struct {
	// Dir is a service directory (its manifest and built entry), packed
	// as `andromeda submit DIR` packs one; nothing is built at start.
	Dir string `json:"dir" yaml:"dir"`
	// Archive is a tar.gz of a service directory (andromeda pack), at
	// most upload.max_archive.
	Archive string `json:"archive" yaml:"archive"`
	// Source is a manifest file (YAML, JSON or TOML, by its extension)
	// whose source names where the node fetches the service, as on POST
	// /v1/services with a manifest: the policy's allowed_sources and
	// max_payload apply, and the digest must match. A service already
	// registered with the source's digest is not fetched again.
	Source string `json:"source" yaml:"source"`
	// Required makes a failure to admit or deploy this entry fail the
	// node's start, with the reason. Default false: the failure is logged
	// and printed, and the node starts without it.
	Required bool `json:"required" yaml:"required"`
	// Owner is who owns the service, as if that submitter had submitted
	// it (a token name; the service is listed for that token and it may
	// replace or remove it), like the seed's EXTERNAL_SERVICES, services
	// of others. Default "operator": the node's operator owns it.
	Owner string `json:"owner" yaml:"owner"`
}

// Kind is "dir", "archive" or "source": which one the entry sets; ""
// when it sets none or more than one.
func (s StartService) Kind() string {
	kind := ""
	for _, k := range []struct{ name, v string }{{"dir", s.Dir}, {"archive", s.Archive}, {"source", s.Source}} {
		if k.v == "" {
			continue
		}
		if kind != "" {
			return ""
		}
		kind = k.name
	}
	return kind
}

// path is the entry's one path.
func (s StartService) path() string { return s.Dir + s.Archive + s.Source }

// validateStartServices checks the services list's shape; whether its
// paths exist is checked at start, where a missing one is that entry's
// failure.
func validateStartServices(list []StartService) error {
	var errs []error
	for i, s := range list {
		at := fmt.Sprintf("services[%d]", i)
		var set []string
		for _, k := range []struct{ name, v string }{{"dir", s.Dir}, {"archive", s.Archive}, {"source", s.Source}} {
			if k.v != "" {
				set = append(set, k.name)
			}
		}
		switch len(set) {
		case 0:
			errs = append(errs, fmt.Errorf("%s: must set one of dir, archive or source (a non-empty path)", at))
		case 1:
		default:
			errs = append(errs, fmt.Errorf("%s: sets %s; an entry is exactly one of dir, archive or source", at, strings.Join(set, " and ")))
		}
		if s.Owner != "" && s.Owner != "operator" && !validTokenName(s.Owner) {
			errs = append(errs, fmt.Errorf("%s.owner: must be operator or a token name ([a-z0-9][a-z0-9-]{0,62}), not %q", at, s.Owner))
		}
	}
	return errors.Join(errs...)
}

// resolveStartPaths makes the list's relative paths relative to dir (the
// config file's directory).
func resolveStartPaths(list []StartService, dir string) []StartService {
	if len(list) == 0 {
		return list
	}
	out := make([]StartService, len(list))
	for i, s := range list {
		for _, p := range []*string{&s.Dir, &s.Archive, &s.Source} {
			if *p != "" && !filepath.IsAbs(*p) {
				*p = filepath.Join(dir, *p)
			}
		}
		out[i] = s
	}
	return out
}

// States of a StartResult.
const (
	StartDeployed  = "deployed"  // admitted and deployed now
	StartUnchanged = "unchanged" // registered already with the same digest
	StartRefused   = "refused"   // the policy refused it
	StartFailed    = "failed"    // unreadable, invalid, or it did not deploy
)

// StartResult is what became of one services entry.
type StartResult struct {
	// Entry is the entry's path: services[2] (demo[2] for the demo).
	Entry string
	// Kind and Path are the entry's dir, archive or source and its path.
	Kind, Path string
	// Service, Version and Digest are the service's, as far as they are
	// known (a file that cannot be read has none).
	Service, Version, Digest string
	// State is StartDeployed, StartUnchanged, StartRefused or StartFailed.
	State string
	// Reasons are the policy's reasons for a refusal, one per failed
	// rule, or the one reason an entry failed.
	Reasons []string
	// Required is the entry's required.
	Required bool
	// Err is the error of a refused or failed entry.
	Err error
}

// OK reports whether the service is deployed (now or already).
func (r StartResult) OK() bool { return r.State == StartDeployed || r.State == StartUnchanged }

// Format is the result as serve prints it: one line, then one indented
// line per reason, each ending in a newline. prefix starts the first
// line ("services: ", "demo: ").
func (r StartResult) Format(prefix string) string {
	var b strings.Builder
	name := r.Service
	if name == "" {
		name = r.Entry
	}
	state := r.State
	switch r.State {
	case StartUnchanged:
		state = "already deployed"
	case StartRefused, StartFailed:
		state = fmt.Sprintf("%s (%s %s %s)", r.State, r.Entry, r.Kind, r.Path)
		if r.Required {
			state += ", required"
		}
	}
	digest := shortHex(r.Digest)
	fmt.Fprintf(&b, "%s%-13s %-8s %-12s  %s\n", prefix, name, r.Version, digest, state)
	for _, reason := range r.Reasons {
		fmt.Fprintf(&b, "%s    %s\n", strings.Repeat(" ", len(prefix)), oneLineText(reason, 300))
	}
	return b.String()
}

func shortHex(d string) string {
	d = strings.TrimPrefix(d, "sha256:")
	if len(d) > 12 {
		return d[:12]
	}
	return d
}

func oneLineText(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// StartResults are the results of the config's services list at the
// node's last Start, in the list's order.
func (n *Node) StartResults() []StartResult {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return append([]StartResult(nil), n.startResults...)
}

// startServices admits the config's services list; Start runs it once
// the node serves its API.
func (n *Node) startServices(ctx context.Context) error {
	res, err := n.StartServices(ctx, "services", n.cfg.Services, nil)
	n.mu.Lock()
	n.startResults = res
	n.mu.Unlock()
	return err
}

// StartServices submits each entry of list in order, through Submit or
// SubmitSource, and returns what became of each. Each decision is logged
// (service, version, digest, verdict; a refusal's reasons one line each)
// and, when progress is not nil, printed to it as it is made
// (StartResult.Format with prefix "<name>: "). name names the list in
// entry paths and lines: "services" for the node config's. A refused or
// failed entry is skipped unless it is required; the error is the joined
// failures of the required entries, after every entry was tried. Paths
// are used as given (LoadConfig made the config's absolute).
func (n *Node) StartServices(ctx context.Context, name string, list []StartService, progress io.Writer) ([]StartResult, error) {
	start := time.Now()
	results := make([]StartResult, 0, len(list))
	var errs []error
	defer func() {
		n.log.Info("start services done", "list", name, "entries", len(list), "took_ms", ms(time.Since(start)))
	}()
	// Entries are read and submitted side by side, a few at a time, so
	// that one waiting for its driver's self-test holds up no other; an
	// entry submits after every earlier entry of the same service, so the
	// list's order still decides between them. Results are logged and
	// printed in the list's order.
	type slot struct {
		named, done chan struct{} // closed once its service's name is known (or it ended), and once it ended
		service     string
		res         StartResult
	}
	slots := make([]*slot, len(list))
	for i := range slots {
		slots[i] = &slot{named: make(chan struct{}), done: make(chan struct{})}
	}
	sem := make(chan struct{}, max(4, 2*runtime.GOMAXPROCS(0)))
	go func() {
		for i, s := range list {
			sem <- struct{}{}
			go func() {
				me := slots[i]
				var nameOnce sync.Once
				named := func(service string) { nameOnce.Do(func() { me.service = service; close(me.named) }) }
				defer func() { <-sem; named(""); close(me.done) }()
				me.res = n.startOne(ctx, fmt.Sprintf("%s[%d]", name, i), s, func(m *manifest.Service) {
					named(m.Name)
					for _, before := range slots[:i] {
						<-before.named
						if before.service == m.Name {
							<-before.done
						}
					}
					// Its drivers' self-tests are waited for here, not
					// inside the submission, where others would wait too.
					n.waitDrivers(ctx, candidateDrivers(m, policy.Submission{})...)
				})
			}()
		}
	}()
	for _, sl := range slots {
		<-sl.done
		r := sl.res
		n.logStart(r)
		if progress != nil {
			io.WriteString(progress, r.Format(name+": "))
		}
		if !r.OK() && r.Required {
			err := fmt.Errorf("%s is required: %w", r.Entry, r.Err)
			if r.State == StartRefused {
				err = fmt.Errorf("%w (%s)", err, strings.Join(r.Reasons, "; "))
			}
			errs = append(errs, err)
		}
		results = append(results, r)
	}
	return results, errors.Join(errs...)
}

// logStart logs one result: a line for the decision and, for a refusal,
// one line per reason.
func (n *Node) logStart(r StartResult) {
	attrs := []any{"entry", r.Entry, r.Kind, r.Path, logService, r.Service, "version", r.Version, "digest", r.Digest, "required", r.Required}
	switch r.State {
	case StartDeployed, StartUnchanged:
		n.log.Info("start service", append(attrs, "verdict", "run", "state", r.State)...)
	case StartRefused:
		verdict := "reject"
		var se *server.Error
		if errors.As(r.Err, &se) && se.Decision != nil {
			verdict = string(se.Decision.Verdict)
		}
		n.log.Warn("start service refused", append(attrs, "verdict", verdict)...)
		for _, reason := range r.Reasons {
			n.log.Warn("start service refused: reason", "entry", r.Entry, logService, r.Service, "reason", reason)
		}
	default:
		n.log.Warn("start service failed", append(attrs, logErr, r.Err)...)
	}
}

// startOne submits one entry.
//
// ready, when not nil, is called with the service's manifest just before it
// is submitted (not for an entry that fails before).
func (n *Node) startOne(ctx context.Context, entry string, s StartService, ready func(*manifest.Service)) StartResult {
	if ready == nil {
		ready = func(*manifest.Service) {}
	}
	r := StartResult{Entry: entry, Kind: s.Kind(), Path: s.path(), Required: s.Required}
	fail := func(err error) StartResult {
		r.State, r.Err, r.Reasons = StartFailed, err, []string{err.Error()}
		return r
	}
	if r.Kind == "" {
		return fail(fmt.Errorf("%s: must set exactly one of dir, archive or source", entry))
	}
	at := entry + "." + r.Kind
	p := server.Principal{Name: "operator", Role: api.RoleOperator}
	if s.Owner != "" && s.Owner != "operator" {
		p = server.Principal{Name: s.Owner, Role: api.RoleSubmitter}
	}
	var (
		res api.SubmitResult
		err error
	)
	switch r.Kind {
	case "dir", "archive":
		// A directory whose digest is the registered service's is
		// unchanged: known without packing it again (Submit would
		// answer Unchanged after the packing).
		if s.Dir != "" {
			if m, merr := manifest.Load(s.Dir); merr == nil {
				if digest, derr := archive.DigestDir(s.Dir); derr == nil {
					ready(m)
					if prev, ok := n.registeredAs(ctx, p, m.Name, m.Version, digest); ok {
						r.Service, r.Version, r.Digest = m.Name, m.Version, digest
						res = api.SubmitResult{Service: n.view(prev), Unchanged: true}
						break
					}
				}
			}
		}
		var data []byte
		if data, err = n.startArchive(at, s); err != nil {
			return fail(err)
		}
		info, ierr := archive.Inspect(bytes.NewReader(data), n.limits.archive)
		if ierr != nil {
			return fail(fmt.Errorf("%s: %s: %w", at, r.Path, ierr))
		}
		r.Digest = info.Digest
		if m, merr := n.archiveManifest(data); merr == nil {
			r.Service, r.Version = m.Name, m.Version
			ready(m)
		}
		res, err = n.Submit(ctx, p, bytes.NewReader(data), api.SubmitOptions{})
	case "source":
		raw, rerr := os.ReadFile(s.Source)
		if rerr != nil {
			return fail(fmt.Errorf("%s: %w", at, rerr))
		}
		m, merr := manifest.CheckFile(s.Source, raw)
		if merr != nil {
			return fail(fmt.Errorf("%s: %s: %w", at, s.Source, merr))
		}
		r.Service, r.Version, r.Digest = m.Name, m.Version, m.Source.Digest
		ready(m)
		if prev, ok := n.registeredAs(ctx, p, m.Name, m.Version, m.Source.Digest); ok {
			res = api.SubmitResult{Service: n.view(prev), Unchanged: true}
			break
		}
		body, jerr := json.Marshal(m)
		if jerr != nil {
			return fail(fmt.Errorf("%s: encode manifest: %w", at, jerr))
		}
		res, err = n.SubmitSource(ctx, p, body, api.SubmitOptions{})
	}
	if err != nil {
		r.Err = err
		var se *server.Error
		if errors.As(err, &se) && errors.Is(err, server.ErrRefused) {
			r.State, r.Reasons = StartRefused, se.Problems
			if len(r.Reasons) == 0 {
				r.Reasons = []string{se.Msg}
			}
			return r
		}
		if errors.As(err, &se) && len(se.Problems) > 0 {
			r.State, r.Reasons = StartFailed, append([]string{se.Msg}, se.Problems...)
			return r
		}
		return fail(err)
	}
	r.Service, r.Version, r.Digest = res.Service.Name, res.Service.Version, res.Service.Digest
	r.State = StartDeployed
	if res.Unchanged {
		r.State = StartUnchanged
	}
	return r
}

// startArchive is the tar.gz an entry names: its archive file, at most
// upload.max_archive, or its directory packed.
func (n *Node) startArchive(at string, s StartService) ([]byte, error) {
	if s.Dir != "" {
		fi, err := os.Stat(s.Dir)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", at, err)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("%s: %s is not a directory", at, s.Dir)
		}
		if _, err := manifest.Load(s.Dir); err != nil {
			return nil, fmt.Errorf("%s: %s: %w", at, s.Dir, err)
		}
		data, err := archive.Pack(s.Dir)
		if err != nil {
			return nil, fmt.Errorf("%s: pack %s: %w", at, s.Dir, err)
		}
		return data, nil
	}
	f, err := os.Open(s.Archive)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", at, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, n.limits.maxArchive+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", at, err)
	}
	if int64(len(data)) > n.limits.maxArchive {
		return nil, fmt.Errorf("%s: %s is larger than upload.max_archive (%d bytes)", at, s.Archive, n.limits.maxArchive)
	}
	return data, nil
}

// archiveManifest reads the manifest of a tar.gz by unpacking it into a
// staging directory, with the rules Submit applies.
func (n *Node) archiveManifest(data []byte) (*manifest.Service, error) {
	dir, err := n.tempDir("start")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if _, err := archive.Unpack(bytes.NewReader(data), filepath.Join(dir, "svc"), n.limits.archive); err != nil {
		return nil, err
	}
	return manifest.Load(filepath.Join(dir, "svc"))
}

// registeredAs returns the record of name when it is registered and
// running at version and digest and p may replace it: what Submit would
// answer Unchanged for, found without fetching the source again.
func (n *Node) registeredAs(ctx context.Context, p server.Principal, name, version, digest string) (rec store.Service, ok bool) {
	prev, err := n.store.Service(ctx, name)
	if err != nil || prev.Version != version || prev.Digest != digest || n.lookup(name) == nil {
		return prev, false
	}
	if !p.Operator() && prev.Owner != p.Name {
		return prev, false
	}
	return prev, true
}
