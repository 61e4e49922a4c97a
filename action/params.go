package action

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/andromeda-runner/andromeda/contract"
)

// The schemas of the built-in kinds' params. Each is checked by hand over
// the params' top-level object, so that every problem is reported with its
// path and a duplicate key (which two parsers may read differently) is an
// error.

// Bounds on params.
const (
	maxURLLen     = 2048
	maxHeaders    = 64
	maxHeaderLen  = 8 << 10
	maxLogMessage = 4096
)

var (
	tokenRE  = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$") // an HTTP header name (RFC 9110 token)
	methods  = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"}
	levels   = []string{"debug", "info", "warn", "error"}
	httpKeys = []string{"method", "url", "headers", "body"}
	emitKeys = []string{"topic", "message"}
	logKeys  = []string{"message", "level", "fields"}
)

// checkParams checks params against kind's schema and returns the
// params' top-level object when it is one.
func checkParams(kind string, params json.RawMessage) (map[string]json.RawMessage, []Problem) {
	if !Builtin(kind) {
		obj, _, _ := object(params)
		return obj, nil
	}
	obj, dups, err := object(params)
	if err != nil {
		return nil, []Problem{{"params", fmt.Sprintf("must be a JSON object for kind %s%s", kind, shape(kind))}}
	}
	c := checker{obj: obj}
	for _, k := range dups {
		c.fail(k, "duplicate key")
	}
	switch kind {
	case HTTP:
		c.only(kind, httpKeys)
		if m, ok := c.str("method", true); ok && !slices.Contains(methods, m) {
			c.fail("method", "must be one of "+strings.Join(methods, " "))
		}
		if u, ok := c.str("url", true); ok && !absoluteHTTP(u) {
			c.fail("url", "must be an absolute http or https URL")
		}
		c.headers("headers")
	case Emit, Publish:
		c.only(kind, emitKeys)
		if t, ok := c.str("topic", true); ok {
			if err := contract.CheckTopic(t); err != nil {
				c.fail("topic", err.Error())
			}
		}
		if _, ok := obj["message"]; !ok {
			c.fail("message", "required (any JSON value)")
		}
	case Log:
		c.only(kind, logKeys)
		if m, ok := c.str("message", true); ok && len(m) > maxLogMessage {
			c.fail("message", fmt.Sprintf("must be at most %d bytes", maxLogMessage))
		}
		if l, ok := c.str("level", false); ok && !slices.Contains(levels, l) {
			c.fail("level", "must be one of "+strings.Join(levels, " "))
		}
		if raw, ok := obj["fields"]; ok && !isObject(raw) {
			c.fail("fields", "must be a JSON object")
		}
	case Submit:
		c.str("target", false)
	}
	return obj, c.problems
}

// shape says what the params of a built-in kind look like.
func shape(kind string) string {
	switch kind {
	case HTTP:
		return ` {"method", "url", "headers"?, "body"?}`
	case Emit, Publish:
		return ` {"topic", "message"}`
	case Log:
		return ` {"message", "level"?, "fields"?}`
	}
	return ""
}

type checker struct {
	obj      map[string]json.RawMessage
	problems []Problem
}

func (c *checker) fail(key, rule string) {
	c.problems = append(c.problems, Problem{"params." + key, rule})
}

// only reports every key of the object that is not in keys, in order.
func (c *checker) only(kind string, keys []string) {
	for _, k := range slices.Sorted(maps.Keys(c.obj)) {
		if !slices.Contains(keys, k) {
			c.fail(k, fmt.Sprintf("unknown field (kind %s takes %s)", kind, strings.Join(keys, ", ")))
		}
	}
}

// str returns the string at key; a missing required key, or a value that
// is not a string, is a problem.
func (c *checker) str(key string, required bool) (string, bool) {
	raw, ok := c.obj[key]
	if !ok {
		if required {
			c.fail(key, "required")
		}
		return "", false
	}
	var s string
	if !isString(raw) || json.Unmarshal(raw, &s) != nil {
		c.fail(key, "must be a string")
		return "", false
	}
	return s, true
}

// headers checks an optional object of header names to string values.
func (c *checker) headers(key string) {
	raw, ok := c.obj[key]
	if !ok {
		return
	}
	h, dups, err := object(raw)
	if err != nil {
		c.fail(key, "must be a JSON object of header names to strings")
		return
	}
	if len(h) > maxHeaders {
		c.fail(key, fmt.Sprintf("at most %d headers, got %d", maxHeaders, len(h)))
	}
	for _, d := range dups {
		c.fail(key+"["+quote(d)+"]", "duplicate key")
	}
	for _, name := range slices.Sorted(maps.Keys(h)) {
		at := key + "[" + quote(name) + "]"
		var v string
		switch {
		case !tokenRE.MatchString(name):
			c.fail(at, "must be a valid header name")
		case !isString(h[name]) || json.Unmarshal(h[name], &v) != nil:
			c.fail(at, "must be a string")
		case len(v) > maxHeaderLen || strings.ContainsAny(v, "\r\n\x00"):
			c.fail(at, fmt.Sprintf("must be at most %d bytes without CR, LF or NUL", maxHeaderLen))
		}
	}
}

// absoluteHTTP reports whether s is an absolute http or https URL with a
// host and without credentials.
func absoluteHTTP(s string) bool {
	if len(s) > maxURLLen {
		return false
	}
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Opaque == "" && u.Hostname() != "" && u.User == nil
}

// object decodes raw as one JSON object, keeping each value's text, and
// lists the keys that repeat.
func object(raw json.RawMessage) (map[string]json.RawMessage, []string, error) {
	if !isObject(raw) {
		return nil, nil, errors.New("not an object")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if _, err := dec.Token(); err != nil { // {
		return nil, nil, err
	}
	obj := map[string]json.RawMessage{}
	var dups []string
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, nil, err
		}
		k, _ := t.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, nil, err
		}
		if _, dup := obj[k]; dup {
			dups = append(dups, k)
		}
		obj[k] = v
	}
	if _, err := dec.Token(); err != nil { // }
		return nil, nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, nil, errors.New("trailing data")
	}
	return obj, dups, nil
}

func isObject(raw json.RawMessage) bool {
	return bytes.HasPrefix(bytes.TrimSpace(raw), []byte("{"))
}

func isString(raw json.RawMessage) bool {
	return bytes.HasPrefix(bytes.TrimSpace(raw), []byte(`"`))
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
