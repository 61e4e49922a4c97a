package process

import (
	"context"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/sandbox/jail"
	"github.com/andromeda-runner/andromeda/sandbox/process/deps"
)

// egressProbe runs inside an installer sandbox and reports, as JSON, what
// it reaches: directly and through the proxy at egressAddr, the node's API
// (argv[1], a port on the host's loopback), another host, and the registry
// (argv[2], host:port); the network interfaces it sees; its resolver
// configuration; and whether a name resolves.
const egressProbe = `import json, os, socket, sys
api, reg = int(sys.argv[1]), sys.argv[2]
reg_host, reg_port = reg.rsplit(":", 1)
proxy = ("127.0.0.1", ` + "3128" + `)
out = {}

def dial(host, port):
    try:
        socket.create_connection((host, port), timeout=5).close()
        return "connected"
    except Exception as e:
        return str(e)

def head(s):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.split(b"\r\n", 1)[0].decode()

def via_proxy(request):
    s = socket.create_connection(proxy, timeout=10)
    s.sendall(request.encode())
    return s, head(s)

out["direct_api"] = dial("127.0.0.1", api)
out["direct_registry"] = dial(reg_host, int(reg_port))
out["connect_api"] = via_proxy("CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (api, api))[1]
out["connect_other"] = via_proxy("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")[1]
out["get_api"] = via_proxy("GET http://127.0.0.1:%d/ HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n" % (api, api))[1]
out["get_origin_form"] = via_proxy("GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n" % api)[1]
out["get_registry"] = via_proxy("GET http://%s/simple/pyleft/ HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (reg, reg))[1]
s, out["connect_registry"] = via_proxy("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (reg, reg))
s.sendall(("GET /simple/pyleft/ HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % reg).encode())
out["tunnel_registry"] = head(s)
out["interfaces"] = sorted(name for _, name in socket.if_nameindex())
try:
    out["resolv"] = open("/etc/resolv.conf").read()
except Exception as e:
    out["resolv"] = None
try:
    socket.getaddrinfo("example.com", 443)
    out["dns"] = "resolved"
except Exception as e:
    out["dns"] = str(e)
out["proxy_env"] = {k: v for k, v in os.environ.items() if "proxy" in k.lower()}
print("PROBE " + json.dumps(out))
`

// TestEgressInstallerSandbox runs a probe in the sandbox installs run in,
// with a registry on the host's loopback: the installer has only lo, no
// resolver and no route to the host's loopback; through the egress proxy
// it reaches the registry and nothing else (403), and never the stand-in
// for the node's API.
func TestEgressInstallerSandbox(t *testing.T) {
	requireSandbox(t)
	requireLang(t, LangPython)
	api := newAPIListener(t)
	reg := newTestRegistry(t)
	reg.addWheel("pyleft", "1.0.0", "X = 1\n")
	cfg := testConfig()
	cfg.Registries = map[string]string{LangPython: reg.pythonURL()}
	d := newDriver(t, cfg)
	tc := d.toolchains(context.Background())[LangPython]
	hosts, err := deps.Pip.Hosts(cfg.Registries[LangPython])
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{reg.hostPort()}; !slices.Equal(hosts, want) {
		t.Fatalf("Hosts = %q, want %q", hosts, want)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := d.host().jail.Run(ctx, jail.Spec{
		Name:    "egress-probe",
		Tools:   tc.Mounts,
		Scratch: 16 << 20,
		Limits:  jail.Limits{Memory: 256 << 20, Pids: 64},
		Files:   d.cfg.Files,
		Dir:     jail.Scratch,
		Argv:    []string{tc.Exe, "-I", "-c", egressProbe, strconv.Itoa(api.port()), reg.hostPort()},
		Env:     []string{"PATH=" + filepath.Dir(tc.Exe) + ":" + jail.Path, "HOME=" + jail.Scratch, "NO_PROXY=127.0.0.1"},
		Egress:  hosts,
	})
	if err != nil {
		t.Fatalf("Run(probe) = %v\n%s", err, out)
	}
	_, report, ok := strings.Cut(string(out), "PROBE ")
	if !ok {
		t.Fatalf("probe output %q, want a report", out)
	}
	var got struct {
		DirectAPI       string            `json:"direct_api"`
		DirectRegistry  string            `json:"direct_registry"`
		ConnectAPI      string            `json:"connect_api"`
		ConnectOther    string            `json:"connect_other"`
		GetAPI          string            `json:"get_api"`
		GetOriginForm   string            `json:"get_origin_form"`
		GetRegistry     string            `json:"get_registry"`
		ConnectRegistry string            `json:"connect_registry"`
		TunnelRegistry  string            `json:"tunnel_registry"`
		Interfaces      []string          `json:"interfaces"`
		Resolv          *string           `json:"resolv"`
		DNS             string            `json:"dns"`
		ProxyEnv        map[string]string `json:"proxy_env"`
	}
	if err := json.Unmarshal([]byte(report), &got); err != nil {
		t.Fatalf("decode %q: %v", report, err)
	}
	t.Logf("probe: %+v", got)
	for _, c := range []struct{ what, got, want string }{
		{"a direct connection to the API's port", got.DirectAPI, "Connection refused"},
		{"a direct connection to the registry", got.DirectRegistry, "Connection refused"},
		{"CONNECT to the API through the proxy", got.ConnectAPI, " 403 "},
		{"CONNECT to another host through the proxy", got.ConnectOther, " 403 "},
		{"GET of the API through the proxy", got.GetAPI, " 403 "},
		{"an origin-form GET to the proxy", got.GetOriginForm, " 403 "},
		{"GET of the registry through the proxy", got.GetRegistry, " 200 "},
		{"CONNECT to the registry through the proxy", got.ConnectRegistry, " 200 "},
		{"GET of the registry through the tunnel", got.TunnelRegistry, " 200 "},
	} {
		if !strings.Contains(c.got, c.want) {
			t.Errorf("%s: %q, want %q", c.what, c.got, c.want)
		}
	}
	if !slices.Equal(got.Interfaces, []string{"lo"}) {
		t.Errorf("network interfaces in the installer sandbox: %q, want only lo", got.Interfaces)
	}
	if host, err := os.ReadFile("/etc/resolv.conf"); err == nil && got.Resolv != nil && *got.Resolv == string(host) {
		t.Errorf("the installer sandbox reads the host's /etc/resolv.conf")
	}
	if got.DNS == "resolved" {
		t.Errorf("a name resolved inside the installer sandbox, want no resolver")
	}
	p := jail.EgressProxy
	want := map[string]string{"HTTP_PROXY": p, "HTTPS_PROXY": p, "http_proxy": p, "https_proxy": p}
	if !maps.Equal(got.ProxyEnv, want) {
		t.Errorf("proxy variables in the installer's environment: %v, want %v (and no NO_PROXY)", got.ProxyEnv, want)
	}
	if n := api.accepted.Load(); n != 0 {
		t.Errorf("the API listener accepted %d connections, want none", n)
	}
}
