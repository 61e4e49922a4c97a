package strictdoc

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2/unstable"
)

// TOML is read with the expression parser of github.com/pelletier/go-toml/v2
// (its unstable package), which checks the syntax and hands back each
// top-level expression in document order; tomlReader builds the tree from
// them. TOML's own rule against defining a key twice is kept here, not in
// the parser, so that a second definition is a Pair marked Dup and reported
// at its path with the rest of the document's problems, as in YAML and
// JSON, rather than stopping the read.

type tomlFormat struct{}

// Read reads one TOML document. An empty document (nothing but white space
// and comments) is nil. A syntax error is an error about the document as
// a whole with its line and column. A key defined twice, by a key/value
// pair, a table header or a dotted key, is a Pair marked Dup; a table
// header or dotted key that walks through a value that is not a table
// (an inline table, a list, a string) is one too, since it defines that
// key again. Dates and times read as the strings written, like YAML
// timestamps; an integer that does not fit in 64 bits is a Bad value.
func (tomlFormat) Read(data []byte, maxDepth int) (root *Value, err error) {
	defer func() {
		if p := recover(); p != nil {
			root, err = nil, &ReadError{Rule: fmt.Sprintf("toml syntax: %v", p)}
		}
	}()
	var p unstable.Parser
	p.Reset(data)
	r := &tomlReader{maxDepth: maxDepth, tables: map[*Value]*tomlTable{}, arrays: map[*Value]bool{}}
	root = r.table("", 0, definedByHeader)
	cur, empty := root, true
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.KeyValue:
			err = r.keyValue(cur, e)
		case unstable.Table:
			cur, err = r.header(root, keysOf(e), false)
		case unstable.ArrayTable:
			cur, err = r.header(root, keysOf(e), true)
		default:
			continue
		}
		if err != nil {
			return nil, err
		}
		empty = false
	}
	if err := p.Error(); err != nil {
		return nil, tomlSyntax(data, err)
	}
	if empty {
		return nil, nil
	}
	return root, nil
}

func tomlSyntax(data []byte, err error) error {
	pe, ok := err.(*unstable.ParserError)
	if !ok {
		return &ReadError{Rule: "toml syntax: " + err.Error()}
	}
	// The highlight is a slice of data: its capacity tells where it starts.
	off := len(data)
	if h := pe.Highlight; h != nil && cap(h) <= cap(data) {
		off = cap(data) - cap(h)
	}
	off = min(max(off, 0), len(data))
	before := string(data[:off])
	line := strings.Count(before, "\n") + 1
	col := len([]rune(before[strings.LastIndexByte(before, '\n')+1:])) + 1
	return &ReadError{Rule: fmt.Sprintf("toml syntax: line %d, column %d: %s", line, col, pe.Message)}
}

// How a table came to be, which decides what may define it again.
type tableHow uint8

const (
	// definedByHeader: [a], an element of [[a]], or the root.
	definedByHeader tableHow = iota
	// implicitByHeader: a in [a.b], until [a] itself comes.
	implicitByHeader
	// definedByDotted: a in a.b = 1; more dotted keys may add to it.
	definedByDotted
	// inlineTable: a = {…}, closed once written.
	inlineTable
)

type tomlTable struct {
	path  string
	depth int
	how   tableHow
	keys  map[string]*Value // the first value of each key
}

type tomlReader struct {
	maxDepth int
	tables   map[*Value]*tomlTable // the Map values that are tables
	arrays   map[*Value]bool       // the List values made by [[…]] headers
}

// table makes a new, empty table at path, depth levels below the root.
func (r *tomlReader) table(path string, depth int, how tableHow) *Value {
	v := &Value{Kind: Map}
	r.tables[v] = &tomlTable{path: path, depth: depth, how: how, keys: map[string]*Value{}}
	return v
}

// add adds key to table t with value v (which may be nil for a key broken
// beyond reading), marked Dup when t has the key already.
func (r *tomlReader) add(t *Value, key string, v *Value) {
	tt := r.tables[t]
	_, dup := tt.keys[key]
	if !dup {
		tt.keys[key] = v
	}
	t.Pairs = append(t.Pairs, Pair{Key: key, Dup: dup, Value: v})
}

// child returns the table key of t for a header or a dotted key to walk
// through or define, creating it as how when t has no such key. A key
// that holds something else, or a table that may not be defined or added
// to this way, is defined twice: the key is added again, marked Dup, with
// a new table the rest of the expression goes into unseen.
func (r *tomlReader) child(t *Value, key string, how tableHow, last bool) (*Value, error) {
	tt := r.tables[t]
	path := KeyPath(tt.path, key)
	if tt.depth+1 > r.maxDepth {
		return nil, tooDeep(path, r.maxDepth)
	}
	v, ok := tt.keys[key]
	if !ok {
		nt := r.table(path, tt.depth+1, how)
		r.add(t, key, nt)
		return nt, nil
	}
	if r.arrays[v] && how != definedByDotted && !last {
		return v.Items[len(v.Items)-1], nil // [a.b] after [[a]]: the last a
	}
	if ct := r.tables[v]; ct != nil {
		switch {
		case how == definedByDotted && ct.how == definedByDotted:
			return v, nil
		case how != definedByDotted && !last && ct.how != inlineTable:
			return v, nil // [a.b] walks through a, however a was made
		case how == definedByHeader && last && ct.how == implicitByHeader:
			ct.how = definedByHeader // [a] after [a.b]
			return v, nil
		}
	}
	nt := r.table(path, tt.depth+1, how)
	r.add(t, key, nt)
	return nt, nil
}

// header finds or makes the table a [keys] or [[keys]] header opens.
func (r *tomlReader) header(root *Value, keys []string, array bool) (*Value, error) {
	t := root
	var err error
	for _, k := range keys[:len(keys)-1] {
		if t, err = r.child(t, k, implicitByHeader, false); err != nil {
			return nil, err
		}
	}
	last := keys[len(keys)-1]
	if !array {
		return r.child(t, last, definedByHeader, true)
	}
	tt := r.tables[t]
	path := KeyPath(tt.path, last)
	if tt.depth+2 > r.maxDepth {
		return nil, tooDeep(path, r.maxDepth)
	}
	list, ok := tt.keys[last]
	if !ok || !r.arrays[list] {
		list = &Value{Kind: List}
		r.arrays[list] = true
		r.add(t, last, list)
	}
	elem := r.table(IndexPath(path, len(list.Items)), tt.depth+2, definedByHeader)
	list.Items = append(list.Items, elem)
	return elem, nil
}

// keyValue adds a key/value expression (or an inline table's entry) to t.
func (r *tomlReader) keyValue(t *Value, e *unstable.Node) error {
	keys := keysOf(e)
	var err error
	for _, k := range keys[:len(keys)-1] {
		if t, err = r.child(t, k, definedByDotted, false); err != nil {
			return err
		}
	}
	tt := r.tables[t]
	key := keys[len(keys)-1]
	v, err := r.value(e.Value(), KeyPath(tt.path, key), tt.depth+1)
	if err != nil {
		return err
	}
	r.add(t, key, v)
	return nil
}

func keysOf(e *unstable.Node) []string {
	var keys []string
	it := e.Key()
	for it.Next() {
		keys = append(keys, string(it.Node().Data))
	}
	return keys
}

// value reads a value at path, depth levels below the root.
func (r *tomlReader) value(n *unstable.Node, path string, depth int) (*Value, error) {
	if depth > r.maxDepth {
		return nil, tooDeep(path, r.maxDepth)
	}
	text := string(n.Data)
	switch n.Kind {
	case unstable.String:
		return &Value{Kind: String, Text: text}, nil
	case unstable.Bool:
		return &Value{Kind: Bool, Text: text, Bool: text == "true"}, nil
	case unstable.Integer:
		return tomlInteger(text), nil
	case unstable.Float:
		return tomlFloat(text), nil
	case unstable.LocalDate, unstable.LocalTime, unstable.LocalDateTime, unstable.DateTime:
		if !tomlDateTime(n.Kind, text) {
			return &Value{Kind: Bad, Rule: fmt.Sprintf("%s is not a valid TOML date or time", text)}, nil
		}
		return &Value{Kind: String, Text: text}, nil
	case unstable.Array:
		v := &Value{Kind: List}
		it := n.Children()
		for it.Next() {
			c := it.Node()
			if c.Kind == unstable.Comment {
				continue
			}
			item, err := r.value(c, IndexPath(path, len(v.Items)), depth+1)
			if err != nil {
				return nil, err
			}
			v.Items = append(v.Items, item)
		}
		return v, nil
	case unstable.InlineTable:
		t := r.table(path, depth, definedByHeader)
		it := n.Children()
		for it.Next() {
			c := it.Node()
			if c.Kind != unstable.KeyValue {
				continue
			}
			if err := r.keyValue(t, c); err != nil {
				return nil, err
			}
		}
		r.tables[t].how = inlineTable
		return t, nil
	}
	return &Value{Kind: Bad, Rule: "unsupported TOML value"}, nil
}

// tomlInteger reads a TOML integer (the parser has checked its syntax:
// digits with single underscores between them, 0x, 0o and 0b prefixes),
// with Num in decimal as JSON writes it.
func tomlInteger(text string) *Value {
	i, err := strconv.ParseInt(strings.ReplaceAll(text, "_", ""), 0, 64)
	if err != nil {
		return &Value{Kind: Bad, Rule: fmt.Sprintf("%s does not fit in a 64-bit integer", text)}
	}
	return &Value{Kind: Number, Text: text, Num: strconv.FormatInt(i, 10)}
}

// tomlFloat reads a TOML float; inf and nan, with or without a sign, are
// numbers without a Num, as YAML's .inf and .nan.
func tomlFloat(text string) *Value {
	v := &Value{Kind: Number, Text: text}
	s := strings.TrimLeft(text, "+-")
	if s == "inf" || s == "nan" {
		return v
	}
	f, err := strconv.ParseFloat(strings.ReplaceAll(text, "_", ""), 64)
	if err != nil {
		return &Value{Kind: Bad, Rule: fmt.Sprintf("%s is not a 64-bit floating-point number (out of range)", text)}
	}
	v.Num = strconv.FormatFloat(f, 'g', -1, 64)
	return v
}

// tomlDateTime reports whether text is a valid TOML value of its kind:
// the parser only delimits dates and times. The separator between date
// and time may be T, t or a space; seconds may be left out (TOML 1.1).
func tomlDateTime(k unstable.Kind, text string) bool {
	s := strings.ToUpper(text)
	date, clock, zone := "", s, ""
	switch k {
	case unstable.LocalDate:
		date, clock = s, ""
	case unstable.LocalDateTime, unstable.DateTime:
		if len(s) < 11 || s[10] != ' ' && s[10] != 'T' {
			return false
		}
		date, clock = s[:10], s[11:]
	}
	if k == unstable.DateTime {
		if strings.HasSuffix(clock, "Z") {
			clock, zone = clock[:len(clock)-1], "Z"
		} else if i := strings.LastIndexAny(clock, "+-"); i >= 0 {
			clock, zone = clock[:i], clock[i:]
			if !digitsLike(zone[1:], "dd:dd") {
				return false
			}
		} else {
			return false
		}
	}
	if k != unstable.LocalDate && clock == "" {
		return false // a date and its separator, no time: "1979-05-27T"
	}
	if date != "" {
		if !digitsLike(date, "dddd-dd-dd") {
			return false
		}
		if _, err := time.Parse("2006-01-02", date); err != nil {
			return false
		}
	}
	if clock != "" {
		hm, frac, hasFrac := strings.Cut(clock, ".")
		switch {
		case hasFrac && (frac == "" || strings.Trim(frac, "0123456789") != "" || len(hm) != 8):
			return false
		case !digitsLike(hm, "dd:dd:dd") && !digitsLike(hm, "dd:dd"):
			return false
		}
		if _, err := time.Parse("15:04:05"[:len(hm)], hm); err != nil {
			return false
		}
	}
	if zone != "" && zone != "Z" {
		if _, err := time.Parse("15:04", zone[1:]); err != nil {
			return false
		}
	}
	return true
}

// digitsLike reports whether s has shape's form, d standing for a digit.
func digitsLike(s, shape string) bool {
	if len(s) != len(shape) {
		return false
	}
	for i := range len(s) {
		if shape[i] == 'd' && (s[i] < '0' || s[i] > '9') || shape[i] != 'd' && s[i] != shape[i] {
			return false
		}
	}
	return true
}
