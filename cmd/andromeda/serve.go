package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/andromeda-runner/andromeda"
	"github.com/andromeda-runner/andromeda/demo"
	"github.com/andromeda-runner/andromeda/node"
)

func (env *cli) serveCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run a node",
		Long: `Serve runs a node: the HTTP API, the embedded NATS JetStream store (or an
external cluster with --nats), the sandbox drivers this host can run and the
triggers. It prints where it listens, its data dir and the operator token,
and runs until interrupted (Ctrl-C or SIGTERM). SIGHUP reloads the policy
from --config; a policy that fails to load leaves the node on the one it
has. Flags override the config file.

The config's services list (dir, archive or source entries) is submitted
at every start through the policy, one line printed per entry: deployed,
already deployed, or refused/failed with the reasons; an entry with
required: true that fails stops the start. --demo submits the examples the
same way, none of them required.`,
		Example: `  andromeda serve
  andromeda serve --demo
  andromeda serve --config andromeda.yaml --listen 0.0.0.0:7070
  andromeda serve --data /var/lib/andromeda --repair
  andromeda serve --name n1 --cluster prod --cluster-listen 10.0.0.1:6222 --routes 10.0.0.1:6222,10.0.0.2:6222,10.0.0.3:6222`,
		Args:              wantArgs(0, 0),
		ValidArgsFunction: cobra.NoFileCompletions,
	}
	var o serveOptions
	f := cmd.Flags()
	f.StringVar(&o.configFile, "config", "", "node config `FILE` (YAML, JSON or TOML, by its extension)")
	f.StringVar(&o.data, "data", "", "data `DIR` (overrides the config; default $XDG_DATA_HOME/andromeda)")
	f.StringVar(&o.listen, "listen", "", "listen for the HTTP API on `ADDR` (overrides the config; default 127.0.0.1:7070)")
	f.StringVar(&o.natsURL, "nats", "", "join an external NATS cluster at `URL` instead of embedding one")
	f.StringVar(&o.name, "name", "", "the node's `NAME` in logs, on the bus and in the cluster (overrides the config; default the host name)")
	f.StringVar(&o.cluster, "cluster", "", "route the embedded NATS server into the cluster `NAME` with other nodes' (overrides cluster.name)")
	f.StringVar(&o.clusterListen, "cluster-listen", "", "take the other nodes' routes on `HOST:PORT` (overrides cluster.listen)")
	f.StringSliceVar(&o.routes, "routes", nil, "the cluster's route addresses, `HOST:PORT,...` (this node's own may be among them; overrides cluster.routes)")
	f.BoolVar(&o.demo, "demo", false, "load the example services from examples/ (built with the Go toolchain)")
	f.BoolVar(&o.repair, "repair", false, "start on a damaged store: drop what cannot be read (listed in the log; damaged files kept in <data>/nats/damaged)")
	cmd.MarkFlagFilename("config", "yaml", "yml", "json")
	cmd.MarkFlagDirname("data")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error { return env.serve(cmd.Context(), o) }
	return cmd
}

// serveOptions are the flags of `serve`.
type serveOptions struct {
	configFile, data, listen, natsURL string
	name, cluster, clusterListen      string
	routes                            []string
	demo, repair                      bool
}

func (env *cli) serve(ctx context.Context, o serveOptions) error {
	var err error
	cfg := node.DefaultConfig()
	if o.configFile != "" {
		if cfg, err = node.LoadConfig(o.configFile); err != nil {
			return err
		}
	}
	if o.data != "" {
		cfg.Data = o.data
	}
	if o.listen != "" {
		cfg.Listen = o.listen
	}
	if o.natsURL != "" {
		cfg.NATS.URL = o.natsURL
	}
	if o.repair {
		cfg.Repair = true
	}
	if o.name != "" {
		cfg.Name = o.name
	}
	if o.cluster != "" {
		cfg.Cluster.Name = o.cluster
	}
	if o.clusterListen != "" {
		cfg.Cluster.Listen = o.clusterListen
	}
	if o.routes != nil {
		cfg.Cluster.Routes = o.routes
	}
	cfg.Runtimes = node.RuntimesDirFor(o.configFile)
	if abs, err := filepath.Abs(cfg.Data); err == nil {
		cfg.Data = abs
	}
	begin := time.Now()
	fmt.Fprintf(env.stdout, "andromeda %s: starting node %q, data in %s\n", node.Version, cfg.Name, cfg.Data)
	log := newLogger(env.stderr, cfg.Log)
	n, err := node.New(cfg, log)
	if err != nil {
		return err
	}
	// Whoever waits for /readyz waits for the demo too, told how far it is.
	sayDemo, releaseDemo := func(string) {}, func() {}
	if o.demo {
		sayDemo, releaseDemo = n.HoldReadySay("preparing the demo services")
	}
	defer releaseDemo()
	if err := n.Start(ctx); err != nil {
		return err
	}
	defer n.Close()
	token, err := node.OperatorToken(cfg.Data)
	if err != nil {
		return err
	}
	for _, r := range n.StartResults() {
		fmt.Fprint(env.stdout, r.Format("services: "))
	}
	if o.demo {
		if err := loadDemo(ctx, &demoProgress{w: env.stdout, say: sayDemo}, log, n); err != nil {
			return err
		}
		releaseDemo()
	}
	// After the demo: the drivers' self-tests run in the background, and
	// Node waits for them.
	if d := n.Node(ctx).Drivers[0]; !d.Enabled {
		fmt.Fprintf(env.stdout, "  warning: driver %s disabled: %s\n", d.Name, d.Reason)
	}
	// The banner comes last, so that what a user needs is on screen.
	fmt.Fprintf(env.stdout, "\nready in %s: node %q, andromeda %s\n", roundDur(time.Since(begin)), cfg.Name, node.Version)
	fmt.Fprintf(env.stdout, "  listening on    %s\n", n.URL())
	fmt.Fprintf(env.stdout, "  dashboard       %s/ui/   (sign in with the operator token)\n", n.URL())
	fmt.Fprintf(env.stdout, "  data dir        %s\n", cfg.Data)
	fmt.Fprintf(env.stdout, "  operator token  %s   (also in %s, mode 0600)\n", token, filepath.Join(cfg.Data, node.TokenFile))
	fmt.Fprintf(env.stdout, "  policy          sha256:%s   node key %s\n", shortDigest(n.Policy().Digest()), n.PublicKey())
	fmt.Fprintf(env.stdout, "Try: %s   (Ctrl-C stops the node; SIGHUP reloads the policy from --config)\n", tryHint(cfg, n.Addr()))
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-hup:
			reloadPolicy(env, n, o.configFile)
			continue
		case <-ctx.Done():
		}
		break
	}
	fmt.Fprintln(env.stdout, "stopping…")
	if err := n.Close(); err != nil {
		return err
	}
	fmt.Fprintln(env.stdout, stoppedLine(n.Stopped()))
	return nil
}

// tryHint is the command to try first: a node on the default address
// and data dir is found without help; another is one context away.
func tryHint(cfg node.Config, addr string) string {
	def := node.DefaultConfig()
	defData, _ := filepath.Abs(def.Data)
	if cfg.Listen == def.Listen && cfg.Data == defData {
		return "andromeda ls"
	}
	return fmt.Sprintf("andromeda context add %s --node %s --data %s --use && andromeda ls", contextNameFor(cfg.Name), addr, cfg.Data)
}

// contextNameFor is a context name made of a node's name.
func contextNameFor(name string) string {
	if contextName.MatchString(name) {
		return name
	}
	return "local"
}

// stoppedLine is serve's last line: how the stop went.
func stoppedLine(s node.Shutdown) string {
	line := fmt.Sprintf("stopped in %s", roundDur(s.Took))
	switch {
	case s.InFlight == 0:
		return line + ": no run in flight"
	case s.Cancelled == 0:
		return fmt.Sprintf("%s: %s in flight ended within the %s grace", line, plural(s.InFlight, "run"), s.Grace)
	}
	return fmt.Sprintf("%s: %d of %s in flight ended within the %s grace, %d cancelled (recorded as cancelled)", line, s.Finished, plural(s.InFlight, "run"), s.Grace, s.Cancelled)
}

// reloadPolicy re-reads the config file and swaps in its policy; on any
// error the node keeps the policy it has.
func reloadPolicy(env *cli, n *node.Node, configFile string) {
	if configFile == "" {
		fmt.Fprintln(env.stderr, "SIGHUP: no --config file to reload the policy from")
		return
	}
	cfg, err := node.LoadConfig(configFile)
	if err == nil {
		err = n.ReloadPolicy(cfg.Policy)
	}
	if err != nil {
		fmt.Fprintf(env.stderr, "policy reload failed, keeping policy %s:\n%v\n", n.Policy().Digest(), err)
		return
	}
	fmt.Fprintf(env.stdout, "policy reloaded: %s\n", n.Policy().Digest())
}

// loadDemo builds the demo services and submits them like a services list
// in the config ([{dir: D}, ...], none required): a demo for a driver this
// host cannot run (the process driver needs namespaces and cgroups) is
// printed as failed with the reason, and the node runs without it.
func loadDemo(ctx context.Context, out io.Writer, log *slog.Logger, n *node.Node) error {
	start := time.Now()
	svcs, err := demo.Prepare(ctx, andromeda.Sources, andromeda.Module, n.CacheDir(), out)
	if err != nil {
		return err
	}
	log.Info("demo prepared", "services", len(svcs), "took_ms", float64(time.Since(start))/float64(time.Millisecond))
	// The archives packed with the build: packing a built Go service
	// again at every start costs half a second each.
	list := make([]node.StartService, len(svcs))
	for i, s := range svcs {
		list[i] = node.StartService{Archive: s.Archive}
	}
	_, err = n.StartServices(ctx, "demo", list, out)
	return err
}

// newLogger logs JSON unless stderr is a terminal (then text), at the
// configured level.
func newLogger(w io.Writer, c node.LogConfig) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.Level)); err != nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	format := c.Format
	if format == "auto" || format == "" {
		format = "json"
		if f, ok := w.(*os.File); ok {
			if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
				format = "text"
			}
		}
	}
	if format == "text" {
		opts.ReplaceAttr = shortAttr
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// shortAttr makes text log lines short for people at a terminal: the time
// of day to the millisecond, digests to their first 12 hex digits. JSON
// logs keep everything whole.
func shortAttr(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.TimeKey && a.Value.Kind() == slog.KindTime {
		return slog.String(a.Key, a.Value.Time().Format("15:04:05.000"))
	}
	if a.Value.Kind() == slog.KindString {
		if d := a.Value.String(); strings.HasPrefix(d, "sha256:") && len(d) > len("sha256:")+12 {
			return slog.String(a.Key, "sha256:"+shortDigest(d))
		}
	}
	return a
}

// demoProgress passes the demo's progress lines through to w and tells
// say how far the demo is, for /readyz: "building demo services (2/3):
// greeter" while a guest builds, then "deploying demo services (1/3)" as
// each is deployed (one "demo: " result line each).
type demoProgress struct {
	w   io.Writer
	say func(string)

	total, deployed int
	building        bool // a build line was seen: result lines come after the last build
	deploying       bool
}

var (
	demoBuild  = regexp.MustCompile(`demo: \[(\d+)/(\d+)\] building (\S+)`)
	demoCached = regexp.MustCompile(`demo: (\d+) services already built`)
)

func (p *demoProgress) Write(b []byte) (int, error) {
	switch m := demoBuild.FindSubmatch(b); {
	case m != nil:
		p.total, _ = strconv.Atoi(string(m[2]))
		p.building = string(m[1]) != string(m[2])
		p.say(fmt.Sprintf("building demo services (%s/%s): %s", m[1], m[2], m[3]))
	case demoCached.Match(b):
		p.total, _ = strconv.Atoi(string(demoCached.FindSubmatch(b)[1]))
		p.startDeploying()
	case !p.building && !p.deploying && bytes.HasPrefix(b, []byte("done in ")):
		p.startDeploying() // the last guest is built
	case p.deploying && bytes.HasPrefix(b, []byte("demo: ")):
		p.deployed++
		p.say(fmt.Sprintf("deploying demo services (%d/%d)", min(p.deployed, p.total), p.total))
	}
	return p.w.Write(b)
}

func (p *demoProgress) startDeploying() {
	p.deploying = true
	p.say(fmt.Sprintf("deploying demo services (0/%d)", p.total))
}
