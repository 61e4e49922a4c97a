package docker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// The values of Config.Transport.
const (
	TransportRelay  = "relay"  // a unix socket per container, the node's binary as the container's relay
	TransportAttach = "attach" // the engine's attached standard streams
)

// relay returns the relay's files when the driver uses the relay
// transport, nil for the attach transport.
func (d *Driver) relay() (*relayFiles, error) {
	if d.cfg.Transport == TransportAttach {
		return nil, nil
	}
	d.relayOnce.Do(func() {
		switch {
		case !relayHooked.Load():
			d.relayErr = errNoRelay
		case !strings.HasPrefix(d.host(), "unix://"):
			d.relayErr = fmt.Errorf("the engine at %s is not local (a unix socket): it cannot mount the node's socket", d.host())
		default:
			d.relayFiles, d.relayErr = findRelay()
		}
	})
	if d.relayErr != nil {
		if d.cfg.Transport == TransportRelay {
			return nil, fmt.Errorf("transport relay: %w", d.relayErr)
		}
		return nil, nil
	}
	return d.relayFiles, nil
}

// transport names the transport the driver uses, and why when it falls
// back to attach.
func (d *Driver) transport() (string, error) {
	rf, err := d.relay()
	if rf == nil {
		if err == nil {
			err = d.relayErr
		}
		return TransportAttach, err
	}
	return TransportRelay, nil
}

// relayListen listens on a new unix socket under the work directory, which
// containers' users may connect to.
func (d *Driver) relayListen() (*net.UnixListener, error) {
	dir := filepath.Join(d.cfg.Process.WorkDir, "relay")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("relay socket: %w", err)
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	path := filepath.Join(dir, hex.EncodeToString(b[:]))
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("relay socket: %w", err)
	}
	// The container's user connects through the bind mount of the socket
	// itself; the directory stays the node's.
	if err := os.Chmod(path, 0o666); err != nil {
		ln.Close()
		return nil, fmt.Errorf("relay socket: %w", err)
	}
	return ln, nil
}

// accept waits for the container's relay to connect and makes the
// connection the container's standard input and output. A container that
// ends first gets an output that ends at once, so that its pool reports
// how it ended, with its standard error.
func (p *containerProc) accept(ctx context.Context, ln *net.UnixListener) error {
	type accepted struct {
		c   *net.UnixConn
		err error
	}
	ch := make(chan accepted, 1)
	go func() {
		c, err := ln.AcceptUnix()
		ch <- accepted{c, err}
	}()
	var a accepted
	select {
	case a = <-ch:
	case r := <-p.wait.Result:
		p.early = &r
		ln.Close()
		if a = <-ch; a.c != nil { // connected, then ended
			a.c.Close()
		}
		r2, w, err := os.Pipe()
		if err != nil {
			return err
		}
		w.Close()
		p.stdout, p.stdin = r2, &closedStdin{}
		return nil
	case <-ctx.Done():
		ln.Close()
		if a = <-ch; a.c != nil {
			a.c.Close()
		}
		return fmt.Errorf("container %s: its relay did not connect: %w", p.name, ctx.Err())
	}
	if a.err != nil {
		return fmt.Errorf("container %s: accept its relay: %w", p.name, a.err)
	}
	defer a.c.Close()
	rc, err := a.c.SyscallConn()
	if err != nil {
		return err
	}
	var rfd, wfd int
	var derr error
	if err := rc.Control(func(fd uintptr) {
		if rfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0); derr != nil {
			return
		}
		if wfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0); derr != nil {
			unix.Close(rfd)
		}
	}); err != nil {
		return err
	}
	if derr != nil {
		return fmt.Errorf("container %s: relay socket: %w", p.name, derr)
	}
	// Non-blocking, so that os.NewFile makes them pollable (deadlines, and
	// the pool's spinning reads).
	_ = unix.SetNonblock(rfd, true)
	_ = unix.SetNonblock(wfd, true)
	p.stdout = os.NewFile(uintptr(rfd), "relay-out-"+p.name)
	p.stdin = &socketStdin{f: os.NewFile(uintptr(wfd), "relay-in-"+p.name)}
	return nil
}

// socketStdin is a container's standard input over the relay's socket:
// Close shuts its writing half down, which the worker reads as the end
// of file.
type socketStdin struct {
	f    *os.File
	once sync.Once
}

func (s *socketStdin) Write(b []byte) (int, error) { return s.f.Write(b) }

func (s *socketStdin) Close() error {
	var err error
	s.once.Do(func() {
		if rc, e := s.f.SyscallConn(); e == nil {
			_ = rc.Control(func(fd uintptr) { _ = unix.Shutdown(int(fd), unix.SHUT_WR) })
		}
		err = s.f.Close()
	})
	return err
}

// SetWriteDeadline bounds the writes in flight and to come.
func (s *socketStdin) SetWriteDeadline(t time.Time) error { return s.f.SetWriteDeadline(t) }

// closedStdin is the standard input of a container that ended before its
// relay connected.
type closedStdin struct{}

func (closedStdin) Write([]byte) (int, error) { return 0, io.ErrClosedPipe }
func (closedStdin) Close() error              { return nil }
