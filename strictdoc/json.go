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

// JSON reads exactly one JSON value. Anything after it but white space is
// an error ("trailing data after the manifest", with D's Name), and so is
// a syntax error, with its line and column.
func (r Reader[D]) JSON(data []byte) (*Value, error) {
	jr := jsonReader[D]{Reader: r, dec: json.NewDecoder(bytes.NewReader(data)), data: data}
	jr.dec.UseNumber()
	root, err := jr.read("", 0)
	if err != nil {
		return nil, err
	}
	end := jr.dec.InputOffset()
	if _, err := jr.dec.Token(); !errors.Is(err, io.EOF) {
		end += int64(len(data[end:]) - len(bytes.TrimLeft(data[end:], " \t\r\n")))
		var d D
		return nil, Errors[D]{{Rule: fmt.Sprintf("json syntax: %s: trailing data after the %s", jr.position(end), d.Name())}}
	}
	return root, nil
}

type jsonReader[D Doc] struct {
	Reader[D]
	dec  *json.Decoder
	data []byte
}

func (r *jsonReader[D]) read(path string, depth int) (*Value, error) {
	if depth > r.MaxDepth {
		return nil, r.tooDeep(path)
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
				v.Pairs = append(v.Pairs, Pair{Key: key, KeyTag: "!!str", Dup: seen[key], Value: val})
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

func (r *jsonReader[D]) syntax(err error) error {
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
	return Errors[D]{{Rule: fmt.Sprintf("json syntax: %s: %s", r.position(off), msg)}}
}

// position turns a byte offset into "line L, column C", both from 1.
func (r *jsonReader[D]) position(off int64) string {
	off = min(max(off, 0), int64(len(r.data)))
	before := r.data[:off]
	line := bytes.Count(before, []byte("\n")) + 1
	col := utf8.RuneCount(before[bytes.LastIndexByte(before, '\n')+1:]) + 1
	return fmt.Sprintf("line %d, column %d", line, col)
}
