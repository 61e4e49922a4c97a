package docker

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/client"

	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/sandbox/jail"
	"github.com/andromeda-runner/andromeda/sandbox/process"
)

// containerSpec is one container to create.
type containerSpec struct {
	name       string
	image      string   // by ID
	argv       []string // the command; nil: the image's
	entrypoint []string // nil: the image's; set to run argv alone
	imageArgv  []string // the image's entrypoint and command, for the relay
	workDir    string   // empty: the image's
	labels     map[string]string
	mounts     []mount.Mount
	limits     limits
	network    bool // the engine's default bridge; false: no network
	// onRelease is called once the container is removed, also when its
	// start failed after it was created; nil: nothing.
	onRelease func()
}

// limits are a container's resource limits, resolved.
type limits struct {
	memory int64
	cpu    float64
	pids   int64
}

// limits are a container's limits: spec's, the configuration's where spec
// leaves them zero.
func (d *Driver) limits(spec sandbox.Limits) limits {
	l := limits{memory: spec.Memory, cpu: spec.CPU, pids: int64(spec.Pids)}
	if l.memory <= 0 {
		l.memory = d.cfg.Process.Memory
	}
	if l.pids <= 0 {
		l.pids = int64(d.cfg.Process.Pids)
	}
	if l.cpu <= 0 {
		l.cpu = d.cfg.Process.CPU
	}
	return l
}

// labels are the labels of a container or image the driver makes.
func (d *Driver) labels(role, service, version, run string) map[string]string {
	l := map[string]string{
		LabelNode:     d.cfg.Node,
		LabelRole:     role,
		LabelService:  service,
		LabelVersion:  version,
		LabelInstance: d.instance,
	}
	if run != "" {
		l[LabelRun] = run
	}
	return l
}

// env is what a container's environment gets from the driver, on top of
// the image's own: nothing of the node's.
var env = []string{"HOME=/tmp", "TMPDIR=/tmp", "LANG=C.UTF-8"}

// createOptions are the engine's options for cs: a container whose
// standard streams are attached, with the driver's hardening.
func (d *Driver) createOptions(cs containerSpec) client.ContainerCreateOptions {
	return d.createOptionsFor(cs, true)
}

// createOptionsFor are createOptions, with standard input attached or not.
func (d *Driver) createOptionsFor(cs containerSpec, stdin bool) client.ContainerCreateOptions {
	pids := cs.limits.pids
	files := int64(d.cfg.Process.Files)
	if files <= 0 {
		files = process.DefaultFiles
	}
	netMode := container.NetworkMode("none")
	if cs.network {
		netMode = "bridge"
	}
	return client.ContainerCreateOptions{
		Name: cs.name,
		Config: &container.Config{
			Image:        cs.image,
			Cmd:          cs.argv,
			Entrypoint:   cs.entrypoint,
			WorkingDir:   cs.workDir,
			User:         d.cfg.User,
			Env:          env,
			Hostname:     "sandbox",
			Labels:       cs.labels,
			AttachStdin:  stdin,
			AttachStdout: true,
			AttachStderr: true,
			OpenStdin:    stdin,
			StdinOnce:    stdin,
		},
		HostConfig: &container.HostConfig{
			NetworkMode:    netMode,
			ReadonlyRootfs: true,
			Tmpfs:          map[string]string{"/tmp": "rw,nosuid,nodev,mode=1777,size=" + strconv.FormatInt(d.cfg.Scratch, 10)},
			Privileged:     false,
			CapDrop:        []string{"ALL"},
			SecurityOpt:    []string{"no-new-privileges"},
			IpcMode:        container.IPCModePrivate,
			AutoRemove:     false,
			Mounts:         cs.mounts,
			// The protocol runs over the attached streams: nothing is
			// kept by a log driver.
			LogConfig: container.LogConfig{Type: "none"},
			Resources: container.Resources{
				Memory:     cs.limits.memory,
				MemorySwap: cs.limits.memory, // no swap: exceeding memory is oom
				NanoCPUs:   int64(cs.limits.cpu * 1e9),
				PidsLimit:  &pids,
				Ulimits: []*container.Ulimit{
					{Name: "nofile", Soft: files, Hard: files},
					{Name: "core", Soft: 0, Hard: 0},
				},
			},
		},
	}
}

var _ process.Proc = (*containerProc)(nil)

// containerProc is one started container as a worker pool sees it: its
// attached standard streams (demultiplexed into pipes), its end, and its
// cgroup's usage.
type containerProc struct {
	d      *Driver
	cli    *client.Client
	id     string
	name   string
	conn   client.HijackedResponse
	stdin  io.WriteCloser
	stdout io.ReadCloser
	stderr *os.File
	wait   client.ContainerWaitResult
	cg     *cgroup
	demux  chan struct{} // closed when the attached stream ended

	killed   atomic.Bool
	thrash   atomic.Pointer[string] // why the driver killed it as out of memory
	waitOnce sync.Once
	state    process.ProcState
	rmOnce   sync.Once
	rmErr    error

	onRelease func()                  // called once the container is removed; nil: nothing
	stopBy    func() time.Time        // the latest end of engine calls once its deployment stops (zero: none); nil: none
	early     *container.WaitResponse // the container ended before its relay connected

	stats  engineStats // its usage from the engine, without cgroup or pid
	pid    int         // its first process, on the host
	hasNet bool        // it has a network: its counters are read
	netMu  sync.Mutex  // guards rx, tx
	rx, tx int64       // its network counters, as last read
}

// create creates the container of cs. The engine's call is not cut short
// by ctx, which would leave a container the engine made after it saw the
// cancel: when ctx ends first, create returns its error at once and the
// container, once made, is removed in the background, then gone is
// called. gone is called too when the engine made none.
func (d *Driver) create(ctx context.Context, cli *client.Client, cs containerSpec, stdin bool, gone func()) (client.ContainerCreateResult, error) {
	type made struct {
		r   client.ContainerCreateResult
		err error
	}
	ch := make(chan made, 1)
	opts := d.createOptionsFor(cs, stdin)
	d.inBackground(func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 60*time.Second)
		defer cancel()
		r, err := cli.ContainerCreate(cctx, opts)
		ch <- made{r, err}
	})
	select {
	case m := <-ch:
		if m.err != nil {
			gone()
		}
		return m.r, m.err
	case <-ctx.Done():
	}
	d.cutShort(cs.name, func() {
		m := <-ch
		if m.err != nil {
			gone()
			return
		}
		rctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := cli.ContainerRemove(rctx, m.r.ID, client.ContainerRemoveOptions{Force: true}); err == nil || cerrdefs.IsNotFound(err) {
			gone()
		}
	})
	return client.ContainerCreateResult{}, ctx.Err()
}

// startContainer creates, attaches and starts the container of cs, with
// the relay transport when the driver uses it. A failure removes what it
// made: at once, or in the background when ctx ended the start (Close
// waits for it), and then calls cs.onRelease, whatever the failure.
func (d *Driver) startContainer(ctx context.Context, cs containerSpec) (p *containerProc, err error) {
	gone := func() {
		d.forget(cs.name)
		if cs.onRelease != nil {
			cs.onRelease()
		}
	}
	cli, err := d.ready()
	if err != nil {
		gone()
		return nil, err
	}
	rf, err := d.relay()
	if err != nil {
		gone()
		return nil, err
	}
	var ln *net.UnixListener
	if rf != nil {
		if ln, err = d.relayListen(); err != nil {
			gone()
			return nil, err
		}
		defer ln.Close()
		argv := append(slices.Clone(cs.entrypoint), cs.argv...)
		if len(cs.entrypoint) == 0 {
			argv = cs.imageArgv
		}
		cs.mounts = append(slices.Clone(cs.mounts), rf.mounts...)
		cs.mounts = append(cs.mounts, roBind(ln.Addr().String(), relaySocket))
		cs.entrypoint = append(append(slices.Clone(rf.argv), relayArg, relaySocket, "--"), argv...)
		cs.argv = nil
	}
	created, err := d.create(ctx, cli, cs, rf == nil, gone)
	if err != nil {
		return nil, fmt.Errorf("create container: %w", err)
	}
	p = &containerProc{d: d, cli: cli, id: created.ID, name: cs.name, demux: make(chan struct{}), hasNet: cs.network, onRelease: cs.onRelease}
	defer func() {
		switch {
		case err == nil:
		case ctx.Err() != nil:
			// The caller's deadline cut the start short and it is owed
			// its answer now: the container is removed in the
			// background (a second on a loaded engine).
			d.cutShort(cs.name, func() { _ = p.Release(0) })
		default:
			_ = p.Release(0)
		}
	}()
	att, err := cli.ContainerAttach(ctx, p.id, client.ContainerAttachOptions{Stream: true, Stdin: rf == nil, Stdout: true, Stderr: true})
	if err != nil {
		close(p.demux)
		return p, fmt.Errorf("attach container %s: %w", cs.name, err)
	}
	p.conn = att.HijackedResponse
	outR, outW, err := os.Pipe()
	if err != nil {
		close(p.demux)
		return p, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		close(p.demux)
		return p, err
	}
	p.stderr = errR
	stdout := io.Writer(&sink{w: outW})
	if rf != nil {
		// The worker's output is the socket; the container's own holds
		// nothing but what the relay wrote before it executed the worker.
		stdout = &sink{w: errW}
		outW.Close()
		outR.Close()
	} else {
		p.stdout = outR
		p.stdin = &stdinConn{conn: p.conn}
	}
	go func() {
		defer close(p.demux)
		_, _ = stdcopy.StdCopy(stdout, &sink{w: errW}, p.conn.Reader)
		if rf == nil {
			outW.Close()
		}
		errW.Close()
	}()
	if _, err := cli.ContainerStart(ctx, p.id, client.ContainerStartOptions{}); err != nil {
		return p, fmt.Errorf("start container %s: %w", cs.name, err)
	}
	p.wait = cli.ContainerWait(context.WithoutCancel(ctx), p.id, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
	if in, err := cli.ContainerInspect(ctx, p.id, client.ContainerInspectOptions{}); err == nil && in.Container.State != nil && in.Container.State.Pid > 0 {
		p.pid = in.Container.State.Pid
		if p.cg = findCgroup(p.pid); p.cg != nil {
			p.cg.watchOOM(p.demux)
			jail.WatchThrash(cmp.Or(p.cg.memory, p.cg.unified), p.d.cfg.Process.ThrashAfter, func(reason string) {
				p.thrash.Store(&reason)
				p.Kill()
			}, p.demux)
		}
	}
	if rf != nil {
		if err := p.accept(ctx, ln); err != nil {
			return p, err
		}
	}
	return p, nil
}

// Stdin is the container's standard input: the attached connection.
func (p *containerProc) Stdin() io.WriteCloser { return p.stdin }

// Stdout carries the container's standard output.
func (p *containerProc) Stdout() io.ReadCloser { return p.stdout }

// Stderr carries the container's standard error.
func (p *containerProc) Stderr() io.ReadCloser { return p.stderr }

// Wait waits for the container to stop and says how it ended: its exit
// code, or, above 128, the signal that killed its first process (the
// engine reports a signal n as 128+n), and whether the kernel killed it
// for memory.
func (p *containerProc) Wait() process.ProcState {
	p.waitOnce.Do(func() {
		var code int64
		if p.early != nil {
			ch := make(chan container.WaitResponse, 1)
			ch <- *p.early
			p.wait.Result = ch
		}
		select {
		case r := <-p.wait.Result:
			code = r.StatusCode
			if r.Error != nil && r.Error.Message != "" {
				p.state = process.ProcState{Err: fmt.Errorf("%w at %s: wait for container %s: %s", ErrEngine, p.d.host(), p.name, r.Error.Message), RunnerLost: true}
				return
			}
		case err := <-p.wait.Error:
			p.state = process.ProcState{Err: fmt.Errorf("%w at %s: wait for container %s: %w", ErrEngine, p.d.host(), p.name, err), RunnerLost: true}
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		in, err := p.cli.ContainerInspect(ctx, p.id, client.ContainerInspectOptions{})
		if err == nil && in.Container.State != nil {
			s := in.Container.State
			code = int64(s.ExitCode)
			p.state.OOMKilled = s.OOMKilled
		}
		if p.cg != nil && p.cg.oomKills() > 0 {
			p.state.OOMKilled = true
		}
		if r := p.thrash.Load(); r != nil {
			p.state.OOMKilled, p.state.OOMReason = true, *r
		}
		if !p.state.OOMKilled && code == 128+int64(syscall.SIGKILL) && !p.killed.Load() {
			// Killed, not by the driver: the engine may learn of an OOM
			// kill after the exit.
			time.Sleep(100 * time.Millisecond)
			if in, err := p.cli.ContainerInspect(ctx, p.id, client.ContainerInspectOptions{}); err == nil && in.Container.State != nil {
				p.state.OOMKilled = in.Container.State.OOMKilled
			}
		}
		switch {
		case code > 128 && code < 128+65:
			p.state.Signal = syscall.Signal(code - 128)
		default:
			p.state.Exited, p.state.Code = true, int(code)
		}
	})
	return p.state
}

// Kill kills the container (SIGKILL to every process in it). Safe at any
// time and more than once.
func (p *containerProc) Kill() {
	p.killed.Store(true)
	ctx, cancel := p.opContext(10 * time.Second)
	defer cancel()
	_, _ = p.cli.ContainerKill(ctx, p.id, client.ContainerKillOptions{Signal: "KILL"})
}

// CPUTime is the container's CPU time from its cgroup (else from the
// engine's stats); -1 when unknown.
func (p *containerProc) CPUTime() time.Duration {
	if p.cg == nil {
		if s := p.sample(); s.ok {
			return s.cpu
		}
		return -1
	}
	return p.cg.cpuTime()
}

// PeakMemory is the container's memory high-water mark from its cgroup
// (else from the engine's stats: its high-water mark on cgroup v1, its
// usage when sampled on v2); 0 when unknown.
func (p *containerProc) PeakMemory() int64 {
	// The pool reads usage after each invocation, while the container
	// still runs: the network counters are read then too.
	if p.hasNet {
		p.sampleNetwork()
	}
	if p.cg == nil {
		return p.sample().peak
	}
	return p.cg.peakMemory()
}

// OOMKills is the number of processes of the container the kernel killed
// for memory; -1 when unknown. After the container ended, the engine's
// State.OOMKilled (process.ProcState.OOMKilled) is what counts.
func (p *containerProc) OOMKills() int {
	if p.cg == nil {
		return -1
	}
	return p.cg.oomKills()
}

// Release removes the container (forced) and closes its streams; wait is
// how long to wait for the attached stream to end. Safe more than once.
func (p *containerProc) Release(wait time.Duration) error {
	p.rmOnce.Do(func() {
		ctx, cancel := p.opContext(30 * time.Second)
		defer cancel()
		_, err := p.cli.ContainerRemove(ctx, p.id, client.ContainerRemoveOptions{Force: true})
		if err != nil && !cerrdefs.IsNotFound(err) {
			p.rmErr = fmt.Errorf("remove container %s: %w", p.name, err)
		} else {
			p.d.forget(p.name)
			if p.onRelease != nil {
				p.onRelease()
			}
		}
		if p.conn.Conn != nil {
			select {
			case <-p.demux:
			case <-time.After(wait):
			}
			p.conn.Close()
		}
		<-p.demux
		if p.cg != nil {
			p.cg.close()
		}
		if p.stdout != nil {
			p.stdout.Close()
			p.stderr.Close()
		}
	})
	return p.rmErr
}

// String names the container, for the errors of Stop.
func (p *containerProc) String() string { return "container " + p.name }

// opContext bounds an engine call of the container by limit and, once its
// deployment stops, by the end of Stop's context (stopBy).
func (p *containerProc) opContext(limit time.Duration) (context.Context, context.CancelFunc) {
	by := time.Now().Add(limit)
	if p.stopBy != nil {
		if s := p.stopBy(); !s.IsZero() && s.Before(by) {
			by = s
		}
	}
	return context.WithDeadline(context.Background(), by)
}

// stdinConn is the container's standard input: writes go to the attached
// connection, Close half-closes it (the engine then closes the
// container's standard input), and writes can be bounded by a deadline.
type stdinConn struct {
	conn client.HijackedResponse
	once sync.Once
}

func (s *stdinConn) Write(b []byte) (int, error) { return s.conn.Conn.Write(b) }

func (s *stdinConn) Close() error {
	var err error
	s.once.Do(func() { err = s.conn.CloseWrite() })
	return err
}

// SetWriteDeadline bounds the writes in flight and to come.
func (s *stdinConn) SetWriteDeadline(t time.Time) error { return s.conn.Conn.SetWriteDeadline(t) }

// sink writes to w until a write fails (its reader closed it), then
// discards, so that one stream closed early does not stop the other.
type sink struct {
	w    io.Writer
	dead bool
}

func (s *sink) Write(b []byte) (int, error) {
	if !s.dead {
		if _, err := s.w.Write(b); err != nil {
			s.dead = true
		}
	}
	return len(b), nil
}
