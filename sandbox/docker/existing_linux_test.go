package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/client"

	"github.com/andromeda-runner/andromeda/internal/dockerimg"
	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/sandbox/process"
	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
)

// placedPy is the Python service the placement tests run: it answers
// what it sees (info), forks sleeping children (fork), writes a file
// (write) or sleeps (sleep), in a noop message as JSON.
const placedPy = `import errno, json, os, resource, time

def handle(input):
    m = input.get('message') or {}
    op = m.get('op')
    out = {}
    if op == 'info':
        out = {'uid': os.getuid(), 'gid': os.getgid(), 'pid': os.getpid(), 'cwd': os.getcwd(),
               'file': __file__, 'home': os.environ.get('HOME'), 'secret': os.environ.get('SECRET'),
               'nproc': list(resource.getrlimit(resource.RLIMIT_NPROC))}
    elif op == 'fork':
        kids, err = 0, ''
        for _ in range(m['n']):
            try:
                pid = os.fork()
            except OSError as e:
                err = errno.errorcode.get(e.errno, str(e.errno))
                break
            if pid == 0:
                try:
                    time.sleep(120)
                finally:
                    os._exit(0)
            kids += 1
        out = {'kids': kids, 'err': err}
    elif op == 'write':
        res = {}
        for p in m['paths']:
            try:
                with open(p, 'w') as f:
                    f.write('x')
                res[p] = 'ok'
            except OSError as e:
                res[p] = errno.errorcode.get(e.errno, str(e.errno))
        out = res
    elif op == 'sleep':
        time.sleep(m['s'])
    return {'noop': json.dumps(out)}
`

// operator starts a container of img running `sleep infinity` (or cmd)
// with a secret in its environment, as an operator's, removed when t
// ends. With run false it is created only.
func operator(t testing.TB, cli *client.Client, img string, run bool, cmd ...string) (id, name string) {
	t.Helper()
	ctx := context.Background()
	if len(cmd) == 0 {
		cmd = []string{"sleep", "infinity"}
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	name = "andromeda-place-test-" + hex.EncodeToString(b[:])
	c, err := cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name: name,
		Config: &container.Config{
			Image: img, Cmd: cmd, Env: []string{"SECRET=hunter2"},
			Labels: map[string]string{LabelNode: testNode, "andromeda.test": "placement"},
		},
		HostConfig: &container.HostConfig{NetworkMode: "none"},
	})
	if err != nil {
		t.Fatalf("create operator container: %v", err)
	}
	t.Cleanup(func() {
		_, _ = cli.ContainerRemove(context.Background(), c.ID, client.ContainerRemoveOptions{Force: true})
	})
	if run {
		if _, err := cli.ContainerStart(ctx, c.ID, client.ContainerStartOptions{}); err != nil {
			t.Fatalf("start operator container: %v", err)
		}
	}
	return c.ID, name
}

// placedService writes placedPy to a service directory.
func placedService(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.py"), []byte(placedPy), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// pythonImage is the test Python image, or t skipped/failed without an
// engine.
func pythonImage(t testing.TB) (*client.Client, dockerimg.Image) {
	t.Helper()
	cli := dockerimg.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	img, err := dockerimg.Python(ctx, cli)
	if err != nil {
		t.Fatalf("python image: %v", err)
	}
	return cli, img
}

// call invokes op on dep and decodes the service's answer into out.
func call(t *testing.T, ctx context.Context, dep sandbox.Deployment, msg map[string]any, out any) sandbox.Exit {
	t.Helper()
	in, _ := json.Marshal(map[string]any{"message": msg})
	exit, err := dep.Invoke(ctx, in)
	if err != nil {
		t.Fatalf("Invoke(%v) = %v", msg, err)
	}
	if exit.Outcome != sandbox.OK {
		t.Fatalf("Invoke(%v): outcome %s (%s)", msg, exit.Outcome, exit.Detail)
	}
	var res struct{ Noop string }
	if err := json.Unmarshal(exit.Output, &res); err != nil {
		t.Fatalf("Invoke(%v): output %s: %v", msg, exit.Output, err)
	}
	if out != nil {
		if err := json.Unmarshal([]byte(res.Noop), out); err != nil {
			t.Fatalf("Invoke(%v): noop %q: %v", msg, res.Noop, err)
		}
	}
	return exit
}

type placedInfo struct {
	UID, GID, PID   int
	Cwd, File, Home string
	Secret          *string
	Nproc           []int64
}

// diff is the container's file system changes, sorted.
func diff(t *testing.T, cli *client.Client, id string) []string {
	t.Helper()
	res, err := cli.ContainerDiff(context.Background(), id, client.ContainerDiffOptions{})
	if err != nil {
		t.Fatalf("diff: %v", err)
	}
	var out []string
	for _, c := range res.Changes {
		out = append(out, c.Kind.String()+" "+c.Path)
	}
	slices.Sort(out)
	return out
}

// procsOfUID lists the command lines of the container's processes running
// as uid, as the engine's top shows them; zombies (dead, not yet reaped by
// the container's init) are not counted.
func procsOfUID(t *testing.T, cli *client.Client, id string, uid int) []string {
	t.Helper()
	top, err := cli.ContainerTop(context.Background(), id, client.ContainerTopOptions{Arguments: []string{"-o", "uid,pid,args"}})
	if err != nil {
		t.Fatalf("top: %v", err)
	}
	var out []string
	for _, p := range top.Processes {
		if len(p) == 3 && p[0] == strconv.Itoa(uid) && !strings.HasSuffix(p[2], "<defunct>") {
			out = append(out, p[1]+" "+p[2])
		}
	}
	return out
}

// TestExistingPlacement places a Python service into a running container
// of the operator's, in both modes: it runs there through exec sessions,
// as a uid of its own under its process limit, with its files in its
// directory alone, without the operator's environment; Stop leaves the
// container as it was.
func TestExistingPlacement(t *testing.T) {
	cli, img := pythonImage(t)
	cfg := testConfig()
	d := newDriver(t, cfg)
	id, name := operator(t, cli, img.ID, true)
	before := diff(t, cli, id)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// /var/lib gets andromeda/ and loses it again: its times are given
	// back (an overlay2 engine's diff lists a directory whose mtime changed).
	varLib := func() time.Time {
		st, err := cli.ContainerStatPath(ctx, id, client.ContainerStatPathOptions{Path: "/var/lib"})
		if err != nil {
			t.Fatalf("stat /var/lib: %v", err)
		}
		return st.Stat.Mtime
	}
	mtime := varLib()
	const pids, workers = 8, 2
	for _, mode := range []sandbox.Mode{sandbox.ModeServer, sandbox.ModeCommand} {
		t.Run(string(mode), func(t *testing.T) {
			spec := sandbox.Spec{
				Service: "placed", Version: "1.0.0", Digest: "sha256:c0ffee0123456789abcdef", Dir: placedService(t),
				Entry: "main.py", Language: "python", Mode: mode, Container: name,
				Limits: sandbox.Limits{Pids: pids, Concurrency: workers, Timeout: 20 * time.Second},
			}
			start := time.Now()
			dep, err := d.Deploy(ctx, spec)
			if err != nil {
				t.Fatalf("Deploy: %v", err)
			}
			t.Logf("deploy %v", time.Since(start))
			stopped := false
			t.Cleanup(func() {
				if !stopped {
					_ = dep.Stop(context.Background())
				}
			})
			pl := dep.(sandbox.Placed).Placement()
			want := sandbox.Placement{Kind: sandbox.PlacementExisting, Containers: []string{name}, Image: img.ID,
				Reason: "placed into the existing container " + name + " listed in the policy; memory and CPU are that container's"}
			if pl.Kind != want.Kind || !slices.Equal(pl.Containers, want.Containers) || pl.Reason != want.Reason || pl.Image != want.Image {
				t.Errorf("Placement() = %+v, want %+v", pl, want)
			}

			var info placedInfo
			start = time.Now()
			exit := call(t, ctx, dep, map[string]any{"op": "info"}, &info)
			t.Logf("first invocation %v (usage %+v)", time.Since(start), exit.Usage)
			if exit.Usage.PeakMemory <= 0 {
				t.Errorf("usage %+v, want the worker's peak memory", exit.Usage)
			}
			dir := ServicesDir + "/" + serviceDirName(spec.Service, spec.Digest)
			if info.UID < FirstServiceUID || info.UID >= FirstServiceUID+ServiceUIDs || info.GID != info.UID {
				t.Errorf("the worker runs as %d:%d, want a service uid:gid in [%d, %d)", info.UID, info.GID, FirstServiceUID, FirstServiceUID+ServiceUIDs)
			}
			if info.File != dir+"/service/main.py" || info.Cwd != dir+"/service" || info.Home != dir+"/home" {
				t.Errorf("the worker loaded %s in %s with HOME %s, want them in %s", info.File, info.Cwd, info.Home, dir)
			}
			if n := int64(pids * workers); !slices.Equal(info.Nproc, []int64{n, n}) {
				t.Errorf("RLIMIT_NPROC = %v, want [%d %d]", info.Nproc, n, n)
			}
			if info.Secret == nil || *info.Secret != "" {
				t.Errorf("SECRET = %v in the worker's environment, want the operator's value emptied", info.Secret)
			}

			// Its files are in its directory alone, read-only to it but
			// for its home; the container's are not its.
			var wrote map[string]string
			call(t, ctx, dep, map[string]any{"op": "write", "paths": []string{
				dir + "/home/scratch", dir + "/service/main.py", dir + "/service/new", ServicesDir + "/other", "/etc/passwd-placed", "/var/lib/placed",
			}}, &wrote)
			for p, res := range wrote {
				if want := map[bool]string{true: "ok", false: "EACCES"}[p == dir+"/home/scratch"]; res != want {
					t.Errorf("write %s: %s, want %s", p, res, want)
				}
			}
			for _, c := range diff(t, cli, id) {
				_, p, _ := strings.Cut(c, " ")
				if !slices.Contains(before, c) && !strings.HasPrefix(p, "/var/lib/andromeda") && p != "/var" && p != "/var/lib" {
					t.Errorf("placed: the container changed outside %s: %s", ServicesDir, c)
				}
			}

			if mode == sandbox.ModeServer {
				procs := procsOfUID(t, cli, id, info.UID)
				if len(procs) != workers || !strings.Contains(procs[0], dir+"/runtime/shim.py") {
					t.Errorf("the container's processes of uid %d: %q, want %d workers running %s/runtime/shim.py", info.UID, procs, workers, dir)
				}
				var forked struct {
					Kids int
					Err  string
				}
				call(t, ctx, dep, map[string]any{"op": "fork", "n": 3 * pids * workers}, &forked)
				t.Logf("forked %d children before %s", forked.Kids, forked.Err)
				if forked.Err != "EAGAIN" || forked.Kids >= pids*workers {
					t.Errorf("fork: %d children, then %q; want fewer than %d, then EAGAIN (RLIMIT_NPROC)", forked.Kids, forked.Err, pids*workers)
				}
			} else {
				var again placedInfo
				call(t, ctx, dep, map[string]any{"op": "info"}, &again)
				if again.PID == info.PID {
					t.Errorf("command mode: two invocations ran in process %d, want a worker each", info.PID)
				}
			}

			start = time.Now()
			if err := dep.Stop(ctx); err != nil {
				t.Errorf("Stop: %v", err)
			}
			stopped = true
			t.Logf("stop %v", time.Since(start))
			if procs := procsOfUID(t, cli, id, info.UID); len(procs) > 0 {
				t.Errorf("after Stop, processes of uid %d still run in the container: %q", info.UID, procs)
			}
			if after := diff(t, cli, id); !slices.Equal(after, before) {
				t.Errorf("after Stop, the container's changes are %q, want %q as before the placement", after, before)
			}
			if _, err := cli.ContainerStatPath(ctx, id, client.ContainerStatPathOptions{Path: dir}); !cerrdefs.IsNotFound(err) {
				t.Errorf("after Stop, %s: %v, want not found", dir, err)
			}
			if got := varLib(); !got.Equal(mtime) {
				t.Errorf("after Stop, /var/lib's mtime is %v, want %v as before", got, mtime)
			}
		})
	}
}

// TestExistingKill: a worker killed for running past its deadline is its
// exec's process, killed with what it started; the pool starts another.
func TestExistingKill(t *testing.T) {
	cli, img := pythonImage(t)
	cfg := testConfig()
	cfg.Process.CancelGrace = 100 * time.Millisecond
	d := newDriver(t, cfg)
	id, name := operator(t, cli, img.ID, true)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dep, err := d.Deploy(ctx, sandbox.Spec{
		Service: "killed", Digest: "sha256:0ddba11", Dir: placedService(t), Entry: "main.py", Language: "python",
		Container: name, Limits: sandbox.Limits{Concurrency: 1, Timeout: 20 * time.Second},
	})
	if err != nil {
		t.Fatalf("Deploy: %v", err)
	}
	defer dep.Stop(ctx)
	var info placedInfo
	call(t, ctx, dep, map[string]any{"op": "info"}, &info)
	var forked struct{ Kids int }
	call(t, ctx, dep, map[string]any{"op": "fork", "n": 2}, &forked)
	if n := len(procsOfUID(t, cli, id, info.UID)); n != 3 {
		t.Fatalf("%d processes of uid %d, want the worker and its 2 children", n, info.UID)
	}
	in, _ := json.Marshal(map[string]any{"message": map[string]any{"op": "sleep", "s": 30}})
	short, cancelShort := context.WithTimeout(ctx, 500*time.Millisecond)
	exit, err := dep.Invoke(short, in)
	cancelShort()
	if exit.Outcome != sandbox.Timeout {
		t.Errorf("Invoke(sleep 30) past its deadline = %+v, %v; want outcome timeout", exit, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var again placedInfo
		call(t, ctx, dep, map[string]any{"op": "info"}, &again)
		procs := procsOfUID(t, cli, id, info.UID)
		if again.PID != info.PID && len(procs) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the kill: worker %d (was %d), processes of uid %d: %q; want a new worker alone", again.PID, info.PID, info.UID, procs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestExistingFallback: a listed container that is missing or not running
// fails the deploy under fallback refuse, with the container named, and
// runs the service in a new container otherwise, the placement saying so.
func TestExistingFallback(t *testing.T) {
	cli, img := pythonImage(t)
	cfg := testConfig()
	cfg.Images = map[string]string{"python": img.ID}
	d := newDriver(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	id, name := operator(t, cli, img.ID, true)
	if _, err := cli.ContainerKill(ctx, id, client.ContainerKillOptions{Signal: "KILL"}); err != nil {
		t.Fatal(err)
	}
	wait := cli.ContainerWait(ctx, id, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
	select {
	case <-wait.Result:
	case err := <-wait.Error:
		t.Fatal(err)
	}
	_, created := operator(t, cli, img.ID, false) // never started
	spec := sandbox.Spec{Service: "fallback", Digest: "sha256:fa11bac4", Dir: placedService(t), Entry: "main.py",
		Language: "python", Container: name, Limits: sandbox.Limits{Concurrency: 1}}

	for _, c := range []struct{ container, why string }{
		{name, "container " + name + " is not running (exited)"},
		{created, "container " + created + " is not running (created)"},
		{name + "-missing", "container " + name + "-missing does not exist"},
	} {
		s := spec
		s.Container, s.Fallback = c.container, sandbox.FallbackRefuse
		dep, err := d.Deploy(ctx, s)
		if err == nil {
			dep.Stop(ctx)
			t.Errorf("Deploy(%s, fallback refuse) succeeded, want it refused", c.container)
		} else if !errors.Is(err, ErrNotRunning) || !strings.Contains(err.Error(), c.why) {
			t.Errorf("Deploy(%s, fallback refuse) = %v, want ErrNotRunning saying %q", c.container, err, c.why)
		}
	}
	s := spec
	s.Fallback = "sometimes"
	if _, err := d.Deploy(ctx, s); err == nil || !strings.Contains(err.Error(), `fallback "sometimes"`) {
		t.Errorf("Deploy(fallback sometimes) = %v, want an error naming the field", err)
	}

	dep, err := d.Deploy(ctx, spec) // fallback "": new
	if err != nil {
		t.Fatalf("Deploy(fallback new): %v", err)
	}
	defer dep.Stop(ctx)
	pl := dep.(sandbox.Placed).Placement()
	wantReason := "container " + name + " is not running (exited); running in a new container"
	if pl.Kind != sandbox.PlacementFallback || pl.Reason != wantReason || len(pl.Containers) == 0 || slices.Contains(pl.Containers, name) {
		t.Errorf("Placement() = %+v, want kind fallback, reason %q, and containers of its own", pl, wantReason)
	}
	var info placedInfo
	call(t, ctx, dep, map[string]any{"op": "info"}, &info)
	if strings.HasPrefix(info.File, ServicesDir) {
		t.Errorf("the fallback worker loaded %s, want the new container's service directory", info.File)
	}
}

// TestExistingConformance runs the driver conformance suite on the exec
// guest placed into an existing container, in both modes, but for the
// balloon, which placement does not hold by design: memory is the
// container's, with no limit of the service's to run out of. The file
// system the guest sees is the container's (OwnRoot).
func TestExistingConformance(t *testing.T) {
	cli, img := pythonImage(t)
	if testEnv.guestErr != nil {
		t.Fatalf("build the exec guest: %v", testEnv.guestErr)
	}
	_, name := operator(t, cli, img.ID, true)
	sandboxtest.Run(t, sandboxtest.Harness{
		Driver: func(t *testing.T) sandbox.Driver { return newDriver(t, testConfig()) },
		Spec: func(t *testing.T, mode sandbox.Mode) sandbox.Spec {
			return sandbox.Spec{Service: "conformance-placed", Digest: "sha256:c0c0a", Dir: filepath.Dir(testEnv.guest),
				Entry: filepath.Base(testEnv.guest), Language: "exec", Mode: mode, Container: name, Limits: callLimits}
		},
		AllowEnv: []string{"PATH", "HOME", "TMPDIR", "LANG"},
		Exclude: map[string]string{
			"balloon": "placement: memory is the existing container's, not limited per service",
		},
		OwnRoot:     true, // the container's own file system, not the host's
		Started:     func(dep sandbox.Deployment) int64 { return int64(dep.(*placedDeployment).WorkersStarted()) },
		CancelGrace: process.DefaultCancelGrace,
	})
}

// TestExistingTwoServices places two services into one container: apart
// directories and uids; ServicesDir, made for the first, goes with the
// last.
func TestExistingTwoServices(t *testing.T) {
	cli, img := pythonImage(t)
	d := newDriver(t, testConfig())
	id, name := operator(t, cli, img.ID, true)
	before := diff(t, cli, id)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var deps []sandbox.Deployment
	var infos []placedInfo
	for _, svc := range []string{"first", "second"} {
		dep, err := d.Deploy(ctx, sandbox.Spec{Service: svc, Digest: "sha256:5ec0fd", Dir: placedService(t), Entry: "main.py",
			Language: "python", Container: name, Limits: sandbox.Limits{Concurrency: 1}})
		if err != nil {
			t.Fatalf("Deploy(%s): %v", svc, err)
		}
		defer dep.Stop(ctx)
		var info placedInfo
		call(t, ctx, dep, map[string]any{"op": "info"}, &info)
		deps, infos = append(deps, dep), append(infos, info)
	}
	if infos[0].UID == infos[1].UID || filepath.Dir(infos[0].Cwd) == filepath.Dir(infos[1].Cwd) {
		t.Errorf("two services share uid or directory: %+v, %+v", infos[0], infos[1])
	}
	// The first cannot touch the second's home.
	var wrote map[string]string
	call(t, ctx, deps[0], map[string]any{"op": "write", "paths": []string{infos[1].Home + "/x"}}, &wrote)
	if res := wrote[infos[1].Home+"/x"]; res != "EACCES" {
		t.Errorf("the first service writing into the second's home: %s, want EACCES", res)
	}
	if err := deps[0].Stop(ctx); err != nil {
		t.Fatalf("Stop(first): %v", err)
	}
	call(t, ctx, deps[1], map[string]any{"op": "info"}, nil)
	if _, err := cli.ContainerStatPath(ctx, id, client.ContainerStatPathOptions{Path: filepath.Dir(infos[1].Cwd)}); err != nil {
		t.Errorf("after the first stopped, the second's directory: %v", err)
	}
	if err := deps[1].Stop(ctx); err != nil {
		t.Fatalf("Stop(second): %v", err)
	}
	if after := diff(t, cli, id); !slices.Equal(after, before) {
		t.Errorf("after both stopped, the container's changes are %q, want %q", after, before)
	}
}

// placedJS is placedPy's info for Node.js.
const placedJS = `exports.handle = (input) => ({ noop: JSON.stringify({
  uid: process.getuid(), gid: process.getgid(), pid: process.pid, cwd: process.cwd(),
  file: __filename, home: process.env.HOME, secret: process.env.SECRET }) });
`

// TestExistingNode places a Node.js service into a container of the
// node image (no shell in it).
func TestExistingNode(t *testing.T) {
	cli := dockerimg.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	img, err := dockerimg.Node(ctx, cli)
	if err != nil {
		t.Fatalf("node image: %v", err)
	}
	d := newDriver(t, testConfig())
	id, name := operator(t, cli, img.ID, true, "node", "-e", "setInterval(() => {}, 1 << 30)")
	before := diff(t, cli, id)
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "index.js"), []byte(placedJS), 0o644); err != nil {
		t.Fatal(err)
	}
	spec := sandbox.Spec{Service: "placed-node", Digest: "sha256:90de", Dir: dir, Entry: "index.js", Language: "node",
		Container: name, Limits: sandbox.Limits{Concurrency: 1}}
	dep, err := d.Deploy(ctx, spec)
	if err != nil {
		t.Fatalf("Deploy: %v", err)
	}
	defer dep.Stop(ctx)
	var info placedInfo
	call(t, ctx, dep, map[string]any{"op": "info"}, &info)
	sdir := ServicesDir + "/" + serviceDirName(spec.Service, spec.Digest)
	if info.UID < FirstServiceUID || info.File != sdir+"/service/index.js" || info.Home != sdir+"/home" || info.Secret == nil || *info.Secret != "" {
		t.Errorf("the node worker: %+v, want a service uid, %s/service/index.js, its home and no secret", info, sdir)
	}
	procs := procsOfUID(t, cli, id, info.UID)
	if len(procs) != 1 || !strings.Contains(procs[0], sdir+"/runtime/") {
		t.Errorf("the container's processes of uid %d: %q, want the worker running the shim in %s/runtime", info.UID, procs, sdir)
	}
	if err := dep.Stop(ctx); err != nil {
		t.Errorf("Stop: %v", err)
	}
	if after := diff(t, cli, id); !slices.Equal(after, before) {
		t.Errorf("after Stop, the container's changes are %q, want %q", after, before)
	}
}

// TestExistingRefused: what cannot be placed fails the deploy with the
// reason, leaving the container as it was.
func TestExistingRefused(t *testing.T) {
	cli, img := pythonImage(t)
	d := newDriver(t, testConfig())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	id, name := operator(t, cli, img.ID, true)
	before := diff(t, cli, id)
	base := sandbox.Spec{Service: "refused", Digest: "sha256:bad", Dir: placedService(t), Entry: "main.py", Language: "python", Container: name}
	for _, c := range []struct {
		name string
		edit func(*sandbox.Spec)
		want string
	}{
		{"volumes", func(s *sandbox.Spec) { s.Volumes = []sandbox.Volume{{Name: "v", Dir: t.TempDir(), Path: "/data"}} }, "volumes"},
		{"language", func(s *sandbox.Spec) { s.Language = "cobol" }, `language "cobol"`},
		{"mode", func(s *sandbox.Spec) { s.Mode = "batch" }, `mode "batch"`},
		{"entry", func(s *sandbox.Spec) { s.Entry = "missing.py" }, "entry"},
	} {
		s := base
		c.edit(&s)
		if dep, err := d.Deploy(ctx, s); err == nil {
			dep.Stop(ctx)
			t.Errorf("%s: Deploy succeeded, want it refused", c.name)
		} else if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: Deploy = %v, want an error naming the container and %q", c.name, err, c.want)
		}
	}
	// A service that does not start: its directory goes with it.
	broken := base
	broken.Dir = t.TempDir()
	if err := os.Chmod(broken.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(broken.Dir, "main.py"), []byte("def handle(input:\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if dep, err := d.Deploy(ctx, broken); err == nil {
		dep.Stop(ctx)
		t.Errorf("Deploy(a service with a syntax error) succeeded, want it failed")
	} else if !strings.Contains(err.Error(), "SyntaxError") || !strings.Contains(err.Error(), name) {
		t.Errorf("Deploy(a service with a syntax error) = %v, want the SyntaxError and the container named", err)
	}
	if after := diff(t, cli, id); !slices.Equal(after, before) {
		t.Errorf("after refused deploys, the container's changes are %q, want %q", after, before)
	}

	// An exec service needs /bin/sh in the container; the node image has none.
	nodeImg, err := dockerimg.Node(ctx, cli)
	if err != nil {
		t.Fatalf("node image: %v", err)
	}
	_, nodeName := operator(t, cli, nodeImg.ID, true, "node", "-e", "setInterval(() => {}, 1 << 30)")
	if testEnv.guestErr != nil {
		t.Fatalf("build the exec guest: %v", testEnv.guestErr)
	}
	_, err = d.Deploy(ctx, sandbox.Spec{Service: "no-shell", Dir: filepath.Dir(testEnv.guest), Entry: filepath.Base(testEnv.guest),
		Language: "exec", Container: nodeName})
	if !errors.Is(err, sandbox.ErrUnsupported) || !strings.Contains(err.Error(), "/bin/sh") {
		t.Errorf("Deploy(exec into a container without /bin/sh) = %v, want ErrUnsupported naming /bin/sh", err)
	}

	// A read-only root file system has no room for the service.
	c, err := cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config:     &container.Config{Image: img.ID, Cmd: []string{"sleep", "infinity"}, Labels: map[string]string{LabelNode: testNode}},
		HostConfig: &container.HostConfig{NetworkMode: "none", ReadonlyRootfs: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = cli.ContainerRemove(context.Background(), c.ID, client.ContainerRemoveOptions{Force: true})
	})
	if _, err := cli.ContainerStart(ctx, c.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatal(err)
	}
	s := base
	s.Container = c.ID
	if _, err := d.Deploy(ctx, s); err == nil || !strings.Contains(err.Error(), "read-only") {
		t.Errorf("Deploy(into a read-only container) = %v, want an error saying read-only", err)
	}

	// A mount on the way to ServicesDir would take the service's files.
	for _, hc := range []*container.HostConfig{
		{NetworkMode: "none", Tmpfs: map[string]string{"/var/lib": ""}},
		{NetworkMode: "none", Mounts: []mount.Mount{{Type: mount.TypeBind, Source: t.TempDir(), Target: "/var/lib/andromeda"}}},
	} {
		c, err := cli.ContainerCreate(ctx, client.ContainerCreateOptions{
			Config:     &container.Config{Image: img.ID, Cmd: []string{"sleep", "infinity"}, Labels: map[string]string{LabelNode: testNode}},
			HostConfig: hc,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_, _ = cli.ContainerRemove(context.Background(), c.ID, client.ContainerRemoveOptions{Force: true})
		})
		if _, err := cli.ContainerStart(ctx, c.ID, client.ContainerStartOptions{}); err != nil {
			t.Fatal(err)
		}
		s.Container = c.ID
		want := "mount at /var/lib"
		if _, err := d.Deploy(ctx, s); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Deploy(into a container with a mount at %v%v) = %v, want an error saying %q", hc.Tmpfs, hc.Mounts, err, want)
		}
	}
}

// TestExistingClose: closing the driver stops the services it placed,
// leaving the container as it was.
func TestExistingClose(t *testing.T) {
	cli, img := pythonImage(t)
	d := newDriver(t, testConfig())
	id, name := operator(t, cli, img.ID, true)
	before := diff(t, cli, id)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dep, err := d.Deploy(ctx, sandbox.Spec{Service: "closed", Digest: "sha256:c105ed", Dir: placedService(t), Entry: "main.py",
		Language: "python", Container: name, Limits: sandbox.Limits{Concurrency: 1}})
	if err != nil {
		t.Fatalf("Deploy: %v", err)
	}
	var info placedInfo
	call(t, ctx, dep, map[string]any{"op": "info"}, &info)
	if err := d.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := dep.Invoke(ctx, []byte(`{}`)); err == nil {
		t.Errorf("Invoke after Close succeeded, want the deployment stopped")
	}
	if procs := procsOfUID(t, cli, id, info.UID); len(procs) > 0 {
		t.Errorf("after Close, processes of uid %d still run in the container: %q", info.UID, procs)
	}
	if after := diff(t, cli, id); !slices.Equal(after, before) {
		t.Errorf("after Close, the container's changes are %q, want %q", after, before)
	}
}

// TestExistingLeftover: the directory a crashed node left of the same
// version, and the processes of its uid, are replaced by a new placement.
func TestExistingLeftover(t *testing.T) {
	cli, img := pythonImage(t)
	d := newDriver(t, testConfig())
	id, name := operator(t, cli, img.ID, true)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	spec := sandbox.Spec{Service: "leftover", Digest: "sha256:1ef7", Dir: placedService(t), Entry: "main.py",
		Language: "python", Container: name, Limits: sandbox.Limits{Concurrency: 1}}
	dir := ServicesDir + "/" + serviceDirName(spec.Service, spec.Digest)
	const oldUID = 23456
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range []*tar.Header{
		{Name: strings.TrimPrefix(dir, "/") + "/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: strings.TrimPrefix(dir, "/") + "/home/", Typeflag: tar.TypeDir, Mode: 0o700, Uid: oldUID, Gid: oldUID},
		{Name: strings.TrimPrefix(dir, "/") + "/service/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: strings.TrimPrefix(dir, "/") + "/service/stale.py", Typeflag: tar.TypeReg, Mode: 0o644},
	} {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
	}
	tw.Close()
	if _, err := cli.CopyToContainer(ctx, id, client.CopyToContainerOptions{DestinationPath: "/", Content: &buf}); err != nil {
		t.Fatalf("copy the leftover: %v", err)
	}
	ex, err := cli.ExecCreate(ctx, id, client.ExecCreateOptions{User: "23456:23456", Cmd: []string{"sleep", "300"}})
	if err == nil {
		_, err = cli.ExecStart(ctx, ex.ID, client.ExecStartOptions{Detach: true})
	}
	if err != nil {
		t.Fatalf("start the leftover's process: %v", err)
	}
	for len(procsOfUID(t, cli, id, oldUID)) == 0 {
		time.Sleep(10 * time.Millisecond)
	}

	dep, err := d.Deploy(ctx, spec)
	if err != nil {
		t.Fatalf("Deploy: %v", err)
	}
	defer dep.Stop(ctx)
	call(t, ctx, dep, map[string]any{"op": "info"}, nil)
	if procs := procsOfUID(t, cli, id, oldUID); len(procs) > 0 {
		t.Errorf("the leftover's processes still run: %q", procs)
	}
	if _, err := cli.ContainerStatPath(ctx, id, client.ContainerStatPathOptions{Path: dir + "/service/stale.py"}); !cerrdefs.IsNotFound(err) {
		t.Errorf("the leftover's file: %v, want it gone", err)
	}
	if err := dep.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if _, err := cli.ContainerStatPath(ctx, id, client.ContainerStatPathOptions{Path: dir}); !cerrdefs.IsNotFound(err) {
		t.Errorf("after Stop, %s: %v, want it gone", dir, err)
	}
}

// TestExistingContainerStops: a container that stops under a placed
// service leaves the deployment unhealthy, its invocations failing, and
// Stop still succeeds.
func TestExistingContainerStops(t *testing.T) {
	cli, img := pythonImage(t)
	cfg := testConfig()
	cfg.Process.Backoff = 10 * time.Millisecond
	d := newDriver(t, cfg)
	id, name := operator(t, cli, img.ID, true)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dep, err := d.Deploy(ctx, sandbox.Spec{Service: "orphaned", Digest: "sha256:0f", Dir: placedService(t), Entry: "main.py",
		Language: "python", Container: name, Limits: sandbox.Limits{Concurrency: 1, Timeout: 5 * time.Second}})
	if err != nil {
		t.Fatalf("Deploy: %v", err)
	}
	call(t, ctx, dep, map[string]any{"op": "info"}, nil)
	if _, err := cli.ContainerKill(ctx, id, client.ContainerKillOptions{Signal: "KILL"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		healthy, why := dep.(sandbox.HealthReporter).Health()
		if !healthy {
			t.Logf("unhealthy: %s", why)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the deployment is still healthy 20 s after its container was killed")
		}
		in, _ := json.Marshal(map[string]any{"message": map[string]any{"op": "info"}})
		short, c := context.WithTimeout(ctx, time.Second)
		exit, err := dep.Invoke(short, in)
		c()
		if err == nil && exit.Outcome == sandbox.OK {
			t.Fatalf("Invoke succeeded with the container killed: %+v", exit)
		}
	}
	if err := dep.Stop(ctx); err != nil {
		t.Errorf("Stop: %v", err)
	}
}
