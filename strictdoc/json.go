package strictdoc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

type jsonFormat struct{}

// Read reads exactly one JSON value. JSON has no empty document: nothing
// but white space is "must not be empty". Anything after the value but
// white space is an error ("trailing data after the document"), and so is
// a syntax error, with its line and column.
func (jsonFormat) Read(data []byte, maxDepth int) (*Value, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, &ReadError{Rule: "must not be empty"}
	}
	jr := jsonReader{maxDepth: maxDepth, dec: json.NewDecoder(bytes.NewReader(data)), data: data}
	jr.dec.UseNumber()
	root, err := jr.read("", 0)
	if err != nil {
		return nil, err
	}
	end := jr.dec.InputOffset()
	if _, err := jr.dec.Token(); !errors.Is(err, io.EOF) {
		end += int64(len(data[end:]) - len(bytes.TrimLeft(data[end:], " \t\r\n")))
		return nil, &ReadError{Rule: fmt.Sprintf("json syntax: %s: trailing data after the document", jr.position(end))}
	}
	return root, nil
}

type jsonReader struct {
	maxDepth int
	dec      *json.Decoder
	data     []byte
}

func (r *jsonReader) read(path string, depth int) (*Value, error) {
	if depth > r.maxDepth {
		return nil, tooDeep(path, r.maxDepth)
	}
	tok, err := r.dec.Token()
	if err != nil {
		return nil, r.syntax(err)
	}
	switch t := tok.(type) {
	case nil:
		return &Value{Kind: Null, Text: "null"}, nil
	case bool:
		return &Value{Kind: Bool, Bool: t, Text: strconv.FormatBool(t)}, nil
	case json.Number:
		return &Value{Kind: Number, Text: t.String(), Num: t.String()}, nil
	case string:
		return &Value{Kind: String, Text: t}, nil
	case json.Delim:
		switch t {
		case '[':
			v := &Value{Kind: List}
			for r.dec.More() {
				item, err := r.read(IndexPath(path, len(v.Items)), depth+1)
				if err != nil {
					return nil, err
				}
				v.Items = append(v.Items, item)
			}
			if _, err := r.dec.Token(); err != nil {
				return nil, r.syntax(err)
			}
			return v, nil
		case '{':
			v := &Value{Kind: Map}
			seen := make(map[string]bool)
			for r.dec.More() {
				tok, err := r.dec.Token()
				if err != nil {
					return nil, r.syntax(err)
				}
				key, ok := tok.(string)
				if !ok {
					return nil, r.syntax(fmt.Errorf("object key is not a string"))
				}
				val, err := r.read(KeyPath(path, key), depth+1)
				if err != nil {
					return nil, err
				}
				v.Pairs = append(v.Pairs, Pair{Key: key, Dup: seen[key], Value: val})
				seen[key] = true
			}
			if _, err := r.dec.Token(); err != nil {
				return nil, r.syntax(err)
			}
			return v, nil
		}
	}
	return nil, r.syntax(fmt.Errorf("unexpected %v", tok))
}

func (r *jsonReader) syntax(err error) error {
	off := r.dec.InputOffset()
	var se *json.SyntaxError
	if errors.As(err, &se) {
		// Decoder.Token's offsets are not always from the start of the
		// input; Unmarshal's are.
		if uerr := json.Unmarshal(r.data, new(json.RawMessage)); errors.As(uerr, &se) {
			err = uerr
		}
		off = se.Offset - 1
	}
	msg := strings.TrimPrefix(err.Error(), "json: ")
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		off, msg = int64(len(r.data)), "unexpected end of input"
	}
	return &ReadError{Rule: fmt.Sprintf("json syntax: %s: %s", r.position(off), msg)}
}

// position turns a byte offset into "line L, column C", both from 1.
func (r *jsonReader) position(off int64) string {
	off = min(max(off, 0), int64(len(r.data)))
	before := r.data[:off]
	line := bytes.Count(before, []byte("\n")) + 1
	col := utf8.RuneCount(before[bytes.LastIndexByte(before, '\n')+1:]) + 1
	return fmt.Sprintf("line %d, column %d", line, col)
}
