package envelope

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
)

// TestCanonicalRFC8785 canonicalizes RFC 8785's examples (section 3.2.2's
// sample, 3.2.3's member sorting, 3.2.4's UTF-8 output), each
// testdata/rfc8785/NAME.in.json against NAME.out.json, byte for byte.
func TestCanonicalRFC8785(t *testing.T) {
	ins, _ := filepath.Glob("testdata/rfc8785/*.in.json")
	if len(ins) < 3 {
		t.Fatalf("found %d examples in testdata/rfc8785", len(ins))
	}
	for _, in := range ins {
		name := strings.TrimSuffix(filepath.Base(in), ".in.json")
		t.Run(name, func(t *testing.T) {
			src, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			want, err := os.ReadFile(strings.TrimSuffix(in, ".in.json") + ".out.json")
			if err != nil {
				t.Fatal(err)
			}
			got, err := CanonicalJSON(src)
			if err != nil {
				t.Fatalf("CanonicalJSON: %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("CanonicalJSON(%s)\n got %s\nwant %s", name, got, want)
			}
		})
	}
}

// TestFormatNumberRFC8785 checks every number of RFC 8785's Appendix B,
// written as the double its bits are, and as JSON text through
// CanonicalJSON.
func TestFormatNumberRFC8785(t *testing.T) {
	f, err := os.Open("testdata/numbers.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		bits, want, _ := strings.Cut(line, " ")
		b, err := hex.DecodeString(bits)
		if err != nil || len(b) != 8 {
			t.Fatalf("numbers.txt: bad line %q", line)
		}
		v := math.Float64frombits(binary.BigEndian.Uint64(b))
		if got := FormatNumber(v); got != want {
			t.Errorf("FormatNumber(%s) = %s, want %s", bits, got, want)
		}
		// The same through the parser: Go's own formatting of v reads
		// back as v.
		in := []byte(`[` + strings.Replace(jsonFloat(v), "+", "", 1) + `]`)
		if got, err := CanonicalJSON(in); err != nil || string(got) != "["+want+"]" {
			t.Errorf("CanonicalJSON(%s) = %s, %v; want [%s]", in, got, err, want)
		}
		n++
	}
	if n < 20 {
		t.Fatalf("only %d numbers checked", n)
	}
}

func jsonFloat(f float64) string {
	b, _ := json.Marshal(f)
	return string(b)
}

// TestFormatNumberECMAScript compares FormatNumber with Node.js's
// String(number), the definition JCS points to, on random doubles of every
// magnitude and on the boundaries of plain notation.
func TestFormatNumberECMAScript(t *testing.T) {
	nodejs, err := exec.LookPath("node")
	sandboxtest.Require(t, err == nil, "node (Node.js) is needed as the ECMAScript reference")
	r := rand.New(rand.NewPCG(1, 2))
	var nums []float64
	for _, f := range []float64{1e21, 1e-7, 1e-6, 123456789012345680000, 0.1, 1.5e-7, 5e-324, math.MaxFloat64, -1e21, 1e20, 999999999999999999999} {
		nums = append(nums, f)
	}
	for len(nums) < 5000 {
		f := math.Float64frombits(r.Uint64())
		if !math.IsNaN(f) && !math.IsInf(f, 0) {
			nums = append(nums, f)
		}
	}
	var in bytes.Buffer
	for _, f := range nums {
		in.WriteString(hex.EncodeToString(binary.BigEndian.AppendUint64(nil, math.Float64bits(f))) + "\n")
	}
	cmd := exec.Command(nodejs, "-e", `
const lines = require("fs").readFileSync(0, "utf8").trim().split("\n");
console.log(lines.map(h => String(Buffer.from(h, "hex").readDoubleBE(0))).join("\n"));`)
	cmd.Stdin = &in
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node: %v", err)
	}
	want := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(want) != len(nums) {
		t.Fatalf("node printed %d numbers for %d", len(want), len(nums))
	}
	for i, f := range nums {
		if got := FormatNumber(f); got != want[i] {
			t.Errorf("FormatNumber(%v) = %s, ECMAScript says %s", f, got, want[i])
		}
	}
}

// TestCanonicalRefuses: what JCS cannot represent or I-JSON forbids is
// refused with the path of the value.
func TestCanonicalRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"number overflows", `{"a":[1,{"amount":1e400}]}`, "a[1].amount: number 1e400 is beyond the range of an IEEE-754 double"},
		{"negative overflow", `-1.8e308`, "(root): number -1.8e308 is beyond the range"},
		{"invalid UTF-8", "{\"memo\":\"\xff\"}", "memo: invalid UTF-8"},
		{"invalid UTF-8 in a name", "{\"\xc3\":1}", "(root): invalid UTF-8"},
		{"lone high surrogate", `{"s":"\ud800"}`, `s: lone surrogate \ud800`},
		{"lone low surrogate", `{"s":"\udc00x"}`, `s: lone surrogate \udc00`},
		{"duplicate name", `{"a":1,"b":{"c":1,"c":2}}`, "b.c: duplicate member name"},
		{"odd name in the path", `{"a b":[1,"\u0000",tru]}`, `["a b"][2]: unexpected 't', want a value`},
		{"integer beyond 2^53", `{"amount":9007199254740993}`, "amount: integer 9007199254740993 has no exact IEEE-754 double form (it would be signed as 9007199254740992): send it as a string"},
		{"wei", `{"wei":123456789012345678901234567890}`, "wei: integer 123456789012345678901234567890 has no exact"},
		{"negative big integer", `[-18446744073709551615]`, "[0]: integer -18446744073709551615 has no exact"},
		{"leading zero", `[01]`, "[0]: a number may not have a leading zero"},
		{"bare dot", `[1.]`, "[0]: a number needs a digit after '.'"},
		{"trailing comma", `[1,]`, "[1]: unexpected ']', want a value"},
		{"trailing data", `{} {}`, "(root): unexpected '{' after the value"},
		{"raw control", "\"a\tb\"", "(root): control character 0x09 in a string"},
		{"bad escape", `"\x"`, `(root): unknown escape \x`},
		{"empty", ``, "(root): unexpected end of input"},
		{"too deep", strings.Repeat("[", MaxDepth+1) + strings.Repeat("]", MaxDepth+1), "nested more than 512 deep"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := CanonicalJSON([]byte(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrJSON) {
				t.Fatalf("CanonicalJSON(%q) = %s, %v; want an ErrJSON containing %q", tc.in, out, err, tc.want)
			}
		})
	}
}

// TestCanonicalSame: the same value written differently canonicalizes the
// same.
func TestCanonicalSame(t *testing.T) {
	for _, tc := range []struct{ a, b string }{
		{`{"b":1,"a":[true,null]}`, "{ \"a\" : [ true , null ] ,\n\t\"b\" : 1.0 }"},
		{`{"x":100}`, `{"x":1e2}`},
		{`[9007199254740992,1e21,295147905179352830000]`, `[9007199254740992,1000000000000000000000,2.9514790517935283e20]`},
		{`[9007199254740993.0]`, `[9007199254740992]`}, // a fraction is a double's already
		{`{"x":0}`, `{"x":-0.0}`},
		{`"\u00e9/"`, `"é\/"`},
		{`{"\ud83d\ude00":1}`, `{"😀":1}`},
	} {
		a, err := CanonicalJSON([]byte(tc.a))
		if err != nil {
			t.Fatal(err)
		}
		b, err := CanonicalJSON([]byte(tc.b))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("CanonicalJSON(%s) = %s but CanonicalJSON(%s) = %s", tc.a, a, tc.b, b)
		}
	}
}

// FuzzCanonical: a canonical form is its own canonical form, is valid JSON,
// and holds the same value as the input.
func FuzzCanonical(f *testing.F) {
	ins, _ := filepath.Glob("testdata/rfc8785/*.in.json")
	for _, in := range ins {
		b, _ := os.ReadFile(in)
		f.Add(b)
	}
	for _, s := range []string{`{"amount":1000,"to":"0xabc"}`, `[1e21,1e-7,-0,"\u001f"]`, `{"a":{"b":[{}]}}`, `"\ud83d\ude00"`, `123456789.123456789e-300`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := CanonicalJSON(in)
		if err != nil {
			if !errors.Is(err, ErrJSON) {
				t.Fatalf("CanonicalJSON(%q): error %v is not ErrJSON", in, err)
			}
			return
		}
		again, err := CanonicalJSON(out)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("CanonicalJSON(%q) = %q, whose canonical form is %q, %v", in, out, again, err)
		}
		if !json.Valid(out) {
			t.Fatalf("CanonicalJSON(%q) = %q, not valid JSON", in, out)
		}
		var vin, vout any
		if err := json.Unmarshal(in, &vin); err != nil {
			t.Fatalf("CanonicalJSON accepted %q, which encoding/json refuses: %v", in, err)
		}
		if err := json.Unmarshal(out, &vout); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(vin, vout) {
			t.Fatalf("CanonicalJSON(%q) = %q: value %#v, want %#v", in, out, vout, vin)
		}
	})
}
