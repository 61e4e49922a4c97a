// Command broken is a deliberately broken worker for the conformance kit's
// own tests: the conformance guest (package guest, served by runtimes/go)
// behind a filter that breaks one rule of the runtime protocol, chosen by
// the name it is run under:
//
//	ignores-cancel  drops every cancel message on its way in
//	drops-logs      drops every log message on its way out
//	bad-input       answers a line it cannot read with code error, not bad_input
//
// The kit must fail each, naming the check that caught it.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/andromeda-runner/andromeda/contract"
	worker "github.com/andromeda-runner/andromeda/runtimes/go"
	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest/guest"
)

func main() {
	defect := filepath.Base(os.Args[0])
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := worker.Run(context.Background(), serve, inR, outW)
		outW.Close()
		done <- err
	}()
	go func() {
		filter(os.Stdin, inW, func(m *worker.Message) bool { return defect == "ignores-cancel" && m.Type == worker.TypeCancel })
		inW.Close()
	}()
	filter(outR, os.Stdout, func(m *worker.Message) bool {
		if defect == "bad-input" && m.Type == worker.TypeError && m.Error != nil && m.Error.Code == worker.CodeBadInput {
			m.Error.Code = worker.CodeError
			b, _ := json.Marshal(m)
			os.Stdout.Write(append(b, '\n'))
			return true
		}
		return defect == "drops-logs" && m.Type == worker.TypeLog
	})
	if err := <-done; err != nil {
		fmt.Fprintf(os.Stderr, "broken worker: %v\n", err)
		os.Exit(1)
	}
}

// filter copies lines from r to w but those for which drop is true.
func filter(r io.Reader, w io.Writer, drop func(m *worker.Message) bool) {
	br := bufio.NewReaderSize(r, 1<<20)
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			var m worker.Message
			if json.Unmarshal(bytes.TrimSpace(line), &m) != nil || !drop(&m) {
				w.Write(line)
			}
		}
		if err != nil {
			return
		}
	}
}

// serve is the conformance guest, as the exec guest serves it.
func serve(ctx context.Context, in contract.Input) (contract.Output, error) {
	var o struct {
		Do      string `json:"do"`
		Level   string `json:"level"`
		Message string `json:"message"`
	}
	_ = json.Unmarshal(in.Message, &o)
	switch o.Do {
	case "wait":
		<-ctx.Done()
		return contract.Output{}, ctx.Err()
	case "log":
		worker.Log(ctx, o.Level, o.Message)
		return guest.Noop("logged"), nil
	}
	out, _ := guest.Do(in)
	return out, nil
}
