package envelope

import (
	"bytes"
	"fmt"
	"math"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// MaxDepth is how deeply arrays and objects may nest in a document
// CanonicalJSON accepts.
const MaxDepth = 512

// CanonicalJSON returns the RFC 8785 (JCS) form of the JSON document data:
// object members sorted by the UTF-16 code units of their names, no
// insignificant white space, numbers in ECMAScript's shortest form, strings
// with JCS's escaping. It refuses, with an error naming the path of the
// value (`amount: ...`, `legs[2]: ...`), what JCS cannot represent or
// I-JSON forbids: invalid UTF-8, lone surrogates, numbers beyond IEEE-754
// double range, duplicate member names, and anything that is not JSON.
// It also refuses an integer written without fraction or exponent whose
// value its double's shortest form does not keep (9007199254740993 would
// become 9007199254740992): a number is rounded to a double, as JCS says,
// but an amount is not silently signed as another; such integers belong
// in strings.
// Safe for concurrent use.
func CanonicalJSON(data []byte) ([]byte, error) {
	v, err := parse(data, "")
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	write(&b, v)
	return b.Bytes(), nil
}

// value is a parsed JSON value: nil (null), bool, float64, string, []value
// or object.
type value any

// object is a JSON object's members in the order read; write sorts them.
type object []member

type member struct {
	name string
	v    value
}

// raw is a value already in canonical form, written as it is.
type raw []byte

// parse reads one JSON document; at names the document in errors, "" for
// one read alone.
func parse(data []byte, at string) (value, error) {
	p := &parser{data: data}
	p.space()
	v, err := p.value(at, 0)
	if err != nil {
		return nil, err
	}
	p.space()
	if p.i < len(p.data) {
		return nil, p.errf(at, "unexpected %s after the value", p.what())
	}
	return v, nil
}

type parser struct {
	data []byte
	i    int
}

// errf is an error about the value at path at, with the byte offset where
// reading stopped.
func (p *parser) errf(at, format string, args ...any) error {
	return &PathError{Path: at, Msg: fmt.Sprintf(format, args...), Offset: p.i}
}

// PathError is a document CanonicalJSON cannot read, or a value in it JCS
// cannot represent. errors.Is(err, ErrJSON) holds.
type PathError struct {
	// Path is the value's path (actions[1].amount, tags["a b"][0]); "" for
	// the whole document.
	Path string
	Msg  string
	// Offset is the byte of the document (of the action, for an
	// envelope's action) where reading stopped.
	Offset int
}

func (e *PathError) Error() string {
	at := e.Path
	if at == "" {
		at = "(root)"
	}
	return fmt.Sprintf("%s: %s (at byte %d)", at, e.Msg, e.Offset)
}

// Is makes errors.Is(err, ErrJSON) hold.
func (e *PathError) Is(target error) bool { return target == ErrJSON }

// what names the next byte for an error.
func (p *parser) what() string {
	if p.i >= len(p.data) {
		return "end of input"
	}
	c := p.data[p.i]
	if c >= 0x20 && c < 0x7f {
		return strconv.QuoteRune(rune(c))
	}
	return fmt.Sprintf("byte 0x%02x", c)
}

func (p *parser) space() {
	for p.i < len(p.data) {
		switch p.data[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *parser) value(at string, depth int) (value, error) {
	if p.i >= len(p.data) {
		return nil, p.errf(at, "unexpected end of input, want a value")
	}
	switch c := p.data[p.i]; {
	case c == '{':
		return p.object(at, depth+1)
	case c == '[':
		return p.array(at, depth+1)
	case c == '"':
		return p.string(at)
	case c == '-' || c >= '0' && c <= '9':
		return p.number(at)
	case p.literal("true"):
		return true, nil
	case p.literal("false"):
		return false, nil
	case p.literal("null"):
		return nil, nil
	}
	return nil, p.errf(at, "unexpected %s, want a value", p.what())
}

func (p *parser) literal(word string) bool {
	if bytes.HasPrefix(p.data[p.i:], []byte(word)) {
		p.i += len(word)
		return true
	}
	return false
}

func (p *parser) object(at string, depth int) (value, error) {
	if depth > MaxDepth {
		return nil, p.errf(at, "nested more than %d deep", MaxDepth)
	}
	p.i++ // {
	obj := object{}
	seen := map[string]bool{}
	p.space()
	if p.i < len(p.data) && p.data[p.i] == '}' {
		p.i++
		return obj, nil
	}
	for {
		p.space()
		if p.i >= len(p.data) || p.data[p.i] != '"' {
			return nil, p.errf(at, "unexpected %s, want a member name", p.what())
		}
		name, err := p.string(at)
		if err != nil {
			return nil, err
		}
		path := join(at, name)
		if seen[name] {
			return nil, p.errf(path, "duplicate member name")
		}
		seen[name] = true
		p.space()
		if p.i >= len(p.data) || p.data[p.i] != ':' {
			return nil, p.errf(path, "unexpected %s, want ':'", p.what())
		}
		p.i++
		p.space()
		v, err := p.value(path, depth)
		if err != nil {
			return nil, err
		}
		obj = append(obj, member{name, v})
		p.space()
		if p.i < len(p.data) && p.data[p.i] == ',' {
			p.i++
			continue
		}
		if p.i < len(p.data) && p.data[p.i] == '}' {
			p.i++
			return obj, nil
		}
		return nil, p.errf(at, "unexpected %s, want ',' or '}'", p.what())
	}
}

func (p *parser) array(at string, depth int) (value, error) {
	if depth > MaxDepth {
		return nil, p.errf(at, "nested more than %d deep", MaxDepth)
	}
	p.i++ // [
	arr := []value{}
	p.space()
	if p.i < len(p.data) && p.data[p.i] == ']' {
		p.i++
		return arr, nil
	}
	for {
		p.space()
		v, err := p.value(fmt.Sprintf("%s[%d]", at, len(arr)), depth)
		if err != nil {
			return nil, err
		}
		arr = append(arr, v)
		p.space()
		if p.i < len(p.data) && p.data[p.i] == ',' {
			p.i++
			continue
		}
		if p.i < len(p.data) && p.data[p.i] == ']' {
			p.i++
			return arr, nil
		}
		return nil, p.errf(at, "unexpected %s, want ',' or ']'", p.what())
	}
}

// join is the path of member name of the object at at: a.b, or a["x y"]
// when the name is not a plain identifier.
func join(at, name string) string {
	plain := name != ""
	for i, r := range name {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && (r >= '0' && r <= '9' || r == '-')) {
			plain = false
			break
		}
	}
	switch {
	case !plain:
		return at + "[" + strconv.Quote(name) + "]"
	case at == "":
		return name
	}
	return at + "." + name
}

func (p *parser) string(at string) (string, error) {
	p.i++ // "
	var sb strings.Builder
	for {
		if p.i >= len(p.data) {
			return "", p.errf(at, "unterminated string")
		}
		c := p.data[p.i]
		switch {
		case c == '"':
			p.i++
			return sb.String(), nil
		case c < 0x20:
			return "", p.errf(at, "control character 0x%02x in a string: escape it", c)
		case c == '\\':
			r, err := p.escape(at)
			if err != nil {
				return "", err
			}
			sb.WriteRune(r)
		case c < utf8.RuneSelf:
			sb.WriteByte(c)
			p.i++
		default:
			r, n := utf8.DecodeRune(p.data[p.i:])
			if r == utf8.RuneError && n <= 1 {
				return "", p.errf(at, "invalid UTF-8 in a string")
			}
			sb.Write(p.data[p.i : p.i+n])
			p.i += n
		}
	}
}

// escape reads one escape sequence, both halves of a surrogate pair
// together; a lone surrogate is an error (I-JSON).
func (p *parser) escape(at string) (rune, error) {
	if p.i+1 >= len(p.data) {
		return 0, p.errf(at, "unterminated string")
	}
	c := p.data[p.i+1]
	p.i += 2
	switch c {
	case '"', '\\', '/':
		return rune(c), nil
	case 'b':
		return '\b', nil
	case 'f':
		return '\f', nil
	case 'n':
		return '\n', nil
	case 'r':
		return '\r', nil
	case 't':
		return '\t', nil
	case 'u':
		r, ok := p.hex4()
		if !ok {
			return 0, p.errf(at, `\u must be followed by 4 hex digits`)
		}
		if !utf16.IsSurrogate(r) {
			return r, nil
		}
		if r < 0xdc00 && bytes.HasPrefix(p.data[p.i:], []byte(`\u`)) {
			p.i += 2
			if lo, ok := p.hex4(); ok && lo >= 0xdc00 && lo <= 0xdfff {
				return utf16.DecodeRune(r, lo), nil
			}
		}
		return 0, p.errf(at, "lone surrogate \\u%04x in a string", r)
	}
	return 0, p.errf(at, "unknown escape \\%c", c)
}

func (p *parser) hex4() (rune, bool) {
	if p.i+4 > len(p.data) {
		return 0, false
	}
	n, err := strconv.ParseUint(string(p.data[p.i:p.i+4]), 16, 32)
	if err != nil {
		return 0, false
	}
	p.i += 4
	return rune(n), true
}

// number reads a number by JSON's grammar, as an IEEE-754 double.
func (p *parser) number(at string) (value, error) {
	start := p.i
	digits := func() int {
		n := 0
		for p.i < len(p.data) && p.data[p.i] >= '0' && p.data[p.i] <= '9' {
			p.i++
			n++
		}
		return n
	}
	if p.data[p.i] == '-' {
		p.i++
	}
	intStart := p.i
	switch n := digits(); {
	case n == 0:
		return nil, p.errf(at, "a number needs a digit after '-'")
	case n > 1 && p.data[intStart] == '0':
		return nil, p.errf(at, "a number may not have a leading zero")
	}
	integer := true
	if p.i < len(p.data) && p.data[p.i] == '.' {
		integer = false
		p.i++
		if digits() == 0 {
			return nil, p.errf(at, "a number needs a digit after '.'")
		}
	}
	if p.i < len(p.data) && (p.data[p.i] == 'e' || p.data[p.i] == 'E') {
		integer = false
		p.i++
		if p.i < len(p.data) && (p.data[p.i] == '+' || p.data[p.i] == '-') {
			p.i++
		}
		if digits() == 0 {
			return nil, p.errf(at, "a number needs a digit in its exponent")
		}
	}
	text := string(p.data[start:p.i])
	f, err := strconv.ParseFloat(text, 64)
	if err != nil || math.IsInf(f, 0) {
		return nil, p.errf(at, "number %s is beyond the range of an IEEE-754 double (±1.7976931348623157e+308)", abbrev(text))
	}
	if integer && p.i-intStart > 15 && !sameValue(text, FormatNumber(f)) {
		return nil, p.errf(at, "integer %s has no exact IEEE-754 double form (it would be signed as %s): send it as a string", abbrev(text), FormatNumber(f))
	}
	return f, nil
}

// sameValue reports whether two JSON numbers denote the same decimal
// value.
func sameValue(a, b string) bool {
	x, okx := new(big.Rat).SetString(a)
	y, oky := new(big.Rat).SetString(b)
	return okx && oky && x.Cmp(y) == 0
}

func abbrev(s string) string {
	if len(s) > 40 {
		return s[:37] + "..."
	}
	return s
}

// write appends v's canonical form to b.
func write(b *bytes.Buffer, v value) {
	switch v := v.(type) {
	case nil:
		b.WriteString("null")
	case raw:
		b.Write(v)
	case bool:
		b.WriteString(strconv.FormatBool(v))
	case float64:
		b.WriteString(FormatNumber(v))
	case string:
		writeString(b, v)
	case []value:
		b.WriteByte('[')
		for i, e := range v {
			if i > 0 {
				b.WriteByte(',')
			}
			write(b, e)
		}
		b.WriteByte(']')
	case object:
		sorted := slices.Clone(v)
		slices.SortFunc(sorted, func(x, y member) int { return compareUTF16(x.name, y.name) })
		b.WriteByte('{')
		for i, m := range sorted {
			if i > 0 {
				b.WriteByte(',')
			}
			writeString(b, m.name)
			b.WriteByte(':')
			write(b, m.v)
		}
		b.WriteByte('}')
	default:
		panic(fmt.Sprintf("envelope: write of %T", v))
	}
}

// compareUTF16 orders strings by their UTF-16 code units, as JCS sorts
// member names.
func compareUTF16(x, y string) int {
	return slices.Compare(utf16.Encode([]rune(x)), utf16.Encode([]rune(y)))
}

// writeString writes s as JCS does: '"' and '\\' escaped, the controls
// \b \t \n \f \r in their short forms, the other controls below U+0020 as
// \u00xx in lower case, everything else as it is in UTF-8.
func writeString(b *bytes.Buffer, s string) {
	const hex = "0123456789abcdef"
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '"', '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case '\b':
			b.WriteString(`\b`)
		case '\t':
			b.WriteString(`\t`)
		case '\n':
			b.WriteString(`\n`)
		case '\f':
			b.WriteString(`\f`)
		case '\r':
			b.WriteString(`\r`)
		default:
			if c < 0x20 {
				b.WriteString(`\u00`)
				b.WriteByte(hex[c>>4])
				b.WriteByte(hex[c&0xf])
			} else {
				b.WriteByte(c)
			}
		}
	}
	b.WriteByte('"')
}

// FormatNumber writes f as ECMAScript's Number.prototype.toString does
// (ECMA-262 Number::toString), which is what JCS prescribes: the shortest
// digits that read back as f, plain notation for exponents from -7 to 20
// and e-notation beyond, and 0 for negative zero. It panics on NaN and
// infinities, which JSON cannot hold.
func FormatNumber(f float64) string {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		panic("envelope: FormatNumber of " + strconv.FormatFloat(f, 'g', -1, 64))
	}
	if f == 0 {
		return "0"
	}
	sign := ""
	if f < 0 {
		sign, f = "-", -f
	}
	// d.ddddde±x: the shortest digits and the decimal exponent.
	e := strconv.FormatFloat(f, 'e', -1, 64)
	mant, exp, _ := strings.Cut(e, "e")
	digits := strings.Replace(mant, ".", "", 1)
	x, _ := strconv.Atoi(exp)
	k, n := len(digits), x+1 // ECMA-262's k and n
	switch {
	case k <= n && n <= 21:
		return sign + digits + strings.Repeat("0", n-k)
	case 0 < n && n <= 21:
		return sign + digits[:n] + "." + digits[n:]
	case -6 < n && n <= 0:
		return sign + "0." + strings.Repeat("0", -n) + digits
	}
	es := "+"
	if n-1 < 0 {
		es = "-"
	}
	abs := n - 1
	if abs < 0 {
		abs = -abs
	}
	if k == 1 {
		return sign + digits + "e" + es + strconv.Itoa(abs)
	}
	return sign + digits[:1] + "." + digits[1:] + "e" + es + strconv.Itoa(abs)
}
