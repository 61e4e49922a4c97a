package process

import (
	"context"
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

// Where an installer sandbox sees the egress proxy (see egress.go).
const (
	// egressSock is the proxy's unix socket, bind-mounted into the sandbox.
	egressSock = "/run/andromeda/egress.sock"
	// egressBin is the node's own binary, bind-mounted into the sandbox and
	// executed by the init in place of the installer: started with
	// egressEnv=1 it is the forwarder (MaybeInit), which listens on
	// egressAddr, runs the installer as its child and forwards each
	// connection to egressSock.
	egressBin  = "/run/andromeda/egress-forward"
	egressEnv  = "ANDROMEDA_EGRESS_FORWARD"
	egressAddr = "127.0.0.1:3128" // the sandbox's own loopback: always free
	// egressProxyURL is what npm and pip are told their proxy is.
	egressProxyURL = "http://" + egressAddr
)

// runInstaller runs argv in a sandbox built from l like runOnce, in a
// network namespace of its own with only loopback. With hosts (host:port
// pairs) it starts an egress proxy that lets through only those, shows it
// inside the sandbox as an HTTP proxy at egressProxyURL (HTTP_PROXY and
// HTTPS_PROXY, and no NO_PROXY, are set in env; the caller passes the
// installer's own proxy flags) and closes it when argv ends. Without hosts
// the installer has no network at all.
func (d *Driver) runInstaller(ctx context.Context, name string, l layout, cwd string, argv, env []string, hosts []string, lim limits) ([]byte, error) {
	l.network = false
	if len(hosts) == 0 {
		return d.runOnce(ctx, name, l, cwd, argv, env, lim)
	}
	// The node's binary by path: a bind mount of /proc/self/exe would name
	// a mount of the node's mount namespace, which the init's may not bind.
	// The sandbox's uid must be able to execute it (mode o+rx, as
	// installed binaries are).
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("egress forwarder: %w", err)
	}
	sock, stop, err := d.startEgress(name, hosts)
	if err != nil {
		return nil, err
	}
	defer stop()
	l.binds = append(slices.Clone(l.binds),
		bind{source: sock, target: egressSock},
		bind{source: self, target: egressBin})
	env = slices.DeleteFunc(slices.Clone(env), func(e string) bool {
		k, _, _ := strings.Cut(e, "=")
		return strings.EqualFold(k, "NO_PROXY") || strings.EqualFold(k, "HTTP_PROXY") || strings.EqualFold(k, "HTTPS_PROXY") || k == egressEnv
	})
	env = append(env, egressEnv+"=1",
		"HTTP_PROXY="+egressProxyURL, "HTTPS_PROXY="+egressProxyURL,
		"http_proxy="+egressProxyURL, "https_proxy="+egressProxyURL)
	argv = append([]string{egressBin, egressSock, egressAddr}, argv...)
	return d.runOnce(ctx, name, l, cwd, argv, env, lim)
}

// startEgress starts an egress proxy for hosts on a new unix socket under
// the work directory and returns the socket's path and a function that
// stops the proxy and removes the socket.
func (d *Driver) startEgress(name string, hosts []string) (string, func(), error) {
	dir := filepath.Join(d.cfg.WorkDir, "egress")
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
	// The directory is the node's alone; the sandbox, whose uid owns
	// nothing, reaches the socket only through its bind mount.
	if err := os.Chmod(sock, 0o666); err != nil {
		ln.Close()
		return "", nil, fmt.Errorf("egress proxy: %w", err)
	}
	p := newEgressProxy(hosts, d.cfg.Logger.With("sandbox", name))
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

// isEgressForwarder reports whether this process is the forwarder of an
// installer sandbox (see egressBin).
func isEgressForwarder() bool {
	return len(os.Args) > 3 && os.Args[0] == egressBin && os.Getenv(egressEnv) == "1"
}

// egressForward is the forwarder: os.Args are egressBin, the proxy's
// socket, the address to listen on and the installer's argv. It listens,
// starts the installer with its environment (less egressEnv), forwards
// every connection to the socket and returns the installer's exit status.
// It runs as the sandbox's init would have run the installer: unprivileged,
// under the seccomp filter, as PID 1 of the sandbox, so it reaps every
// orphan too.
func egressForward() int {
	sock, addr, argv := os.Args[1], os.Args[2], os.Args[3:]
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "andromeda egress forwarder: %v\n", err)
		return initFailed
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
		return initFailed
	}
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, 0, nil)
		switch {
		case errors.Is(err, syscall.EINTR):
		case err != nil:
			fmt.Fprintf(os.Stderr, "andromeda egress forwarder: wait: %v\n", err)
			return initFailed
		case pid != p.Pid:
			// an orphan, reaped
		case ws.Signaled():
			return 128 + int(ws.Signal())
		default:
			return ws.ExitStatus()
		}
	}
}
