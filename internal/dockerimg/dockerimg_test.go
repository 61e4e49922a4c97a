package dockerimg_test

import (
	"bytes"
	"context"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/andromeda-runner/andromeda/internal/dockerimg"
	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
)

// helloPkg is the exec test image's program.
const helloPkg = "./testdata/hello"

// box is how run makes a container: of image ref, as user ("": the
// image's), with binds (host:container[:ro]) mounted.
type box struct {
	ref   string
	user  string
	binds []string
}

// run runs cmd (nil: the image's own) in a new container as b says, to
// its end, and returns its exit code, standard output and standard error.
// The container is removed when t ends; the image is kept.
func run(t *testing.T, cli *client.Client, b box, cmd ...string) (int64, string, string) {
	t.Helper()
	ref := b.ref
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	created, err := cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config: &container.Config{
			Image:  ref,
			Cmd:    cmd,
			User:   b.user,
			Labels: map[string]string{"andromeda.test": "dockerimg"},
		},
		HostConfig: &container.HostConfig{NetworkMode: "none", Binds: b.binds},
	})
	if err != nil {
		t.Fatalf("create a container of %s: %v", ref, err)
	}
	t.Cleanup(func() {
		_, err := cli.ContainerRemove(context.Background(), created.ID, client.ContainerRemoveOptions{Force: true})
		if err != nil {
			t.Errorf("remove container %s: %v", created.ID, err)
		}
	})
	if _, err := cli.ContainerStart(ctx, created.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatalf("start a container of %s: %v", ref, err)
	}
	wait := cli.ContainerWait(ctx, created.ID, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
	var code int64
	select {
	case res := <-wait.Result:
		code = res.StatusCode
	case err := <-wait.Error:
		t.Fatalf("wait for the container of %s: %v", ref, err)
	}
	logs, err := cli.ContainerLogs(ctx, created.ID, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		t.Fatalf("logs of the container of %s: %v", ref, err)
	}
	defer logs.Close()
	var stdout, stderr bytes.Buffer
	if _, err := stdcopy.StdCopy(&stdout, &stderr, logs); err != nil {
		t.Fatalf("read the logs of the container of %s: %v", ref, err)
	}
	return code, stdout.String(), stderr.String()
}

// checkImage checks img is tagged in dockerimg's repository for kind and
// labelled with it.
func checkImage(t *testing.T, cli *client.Client, img dockerimg.Image, kind string) {
	t.Helper()
	if !strings.HasPrefix(img.ID, "sha256:") {
		t.Errorf("%s image ID %q: want sha256:...", kind, img.ID)
	}
	if want := dockerimg.Repo + "/" + kind + ":"; !strings.HasPrefix(img.Ref, want) {
		t.Errorf("%s image ref %q: want %s<hash>", kind, img.Ref, want)
	}
	res, err := cli.ImageInspect(context.Background(), img.Ref)
	if err != nil {
		t.Fatalf("inspect %s: %v", img.Ref, err)
	}
	if res.ID != img.ID {
		t.Errorf("%s is %s, want %s", img.Ref, res.ID, img.ID)
	}
	labels := map[string]string{}
	if res.Config != nil {
		labels = res.Config.Labels
	}
	if labels[dockerimg.LabelKind] != kind {
		t.Errorf("%s label %s = %q, want %q", img.Ref, dockerimg.LabelKind, labels[dockerimg.LabelKind], kind)
	}
	if tag := img.Ref[strings.LastIndex(img.Ref, ":")+1:]; labels[dockerimg.LabelContent] != tag {
		t.Errorf("%s label %s = %q, want its tag %q", img.Ref, dockerimg.LabelContent, labels[dockerimg.LabelContent], tag)
	}
}

func TestExec(t *testing.T) {
	cli := dockerimg.Client(t)
	ctx := context.Background()
	img, err := dockerimg.Exec(ctx, cli, "hello", helloPkg)
	if err != nil {
		t.Fatal(err)
	}
	checkImage(t, cli, img, "exec")
	code, out, errOut := run(t, cli, box{ref: img.Ref}, "/bin/hello", "from", "scratch")
	if code != 0 || out != "hello from scratch\n" {
		t.Fatalf("/bin/hello from scratch: exit %d, stdout %q, stderr %q; want exit 0 and %q", code, out, errOut, "hello from scratch\n")
	}
	// The image's own command is the binary; it runs as nobody too.
	if code, out, errOut := run(t, cli, box{ref: img.Ref, user: "65534:65534"}); code != 0 || out != "hello \n" {
		t.Fatalf("the image's command: exit %d, stdout %q, stderr %q; want exit 0 and %q", code, out, errOut, "hello \n")
	}

	// The same input is found again; the same binary under another name
	// is another image.
	again, err := dockerimg.Exec(ctx, cli, "hello", helloPkg)
	if err != nil {
		t.Fatal(err)
	}
	if again != img {
		t.Errorf("second Exec = %+v, want the first %+v", again, img)
	}
	other, err := dockerimg.Exec(ctx, cli, "hello2", helloPkg)
	if err != nil {
		t.Fatal(err)
	}
	if other.Ref == img.Ref || other.ID == img.ID {
		t.Errorf("Exec under another name = %+v, want another image than %+v", other, img)
	}
	if code, out, _ := run(t, cli, box{ref: other.Ref}, "/bin/hello2", "again"); code != 0 || out != "hello again\n" {
		t.Errorf("/bin/hello2 again: exit %d, stdout %q", code, out)
	}
}

func TestExecBadInput(t *testing.T) {
	cli := dockerimg.Client(t)
	for _, tc := range []struct{ name, pkg, want string }{
		{"", helloPkg, `name ""`},
		{"a/b", helloPkg, `name "a/b"`},
		{"..", helloPkg, `name ".."`},
		{"-x", helloPkg, `name "-x"`},
		{"ok", "", "pkg is empty"},
		{"ok", "./testdata/no-such-package", "go build ./testdata/no-such-package"},
	} {
		_, err := dockerimg.Exec(context.Background(), cli, tc.name, tc.pkg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Exec(%q, %q) = %v, want an error containing %q", tc.name, tc.pkg, err, tc.want)
		}
	}
}

func TestEmpty(t *testing.T) {
	cli := dockerimg.Client(t)
	ctx := context.Background()
	img, err := dockerimg.Empty(ctx, cli)
	if err != nil {
		t.Fatal(err)
	}
	checkImage(t, cli, img, "empty")
	again, err := dockerimg.Empty(ctx, cli)
	if err != nil {
		t.Fatal(err)
	}
	if again != img {
		t.Errorf("second Empty = %+v, want the first %+v", again, img)
	}
	// The empty root has no program of its own: the engine cannot start
	// one, and it tells so.
	created, err := cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config: &container.Config{Image: img.Ref, Cmd: []string{"/bin/sh"}, Labels: map[string]string{"andromeda.test": "dockerimg"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cli.ContainerRemove(context.Background(), created.ID, client.ContainerRemoveOptions{Force: true})
	})
	if _, err := cli.ContainerStart(ctx, created.ID, client.ContainerStartOptions{}); err == nil || !strings.Contains(err.Error(), "/bin/sh") {
		t.Errorf("start /bin/sh in the empty image: %v, want an error naming /bin/sh", err)
	}

	// As the runtime of an exec archive service: the static binary comes
	// from the service's directory, mounted at /service.
	dir := t.TempDir()
	env := []string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=" + runtime.GOARCH}
	if err := sandboxtest.GoBuild(helloPkg, filepath.Join(dir, "hello"), env); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := run(t, cli, box{ref: img.Ref, user: "65534:65534", binds: []string{dir + ":/service:ro"}}, "/service/hello", "from", "a", "service")
	if code != 0 || out != "hello from a service\n" {
		t.Fatalf("/service/hello: exit %d, stdout %q, stderr %q; want exit 0 and %q", code, out, errOut, "hello from a service\n")
	}
}
