package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
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
	log := newLogger(env.stderr, cfg.Log)
	n, err := node.New(cfg, log)
	if err != nil {
		return err
	}
	// Whoever waits for /readyz waits for the demo too.
	releaseDemo := func() {}
	if o.demo {
		releaseDemo = n.HoldReady("deploying the demo services")
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
	fmt.Fprintf(env.stdout, "andromeda %s node %q\n  listening on  %s\n  data dir      %s\n  operator token %s  (also in %s, mode 0600)\n",
		node.Version, cfg.Name, n.URL(), cfg.Data, token, filepath.Join(cfg.Data, node.TokenFile))
	for _, r := range n.StartResults() {
		fmt.Fprint(env.stdout, r.Format("services: "))
	}
	if o.demo {
		if err := loadDemo(ctx, env.stdout, log, n); err != nil {
			return err
		}
		releaseDemo()
	}
	// After the demo: the drivers' self-tests run in the background, and
	// Node waits for them.
	if d := n.Node(ctx).Drivers[0]; !d.Enabled {
		fmt.Fprintf(env.stdout, "  warning: driver %s disabled: %s\n", d.Name, d.Reason)
	}
	fmt.Fprintf(env.stdout, "policy %s; node key %s\n", n.Policy().Digest(), n.PublicKey())
	fmt.Fprintf(env.stdout, "ready. Try: ANDROMEDA_ADDR=%s andromeda ls   (Ctrl-C stops the node; SIGHUP reloads the policy from --config)\n", n.Addr())
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
	return n.Close()
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
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}
