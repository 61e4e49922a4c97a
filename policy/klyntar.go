package policy

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/andromeda-runner/andromeda/attest"
	"github.com/andromeda-runner/andromeda/source"
	"github.com/andromeda-runner/andromeda/strictdoc"
)

// Klyntar is what ImportKlyntar makes of a KLYNTAR runner configuration.
type Klyntar struct {
	// Policy is the admission policy: DefaultPolicy with every key of the
	// configuration applied, normalized and valid.
	Policy Policy
	// Docker is the Docker Engine connection (DOCKER_CONFIGS), for the
	// node's docker driver; zero when the configuration has none.
	Docker Docker
	// Mappings say, key by key in the order of the KLYNTAR documentation,
	// what each key present became.
	Mappings []Mapping
}

// Docker is how the node reaches the Docker Engine API.
type Docker struct {
	// Host is the engine's address as DOCKER_HOST writes it:
	// tcp://host:port or unix:///path.
	Host string `json:"host" yaml:"host"`
	// TLS is true when the engine speaks HTTPS (protocol https).
	TLS bool `json:"tls,omitempty" yaml:"tls,omitempty"`
}

// Mapping is what one KLYNTAR key became.
type Mapping struct {
	// Key is the KLYNTAR key, e.g. DESC_MAX_LEN.
	Key string `json:"key"`
	// To is the Andromeda setting and its value, e.g. "max_description: 199".
	To string `json:"to"`
	// Note explains a change of meaning or what was dropped, and why.
	Note string `json:"note,omitempty"`
}

// klyntarKeys are the keys of a KLYNTAR runner configuration, in the order
// of its documentation (seed 000).
var klyntarKeys = []string{
	"DOCKER_CONFIGS", "DESC_MAX_LEN", "REDIRECTION_DEPTH", "STATIC_NODES", "TRUSTED_HUBS",
	"PREFER_TOOLCHAIN", "KEYWORDS", "NETCAP", "PREFER_SYMBIOTES", "PREFER_HOSTCHAINS",
	"DORMITORY", "ALLOWED_STORAGE", "REGISTRIES", "CONTAINERS",
}

// ImportKlyntar converts a KLYNTAR runner configuration (the JSON of the
// KLY_Runners config, seed 000) into a policy and a Docker connection, and
// says what each key became. The input is read by package strictdoc's
// rules, the same as every document's (a null, a key written twice and a
// value of the wrong type are errors, at most MaxSize bytes), and an unknown
// top-level key or a value that cannot be converted is an error naming the
// key. Entries that cannot be carried over
// (a peer whose URL is not http or https, a hub key that is not ed25519, a
// host that is not a host name) are dropped, each named in its key's note,
// so that a configuration that worked under KLYNTAR still loads.
//
// Changes of meaning, each stated in its note: DESC_MAX_LEN N becomes
// max_description N-1 (KLYNTAR admits length < N); TRUSTED_HUBS sets no
// quorum (require stays 0: attestations are counted, not required);
// PREFER_SYMBIOTES and PREFER_HOSTCHAINS become origins.prefer, a
// preference (required false, min_stake 0 for other origins); an
// empty NETCAP becomes network none; PREFER_TOOLCHAIN's "host" is the
// process driver and "node.js" the language node.
func ImportKlyntar(data []byte) (Klyntar, error) {
	root, err := klyntarStrict.Read(strictdoc.JSON, data)
	if err != nil {
		return Klyntar{}, fmt.Errorf("klyntar: %w", plainErr(err))
	}
	keys, err := decodeObject(root)
	if err != nil {
		return Klyntar{}, fmt.Errorf("klyntar: %w", err)
	}
	var (
		k    = Klyntar{Policy: DefaultPolicy()}
		errs []error
	)
	for _, name := range keys.order {
		if !contains(klyntarKeys, name) {
			errs = append(errs, fmt.Errorf("%s: unknown KLYNTAR runner key (known: %s)", name, strings.Join(klyntarKeys, ", ")))
		}
	}
	for _, name := range klyntarKeys {
		raw, ok := keys.vals[name]
		if !ok {
			continue
		}
		m, err := importKey(&k, name, raw)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		m.Key = name
		k.Mappings = append(k.Mappings, m)
	}
	if len(errs) > 0 {
		return Klyntar{}, fmt.Errorf("klyntar: %w", errors.Join(errs...))
	}
	k.Policy.Normalize()
	if err := k.Policy.Validate(); err != nil {
		return Klyntar{}, fmt.Errorf("klyntar: the imported policy is not valid: %w", err)
	}
	return k, nil
}

func importKey(k *Klyntar, name string, raw *strictdoc.Value) (Mapping, error) {
	p := &k.Policy
	switch name {
	case "DOCKER_CONFIGS":
		var dc struct {
			Protocol string `json:"protocol"`
			Host     string `json:"host"`
			Port     int    `json:"port"`
		}
		if err := decodeValue(raw, &dc); err != nil {
			return Mapping{}, err
		}
		switch {
		case strings.HasPrefix(dc.Host, "/"):
			k.Docker = Docker{Host: "unix://" + dc.Host}
		case dc.Host == "":
			return Mapping{}, errors.New("host: must not be empty")
		default:
			if dc.Port < 1 || dc.Port > 65535 {
				return Mapping{}, fmt.Errorf("port: must be from 1 to 65535, got %d", dc.Port)
			}
			switch strings.ToLower(dc.Protocol) {
			case "http", "tcp", "":
			case "https":
				k.Docker.TLS = true
			default:
				return Mapping{}, fmt.Errorf("protocol: must be http or https, got %q", dc.Protocol)
			}
			k.Docker.Host = "tcp://" + net.JoinHostPort(dc.Host, strconv.Itoa(dc.Port))
		}
		to := "docker.host: " + k.Docker.Host
		if k.Docker.TLS {
			to += " (TLS)"
		}
		return Mapping{To: to, Note: "the Docker Engine connection, a node setting for the docker driver rather than policy"}, nil

	case "DESC_MAX_LEN":
		var n int
		if err := decodeValue(raw, &n); err != nil {
			return Mapping{}, err
		}
		if n < 1 {
			return Mapping{}, fmt.Errorf("must be at least 1, got %d", n)
		}
		p.MaxDescription = min(n-1, DefaultMaxDescription)
		return Mapping{To: fmt.Sprintf("max_description: %d", p.MaxDescription),
			Note: fmt.Sprintf("KLYNTAR runs a service whose description is shorter than %d characters; max_description is the longest admitted", n)}, nil

	case "REDIRECTION_DEPTH":
		var n int
		if err := decodeValue(raw, &n); err != nil {
			return Mapping{}, err
		}
		if n < 0 || n > MaxRedirectDepth {
			return Mapping{}, fmt.Errorf("must be from 0 to %d, got %d", MaxRedirectDepth, n)
		}
		p.RedirectDepth = n
		return Mapping{To: fmt.Sprintf("redirect_depth: %d", n)}, nil

	case "STATIC_NODES":
		var nodes []string
		if err := decodeValue(raw, &nodes); err != nil {
			return Mapping{}, err
		}
		var dropped []string
		p.Peers = nil
		for _, n := range nodes {
			u, err := url.Parse(n)
			if err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
				dropped = append(dropped, strconv.Quote(n)+" (not an http or https URL)")
				continue
			}
			if !contains(p.Peers, n) {
				p.Peers = append(p.Peers, n)
			}
		}
		return Mapping{To: "peers: " + listString(p.Peers), Note: droppedNote(dropped)}, nil

	case "TRUSTED_HUBS":
		hubs, err := decodeObject(raw)
		if err != nil {
			return Mapping{}, err
		}
		var dropped, ignored []string
		p.TrustedHubs = nil
		names := map[string]bool{}
		for _, key := range hubs.order {
			inner, err := decodeObject(hubs.vals[key])
			if err != nil {
				return Mapping{}, fmt.Errorf("%q: %w", key, err)
			}
			ignored = append(ignored, prefixed(key, inner.order)...)
			raw, err := decodeBase58(key)
			switch {
			case err != nil:
				dropped = append(dropped, fmt.Sprintf("%s (not base58: %v)", key, err))
				continue
			case len(raw) != 32:
				dropped = append(dropped, fmt.Sprintf("%s (%d bytes, not a 32-byte ed25519 key)", key, len(raw)))
				continue
			}
			hubName := "klyntar-" + strings.ToLower(key[:min(8, len(key))])
			for i := 2; names[hubName]; i++ {
				hubName = fmt.Sprintf("klyntar-%s-%d", strings.ToLower(key[:min(8, len(key))]), i)
			}
			names[hubName] = true
			p.TrustedHubs = append(p.TrustedHubs, Hub{Name: hubName, Key: attest.PublicKey(raw).String(), Weight: 1})
		}
		hubNames := make([]string, len(p.TrustedHubs))
		for i, h := range p.TrustedHubs {
			hubNames[i] = h.Name
		}
		note := "KLYNTAR sets no quorum, so require stays {signatures: 0, weight: 0}: attestations are counted and reported, not required; " +
			"keys are converted from base58 to ed25519:<base64>, each with weight 1"
		if len(dropped) > 0 {
			note += "; dropped: " + strings.Join(dropped, ", ") + " (Andromeda verifies ed25519 attestations only)"
		}
		if len(ignored) > 0 {
			note += "; ignored: " + strings.Join(ignored, ", ")
		}
		return Mapping{To: "trusted_hubs: " + listString(hubNames), Note: note}, nil

	case "PREFER_TOOLCHAIN":
		tc, err := decodeObject(raw)
		if err != nil {
			return Mapping{}, err
		}
		p.PreferDrivers = map[string][]string{}
		var parts, dropped []string
		for _, drv := range tc.order {
			var langs []string
			if err := decodeValue(tc.vals[drv], &langs); err != nil {
				return Mapping{}, fmt.Errorf("%s: %w", drv, err)
			}
			to := map[string]string{"host": "process", "docker": "docker", "wasm": "wasm", "process": "process"}[strings.ToLower(drv)]
			if to == "" {
				dropped = append(dropped, fmt.Sprintf("%s (no such driver: host, docker or wasm)", drv))
				continue
			}
			for _, l := range langs {
				lang := language(l)
				if !languageRE.MatchString(lang) {
					dropped = append(dropped, fmt.Sprintf("%s.%s (not a language name)", drv, l))
					continue
				}
				if !contains(p.PreferDrivers[to], lang) {
					p.PreferDrivers[to] = append(p.PreferDrivers[to], lang)
				}
			}
			parts = append(parts, fmt.Sprintf("%s: %s", to, listString(p.PreferDrivers[to])))
		}
		return Mapping{To: "prefer_drivers: {" + strings.Join(parts, "; ") + "}",
			Note: joinNotes("a preference that picks the driver when a service accepts several, not a restriction; host is the process driver, node.js the language node", droppedNote(dropped))}, nil

	case "KEYWORDS":
		var kws []string
		if err := decodeValue(raw, &kws); err != nil {
			return Mapping{}, err
		}
		var dropped []string
		p.Keywords = nil
		for _, kw := range kws {
			kw = strings.ToLower(kw)
			if !keywordRE.MatchString(kw) {
				dropped = append(dropped, strconv.Quote(kw)+" (not [a-z0-9-]{1,32})")
				continue
			}
			if !contains(p.Keywords, kw) {
				p.Keywords = append(p.Keywords, kw)
			}
		}
		return Mapping{To: "keywords: " + listString(p.Keywords), Note: joinNotes("a service must carry at least one of them", droppedNote(dropped))}, nil

	case "NETCAP":
		caps, err := decodeObject(raw)
		if err != nil {
			return Mapping{}, err
		}
		p.Network = Network{}
		for _, c := range caps.order {
			switch {
			case c == "*" || strings.EqualFold(c, "any"):
				p.Network = Network{Any: true}
			case checkNetworkPattern(c) == nil:
				if !p.Network.Any {
					p.Network.Hosts = append(p.Network.Hosts, c)
				}
			default:
				return Mapping{}, fmt.Errorf("%q: %v", c, checkNetworkPattern(c))
			}
		}
		note := "the network ceiling"
		if len(caps.order) == 0 {
			note = "KLYNTAR grants no network capability: a service asking for network is not run here"
		}
		return Mapping{To: "network: " + p.Network.String(), Note: note}, nil

	case "PREFER_SYMBIOTES", "PREFER_HOSTCHAINS":
		kind := map[string]string{"PREFER_SYMBIOTES": "symbiote", "PREFER_HOSTCHAINS": "hostchain"}[name]
		obj, err := decodeObject(raw)
		if err != nil {
			return Mapping{}, err
		}
		var added, ignored []string
		for _, id := range obj.order {
			inner, err := decodeObject(obj.vals[id])
			if err != nil {
				return Mapping{}, fmt.Errorf("%q: %w", id, err)
			}
			o := Origin{Kind: kind, ID: id}
			for _, f := range inner.order {
				if f != "MIN_FREEZE" {
					ignored = append(ignored, id+"."+f)
					continue
				}
				if err := decodeValue(inner.vals[f], &o.MinStake); err != nil || o.MinStake < 0 || math.IsInf(o.MinStake, 0) {
					return Mapping{}, fmt.Errorf("%q.MIN_FREEZE: must be a number ≥ 0", id)
				}
			}
			p.Origins.Prefer = append(p.Origins.Prefer, o)
			added = append(added, fmt.Sprintf("%s:%s (min_stake %s)", kind, id, formatFloat(o.MinStake)))
		}
		p.Origins.Required, p.Origins.MinStake = false, 0
		note := "a preference, as in KLYNTAR (origins {required: false, prefer, min_stake: 0}): a submission naming a listed origin (Andromeda-Origin: kind:id;stake=N) with at least its min_stake (MIN_FREEZE) is preferred and goes first in the admission queue when the node is at capacity; any other, including one naming no origin, is admitted at origins.min_stake 0 (set it to ask a stake of others, or required: true for an allowlist)"
		if len(ignored) > 0 {
			note += "; ignored: " + strings.Join(ignored, ", ")
		}
		return Mapping{To: "origins.prefer += " + listString(added), Note: note}, nil

	case "DORMITORY":
		obj, err := decodeObject(raw)
		if err != nil {
			return Mapping{}, err
		}
		var dropped []string
		p.Dormant.Services = nil
		for _, s := range obj.order {
			if !dormantRE.MatchString(s) {
				dropped = append(dropped, strconv.Quote(s)+" (not a service name)")
				continue
			}
			p.Dormant.Services = append(p.Dormant.Services, s)
		}
		note := "services admitted but started only on their first trigger"
		if len(obj.order) == 0 {
			note = "empty: no dormant services"
		}
		return Mapping{To: "dormant.services: " + listString(p.Dormant.Services), Note: joinNotes(note, droppedNote(dropped))}, nil

	case "ALLOWED_STORAGE":
		var hosts []string
		if err := decodeValue(raw, &hosts); err != nil {
			return Mapping{}, err
		}
		var dropped []string
		p.AllowedSources = nil
		for _, h := range hosts {
			if err := source.CheckPattern(h); err != nil {
				dropped = append(dropped, fmt.Sprintf("%q (%v)", h, err))
				continue
			}
			if !contains(p.AllowedSources, h) {
				p.AllowedSources = append(p.AllowedSources, h)
			}
		}
		return Mapping{To: "allowed_sources: " + listString(p.AllowedSources),
			Note: joinNotes("hosts a source.location may name, over https, each exactly (a subdomain needs its own entry or *.host)", droppedNote(dropped))}, nil

	case "REGISTRIES":
		obj, err := decodeObject(raw)
		if err != nil {
			return Mapping{}, err
		}
		p.Registries = map[string][]string{}
		var parts, empty, dropped []string
		for _, l := range obj.order {
			var urls []string
			if err := decodeValue(obj.vals[l], &urls); err != nil {
				return Mapping{}, fmt.Errorf("%s: %w", l, err)
			}
			lang := language(l)
			if !languageRE.MatchString(lang) {
				dropped = append(dropped, fmt.Sprintf("%s (not a language name)", l))
				continue
			}
			for _, u := range urls {
				pu, err := url.Parse(u)
				if err != nil || pu.Scheme != "http" && pu.Scheme != "https" || pu.Host == "" {
					dropped = append(dropped, fmt.Sprintf("%s %q (not an http or https URL)", l, u))
					continue
				}
				p.Registries[lang] = append(p.Registries[lang], u)
			}
			if len(p.Registries[lang]) == 0 {
				delete(p.Registries, lang)
				empty = append(empty, lang)
				continue
			}
			parts = append(parts, fmt.Sprintf("%s: %s", lang, listString(p.Registries[lang])))
		}
		note := "docker lists the registries docker images may come from (an image must also be pinned by digest unless images.allow_tags is set); the others are package registries for dependency installs"
		if len(empty) > 0 {
			note += "; " + strings.Join(empty, ", ") + ": no registry listed, so the toolchain's default"
		}
		return Mapping{To: "registries: {" + strings.Join(parts, "; ") + "}", Note: joinNotes(note, droppedNote(dropped))}, nil

	case "CONTAINERS":
		var names []string
		if err := decodeValue(raw, &names); err != nil {
			return Mapping{}, err
		}
		var parts, dropped []string
		p.Containers = nil
		for _, n := range names {
			if !containerRE.MatchString(n) {
				dropped = append(dropped, strconv.Quote(n)+" (not a container name)")
				continue
			}
			c := Container{Name: n, Languages: containerLanguages(n)}
			p.Containers = append(p.Containers, c)
			parts = append(parts, fmt.Sprintf("%s (languages %s)", n, listString(c.Languages)))
		}
		return Mapping{To: "containers: " + listString(parts),
			Note: joinNotes("a docker service is placed into the first one hosting its language; the languages are read from the name's last dash-separated part, dot-separated (group-id-rust.node.go.python), any language when it names none", droppedNote(dropped))}, nil
	}
	return Mapping{}, errors.New("unknown key")
}

// containerLanguages reads the languages from a KLYNTAR container name,
// group-id-lang1.lang2; nil (any) when its last part is not a list of
// languages.
func containerLanguages(name string) []string {
	i := strings.LastIndexByte(name, '-')
	if i < 0 {
		return nil
	}
	var langs []string
	for l := range strings.SplitSeq(name[i+1:], ".") {
		l = language(l)
		if !languageRE.MatchString(l) || !knownLanguage(l) {
			return nil
		}
		if !contains(langs, l) {
			langs = append(langs, l)
		}
	}
	return langs
}

// knownLanguage reports whether l is a language name KLYNTAR containers
// use; a name part that is not one is not a language list.
func knownLanguage(l string) bool {
	switch l {
	case "node", "python", "go", "rust", "c", "c++", "java", "ruby", "php", "deno", "bun", "wasm", "exec", "dotnet", "haskell", "scala":
		return true
	}
	return false
}

// language converts a KLYNTAR language name to Andromeda's.
func language(l string) string {
	l = strings.ToLower(strings.TrimSpace(l))
	switch l {
	case "node.js", "nodejs", "js", "javascript":
		return "node"
	case "golang":
		return "go"
	case "python3", "py":
		return "python"
	}
	return l
}

// klyntarDoc names a KLYNTAR runner configuration in errors about it as a
// whole.
type klyntarDoc struct{}

// Name returns "klyntar".
func (klyntarDoc) Name() string { return "klyntar" }

// klyntarStrict reads KLYNTAR runner configurations by package strictdoc's
// rules, as every document Andromeda reads, so a mistake gets the same
// words here as in a policy.
var klyntarStrict = strictdoc.Decoder[klyntarDoc]{MaxSize: MaxSize, MaxDepth: MaxDepth}

// object is a JSON object whose keys are data (hub keys, chain ids,
// language names), with its keys in order.
type object struct {
	order []string
	vals  map[string]*strictdoc.Value
}

// decodeObject reads an object whose keys are data; a key written twice is
// an error.
func decodeObject(v *strictdoc.Value) (object, error) {
	o := object{vals: map[string]*strictdoc.Value{}}
	if v.Kind != strictdoc.Map {
		return o, fmt.Errorf("must be a mapping, not %s", v.Kind)
	}
	for _, p := range v.Pairs {
		if p.Dup {
			return o, fmt.Errorf("%s: duplicate key", p.Key)
		}
		o.order = append(o.order, p.Key)
		o.vals[p.Key] = p.Value
	}
	return o, nil
}

// decodeValue decodes v onto *out by strictdoc's rules.
func decodeValue(v *strictdoc.Value, out any) error {
	return plainErr(klyntarStrict.DecodeValue(v, out))
}

// plainErr words strictdoc's errors without the document's name, which
// ImportKlyntar puts once in front of all its errors: "path: rule", one
// problem a line.
func plainErr(err error) error {
	var errs strictdoc.Errors[klyntarDoc]
	if !errors.As(err, &errs) {
		return err
	}
	lines := make([]string, len(errs))
	for i, fe := range errs {
		lines[i] = fe.Rule
		if fe.Path != "" {
			lines[i] = fe.Path + ": " + fe.Rule
		}
	}
	return errors.New(strings.Join(lines, "\n"))
}

const base58Alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

// decodeBase58 decodes Bitcoin-alphabet base58, as KLYNTAR writes keys.
func decodeBase58(s string) ([]byte, error) {
	if s == "" || len(s) > 256 {
		return nil, errors.New("empty or too long")
	}
	n := new(big.Int)
	radix := big.NewInt(58)
	for i, r := range s {
		d := strings.IndexRune(base58Alphabet, r)
		if d < 0 {
			return nil, fmt.Errorf("character %q at %d", r, i)
		}
		n.Mul(n, radix)
		n.Add(n, big.NewInt(int64(d)))
	}
	b := n.Bytes()
	zeros := len(s) - len(strings.TrimLeft(s, "1"))
	return append(make([]byte, zeros), b...), nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func listString(list []string) string {
	if len(list) == 0 {
		return "[]"
	}
	return "[" + strings.Join(list, ", ") + "]"
}

func prefixed(prefix string, keys []string) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = prefix + "." + k
	}
	return out
}

func droppedNote(dropped []string) string {
	if len(dropped) == 0 {
		return ""
	}
	return "dropped: " + strings.Join(dropped, ", ")
}

func joinNotes(notes ...string) string {
	var out []string
	for _, n := range notes {
		if n != "" {
			out = append(out, n)
		}
	}
	return strings.Join(out, "; ")
}
