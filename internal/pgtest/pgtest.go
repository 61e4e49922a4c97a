// Package pgtest starts throwaway PostgreSQL servers for tests: a fresh
// cluster made by Debian's initdb in a temporary directory, run with
// pg_ctl on a free localhost TCP port with a password, stopped and
// removed when the test ends. The server binaries come from
// /usr/lib/postgresql/*/bin (Debian's package postgresql) or PATH; a test
// without them is skipped through sandboxtest.Require (a failure under
// ANDROMEDA_CI_STRICT=1). PostgreSQL refuses to run as root, so as root
// the binaries run as the postgres user (runuser). It holds no test of
// its own and nothing but starting, stopping and addressing a server.
package pgtest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
)

// Password is the superuser's password on every test server, unlike any
// word an error message would hold, so tests can look for it.
const Password = "pgtest-Secr3t-pw"

// Server is one test cluster. Its methods fail the test on error; they
// are not safe for concurrent use.
type Server struct {
	// Port is its TCP port on 127.0.0.1, the same after Restart.
	Port int

	t      testing.TB
	bin    string // the directory holding initdb and pg_ctl
	dir    string // temporary, owned by the user the server runs as
	runAs  string // "postgres" when the test runs as root, else ""
	active bool
}

// Start creates a cluster and starts it; the test's cleanup stops it and
// removes its files.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := findBin()
	sandboxtest.Require(t, bin != "", "PostgreSQL server binaries (Debian package postgresql: initdb and pg_ctl under /usr/lib/postgresql/*/bin) are needed to test against a real server")
	s := &Server{t: t, bin: bin}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		_, rerr := exec.LookPath("runuser")
		sandboxtest.Require(t, err == nil && rerr == nil, "as root, PostgreSQL runs as the postgres user (made by Debian's package) through runuser")
		s.runAs = "postgres"
		dir, err := os.MkdirTemp("", "pgtest-")
		if err != nil {
			t.Fatal(err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
		s.dir = dir
	} else {
		dir, err := os.MkdirTemp("", "pgtest-")
		if err != nil {
			t.Fatal(err)
		}
		s.dir = dir
	}
	t.Cleanup(s.remove)
	s.Port = freePort(t)
	pw := filepath.Join(s.dir, "pwfile")
	if err := os.WriteFile(pw, []byte(Password+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s.run("initdb", "-D", s.data(), "-U", "postgres", "--pwfile", pw, "--auth", "scram-sha-256", "--no-sync", "-E", "UTF8", "--locale", "C")
	s.Start()
	return s
}

// freePort returns a free localhost port below the kernel's ephemeral
// range. A port from that range (what port 0 gives) may be taken while
// the server is stopped: by any outgoing connection's local end, or by a
// client retrying against the stopped server that connects to itself,
// and Start would then fail with "Address already in use".
func freePort(t testing.TB) int {
	t.Helper()
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				low = n
			}
		}
	}
	from := max(1024, low-16384)
	if low-from < 100 {
		from, low = 1024, 65535 // an odd range: any port, as before
	}
	for range 200 {
		port := from + rand.IntN(low-from)
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			ln.Close()
			return port
		}
	}
	t.Fatalf("no free port between %d and %d", from, low)
	return 0
}

// findBin returns the directory of the newest installed server binaries,
// or "" when there are none.
func findBin() string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int { return version(b) - version(a) })
	for _, d := range dirs {
		if ok(filepath.Join(d, "initdb")) && ok(filepath.Join(d, "pg_ctl")) {
			return d
		}
	}
	if p, err := exec.LookPath("pg_ctl"); err == nil && ok(filepath.Join(filepath.Dir(p), "initdb")) {
		return filepath.Dir(p)
	}
	return ""
}

// version is the major version in /usr/lib/postgresql/N/bin.
func version(dir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return v
}

func ok(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode()&0o111 != 0
}

func (s *Server) data() string { return filepath.Join(s.dir, "data") }

// run runs one of the server binaries as the server's user.
func (s *Server) run(name string, args ...string) {
	s.t.Helper()
	cmd := exec.Command(filepath.Join(s.bin, name), args...)
	if s.runAs != "" {
		cmd = exec.Command("runuser", append([]string{"-u", s.runAs, "--", filepath.Join(s.bin, name)}, args...)...)
	}
	cmd.Dir = s.dir
	if out, err := cmd.CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(s.dir, "log"))
		s.t.Fatalf("%s %s: %v\n%s\nserver log:\n%s", name, strings.Join(args, " "), err, out, log)
	}
}

// Start starts the stopped server and waits until it accepts connections.
func (s *Server) Start() {
	s.t.Helper()
	opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -p %d -k %s -c fsync=off -c full_page_writes=off", s.Port, s.dir)
	s.run("pg_ctl", "start", "-w", "-t", "60", "-D", s.data(), "-l", filepath.Join(s.dir, "log"), "-o", opts)
	s.active = true
}

// Stop stops the server, fast: its sessions are ended (the clients see
// their connection close) and it shuts down cleanly.
func (s *Server) Stop() {
	s.t.Helper()
	s.run("pg_ctl", "stop", "-w", "-t", "60", "-m", "fast", "-D", s.data())
	s.active = false
}

// Restart stops and starts the server.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.Start()
}

// DSN is a URL to the server's postgres database as the superuser, with
// the password.
func (s *Server) DSN() string {
	return fmt.Sprintf("postgres://postgres:%s@127.0.0.1:%d/postgres?sslmode=disable", Password, s.Port)
}

// KeywordDSN is DSN in keyword/value form.
func (s *Server) KeywordDSN() string {
	return fmt.Sprintf("host=127.0.0.1 port=%d user=postgres password=%s dbname=postgres sslmode=disable", s.Port, Password)
}

// remove stops the server if it runs and deletes its files.
func (s *Server) remove() {
	if s.active {
		ctx := context.Background()
		args := []string{"stop", "-w", "-m", "immediate", "-D", s.data()}
		cmd := exec.CommandContext(ctx, filepath.Join(s.bin, "pg_ctl"), args...)
		if s.runAs != "" {
			cmd = exec.CommandContext(ctx, "runuser", append([]string{"-u", s.runAs, "--", filepath.Join(s.bin, "pg_ctl")}, args...)...)
		}
		cmd.Run()
	}
	os.RemoveAll(s.dir)
}
