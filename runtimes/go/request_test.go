package worker

import (
	"bufio"
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/andromeda-runner/andromeda/contract"
)

// startWith is start with o.
func startWith(t *testing.T, h Handler, o Options) *session {
	t.Helper()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	s := &session{t: t, in: inW, out: bufio.NewReader(outR), done: make(chan error, 1)}
	go func() {
		err := RunWith(context.Background(), h, o, inR, outW)
		outW.Close()
		s.done <- err
	}()
	t.Cleanup(func() { inW.Close(); outR.Close() })
	return s
}

// TestOptions: Load sees the init's modules (its error is the init
// error), ready accepts test and offer, and each is answered with a
// result or an error with the reason; without options, ready accepts
// nothing.
func TestOptions(t *testing.T) {
	noop := Func(func(contract.Input) contract.Output { return contract.Output{Noop: "x"} })
	var loaded []Module
	fail := false
	s := startWith(t, noop, Options{
		Load: func(mods []Module) error { loaded = mods; return nil },
		Test: func(ctx context.Context) error {
			if fail {
				return errors.New("the answer is not 42")
			}
			return nil
		},
		Offer: func(ctx context.Context) (map[string]any, error) {
			return map[string]any{"toy.flavour": "vanilla"}, nil
		},
	})
	s.send(`{"type":"init","id":"init","protocol":1,"modules":[{"id":"main","entry":"/service/main.toy"}]}`)
	ready := s.recv()
	if ready.Type != TypeReady || !slices.Equal(ready.Accepts, []string{TypeTest, TypeOffer}) {
		t.Fatalf("ready = %+v, want accepts test and offer", ready)
	}
	if len(loaded) != 1 || loaded[0].Entry != "/service/main.toy" {
		t.Errorf("Load got %+v", loaded)
	}
	s.send(`{"type":"test","id":"t1","module":"main"}`)
	if m := s.recv(); m.Type != TypeResult || m.ID != "t1" || string(m.Output) != `{"ran":true}` {
		t.Errorf("test answer = %+v, want result {\"ran\":true}", m)
	}
	fail = true
	s.send(`{"type":"test","id":"t2"}`)
	if m := s.recv(); m.Type != TypeError || m.Error == nil || m.Error.Message != "the answer is not 42" {
		t.Errorf("failing test answer = %+v", m)
	}
	s.send(`{"type":"offer","id":"o1"}`)
	if m := s.recv(); m.Type != TypeResult || string(m.Output) != `{"properties":{"toy.flavour":"vanilla"}}` {
		t.Errorf("offer answer = %+v (%s)", m, m.Output)
	}
	s.send(`{"type":"shutdown","id":"shutdown"}`)
	if err := <-s.done; err != nil {
		t.Errorf("Run = %v", err)
	}

	plain := start(t, noop)
	plain.send(`{"type":"init","id":"init","protocol":1}`)
	if m := plain.recv(); len(m.Accepts) != 0 {
		t.Errorf("ready without options = %+v, want no accepts", m)
	}

	bad := startWith(t, noop, Options{Load: func([]Module) error { return errors.New("main.toy: syntax error") }})
	bad.send(`{"type":"init","id":"init","protocol":1}`)
	if m := bad.recv(); m.Type != TypeError || m.Error.Code != CodeInit || !strings.Contains(m.Error.Message, "syntax error") {
		t.Errorf("answer to init when Load fails = %+v", m)
	}
	if err := <-bad.done; err == nil {
		t.Error("Run after a failed Load = nil, want the error")
	}
}
