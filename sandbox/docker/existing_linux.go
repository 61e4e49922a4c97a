package docker

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"golang.org/x/sys/unix"

	worker "github.com/andromeda-runner/andromeda/runtimes/go"
	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/sandbox/process"
	"github.com/andromeda-runner/andromeda/sandbox/process/lang"
)

// gateScript makes an exec service's process wait for one line on its
// standard input before it becomes the service (same process, same PID):
// the driver sends the line once the process limit is set.
const gateScript = `read -r _ && exec "$0" "$@"`

// defaultPath is the PATH of a container whose configuration sets none,
// as the engine's own default.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// placements are the services this process placed into each container,
// by container ID, so that two placements get apart directories and uids
// and the last one removed takes the directories the first one made.
var placements = struct {
	sync.Mutex
	by   map[string]*containerPlacements
	live map[*placedDeployment]struct{} // for Driver.Close
}{by: map[string]*containerPlacements{}, live: map[*placedDeployment]struct{}{}}

// containerPlacements are the services placed into one container.
type containerPlacements struct {
	uids map[int]bool
	dirs map[string]bool
	// created are the directories of ServicesDir's path that the first
	// placement made, outermost first; ancestor is the directory that held
	// the outermost, with its times before (orig) and after (after).
	created     []string
	ancestor    string
	orig, after dirTimes
}

// placedDeployment is a service placed into an existing container.
type placedDeployment struct {
	sandbox.Deployment // the pool of exec sessions
	d                  *Driver
	hc                 *hostContainer
	name               string // the container's name
	dir                string // the service's directory in it
	uid                int
	placement          sandbox.Placement

	stopOnce sync.Once
	stopErr  error
}

// placeInto deploys spec into the running container in: see the package
// documentation of existing containers in deployExisting's file.
func (d *Driver) placeInto(ctx context.Context, cli *client.Client, spec sandbox.Spec, in container.InspectResponse) (sandbox.Deployment, error) {
	name := strings.TrimPrefix(in.Name, "/")
	fail := func(err error) (sandbox.Deployment, error) {
		return nil, fmt.Errorf("deploy %s into container %s: %w", spec.Service, name, err)
	}
	mode := spec.Mode
	if mode == "" {
		mode = sandbox.ModeServer
	}
	if mode != sandbox.ModeServer && mode != sandbox.ModeCommand {
		return fail(fmt.Errorf("%w: mode %q", sandbox.ErrUnsupported, spec.Mode))
	}
	l := lang.Lookup(spec.Language)
	if l == nil || l.Exe != "" {
		return fail(fmt.Errorf("%w: language %q: an existing container runs %s services", sandbox.ErrUnsupported, spec.Language, lang.Names()))
	}
	if len(spec.Volumes) > 0 {
		return fail(fmt.Errorf("%w: volumes: an existing container's mounts are its own", sandbox.ErrUnsupported))
	}
	if _, err := l.CheckEntry(spec.Dir, spec.Entry); err != nil {
		return fail(err)
	}
	if err := checkNoDeps(l, spec.Dir); err != nil {
		return fail(err)
	}
	if in.HostConfig != nil && in.HostConfig.ReadonlyRootfs {
		return fail(errors.New("its root file system is read-only: the service's directory cannot be made there"))
	}
	onPath := func(dst string) bool {
		dst = path.Clean(dst)
		return dst == "/" || ServicesDir == dst || strings.HasPrefix(ServicesDir, dst+"/")
	}
	for _, m := range in.Mounts {
		if onPath(m.Destination) {
			return fail(fmt.Errorf("its mount at %s (%s %s) holds %s: the service's files would land in the operator's %s, outside the container", path.Clean(m.Destination), m.Type, m.Name+m.Source, ServicesDir, m.Type))
		}
	}
	if in.HostConfig != nil {
		for dst := range in.HostConfig.Tmpfs {
			if onPath(dst) {
				return fail(fmt.Errorf("its mount at %s (tmpfs) holds %s: the service's files would land on the operator's tmpfs", path.Clean(dst), ServicesDir))
			}
		}
	}
	hc, err := openHostContainer(in.ID, in.State.Pid)
	if err != nil {
		return fail(err)
	}
	ok := false
	defer func() {
		if !ok {
			hc.close()
		}
	}()
	pathEnv, env := containerEnv(in.Config)
	exe, err := findOnPath(ctx, cli, in.ID, pathEnv, l)
	if err != nil {
		return fail(err)
	}

	placements.Lock()
	cp := placements.by[in.ID]
	if cp == nil {
		cp = &containerPlacements{uids: map[int]bool{}, dirs: map[string]bool{}}
	}
	dirName, uid := cp.claim(hc, serviceDirName(spec.Service, spec.Digest), serviceUID(spec.Service, spec.Digest))
	dir := ServicesDir + "/" + dirName
	err = d.prepareDir(ctx, cli, hc, cp, spec, l, dir, uid)
	if err != nil {
		delete(cp.uids, uid)
		delete(cp.dirs, dirName)
	}
	if len(cp.dirs) > 0 {
		placements.by[in.ID] = cp
	}
	placements.Unlock()
	if err != nil {
		return fail(err)
	}
	dep := &placedDeployment{d: d, hc: hc, name: name, dir: dir, uid: uid,
		placement: sandbox.Placement{
			Kind: sandbox.PlacementExisting, Containers: []string{name}, Image: in.Image,
			Reason: fmt.Sprintf("placed into the existing container %s listed in the policy; memory and CPU are that container's", name),
		}}

	entry := dir + "/service/" + filepath.ToSlash(spec.Entry)
	argv := l.Argv(exe, entry)
	for i, a := range argv {
		if rest, ok := strings.CutPrefix(a, lang.RuntimeDir+"/"); ok {
			argv[i] = dir + "/runtime/" + rest
		}
	}
	pcfg := d.cfg.Process
	pids, workers := spec.Limits.Pids, spec.Limits.Concurrency
	if pids <= 0 {
		pids = pcfg.Pids
	}
	if workers <= 0 {
		workers = pcfg.Concurrency
	}
	files := pcfg.Files
	if files <= 0 {
		files = process.DefaultFiles
	}
	start := &execStart{
		cli: cli, c: hc, id: in.ID, name: name, uid: uid, argv: argv, dir: dir + "/service",
		env:   append(env, "PATH="+pathEnv, "HOME="+dir+"/home", "TMPDIR="+dir+"/home", "LANG=C.UTF-8"),
		nproc: uint64(max(pids, 1) * max(workers, 1)), nofile: uint64(files),
		timeout: max(pcfg.StartTimeout, 10*time.Second),
	}
	if l.Shim == nil { // the entry is the service itself: hold it until its limits are set
		start.gate = true
		start.argv = append([]string{"/bin/sh", "-c", gateScript}, argv...)
	}
	pool, err := process.NewPool(ctx, process.PoolConfig{
		Config: pcfg, Spec: spec,
		Module: worker.Module{ID: "main", Entry: entry},
		Start:  start.start,
	})
	if err != nil {
		if terr := dep.teardown(); terr != nil {
			err = fmt.Errorf("%w; then: %v", err, terr)
		}
		return nil, fmt.Errorf("%w (placed into container %s)", err, name) // NewPool's error names the deploy
	}
	dep.Deployment = pool
	placements.Lock()
	d.mu.Lock()
	closed := d.closed
	d.mu.Unlock()
	if !closed {
		placements.live[dep] = struct{}{}
	}
	placements.Unlock()
	if closed {
		_ = dep.Stop(context.WithoutCancel(ctx))
		return fail(errClosed)
	}
	ok = true
	d.cfg.Logger.Info("docker driver: placed into an existing container", "service", spec.Service, "container", name, "dir", dir, "uid", uid, "process_limit", start.nproc)
	return dep, nil
}

// claim picks the service's directory name and uid in the container: the
// first ones free from base and uid on (not placed by this process, no
// process of the container running as the uid).
func (cp *containerPlacements) claim(hc *hostContainer, base string, uid int) (string, int) {
	name := base
	for i := 2; cp.dirs[name]; i++ {
		name = fmt.Sprintf("%s-%d", base, i)
	}
	for cp.uids[uid] || len(hc.procsOf(uid)) > 0 {
		uid = FirstServiceUID + (uid-FirstServiceUID+1)%ServiceUIDs
	}
	cp.dirs[name], cp.uids[uid] = true, true
	return name, uid
}

// prepareDir copies the service's files and the shim into dir in the
// container, making ServicesDir first when it is missing; a leftover of a
// crashed node at dir is removed first, with the processes of its uid.
func (d *Driver) prepareDir(ctx context.Context, cli *client.Client, hc *hostContainer, cp *containerPlacements, spec sandbox.Spec, l *lang.Language, dir string, uid int) error {
	if fd, err := hc.openDir(dir + "/home"); err == nil {
		var st unix.Stat_t
		err = unix.Fstat(fd, &st)
		unix.Close(fd)
		if err == nil && st.Uid != 0 {
			_ = hc.killUID(int(st.Uid))
		}
	}
	if err := hc.removeAll(dir); err != nil {
		return fmt.Errorf("remove a leftover: %w", err)
	}
	// The directories of ServicesDir's path that are missing.
	ancestor, missing := "/", []string(nil)
	for p := ServicesDir; p != "/"; p = path.Dir(p) {
		fd, err := hc.openDir(p)
		if err == nil {
			unix.Close(fd)
			ancestor = p
			break
		}
		if !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("%s: %w (the path must be directories, not symbolic links)", p, err)
		}
		missing = append([]string{p}, missing...)
	}
	first := len(missing) > 0 && len(cp.created) == 0
	if first {
		t, err := hc.times(ancestor)
		if err != nil {
			return err
		}
		cp.ancestor, cp.orig = ancestor, t
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeServiceTar(pw, ancestor, missing, dir, spec.Dir, l, uid)) }()
	_, err := cli.CopyToContainer(ctx, hc.id, client.CopyToContainerOptions{DestinationPath: ancestor, Content: pr})
	pr.CloseWithError(errors.New("copy ended"))
	if err != nil {
		_ = hc.removeAll(dir)
		if first {
			cp.created = missing
			cp.removeCreated(hc)
		}
		return fmt.Errorf("copy the service into the container: %w", err)
	}
	if first {
		cp.created = missing
		if cp.after, err = hc.times(ancestor); err != nil {
			return err
		}
	}
	return nil
}

// writeServiceTar writes the tar, relative to ancestor, of the missing
// directories and dir: service/ (the files of src, root's, readable by
// all), runtime/ (l's shim) and home/ (uid's alone).
func writeServiceTar(w io.Writer, ancestor string, missing []string, dir, src string, l *lang.Language, uid int) error {
	tw := tar.NewWriter(w)
	now := time.Now()
	rel := func(p string) string { return strings.TrimPrefix(strings.TrimPrefix(p, ancestor), "/") }
	hdr := func(name string, typ byte, mode int64) *tar.Header {
		return &tar.Header{Name: rel(name), Typeflag: typ, Mode: mode, ModTime: now, Format: tar.FormatPAX}
	}
	for _, m := range missing {
		if err := tw.WriteHeader(hdr(m+"/", tar.TypeDir, 0o755)); err != nil {
			return err
		}
	}
	for _, h := range []*tar.Header{hdr(dir+"/", tar.TypeDir, 0o755), hdr(dir+"/runtime/", tar.TypeDir, 0o755)} {
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
	}
	home := hdr(dir+"/home/", tar.TypeDir, 0o700)
	home.Uid, home.Gid = uid, uid
	if err := tw.WriteHeader(home); err != nil {
		return err
	}
	if l.Shim != nil {
		h := hdr(dir+"/runtime/"+l.Shim.File, tar.TypeReg, 0o644)
		h.Size = int64(len(l.Shim.Src))
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := tw.Write(l.Shim.Src); err != nil {
			return err
		}
	}
	err := filepath.WalkDir(src, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		r, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		name := dir + "/service"
		if r != "." {
			name += "/" + filepath.ToSlash(r)
		}
		fi, err := e.Info()
		if err != nil {
			return err
		}
		switch {
		case fi.IsDir():
			return tw.WriteHeader(hdr(name+"/", tar.TypeDir, 0o755))
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			h := hdr(name, tar.TypeSymlink, 0o777)
			h.Linkname = target
			return tw.WriteHeader(h)
		case fi.Mode().IsRegular():
			mode := int64(0o644)
			if fi.Mode().Perm()&0o111 != 0 {
				mode = 0o755
			}
			h := hdr(name, tar.TypeReg, mode)
			h.Size = fi.Size()
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.CopyN(tw, f, fi.Size())
			return err
		}
		return nil // sockets, devices: not a service's
	})
	if err != nil {
		return fmt.Errorf("service files: %w", err)
	}
	return tw.Close()
}

// removeCreated removes the directories the first placement made, when
// empty, and gives their ancestor back its times when nothing else
// changed it since.
func (cp *containerPlacements) removeCreated(hc *hostContainer) {
	if len(cp.created) == 0 {
		return
	}
	t, err := hc.times(cp.ancestor)
	untouched := err == nil && t.mtime == cp.after.mtime
	for i := len(cp.created) - 1; i >= 0; i-- {
		if !hc.rmdir(cp.created[i]) {
			return
		}
	}
	cp.created = nil
	if untouched {
		_ = hc.setTimes(cp.ancestor, cp.orig)
	}
}

// containerEnv is the container's PATH (the engine's default when it sets
// none) and its other variables emptied: an exec session inherits the
// container's environment, whose values are the operator's, not the
// service's.
func containerEnv(cfg *container.Config) (string, []string) {
	pathEnv := defaultPath
	var env []string
	if cfg == nil {
		return pathEnv, nil
	}
	for _, kv := range cfg.Env {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "PATH":
			pathEnv = v
		case "HOME", "TMPDIR", "LANG":
		default:
			env = append(env, k+"=")
		}
	}
	return pathEnv, env
}

// findOnPath finds l's interpreter on the container's PATH (its path in
// the container), or checks that the container has /bin/sh for an exec
// service's gate.
func findOnPath(ctx context.Context, cli *client.Client, id, pathEnv string, l *lang.Language) (string, error) {
	name, ok := interpreters[l.Name]
	if !ok {
		if _, err := cli.ContainerStatPath(ctx, id, client.ContainerStatPathOptions{Path: "/bin/sh"}); err != nil {
			return "", fmt.Errorf("%w: an exec service needs /bin/sh in the container, which holds it until its process limit is set: %v", sandbox.ErrUnsupported, err)
		}
		return "", nil
	}
	for _, dir := range filepath.SplitList(pathEnv) {
		if !path.IsAbs(dir) {
			continue
		}
		p := path.Join(dir, name)
		st, err := cli.ContainerStatPath(ctx, id, client.ContainerStatPathOptions{Path: p})
		if err == nil && !st.Stat.Mode.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: language %s: the container has no %s on its PATH (%s)", sandbox.ErrUnsupported, l.Name, name, pathEnv)
}

// Placement says the service runs in the existing container, and that its
// memory and CPU are that container's.
func (p *placedDeployment) Placement() sandbox.Placement { return p.placement }

// Stop stops the workers (gracefully within ctx), then kills whatever of
// the service's uid still runs in the container and removes the service's
// directory, and the directories the first placement made once the last
// service placed by this node is removed: the container is left as it
// was. Safe to call more than once.
func (p *placedDeployment) Stop(ctx context.Context) error {
	p.stopOnce.Do(func() {
		err := p.Deployment.Stop(ctx)
		p.stopErr = errors.Join(err, p.teardown())
	})
	return p.stopErr
}

// Test runs the service's self-test through the pool.
func (p *placedDeployment) Test(ctx context.Context) (bool, error) {
	if t, ok := p.Deployment.(sandbox.Tester); ok {
		return t.Test(ctx)
	}
	return false, nil
}

// Health is the pool's health.
func (p *placedDeployment) Health() (bool, string) {
	if h, ok := p.Deployment.(sandbox.HealthReporter); ok {
		return h.Health()
	}
	return true, ""
}

// WorkersStarted counts the workers the deployment started.
func (p *placedDeployment) WorkersStarted() int {
	if w, ok := p.Deployment.(interface{ WorkersStarted() int }); ok {
		return w.WorkersStarted()
	}
	return 0
}

// closePlaced stops, without a grace period, the services d placed into
// existing containers and still running (Driver.Close).
func (d *Driver) closePlaced() error {
	placements.Lock()
	var deps []*placedDeployment
	for dep := range placements.live {
		if dep.d == d {
			deps = append(deps, dep)
		}
	}
	placements.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // no grace
	var errs []error
	for _, dep := range deps {
		if err := dep.Stop(ctx); err != nil && !errors.Is(err, context.Canceled) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// teardown kills the service's processes in the container and removes
// its directory, the directories the first placement made with the last,
// and releases the container's pidfd.
func (p *placedDeployment) teardown() error {
	placements.Lock()
	defer placements.Unlock()
	defer p.hc.close()
	delete(placements.live, p)
	var errs []error
	if err := p.hc.killUID(p.uid); err != nil {
		errs = append(errs, err)
	}
	switch err := p.hc.removeAll(p.dir); {
	case errors.Is(err, errStopped):
		// Nothing runs there any more; the files stay until the service
		// is placed into the container again, which removes them first.
		p.d.cfg.Logger.Warn("docker driver: the container of a placed service stopped; its directory stays", "container", p.name, "dir", p.dir)
	case err != nil:
		errs = append(errs, err)
	}
	if cp := placements.by[p.hc.id]; cp != nil {
		delete(cp.uids, p.uid)
		delete(cp.dirs, path.Base(p.dir))
		if len(cp.dirs) == 0 {
			cp.removeCreated(p.hc)
			delete(placements.by, p.hc.id)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove the service from container %s: %w", p.name, err)
	}
	return nil
}
