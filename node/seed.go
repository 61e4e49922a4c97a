package node

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/archive"
	"github.com/andromeda-runner/andromeda/decision"
	"github.com/andromeda-runner/andromeda/manifest"
	"github.com/andromeda-runner/andromeda/server"
	"github.com/andromeda-runner/andromeda/source"
)

var _ server.SeedBackend = (*Node)(nil)

// seedManifestFile is the name of the manifest the node writes into a seed
// object's archive: the canonical JSON form of a manifest.
const seedManifestFile = "andromeda.json"

// seedProcessMemory is what an inferred node or python service asks for:
// what the examples ask for, room for the interpreter. A wasm service takes
// the manifest default.
const seedProcessMemory = "128Mi"

// SubmitSeed implements server.SeedBackend: the KLYNTAR service object,
// translated to a manifest and submitted like an upload. Its archive (sent,
// or fetched from its location without a pinned digest) is unpacked; when
// it carries a manifest that manifest is the service, with title, desc,
// keywords and reward filling what it leaves empty; when it carries none the
// runtime is inferred from its files (inferRuntime) and a manifest written
// from the object. An archive whose manifest changed is repacked, and the
// repacked archive is what is admitted, stored and attested. Every mapping
// is a reason (rule seed.FIELD) ahead of admission's own in the decision.
func (n *Node) SubmitSeed(ctx context.Context, p server.Principal, obj api.SeedService, o api.SubmitOptions) (api.SubmitResult, error) {
	t := seedTranslation{obj: obj}
	data := obj.Archive
	if obj.Location != "" {
		pol := n.Policy()
		lim := n.limits.archive
		lim.MaxCompressed = min(lim.MaxCompressed, pol.Policy().MaxPayload.Int64())
		n.log.Info("fetching seed service", "title", obj.Title, "location", obj.Location)
		fetched, err := source.Fetch(ctx, n.httpClient(), obj.Location, source.Unpinned, lim, pol.Policy().AllowedSources)
		if err != nil {
			return api.SubmitResult{}, server.Errorf(server.ErrUnusable, "location: %v", err)
		}
		data = fetched
	}
	staging, err := n.tempDir("seed")
	if err != nil {
		return api.SubmitResult{}, err
	}
	defer os.RemoveAll(staging)
	dir := filepath.Join(staging, "svc")
	info, err := archive.Unpack(bytes.NewReader(data), dir, n.limits.archive)
	if err != nil {
		return api.SubmitResult{}, fmt.Errorf("archive: %w", err)
	}
	if obj.Location != "" {
		t.note("location", "fetched %s, unpinned: a KLYNTAR object names no digest, so the node took what the location held, %s", obj.Location, info.Digest)
	} else {
		t.note("archive", "a tar.gz of %d bytes sent in the object (base64), %s", len(data), info.Digest)
	}
	changed, err := t.manifest(dir, info.Digest)
	if err != nil {
		return api.SubmitResult{}, err
	}
	if changed {
		var buf bytes.Buffer
		repacked, err := archive.PackTo(&buf, dir)
		if err != nil {
			return api.SubmitResult{}, fmt.Errorf("repack seed archive: %w", err)
		}
		data = buf.Bytes()
		t.note("digest", "policy, attestations and the store see %s, the archive with the manifest the node wrote (%s); the object's own archive was %s", repacked.Digest, seedManifestFile, info.Digest)
	} else {
		t.note("digest", "policy, attestations and the store see %s, the object's archive as it came", info.Digest)
	}
	if !obj.Origin.IsZero() {
		o.Origin = obj.Origin
		t.note("origin", "%s → the submission's origin claim", obj.Origin)
	}
	for _, f := range obj.Unused {
		t.note(f, "not used by this node: the object's field %s has no counterpart here and was ignored", f)
	}
	if len(obj.Unused) > 0 {
		n.log.Info("seed object fields not used", logService, t.m.Name, "fields", strings.Join(obj.Unused, ","))
	}
	o.Notes = append(slices.Clone(o.Notes), t.notes...)
	return n.queued(ctx, o, func(ctx context.Context) (api.SubmitResult, error) {
		return n.submitArchive(ctx, p, data, o, nil)
	})
}

// seedTranslation is one seed object on its way to a manifest, with the
// reasons that say what each field became.
type seedTranslation struct {
	obj   api.SeedService
	m     *manifest.Service
	notes []decision.Reason
}

func (t *seedTranslation) note(field, format string, args ...any) {
	t.notes = append(t.notes, decision.Reason{Rule: "seed." + field, OK: true, Detail: fmt.Sprintf(format, args...)})
}

// manifest finds or writes the manifest of the unpacked archive dir, whose
// tree digest is digest, and reports whether it wrote one.
func (t *seedTranslation) manifest(dir, digest string) (bool, error) {
	m, err := manifest.Load(dir)
	switch {
	case err == nil:
		t.m = m
		return t.fill(dir)
	case errors.Is(err, manifest.ErrNoManifest):
		return true, t.infer(dir, digest)
	default:
		return false, fmt.Errorf("archive: %w", stripDir(err, dir))
	}
}

// stripDir takes the staging directory out of an error's text.
func stripDir(err error, dir string) error {
	if !strings.Contains(err.Error(), dir) {
		return err
	}
	msg := strings.ReplaceAll(err.Error(), dir+string(filepath.Separator), "")
	return &strippedError{err: err, msg: strings.ReplaceAll(msg, dir, "the archive")}
}

type strippedError struct {
	err error
	msg string
}

func (e *strippedError) Error() string { return e.msg }
func (e *strippedError) Unwrap() error { return e.err }

// fill is the archive's own manifest with the object's fields filling what
// it leaves empty; what it sets is kept. A manifest that changed is
// rewritten, in its canonical JSON form, as the archive's only manifest.
func (t *seedTranslation) fill(dir string) (bool, error) {
	m, obj := t.m, t.obj
	own := manifestFileIn(dir)
	changed := false
	t.note("name", "%s %s, from the archive's own %s (nothing inferred)", m.Name, m.Version, own)
	switch {
	case m.Title == "":
		m.Title, changed = obj.Title, true
		t.note("title", "title → manifest title (the archive's %s had none)", own)
	case m.Title == obj.Title:
		t.note("title", "title agrees with the archive's %s", own)
	default:
		t.note("title", "title %q not used: the archive's %s has its own, %q", obj.Title, own, m.Title)
	}
	switch {
	case obj.Desc == "":
		t.note("desc", "desc is empty: nothing to fill")
	case m.Description == "":
		m.Description, changed = obj.Desc, true
		t.note("desc", "desc → manifest description, %d characters (the archive's %s had none)", len([]rune(obj.Desc)), own)
	case m.Description == obj.Desc:
		t.note("desc", "desc agrees with the archive's %s", own)
	default:
		t.note("desc", "desc not used: the archive's %s has its own description", own)
	}
	if len(obj.Keywords) > 0 {
		if len(m.Keywords) == 0 {
			m.Keywords, changed = slices.Clone(obj.Keywords), true
			t.note("keywords", "%s → manifest keywords", strings.Join(obj.Keywords, ", "))
		} else {
			t.note("keywords", "not used: the archive's %s has its own keywords", own)
		}
	}
	if r := obj.Reward; r != nil {
		if m.Reward == (manifest.Reward{}) {
			m.Reward, changed = manifest.Reward{Amount: r.Amount, Unit: r.Unit}, true
			t.note("reward", "%g %s → manifest reward", r.Amount, r.Unit)
		} else {
			t.note("reward", "not used: the archive's %s offers its own reward", own)
		}
	}
	t.note("runtime", "from the archive's %s: driver %s, entry %s, mode %s (nothing inferred)", own, m.Runtime.Driver, m.Runtime.Entry, m.Mode)
	if !changed {
		return false, nil
	}
	m.Normalize()
	if err := m.Validate(); err != nil {
		return false, fmt.Errorf("service object: the archive's %s with the object's fields: %w", own, err)
	}
	if err := os.Remove(filepath.Join(dir, own)); err != nil {
		return false, err
	}
	t.note("manifest", "the archive's %s, filled from the object, rewritten as %s (its canonical form)", own, seedManifestFile)
	return true, writeManifest(dir, m)
}

// manifestFileIn is the name of the one manifest file at dir's root.
func manifestFileIn(dir string) string {
	for _, name := range manifest.FileNames() {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return name
		}
	}
	return manifest.FileNames()[0]
}

// infer writes a manifest for an archive that carries none: the runtime
// inferred from its files, the name a slug of the title, the version
// derived from the archive's digest and the object's fields.
func (t *seedTranslation) infer(dir, digest string) error {
	files, err := regularFiles(dir)
	if err != nil {
		return err
	}
	inf, err := inferRuntime(files, func(name string) ([]byte, error) {
		return os.ReadFile(filepath.Join(dir, filepath.FromSlash(name)))
	})
	if err != nil {
		return server.Errorf(server.ErrInvalid, "archive: %v", err)
	}
	obj := t.obj
	m := &manifest.Service{
		Name: seedName(obj.Title), Version: "0.0.0",
		Title: obj.Title, Description: obj.Desc, Keywords: slices.Clone(obj.Keywords),
		Runtime: inf.runtime, Mode: manifest.ModeCommand,
	}
	if inf.memory != "" {
		mem, err := manifest.ParseBytes(inf.memory)
		if err != nil {
			return err
		}
		m.Resources.Memory = mem
	}
	if r := obj.Reward; r != nil {
		m.Reward = manifest.Reward{Amount: r.Amount, Unit: r.Unit}
	}
	m.Normalize()
	canon, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode manifest: %w", err)
	}
	h := sha256.Sum256([]byte(digest + "\n" + string(canon)))
	m.Version = "0.0.0-seed-" + hex.EncodeToString(h[:6])
	if err := m.Validate(); err != nil {
		return fmt.Errorf("service object: the manifest made from it: %w", err)
	}
	t.m = m
	t.note("title", "title → manifest title, and name %s (its slug)", m.Name)
	if obj.Desc == "" {
		t.note("desc", "desc is empty: the manifest has no description")
	} else {
		t.note("desc", "desc → manifest description, %d characters", len([]rune(obj.Desc)))
	}
	t.note("runtime", "inferred: %s", inf.detail)
	t.note("version", "%s: the object carries no version; derived from its archive and fields, so a changed object is a new version and the same one again is unchanged", m.Version)
	if len(obj.Keywords) > 0 {
		t.note("keywords", "%s → manifest keywords", strings.Join(m.Keywords, ", "))
	}
	if r := obj.Reward; r != nil {
		t.note("reward", "%g %s → manifest reward", r.Amount, r.Unit)
	}
	t.note("manifest", "written into the archive as %s: no andromeda.yaml came with it", seedManifestFile)
	return writeManifest(dir, m)
}

func writeManifest(dir string, m *manifest.Service) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("encode manifest: %w", err)
	}
	return os.WriteFile(filepath.Join(dir, seedManifestFile), append(b, '\n'), 0o644)
}

// regularFiles lists the regular files under dir, slash-separated and
// relative, sorted.
func regularFiles(dir string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			rel, err := filepath.Rel(dir, p)
			if err != nil {
				return err
			}
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	slices.Sort(files)
	return files, err
}

// inference is a runtime inferred from an archive's files.
type inference struct {
	runtime manifest.Runtime
	memory  string // "" for the manifest's default
	detail  string // what was found and what it became, for the reason
}

// inferRuntime infers how to run an archive that carries no manifest from
// its regular files (slash-separated paths relative to its root; read reads
// one): exactly one .wasm anywhere is a wasm command; package.json at the
// root or exactly one .js is node; requirements.txt at the root or exactly
// one .py is python. Exactly one of the three must fit; the error says what
// was found and why that is not enough.
func inferRuntime(files []string, read func(name string) ([]byte, error)) (inference, error) {
	var wasm, js, py []string
	for _, f := range files {
		switch path.Ext(f) {
		case ".wasm":
			wasm = append(wasm, f)
		case ".js":
			js = append(js, f)
		case ".py":
			py = append(py, f)
		}
	}
	pkg := slices.Contains(files, "package.json")
	req := slices.Contains(files, "requirements.txt")
	var fits []string
	if len(wasm) == 1 {
		fits = append(fits, "wasm ("+wasm[0]+")")
	}
	if pkg {
		fits = append(fits, "node (package.json)")
	} else if len(js) == 1 {
		fits = append(fits, "node ("+js[0]+")")
	}
	if req {
		fits = append(fits, "python (requirements.txt)")
	} else if len(py) == 1 {
		fits = append(fits, "python ("+py[0]+")")
	}
	switch {
	case len(fits) > 1:
		return inference{}, fmt.Errorf("cannot infer the runtime: it fits %s; add an andromeda.yaml", strings.Join(fits, " and "))
	case len(fits) == 0:
		var why []string
		if len(wasm) > 1 {
			why = append(why, fmt.Sprintf("%d .wasm files", len(wasm)))
		}
		if len(js) > 1 {
			why = append(why, fmt.Sprintf("%d .js files and no package.json", len(js)))
		}
		if len(py) > 1 {
			why = append(why, fmt.Sprintf("%d .py files and no requirements.txt", len(py)))
		}
		if len(why) == 0 {
			why = append(why, "no .wasm, .js or .py file")
		}
		return inference{}, fmt.Errorf("cannot infer the runtime: %s; add an andromeda.yaml", strings.Join(why, ", "))
	}
	switch {
	case len(wasm) == 1:
		return inference{
			runtime: manifest.Runtime{Driver: manifest.DriverWasm, Language: "wasm", Entry: wasm[0]},
			detail:  fmt.Sprintf("one .wasm file (%s) → wasm command service, entry %s", wasm[0], wasm[0]),
		}, nil
	case pkg:
		entry, how, err := nodeEntry(files, js, read)
		if err != nil {
			return inference{}, err
		}
		return processInference("node", entry, "package.json → node on the process driver, entry "+entry+" ("+how+")"), nil
	case len(js) == 1:
		return processInference("node", js[0], "one .js file ("+js[0]+") → node on the process driver, entry "+js[0]), nil
	case req:
		entry := ""
		switch {
		case slices.Contains(files, "main.py"):
			entry = "main.py"
		case len(py) == 1:
			entry = py[0]
		default:
			return inference{}, fmt.Errorf("cannot infer the entry: requirements.txt, %d .py files and no main.py; add an andromeda.yaml", len(py))
		}
		return processInference("python", entry, "requirements.txt → python on the process driver, entry "+entry), nil
	default:
		return processInference("python", py[0], "one .py file ("+py[0]+") → python on the process driver, entry "+py[0]), nil
	}
}

func processInference(lang, entry, detail string) inference {
	return inference{
		runtime: manifest.Runtime{Driver: manifest.DriverProcess, Language: lang, Entry: entry},
		memory:  seedProcessMemory,
		detail:  detail + ", command mode, memory " + seedProcessMemory,
	}
}

// nodeEntry is the entry of a node archive with a package.json: its main,
// else index.js, else its one .js file.
func nodeEntry(files, js []string, read func(string) ([]byte, error)) (entry, how string, err error) {
	b, err := read("package.json")
	if err != nil {
		return "", "", fmt.Errorf("package.json: %w", err)
	}
	var pkg struct {
		Main string `json:"main"`
	}
	if err := json.Unmarshal(b, &pkg); err != nil {
		return "", "", fmt.Errorf("package.json: not JSON a main can be read from: %v", err)
	}
	if pkg.Main != "" {
		main := path.Clean(strings.TrimPrefix(pkg.Main, "./"))
		if !slices.Contains(files, main) {
			return "", "", fmt.Errorf("package.json: main %q: no such file in the archive", pkg.Main)
		}
		return main, "package.json main", nil
	}
	switch {
	case slices.Contains(files, "index.js"):
		return "index.js", "no main in package.json: index.js", nil
	case len(js) == 1:
		return js[0], "no main in package.json: the one .js file", nil
	}
	return "", "", fmt.Errorf("cannot infer the entry: package.json names no main, there is no index.js and %d .js files; add an andromeda.yaml", len(js))
}

// seedName is the service name a title gives: its ASCII letters and digits
// in lowercase, every other run of characters one '-', starting with a
// letter (s- before a leading digit), at most 63 characters. A title with no
// ASCII letter or digit gives seed- and 8 hex digits of its hash, stable for
// the same title.
func seedName(title string) string {
	var b strings.Builder
	gap := false
	for _, r := range strings.ToLower(title) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			if gap && b.Len() > 0 {
				b.WriteByte('-')
			}
			gap = false
			b.WriteRune(r)
		} else {
			gap = true
		}
	}
	s := b.String()
	if s == "" {
		h := sha256.Sum256([]byte(title))
		return "seed-" + hex.EncodeToString(h[:4])
	}
	if s[0] >= '0' && s[0] <= '9' {
		s = "s-" + s
	}
	if len(s) > 63 {
		s = strings.TrimRight(s[:63], "-")
	}
	return s
}
