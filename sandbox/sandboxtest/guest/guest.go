// Package guest holds the Go implementation of the conformance guest's
// operations (the "do" table of docs/runtime-protocol.md, "The conformance
// guest"; wait and log, which need the runtime, are the exec guest's): Do
// decodes an input's message and performs the operation it names. The guest
// programs are thin mains over it: guests/go for the wasm driver (through
// sdk/go) and the process driver's exec guest (through runtimes/go), which
// adds its own escape attempts for the operations Do does not know. It
// imports only the standard library and the contract package, so that it
// builds for GOOS=wasip1 GOARCH=wasm as well as natively.
package guest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/andromeda-runner/andromeda/contract"
)

// op is the message that says what the guest does: Do names the operation,
// the other fields are the arguments of those that take one.
type op struct {
	Do     string          `json:"do"`
	Data   json.RawMessage `json:"data"`
	Reason string          `json:"reason"`
	Code   int             `json:"code"`
	Path   string          `json:"path"`
	Addr   string          `json:"addr"`
	Size   int64           `json:"size"`
}

// hoard keeps ballooned memory reachable so the collector cannot free it.
var hoard [][]byte

// Do performs the operation in's message names and returns its output and
// true. A message that does not decode comes back as a "bad message: ..." noop
// with true. For an operation it does not know, Do returns the suite's
// "unknown op <do>" noop and false, so that a guest with operations of its
// own can try them first and fall back to that output. Some operations
// never return (spin, sleep, balloon) or end the process (panic, exit).
// Do is safe for concurrent use.
func Do(in contract.Input) (contract.Output, bool) {
	var o op
	if err := json.Unmarshal(in.Message, &o); err != nil {
		return Noop("bad message: %v", err), true
	}
	switch o.Do {
	case "echo":
		data := o.Data
		if data == nil {
			data = json.RawMessage("null")
		}
		return contract.Output{Emit: []contract.Emit{{Topic: "echo", Message: data}}}, true
	case "input":
		return Publish("input", in), true
	case "noop":
		return contract.Output{Noop: o.Reason}, true
	case "nothing":
		return contract.Output{}, true
	case "panic":
		panic("conformance panic")
	case "exit":
		os.Exit(o.Code)
	case "spin":
		for {
		}
	case "recurse":
		return Noop("recursed %d deep", recurse(0)), true
	case "sleep":
		for {
			time.Sleep(time.Hour)
		}
	case "balloon":
		for {
			b := make([]byte, 1<<20)
			for i := 0; i < len(b); i += 4096 {
				b[i] = 1
			}
			hoard = append(hoard, b)
		}
	case "alloc":
		b := make([]byte, o.Size)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		hoard = append(hoard, b)
		return Noop("alloc: ok: %d bytes", len(b)), true
	case "fill":
		return Noop("%s", bytes.Repeat([]byte("x"), int(max(o.Size, 0)))), true
	case "readfile":
		b, err := os.ReadFile(o.Path)
		if err != nil {
			return Noop("readfile: error: %v", err), true
		}
		return Noop("readfile: ok: %d bytes", len(b)), true
	case "writefile":
		if err := os.WriteFile(o.Path, []byte("x"), 0o644); err != nil {
			return Noop("writefile: error: %v", err), true
		}
		return Noop("writefile: ok"), true
	case "dial":
		c, err := net.DialTimeout("tcp", o.Addr, time.Second)
		if err != nil {
			return Noop("dial: error: %v", err), true
		}
		_, _ = c.Write([]byte("hello"))
		_ = c.Close()
		return Noop("dial: ok"), true
	case "env":
		return Publish("env", map[string][]string{"env": nonNil(os.Environ()), "args": nonNil(os.Args)}), true
	}
	return Noop("unknown op %s", o.Do), false
}

// Noop is an output with the noop reason fmt.Sprintf(format, args...).
func Noop(format string, args ...any) contract.Output {
	return contract.Output{Noop: fmt.Sprintf(format, args...)}
}

// Publish is an output with v, encoded as JSON without HTML escaping,
// emitted to topic. It panics if v cannot be encoded.
func Publish(topic string, v any) contract.Output {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(err)
	}
	return contract.Output{Emit: []contract.Emit{{Topic: topic, Message: bytes.TrimRight(buf.Bytes(), "\n")}}}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// recurse calls itself until the goroutine's stack runs out (the depth
// test never holds: it keeps vet's and readers' eyes off an endless
// recursion that is meant).
func recurse(depth int) int {
	if depth < 0 {
		return 0
	}
	return recurse(depth+1) + 1
}
