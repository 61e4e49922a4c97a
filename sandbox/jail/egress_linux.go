package jail

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Where a jail of Run with Spec.Egress sees the egress proxy (see egress.go).
const (
	// egressSock is the proxy's unix socket, bind-mounted into the jail.
	egressSock = "/run/andromeda/egress.sock"
	// egressBin is the node's own binary, bind-mounted into the jail and
	// executed by the init in place of the command: started with
	// egressEnv=1 it is the forwarder (MaybeInit), which listens on
	// egressAddr, runs the command as its child and forwards each
	// connection to egressSock.
	egressBin = "/run/andromeda/egress-forward"
	egressEnv = "ANDROMEDA_EGRESS_FORWARD"
)

// withEgress returns s made to reach s.Egress through an egress proxy
// started on a new unix socket under Config.Dir, and a function that stops
// the proxy and removes the socket: the proxy's socket and the node's own
// binary (the forwarder) bound in, the forwarder in front of the command,
// HTTP_PROXY and HTTPS_PROXY (and no NO_PROXY) set to EgressProxy. The
// caller passes the command its own proxy flags.
func (h *Host) withEgress(s Spec) (Spec, func(), error) {
	// The node's binary by path: a bind mount of /proc/self/exe would name
	// a mount of the node's mount namespace, which the init's may not bind.
	// The jail's uid must be able to execute it (mode o+rx, as installed
	// binaries are).
	self, err := os.Executable()
	if err != nil {
		return s, nil, fmt.Errorf("egress forwarder: %w", err)
	}
	sock, stop, err := h.startEgress(s.Name, s.Egress)
	if err != nil {
		return s, nil, err
	}
	s.Binds = append(slices.Clone(s.Binds),
		Bind{Source: sock, Target: egressSock},
		Bind{Source: self, Target: egressBin})
	env := slices.DeleteFunc(slices.Clone(s.Env), func(e string) bool {
		k, _, _ := strings.Cut(e, "=")
		return strings.EqualFold(k, "NO_PROXY") || strings.EqualFold(k, "HTTP_PROXY") || strings.EqualFold(k, "HTTPS_PROXY") || k == egressEnv
	})
	s.Env = append(env, egressEnv+"=1",
		"HTTP_PROXY="+EgressProxy, "HTTPS_PROXY="+EgressProxy,
		"http_proxy="+EgressProxy, "https_proxy="+EgressProxy)
	s.Argv = append([]string{egressBin, egressSock, egressAddr}, s.Argv...)
	return s, stop, nil
}

// startEgress starts an egress proxy for hosts on a new unix socket under
// the jails' directory and returns the socket's path and a function that
// stops the proxy and removes the socket.
func (h *Host) startEgress(name string, hosts []string) (string, func(), error) {
	dir := filepath.Join(h.cfg.Dir, "egress")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", nil, fmt.Errorf("egress proxy: %w", err)
	}
	var id [8]byte
	_, _ = rand.Read(id[:])
	sock := filepath.Join(dir, hex.EncodeToString(id[:])+".sock")
	if len(sock) >= len(unix.RawSockaddrUnix{}.Path) {
		return "", nil, fmt.Errorf("egress proxy: socket path %s is longer than a unix socket address allows (%d bytes): use a shorter work directory", sock, len(unix.RawSockaddrUnix{}.Path)-1)
	}
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return "", nil, fmt.Errorf("egress proxy: %w", err)
	}
	// The directory is the node's alone; the jail, whose uid owns
	// nothing, reaches the socket only through its bind mount.
	if err := os.Chmod(sock, 0o666); err != nil {
		ln.Close()
		return "", nil, fmt.Errorf("egress proxy: %w", err)
	}
	p := newEgressProxy(hosts, h.cfg.Logger.With("sandbox", name))
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.serve(ln)
	}()
	return sock, func() {
		_ = p.Close()
		<-done
		_ = os.Remove(sock)
	}, nil
}

// isEgressForwarder reports whether this process is the forwarder of a
// jail (see egressBin).
func isEgressForwarder() bool {
	return len(os.Args) > 3 && os.Args[0] == egressBin && os.Getenv(egressEnv) == "1"
}

// egressForward is the forwarder: os.Args are egressBin, the proxy's
// socket, the address to listen on and the command's argv. It listens,
// starts the command with its environment (less egressEnv), forwards
// every connection to the socket and returns the command's exit status.
// It runs as the jail's init would have run the command: unprivileged,
// under the seccomp filter, as PID 1 of the jail, so it reaps every
// orphan too.
func egressForward() int {
	sock, addr, argv := os.Args[1], os.Args[2], os.Args[3:]
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "andromeda egress forwarder: %v\n", err)
		return ExitSetupFailed
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				up, err := net.Dial("unix", sock)
				if err != nil {
					fmt.Fprintf(os.Stderr, "andromeda egress forwarder: %v\n", err)
					c.Close()
					return
				}
				splice(up, c, nil)
				up.Close()
				c.Close()
			}()
		}
	}()
	env := slices.DeleteFunc(os.Environ(), func(e string) bool { return strings.HasPrefix(e, egressEnv+"=") })
	p, err := os.StartProcess(argv[0], argv, &os.ProcAttr{Env: env, Files: []*os.File{os.Stdin, os.Stdout, os.Stderr}})
	if err != nil {
		fmt.Fprintf(os.Stderr, "andromeda egress forwarder: %v\n", err)
		return ExitSetupFailed
	}
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, 0, nil)
		switch {
		case errors.Is(err, syscall.EINTR):
		case err != nil:
			fmt.Fprintf(os.Stderr, "andromeda egress forwarder: wait: %v\n", err)
			return ExitSetupFailed
		case pid != p.Pid:
			// an orphan, reaped
		case ws.Signaled():
			return 128 + int(ws.Signal())
		default:
			return ws.ExitStatus()
		}
	}
}
