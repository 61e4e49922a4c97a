package docker

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"

	"github.com/moby/moby/api/types/mount"
	"golang.org/x/sys/unix"
)

// The relay transport. A container's worker talks to the node over a
// unix socket instead of the engine's attached streams, which take a
// round trip through the engine (measured: 193 µs p50 for a trivial
// invoke on attach, against tens of µs over a socket). The node listens on
// a socket of its own per container, bind-mounted into it, and the
// container's entrypoint is the node's own binary as a relay: it connects
// to the socket, puts it on its standard input and output, and executes
// the worker's real command. Standard error stays the container's,
// attached.

// relayArg is the first argument of the node's binary run as a relay.
const relayArg = "andromeda-docker-relay"

// Where a container sees the relay's files.
const (
	relayDir    = "/.andromeda-relay"
	relayBin    = relayDir + "/bin/andromeda"
	relayLib    = relayDir + "/lib"
	relayInterp = relayLib + "/ld.so"
	relaySocket = relayDir + "/socket"
)

// relayHooked is set by MaybeRelay: this binary can be a relay.
var relayHooked atomic.Bool

// MaybeRelay turns the current process into the docker driver's relay
// when the driver started it as one inside a container, and otherwise
// returns at once. Every binary that deploys on the docker driver calls it
// first thing in main (and a test binary in TestMain), next to
// process.MaybeInit:
//
//	func main() {
//		docker.MaybeRelay()
//		...
//	}
//
// A binary that does not call it gets the attach transport (slower). As a
// relay, it never returns: it connects to the node's socket, makes it its
// standard input and output, and executes the worker's command, or exits
// with status 127 and the reason on standard error.
func MaybeRelay() {
	relayHooked.Store(true)
	if len(os.Args) < 2 || os.Args[1] != relayArg {
		return
	}
	err := errors.New("usage: " + relayArg + " SOCKET -- COMMAND [ARG...]")
	if len(os.Args) >= 5 && os.Args[3] == "--" {
		err = relay(os.Args[2], os.Args[4:])
	}
	fmt.Fprintf(os.Stderr, "andromeda relay: %v\n", err)
	os.Exit(127)
}

// relay connects to the unix socket sock, makes it standard input and
// output, and executes argv; it returns only on failure.
func relay(sock string, argv []string) error {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: sock}); err != nil {
		return fmt.Errorf("connect to %s: %w", sock, err)
	}
	for _, to := range []int{0, 1} {
		if err := unix.Dup3(fd, to, 0); err != nil {
			return fmt.Errorf("dup3 onto %d: %w", to, err)
		}
	}
	unix.Close(fd)
	path := argv[0]
	if !strings.Contains(path, "/") {
		if path, err = exec.LookPath(argv[0]); err != nil {
			return err
		}
	}
	return fmt.Errorf("exec %s: %w", path, unix.Exec(path, argv, os.Environ()))
}

// relayFiles are what a container needs to run the node's binary as its
// relay: the mounts and the command line before the socket's path.
type relayFiles struct {
	mounts []mount.Mount
	argv   []string
}

// findRelay finds the node's binary and, when it is dynamically linked,
// its ELF interpreter and every library it needs (DT_NEEDED, transitively),
// to be shown read-only in the container under one directory and run
// through the interpreter.
func findRelay() (*relayFiles, error) {
	exe, err := os.Executable()
	if err == nil {
		exe, err = filepath.EvalSymlinks(exe)
	}
	if err != nil {
		return nil, fmt.Errorf("the node's binary: %w", err)
	}
	f, err := elf.Open(exe)
	if err != nil {
		return nil, fmt.Errorf("the node's binary %s: %w", exe, err)
	}
	defer f.Close()
	rf := &relayFiles{mounts: []mount.Mount{roBind(exe, relayBin)}}
	var interp string
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b := make([]byte, p.Filesz)
			if _, err := p.ReadAt(b, 0); err != nil {
				return nil, fmt.Errorf("%s: interpreter: %w", exe, err)
			}
			interp = strings.TrimRight(string(b), "\x00")
		}
	}
	if interp == "" {
		rf.argv = []string{relayBin}
		return rf, nil
	}
	real, err := filepath.EvalSymlinks(interp)
	if err != nil {
		return nil, fmt.Errorf("%s: interpreter %s: %w", exe, interp, err)
	}
	rf.mounts = append(rf.mounts, roBind(real, relayInterp))
	dirs := libDirs(real)
	seen := map[string]bool{}
	queue, err := f.ImportedLibraries()
	if err != nil {
		return nil, fmt.Errorf("%s: libraries: %w", exe, err)
	}
	for len(queue) > 0 {
		name := queue[0]
		queue = queue[1:]
		if seen[name] || strings.Contains(name, "/") {
			continue
		}
		seen[name] = true
		path := ""
		for _, dir := range dirs {
			if p, err := filepath.EvalSymlinks(filepath.Join(dir, name)); err == nil {
				path = p
				break
			}
		}
		if path == "" {
			return nil, fmt.Errorf("%s: library %s not found in %s", exe, name, strings.Join(dirs, ", "))
		}
		if real != path {
			rf.mounts = append(rf.mounts, roBind(path, relayLib+"/"+name))
		}
		if lf, err := elf.Open(path); err == nil {
			more, _ := lf.ImportedLibraries()
			lf.Close()
			queue = append(queue, more...)
		}
	}
	rf.argv = []string{relayInterp, "--library-path", relayLib, relayBin}
	return rf, nil
}

// libDirs are where the libraries of a binary with interpreter interp
// are looked for: the interpreter's directory, then the usual ones.
func libDirs(interp string) []string {
	dirs := []string{filepath.Dir(interp)}
	for _, pat := range []string{"/lib/*-linux-*", "/usr/lib/*-linux-*"} {
		m, _ := filepath.Glob(pat)
		dirs = append(dirs, m...)
	}
	return append(dirs, "/lib64", "/usr/lib64", "/lib", "/usr/lib")
}

func roBind(src, dst string) mount.Mount {
	return mount.Mount{Type: mount.TypeBind, Source: src, Target: dst, ReadOnly: true}
}

// errNoRelay is why the relay transport is not available.
var errNoRelay = errors.New("the node's binary does not call docker.MaybeRelay")
