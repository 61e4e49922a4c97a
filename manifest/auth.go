package manifest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/andromeda-runner/andromeda/strictdoc"
)

// HookAuth is how an http trigger (a webhook) authenticates the requests it
// answers. It is written as the word none, or as a mapping with exactly one
// of bearer and hmac:
//
//	auth: none                      # an open webhook: anyone may fire it
//	auth: {bearer: deploy-token}    # Authorization: Bearer <the secret's value>
//	auth:
//	  hmac:
//	    secret: github-hook         # the key: a secret's name, never its value
//	    header: X-Hub-Signature-256 # where the signature comes
//	    prefix: "sha256="           # optional, before the hex or base64 digest
//	    timestamp_header: X-Timestamp # optional: sign "timestamp.body"
//	    tolerance: 5m               # with timestamp_header: the replay window
//
// The zero HookAuth is a trigger without auth: it is admitted, and answers
// 401 to every request, so an open webhook is always an explicit
// auth: none. A secret is named, never written in a manifest: the node
// holds it (node config secrets, or andromeda secrets set), and a trigger
// whose secret the node does not hold answers 503 until it is set.
type HookAuth struct {
	// None makes the webhook open.
	None bool
	// Bearer names the secret a request must present as
	// "Authorization: Bearer VALUE".
	Bearer string
	// HMAC checks an HMAC-SHA256 signature of the request.
	HMAC *HMACAuth
	// bad is what was written when it is neither none nor a mapping, kept
	// for Validate to report.
	bad string
}

// HMACAuth checks an HMAC-SHA256 signature of a webhook request, keyed by a
// secret the node holds, over the raw body, or over "TIMESTAMP.BODY" when
// TimestampHeader is set (the timestamp being the header's value as sent).
type HMACAuth struct {
	// Secret names the key: [a-z0-9_-]{1,64}. Required.
	Secret string `json:"secret" yaml:"secret"`
	// Header is the request header holding the signature, e.g.
	// X-Hub-Signature-256. Required.
	Header string `json:"header" yaml:"header"`
	// Prefix precedes the signature in the header, e.g. "sha256=". The
	// signature after it is 64 hex digits or standard base64. Optional.
	Prefix string `json:"prefix,omitempty" yaml:"prefix,omitempty"`
	// TimestampHeader is the request header holding the time of signing,
	// in Unix seconds; the signed text is then "TIMESTAMP.BODY", and a
	// request whose timestamp is further than Tolerance from the node's
	// clock is refused (a replay). Optional.
	TimestampHeader string `json:"timestamp_header,omitempty" yaml:"timestamp_header,omitempty"`
	// Tolerance is the replay window, from 1s to 1h; only with
	// TimestampHeader. Default 5m.
	Tolerance Duration `json:"tolerance,omitzero" yaml:"tolerance,omitempty"`
}

// The auth kinds, as HookAuth.Kind names them.
const (
	AuthUnset  = ""       // no auth: every request is refused
	AuthNone   = "none"   // open
	AuthBearer = "bearer" // a bearer token
	AuthHMAC   = "hmac"   // an HMAC-SHA256 signature
)

// Kind returns AuthNone, AuthBearer, AuthHMAC, or AuthUnset for the zero
// HookAuth (and for one Validate refuses).
func (a HookAuth) Kind() string {
	switch {
	case a.bad != "":
		return AuthUnset
	case a.None:
		return AuthNone
	case a.Bearer != "":
		return AuthBearer
	case a.HMAC != nil:
		return AuthHMAC
	}
	return AuthUnset
}

// Secret returns the name of the secret the auth needs, or "".
func (a HookAuth) Secret() string {
	switch a.Kind() {
	case AuthBearer:
		return a.Bearer
	case AuthHMAC:
		return a.HMAC.Secret
	}
	return ""
}

// IsZero reports whether no auth is set.
func (a HookAuth) IsZero() bool { return !a.None && a.Bearer == "" && a.HMAC == nil && a.bad == "" }

// ToleranceOrDefault is the HMAC replay window: Tolerance, or 5m.
func (h *HMACAuth) ToleranceOrDefault() time.Duration {
	if h.Tolerance.IsZero() {
		return DefaultHookTolerance
	}
	return h.Tolerance.Std()
}

// DefaultHookTolerance is the default replay window of an HMAC-signed
// webhook with a timestamp header.
const DefaultHookTolerance = 5 * time.Minute

// HookMethods are the methods an http trigger may answer, in the order
// Validate names them.
var HookMethods = []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

// DefaultHookMethods are the methods of an http trigger that names none.
var DefaultHookMethods = []string{http.MethodPost}

// HookPathPrefix starts every webhook path: webhooks live under /hooks/,
// so that on the API's own listener they can never shadow an API route.
const HookPathPrefix = "/hooks/"

const authRule = "must be none, {bearer: SECRET} or {hmac: {secret: SECRET, header: HEADER, ...}}"

// authForm is the mapping form of HookAuth.
type authForm struct {
	Bearer string    `json:"bearer,omitempty" yaml:"bearer,omitempty"`
	HMAC   *HMACAuth `json:"hmac,omitempty" yaml:"hmac,omitempty"`
}

func decodeAuth(c *strictdoc.Cursor, v *strictdoc.Value, a *HookAuth) {
	switch v.Kind {
	case strictdoc.String:
		if s := strings.TrimSpace(v.Text); s == AuthNone {
			*a = HookAuth{None: true}
		} else {
			*a = HookAuth{bad: s}
		}
	case strictdoc.Map:
		// strictdoc decodes no pointers: the hmac mapping is decoded
		// as a value, and is there when its key is.
		var f struct {
			Bearer string   `json:"bearer"`
			HMAC   HMACAuth `json:"hmac"`
		}
		c.Decode(v, &f)
		*a = HookAuth{Bearer: f.Bearer}
		for _, p := range v.Pairs {
			if p.Key == "hmac" && p.Value != nil && p.Value.Kind == strictdoc.Map {
				a.HMAC = &f.HMAC
			}
		}
		if a.IsZero() {
			a.bad = "{}"
		}
		if f.Bearer != "" && a.HMAC != nil {
			a.bad = "both"
		}
	default:
		c.Fail(authRule)
	}
}

func (a HookAuth) marshal() any {
	switch {
	case a.None:
		return AuthNone
	case a.bad != "" && a.Bearer == "" && a.HMAC == nil:
		return a.bad
	}
	return authForm{Bearer: a.Bearer, HMAC: a.HMAC}
}

// MarshalJSON emits "none" or the mapping.
func (a HookAuth) MarshalJSON() ([]byte, error) { return json.Marshal(a.marshal()) }

// MarshalYAML emits none or the mapping.
func (a HookAuth) MarshalYAML() (any, error) { return a.marshal(), nil }

// UnmarshalJSON accepts "none" or the mapping, for callers that decode a
// Service with encoding/json; Parse does not use it.
func (a *HookAuth) UnmarshalJSON(data []byte) error {
	var s string
	if json.Unmarshal(data, &s) == nil {
		if s != AuthNone {
			return fmt.Errorf("auth %q: %s", s, authRule)
		}
		*a = HookAuth{None: true}
		return nil
	}
	var f authForm
	if err := json.Unmarshal(data, &f); err != nil {
		return err
	}
	*a = HookAuth{Bearer: f.Bearer, HMAC: f.HMAC}
	return nil
}

// normalize trims the names and drops an empty prefix.
func (a *HookAuth) normalize() {
	a.Bearer = strings.TrimSpace(a.Bearer)
	if h := a.HMAC; h != nil {
		h.Secret = strings.TrimSpace(h.Secret)
		h.Header = strings.TrimSpace(h.Header)
		h.TimestampHeader = strings.TrimSpace(h.TimestampHeader)
	}
}

var (
	secretNameRE = regexp.MustCompile(`^[a-z0-9_-]{1,64}$`)
	headerNameRE = regexp.MustCompile(`^[A-Za-z0-9-]{1,128}$`)
)

// SecretNameRule is the rule a secret's name follows.
const SecretNameRule = "must name a secret: [a-z0-9_-]{1,64}"

// ValidSecretName reports whether s may name a secret.
func ValidSecretName(s string) bool { return secretNameRE.MatchString(s) }

// hook checks the methods and auth of the http trigger at path p.
func (v *validator) hook(p string, t *Trigger) {
	first := map[string]int{}
	for i, m := range t.Methods {
		mp := strictdoc.IndexPath(p+".methods", i)
		if !slices.Contains(HookMethods, m) {
			v.fail(mp, "must be one of %s", strings.Join(HookMethods, ", "))
			continue
		}
		if j, dup := first[m]; dup {
			v.fail(mp, "duplicate of %s", strictdoc.IndexPath(p+".methods", j))
			continue
		}
		first[m] = i
	}
	a := &t.Auth
	ap := p + ".auth"
	switch {
	case a.bad == "both":
		v.fail(ap, "exactly one of bearer and hmac, not both")
		return
	case a.bad != "":
		v.fail(ap, authRule)
		return
	case a.Bearer != "":
		if !ValidSecretName(a.Bearer) {
			v.fail(ap+".bearer", SecretNameRule+" (the secret's name, never its value)")
		}
	case a.HMAC != nil:
		h := a.HMAC
		hp := ap + ".hmac"
		switch {
		case h.Secret == "":
			v.fail(hp+".secret", "required: the name of the secret holding the key")
		case !ValidSecretName(h.Secret):
			v.fail(hp+".secret", SecretNameRule+" (the secret's name, never its value)")
		}
		switch {
		case h.Header == "":
			v.fail(hp+".header", "required: the request header holding the signature, e.g. X-Hub-Signature-256")
		case !headerNameRE.MatchString(h.Header):
			v.fail(hp+".header", "must be a header name: [A-Za-z0-9-]{1,128}")
		case strings.EqualFold(h.Header, "Authorization"):
			v.fail(hp+".header", "must not be Authorization")
		}
		if n := len(h.Prefix); n > 32 || strings.IndexFunc(h.Prefix, func(r rune) bool { return r <= ' ' || r > '~' }) >= 0 {
			v.fail(hp+".prefix", "must be at most 32 printable ASCII characters without spaces")
		}
		switch {
		case h.TimestampHeader == "":
			if !h.Tolerance.IsZero() {
				v.fail(hp+".tolerance", "allowed only with timestamp_header")
			}
		case !headerNameRE.MatchString(h.TimestampHeader):
			v.fail(hp+".timestamp_header", "must be a header name: [A-Za-z0-9-]{1,128}")
		case strings.EqualFold(h.TimestampHeader, h.Header):
			v.fail(hp+".timestamp_header", "must differ from header")
		}
		if !h.Tolerance.IsZero() {
			d, err := time.ParseDuration(h.Tolerance.raw)
			switch {
			case err != nil:
				v.fail(hp+".tolerance", durationRule)
			case d < time.Second || d > time.Hour:
				v.fail(hp+".tolerance", "must be between 1s and 1h")
			}
		}
	}
}
