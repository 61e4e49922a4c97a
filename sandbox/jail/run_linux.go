package jail

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
)

// Run runs s's command in a jail of its own to its end and returns its
// standard output and error (their last 32 KiB, interleaved). It fails
// when the command exits non-zero or ctx ends first, which kills the jail.
// With s.Egress the jail has a network namespace of its own with only
// loopback, whatever s.HostNetwork says, and reaches those host:port pairs,
// and nothing else, through an egress proxy in the node that lives as long
// as the run: HTTP_PROXY and HTTPS_PROXY name it (EgressProxy) and
// NO_PROXY is removed; the caller passes the command its own proxy flags.
// Safe for concurrent use.
func (h *Host) Run(ctx context.Context, s Spec) ([]byte, error) {
	if len(s.Egress) > 0 {
		s.HostNetwork = false
		var stop func()
		var err error
		if s, stop, err = h.withEgress(s); err != nil {
			return nil, err
		}
		defer stop()
	}
	t, err := h.Prepare(s)
	if err != nil {
		return nil, err
	}
	sp, err := t.Start()
	if err != nil {
		return nil, err
	}
	sp.Stdin.Close()
	var mu sync.Mutex
	out := &tailWriter{max: tailSize}
	var readers sync.WaitGroup
	for _, r := range []io.Reader{sp.Stdout, sp.Stderr} {
		readers.Go(func() {
			buf := make([]byte, 8<<10)
			for {
				n, err := r.Read(buf)
				mu.Lock()
				out.write(buf[:n])
				mu.Unlock()
				if err != nil {
					return
				}
			}
		})
	}
	type waited struct {
		state *os.ProcessState
		err   error
	}
	done := make(chan waited, 1)
	go func() {
		st, err := sp.Wait()
		done <- waited{st, err}
	}()
	var w waited
	select {
	case w = <-done:
	case <-ctx.Done():
		sp.Kill()
		w = <-done
	}
	sp.Kill() // anything it left behind
	readers.Wait()
	sp.Stdout.Close()
	sp.Stderr.Close()
	_ = sp.Release(releaseWait)
	shown := s.Argv
	if len(shown) > 3 && shown[0] == egressBin {
		shown = shown[3:] // the command, not its forwarder
	}
	what := strings.Join(shown[:min(len(shown), 3)], " ")
	switch {
	case ctx.Err() != nil:
		return out.bytes(), fmt.Errorf("%s: %w\n%s", what, ctx.Err(), strings.TrimSpace(string(out.bytes())))
	case w.err != nil:
		return out.bytes(), w.err
	case !w.state.Success():
		return out.bytes(), fmt.Errorf("%s: %v\n%s", what, w.state, strings.TrimSpace(string(out.bytes())))
	}
	return out.bytes(), nil
}

// tailWriter keeps the last max bytes written to it.
type tailWriter struct {
	max int
	buf []byte
}

func (t *tailWriter) write(p []byte) {
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
}

func (t *tailWriter) bytes() []byte { return t.buf }
