// Package strictjson is strictdoc's JSON-only half, for the packages that
// must not import the YAML library strictdoc reads with, or cannot use its
// tree of values: the guest's output (contract, which guests compile
// against), the attestations file and header (attest, a leaf the light api
// package imports) and the API's request bodies (server, where a fired
// message, a json.RawMessage, must reach the service byte for byte).
//
// Unmarshal is encoding/json made strict, with strictdoc's words where the
// two overlap: one JSON value with nothing but white space around it, no
// unknown field, and a value of the wrong type named by its path
// (actions[0].kind: must be a string, not a number). It keeps
// encoding/json's other behaviour, which strictdoc does not share: null
// decodes to the zero value, a key written twice keeps its last value,
// field names also match ignoring case, and an unknown field is named
// without a guess at the field meant. Documents with hooks, defaults or
// YAML belong in strictdoc.
//
// It imports only the standard library.
package strictjson

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"
)

// space is JSON's white space.
const space = " \t\r\n"

// An Error is why Unmarshal refused a document: the rule it breaks and the
// path of the value that breaks it, "" for the document as a whole. A
// caller that decodes a part of a larger document joins the paths
// (attestations[1] and key give attestations[1].key).
type Error struct {
	Path string
	Rule string
}

// Error returns "path: rule", or the rule alone for the document as a
// whole.
func (e *Error) Error() string {
	if e.Path == "" {
		return e.Rule
	}
	return e.Path + ": " + e.Rule
}

// Unmarshal decodes data, exactly one JSON value, into v (a non-nil
// pointer) as json.Unmarshal does, but strictly. Its error, about the first
// problem found, is an *Error whose rule is worded as strictdoc words it:
//
//	must not be empty
//	json syntax: line 1, column 13: trailing data after the document
//	json syntax: line 2, column 8: invalid character 'x' looking for beginning of value
//	json syntax: line 1, column 8: unexpected end of input
//	items[0].nope: unknown field "nope"
//	noop: must be a string (quote 1 to make it one)
//	actions[0]: must be a mapping, not a list
//	limits.small: must be an integer from -128 to 127
//
// The rule of an error returned by a type's own UnmarshalJSON or
// UnmarshalText is that error's text, less encoding/json's "json: ", with
// no path.
func Unmarshal(data []byte, v any) error {
	if len(bytes.TrimLeft(data, space)) == 0 {
		return &Error{Rule: "must not be empty"}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return problem(data, reflect.TypeOf(v), err)
	}
	end := dec.InputOffset()
	rest := data[end:]
	if trimmed := bytes.TrimLeft(rest, space); len(trimmed) > 0 {
		end += int64(len(rest) - len(trimmed))
		return &Error{Rule: fmt.Sprintf("json syntax: %s: trailing data after the document", position(data, end))}
	}
	return nil
}

// problem words an error of Decoder.Decode on data, decoded into a value
// of type t.
func problem(data []byte, t reflect.Type, err error) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return &Error{Rule: fmt.Sprintf("json syntax: %s: unexpected end of input", position(data, int64(len(data))))}
	case errors.As(err, &se):
		// Decoder's offsets are not always from the start of the input;
		// Unmarshal's are, and it meets the same error first.
		if uerr := json.Unmarshal(data, new(json.RawMessage)); errors.As(uerr, &se) {
			err = uerr
		}
		return &Error{Rule: fmt.Sprintf("json syntax: %s: %s", position(data, se.Offset-1), strings.TrimPrefix(err.Error(), "json: "))}
	case errors.As(err, &te):
		path, text, ok := locate(data, te.Offset)
		if !ok {
			path = te.Field
		}
		return &Error{Path: path, Rule: mustBe(te, text)}
	}
	msg := strings.TrimPrefix(err.Error(), "json: ")
	if key, ok := strings.CutPrefix(msg, "unknown field "); ok {
		if key, err := strconv.Unquote(key); err == nil {
			path, _ := unknownAt(data, t, key)
			return &Error{Path: path, Rule: msg}
		}
	}
	return &Error{Rule: msg}
}

// mustBe is the rule a value of the wrong type breaks, as strictdoc words
// it; text is the value as written when it is a scalar.
func mustBe(te *json.UnmarshalTypeError, text string) string {
	got, num, isNum := "", "", false
	switch {
	case te.Value == "bool":
		got = "a boolean"
	case te.Value == "string":
		got = "a string"
	case te.Value == "array":
		got = "a list"
	case te.Value == "object":
		got = "a mapping"
	case te.Value == "number":
		got, isNum = "a number", true
	case strings.HasPrefix(te.Value, "number "):
		got, isNum = "a number", true
		num = strings.TrimPrefix(te.Value, "number ")
	default:
		got = te.Value
	}
	not := ", not " + got
	t := te.Type
	switch t.Kind() {
	case reflect.String:
		if (isNum || te.Value == "bool") && text != "" {
			return fmt.Sprintf("must be a string (quote %s to make it one)", text)
		}
		return "must be a string" + not
	case reflect.Bool:
		return "must be true or false" + not
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		if num == "" {
			return "must be an integer" + not
		}
		if f, err := strconv.ParseFloat(num, 64); err != nil || f != math.Trunc(f) {
			return "must be an integer, not " + num
		}
		if t.Kind() >= reflect.Uint {
			return fmt.Sprintf("must be an integer from 0 to %d", uint64(1)<<t.Bits()-1)
		}
		return fmt.Sprintf("must be an integer from %d to %d", int64(-1)<<(t.Bits()-1), int64(1)<<(t.Bits()-1)-1)
	case reflect.Float32, reflect.Float64:
		if num != "" {
			return "must be a finite number"
		}
		return "must be a number" + not
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return "must be a string (base64)" + not
		}
		return "must be a list" + not
	case reflect.Map, reflect.Struct:
		return "must be a mapping" + not
	}
	return "must be " + t.String() + not
}

// locate finds, in data, one valid JSON value, the value that an
// UnmarshalTypeError's Offset points at: the scalar that ends at off, or
// the list or mapping whose opening bracket ends at off. It returns the
// value's path as strictdoc writes it and, for a scalar, its text.
func locate(data []byte, off int64) (path, text string, ok bool) {
	type frame struct {
		path   string
		object bool
		key    string // the key whose value is next, in an object
		keyed  bool   // key holds the next value's key
		index  int    // the next item's index, in a list
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	stack := []*frame{}
	for {
		tok, err := dec.Token()
		if err != nil {
			return "", "", false
		}
		if d, ok := tok.(json.Delim); ok && (d == ']' || d == '}') {
			stack = stack[:len(stack)-1]
			continue
		}
		var p string
		if len(stack) > 0 {
			f := stack[len(stack)-1]
			switch {
			case f.object && !f.keyed:
				f.key, f.keyed = tok.(string), true
				continue
			case f.object:
				p, f.keyed = KeyPath(f.path, f.key), false
			default:
				p = f.path + "[" + strconv.Itoa(f.index) + "]"
				f.index++
			}
		}
		at := dec.InputOffset() == off
		switch t := tok.(type) {
		case json.Delim:
			if at {
				return p, "", true
			}
			stack = append(stack, &frame{path: p, object: t == '{'})
			continue
		case json.Number:
			text = t.String()
		case bool:
			text = strconv.FormatBool(t)
		case string:
			text = strconv.Quote(t)
		}
		if at {
			return p, text, true
		}
	}
}

var (
	unmarshalerType     = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// unknownAt finds the path of the first key in data, one valid JSON value
// decoded into a value of type t, that is name and no field of the struct
// it is in, as encoding/json matches fields: by their json names, or their
// Go names when untagged, exactly or else ignoring case. It gives up, ok
// false, on what it does not follow: embedded fields, json's ",string".
func unknownAt(data []byte, t reflect.Type, name string) (path string, ok bool) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	w := walker{dec: dec, name: name}
	w.value(t, "")
	return w.found, w.done && w.ok
}

type walker struct {
	dec   *json.Decoder
	name  string
	found string
	done  bool // stop: found, or gave up
	ok    bool // found
}

// value walks one value decoded into a value of type t, at path.
func (w *walker) value(t reflect.Type, path string) {
	tok, err := w.dec.Token()
	if err != nil {
		w.done = true
		return
	}
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	d, isDelim := tok.(json.Delim)
	if !isDelim {
		return // a scalar, or null
	}
	if t == nil || t.Kind() == reflect.Interface || reflect.PointerTo(t).Implements(unmarshalerType) || reflect.PointerTo(t).Implements(textUnmarshalerType) {
		w.skip()
		return
	}
	switch {
	case d == '[' && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array):
		for i := 0; w.dec.More() && !w.done; i++ {
			w.value(t.Elem(), path+"["+strconv.Itoa(i)+"]")
		}
	case d == '{' && t.Kind() == reflect.Map:
		for w.dec.More() && !w.done {
			key, _ := w.dec.Token()
			k, _ := key.(string)
			w.value(t.Elem(), KeyPath(path, k))
		}
	case d == '{' && t.Kind() == reflect.Struct:
		for w.dec.More() && !w.done {
			key, _ := w.dec.Token()
			k, _ := key.(string)
			f, ok, sure := field(t, k)
			switch {
			case !sure:
				w.done = true
			case !ok && k == w.name:
				w.found, w.done, w.ok = KeyPath(path, k), true, true
			default:
				w.value(f, KeyPath(path, k))
			}
		}
	default:
		w.done = true // a type mismatch: encoding/json would have said so first
	}
	if !w.done {
		w.dec.Token() // the closing bracket
	}
}

// skip walks to the end of the list or mapping whose opening bracket was
// just read.
func (w *walker) skip() {
	for depth := 1; depth > 0; {
		tok, err := w.dec.Token()
		if err != nil {
			w.done = true
			return
		}
		switch tok {
		case json.Delim('['), json.Delim('{'):
			depth++
		case json.Delim(']'), json.Delim('}'):
			depth--
		}
	}
}

// field returns the type of the field of struct type t that encoding/json
// decodes key into, and whether there is one; sure is false when t has
// what field does not follow.
func field(t reflect.Type, key string) (ft reflect.Type, ok, sure bool) {
	var fold reflect.Type
	for i := range t.NumField() {
		sf := t.Field(i)
		tag := sf.Tag.Get("json")
		name, opts, _ := strings.Cut(tag, ",")
		if sf.Anonymous || strings.Contains(","+opts+",", ",string,") {
			return nil, false, false
		}
		if !sf.IsExported() || tag == "-" {
			continue
		}
		if name == "" {
			name = sf.Name
		}
		if name == key {
			return sf.Type, true, true
		}
		if fold == nil && strings.EqualFold(name, key) {
			fold = sf.Type
		}
	}
	return fold, fold != nil, true
}

// KeyPath names the key of the mapping at path as a reader would:
// limits.memory at the top level, registries["node.js"] and config["a b"]
// where the key is not a plain word. Package strictdoc names keys with it
// too.
func KeyPath(path, key string) string {
	simple := key != ""
	for _, r := range key {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			simple = false
			break
		}
	}
	switch {
	case !simple:
		return path + "[" + strconv.Quote(key) + "]"
	case path == "":
		return key
	}
	return path + "." + key
}

// position turns a byte offset into "line L, column C", both from 1.
func position(data []byte, off int64) string {
	off = min(max(off, 0), int64(len(data)))
	before := data[:off]
	line := bytes.Count(before, []byte("\n")) + 1
	col := utf8.RuneCount(before[bytes.LastIndexByte(before, '\n')+1:]) + 1
	return fmt.Sprintf("line %d, column %d", line, col)
}
