// Command volume is a test reactor that works on its volumes as its message
// says and answers with a noop reason saying what happened, so a test
// reads back what a guest saw. Build: GOOS=wasip1 GOARCH=wasm go build
// -buildmode=c-shared -o main.wasm .
//
//	{"op": "write", "path": "/out/a", "text": "hi"}  → "wrote 2"
//	{"op": "read", "path": "/out/a"}                 → "read:hi" or "error:..."
//	{"op": "fill", "path": "/out/big", "bytes": N}   → "filled N" or "filled K: error"
//	{"op": "link", "path": "/out/l", "target": T}    → "linked" or "error:..."
package main

import (
	"encoding/json"
	"fmt"
	"os"

	andromeda "github.com/andromeda-runner/andromeda/sdk/go"
)

func init() { andromeda.Handle(handle) }

func main() {}

type request struct {
	Op     string `json:"op"`
	Path   string `json:"path"`
	Text   string `json:"text"`
	Bytes  int    `json:"bytes"`
	Target string `json:"target"`
}

func handle(in andromeda.Input) andromeda.Output {
	var r request
	if err := json.Unmarshal(in.Message, &r); err != nil {
		return andromeda.Noop("error:" + err.Error())
	}
	switch r.Op {
	case "write":
		if err := os.WriteFile(r.Path, []byte(r.Text), 0o644); err != nil {
			return andromeda.Noop("error:" + err.Error())
		}
		return andromeda.Noop(fmt.Sprintf("wrote %d", len(r.Text)))
	case "read":
		b, err := os.ReadFile(r.Path)
		if err != nil {
			return andromeda.Noop("error:" + err.Error())
		}
		return andromeda.Noop("read:" + string(b))
	case "fill":
		f, err := os.Create(r.Path)
		if err != nil {
			return andromeda.Noop("error:" + err.Error())
		}
		defer f.Close()
		chunk := make([]byte, 4096)
		done := 0
		for done < r.Bytes {
			n, err := f.Write(chunk[:min(len(chunk), r.Bytes-done)])
			done += n
			if err != nil {
				return andromeda.Noop(fmt.Sprintf("filled %d: %v", done, err))
			}
		}
		return andromeda.Noop(fmt.Sprintf("filled %d", done))
	case "link":
		if err := os.Symlink(r.Target, r.Path); err != nil {
			return andromeda.Noop("error:" + err.Error())
		}
		return andromeda.Noop("linked")
	}
	return andromeda.Noop("error:unknown op " + r.Op)
}
