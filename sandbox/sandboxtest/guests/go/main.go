// Command guest is the Go implementation of the sandboxtest conformance guest
// (see the sandboxtest package documentation for the protocol). It builds as
// a wasip1 command, a wasip1 reactor (-buildmode=c-shared) and a native
// command from the same source.
package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"time"

	andromeda "github.com/andromeda-runner/andromeda/sdk/go"
)

func init() { andromeda.Handle(handle) }

func main() {}

// op is the message that says what the guest does.
type op struct {
	Do     string          `json:"do"`
	Data   json.RawMessage `json:"data"`
	Reason string          `json:"reason"`
	Code   int             `json:"code"`
	Path   string          `json:"path"`
	Addr   string          `json:"addr"`
}

// hoard keeps ballooned memory reachable so the collector cannot free it.
var hoard [][]byte

func handle(in andromeda.Input) andromeda.Output {
	var o op
	if err := json.Unmarshal(in.Message, &o); err != nil {
		return andromeda.Noop("bad message: " + err.Error())
	}
	switch o.Do {
	case "echo":
		return andromeda.Output{Emit: []andromeda.Emit{{Topic: "echo", Message: o.Data}}}
	case "input":
		return andromeda.Publish("input", in)
	case "noop":
		return andromeda.Noop(o.Reason)
	case "nothing":
		return andromeda.Output{}
	case "panic":
		panic("conformance panic")
	case "exit":
		os.Exit(o.Code)
	case "spin":
		for {
		}
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
	case "readfile":
		b, err := os.ReadFile(o.Path)
		if err != nil {
			return andromeda.Noop("readfile: error: " + err.Error())
		}
		return andromeda.Noop(fmt.Sprintf("readfile: ok: %d bytes", len(b)))
	case "writefile":
		if err := os.WriteFile(o.Path, []byte("x"), 0o644); err != nil {
			return andromeda.Noop("writefile: error: " + err.Error())
		}
		return andromeda.Noop("writefile: ok")
	case "dial":
		c, err := net.DialTimeout("tcp", o.Addr, time.Second)
		if err != nil {
			return andromeda.Noop("dial: error: " + err.Error())
		}
		_, _ = c.Write([]byte("hello"))
		_ = c.Close()
		return andromeda.Noop("dial: ok")
	case "env":
		return andromeda.Publish("env", map[string][]string{"env": nonNil(os.Environ()), "args": nonNil(os.Args)})
	}
	return andromeda.Noop("unknown op " + o.Do)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
