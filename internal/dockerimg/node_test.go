package dockerimg_test

import (
	"context"
	"os/exec"
	"strings"
	"testing"

	"github.com/andromeda-runner/andromeda/internal/dockerimg"
	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
)

func TestNode(t *testing.T) {
	cli := dockerimg.Client(t)
	host, err := exec.Command("node", "--version").Output()
	sandboxtest.Require(t, err == nil, "the node interpreter is needed on PATH to build the node image")
	ctx := context.Background()
	img, err := dockerimg.Node(ctx, cli)
	if err != nil {
		t.Fatal(err)
	}
	checkImage(t, cli, img, "node")

	// As the docker driver runs it: as nobody, no network, no passwd.
	code, out, errOut := run(t, cli, box{ref: img.Ref, user: "65534:65534"}, "node", "--version")
	if code != 0 || out != string(host) {
		t.Fatalf("node --version: exit %d, stdout %q, stderr %q; want exit 0 and the host's %q", code, out, errOut, host)
	}
	// The modules the runtime shim loads, and a write to /tmp.
	script := `const fs = require('node:fs'); require('node:url'); require('node:crypto').randomUUID();
fs.writeFileSync('/tmp/x', 'ok'); console.log(fs.readFileSync('/tmp/x', 'utf8'), process.getuid());`
	code, out, errOut = run(t, cli, box{ref: img.Ref, user: "65534:65534"}, "node", "-e", script)
	if code != 0 || strings.TrimSpace(out) != "ok 65534" {
		t.Fatalf("node -e: exit %d, stdout %q, stderr %q; want exit 0 and %q", code, out, errOut, "ok 65534")
	}

	again, err := dockerimg.Node(ctx, cli)
	if err != nil {
		t.Fatal(err)
	}
	if again != img {
		t.Errorf("second Node = %+v, want the first %+v", again, img)
	}
}
