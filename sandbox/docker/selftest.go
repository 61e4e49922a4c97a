package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/andromeda-runner/andromeda/sandbox"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
)

// SelfTest is what the self-test found: the details `andromeda` shows on
// demand for the docker driver.
type SelfTest struct {
	Host          string        `json:"host"`                    // the engine's address
	Version       string        `json:"version"`                 // the engine's version
	APIVersion    string        `json:"api_version"`             // the API version negotiated
	StorageDriver string        `json:"storage_driver"`          // overlay2, fuse-overlayfs, ...
	CgroupVersion string        `json:"cgroup_version"`          // "1" or "2"
	CgroupDriver  string        `json:"cgroup_driver"`           // cgroupfs or systemd
	Seccomp       bool          `json:"seccomp"`                 // the engine applies its default seccomp profile
	UserNS        bool          `json:"userns"`                  // the engine remaps users (userns-remap)
	Transport     string        `json:"transport"`               // TransportRelay or TransportAttach
	TransportWhy  string        `json:"transport_why,omitempty"` // why attach, when relay was not available
	Image         string        `json:"image"`                   // the image of the test container, by ID
	Container     time.Duration `json:"container_ns"`            // how long creating and removing it took
}

// selfTestRef is the local tag of the self-test's image: an empty root
// file system the driver imports when the engine holds no such image.
const selfTestRef = "andromeda/selftest:empty-1"

// SelfTest checks the engine: it is reachable, its API version is one the
// client speaks (negotiated), its version, storage driver and security
// options, and a container with the driver's hardening (read-only root,
// tmpfs, no capabilities, limits, no network) can be created and removed.
// The container's image is an empty one the driver imports (labelled
// andromeda.role=selftest) unless the engine has it already. The error
// says which step failed and why.
func (d *Driver) SelfTest(ctx context.Context) (SelfTest, error) {
	cli, err := d.ready()
	if err != nil {
		return SelfTest{}, err
	}
	st := SelfTest{Host: cli.DaemonHost()}
	ping, err := cli.Ping(ctx, pingOptions)
	if err != nil {
		return st, fmt.Errorf("%w at %s unreachable: %v", ErrEngine, st.Host, err)
	}
	st.APIVersion = cli.ClientVersion()
	if ping.OSType != "" && ping.OSType != "linux" {
		return st, fmt.Errorf("%w at %s runs %s containers, want linux", ErrEngine, st.Host, ping.OSType)
	}
	v, err := cli.ServerVersion(ctx, client.ServerVersionOptions{})
	if err != nil {
		return st, fmt.Errorf("%w at %s: version: %v", ErrEngine, st.Host, err)
	}
	st.Version = v.Version
	info, err := cli.Info(ctx, client.InfoOptions{})
	if err != nil {
		return st, fmt.Errorf("%w at %s: info: %v", ErrEngine, st.Host, err)
	}
	st.StorageDriver = info.Info.Driver
	st.CgroupVersion, st.CgroupDriver = info.Info.CgroupVersion, info.Info.CgroupDriver
	for _, o := range info.Info.SecurityOptions {
		st.Seccomp = st.Seccomp || strings.Contains(o, "name=seccomp")
		st.UserNS = st.UserNS || strings.Contains(o, "name=userns")
	}
	id, err := d.selfTestImage(ctx, cli)
	if err != nil {
		return st, fmt.Errorf("%w at %s: self-test image: %v", ErrEngine, st.Host, err)
	}
	st.Image = id
	start := time.Now()
	cs := containerSpec{
		name:   d.newName("selftest"),
		image:  id,
		argv:   []string{"/andromeda-selftest"},
		labels: d.labels(RoleSelfTest, "selftest", "", ""),
		limits: d.limits(sandbox.Limits{}),
	}
	defer d.forget(cs.name)
	created, err := cli.ContainerCreate(ctx, d.createOptions(cs))
	if err != nil {
		return st, fmt.Errorf("%w at %s: create a container with the driver's settings: %v", ErrEngine, st.Host, err)
	}
	if _, err := cli.ContainerRemove(context.WithoutCancel(ctx), created.ID, client.ContainerRemoveOptions{Force: true}); err != nil {
		return st, fmt.Errorf("%w at %s: remove the self-test container %s: %v", ErrEngine, st.Host, cs.name, err)
	}
	st.Container = time.Since(start)
	tr, why := d.transport()
	if tr == TransportAttach && d.cfg.Transport == "" && why != nil {
		st.TransportWhy = why.Error()
	}
	if _, err := d.relay(); err != nil {
		return st, err // Config.Transport relay, unavailable
	}
	st.Transport = tr
	return st, nil
}

// selfTestImage returns the ID of the self-test's empty image, importing
// it when the engine does not have it.
func (d *Driver) selfTestImage(ctx context.Context, cli *client.Client) (string, error) {
	img, err := cli.ImageInspect(ctx, selfTestRef)
	if err == nil {
		return img.ID, nil
	}
	if !cerrdefs.IsNotFound(err) {
		return "", err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0)
	for _, dir := range []string{"tmp/", "service/", "runtime/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: 0o755, ModTime: epoch}); err != nil {
			return "", err
		}
	}
	if err := tw.Close(); err != nil {
		return "", err
	}
	rc, err := cli.ImageImport(ctx, client.ImageImportSource{Source: &buf, SourceName: "-"}, selfTestRef, client.ImageImportOptions{
		Message: "andromeda docker driver self-test: an empty root file system",
		Changes: []string{"LABEL " + LabelRole + "=" + RoleSelfTest + " " + LabelNode + "=" + quoteLabel(d.cfg.Node)},
	})
	if err != nil {
		return "", err
	}
	out, err := io.ReadAll(io.LimitReader(rc, 1<<20))
	rc.Close()
	if err != nil {
		return "", err
	}
	if bytes.Contains(out, []byte(`"error"`)) {
		return "", fmt.Errorf("import: %s", bytes.TrimSpace(out))
	}
	img, err = cli.ImageInspect(ctx, selfTestRef)
	if err != nil {
		return "", fmt.Errorf("import: %w", err)
	}
	d.cfg.Logger.Info("docker driver: imported the self-test image", "ref", selfTestRef, "id", img.ID)
	return img.ID, nil
}

// quoteLabel quotes a label value for a Dockerfile LABEL instruction.
func quoteLabel(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}
