// Command andromeda is the Andromeda runner: `andromeda serve` runs a node;
// every other subcommand talks to a node through its HTTP API.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/node"
	"github.com/andromeda-runner/andromeda/sandbox/process"
)

func main() {
	// When the process driver re-executes this binary as a sandbox init,
	// this never returns.
	process.MaybeInit()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, errUsageShown) {
			fmt.Fprintln(os.Stderr, "andromeda:", err)
		}
		os.Exit(exitCode(err))
	}
}

var errUsageShown = errors.New("usage shown")

func exitCode(err error) int {
	var ae *api.Error
	switch {
	case errors.Is(err, errUsageShown), errors.Is(err, flag.ErrHelp):
		return 2
	case errors.As(err, &ae) && ae.Status == 401, errors.As(err, &ae) && ae.Status == 403:
		return 4
	}
	return 1
}

type command struct {
	name, args, help string
	run              func(ctx context.Context, env *cli, args []string) error
}

var commands = []command{
	{"serve", "[--config FILE] [--data DIR] [--listen ADDR] [--nats URL] [--demo] [--repair]", "run a node", serveCmd},
	{"submit", "DIR [--origin kind:id;stake=N]", "pack a service directory and submit it", submitCmd},
	{"ls", "[--json]", "list services", lsCmd},
	{"inspect", "NAME [--json]", "show a service: manifest, decision, health, triggers", inspectCmd},
	{"fire", "NAME [--input JSON] [--json]", "run a service now and print the run", fireCmd},
	{"runs", "[NAME] [--limit N | --all] [--since T] [--until T] [--json]", "list runs, newest first (T: RFC 3339 time or a duration ago: 1h)", runsCmd},
	{"rm", "NAME", "stop and remove a service with its state and runs", rmCmd},
	{"token", "create --name NAME [--role submitter|operator]", "create an API token", tokenCmd},
	{"keys", "gen FILE", "make an ed25519 key pair for attestations", keysCmd},
	{"attest", "DIR --key FILE", "sign a service's digest (sent with its next submit)", attestCmd},
	{"policy", "explain DIR | import klyntar FILE", "explain a decision offline; convert a KLYNTAR config", policyCmd},
	{"deps", "ls NAME | add NAME PKG | rm NAME PKG", "a process service's own dependencies", depsCmd},
	{"conformance", "DIR [--lang L] [--entry FILE]", "certify a language shim against the runtime protocol", conformanceCmd},
	{"store", "check [--json] | backup --out FILE | restore --in FILE  [--data DIR]", "check, back up or restore a stopped node's store", storeCmd},
	{"version", "", "print the version", versionCmd},
}

// cli is what every subcommand gets: output streams and how to reach the
// node.
type cli struct {
	stdout, stderr io.Writer
	getenv         func(string) string
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	env := &cli{stdout: stdout, stderr: stderr, getenv: os.Getenv}
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stderr)
		if len(args) == 0 {
			return errUsageShown
		}
		return nil
	}
	for _, c := range commands {
		if c.name == args[0] {
			return c.run(ctx, env, args[1:])
		}
	}
	usage(stderr)
	return fmt.Errorf("unknown command %q", args[0])
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: andromeda COMMAND [flags]\n\ncommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %-48s %s\n", c.name, c.args, c.help)
	}
	fmt.Fprintln(w, `
Client commands reach the node at $ANDROMEDA_ADDR (default 127.0.0.1:7070) with
the token in $ANDROMEDA_TOKEN, or else the operator token in the data dir
($ANDROMEDA_DATA, default the node's default data dir).`)
}

// flags makes a FlagSet for a subcommand with the client flags every
// subcommand that talks to a node shares.
type clientFlags struct {
	addr, token, data string
	json              bool
}

func (env *cli) flagSet(name string, cf *clientFlags) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	if cf != nil {
		fs.StringVar(&cf.addr, "node", "", "node address (default $ANDROMEDA_ADDR or 127.0.0.1:7070)")
		fs.StringVar(&cf.token, "token", "", "API token (default $ANDROMEDA_TOKEN or the operator token in the data dir)")
		fs.StringVar(&cf.data, "data", "", "node data dir to read the operator token from (default $ANDROMEDA_DATA or the node default)")
		fs.BoolVar(&cf.json, "json", false, "print one JSON document instead of a table")
	}
	return fs
}

// parse parses flags that may come before or after positional arguments.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func (env *cli) client(cf *clientFlags) (*api.Client, error) {
	addr := firstNonEmpty(cf.addr, env.getenv("ANDROMEDA_ADDR"), node.DefaultConfig().Listen)
	token := firstNonEmpty(cf.token, env.getenv("ANDROMEDA_TOKEN"))
	if token == "" {
		dir := firstNonEmpty(cf.data, env.getenv("ANDROMEDA_DATA"), node.DefaultDataDir())
		t, err := node.OperatorToken(dir)
		if err != nil {
			return nil, fmt.Errorf("no token: set ANDROMEDA_TOKEN or pass --token (no operator token readable in %s: %v)", dir, err)
		}
		token = t
	}
	return api.NewClient(addr, token), nil
}

func firstNonEmpty(v ...string) string {
	for _, s := range v {
		if strings.TrimSpace(s) != "" {
			return s
		}
	}
	return ""
}

func versionCmd(ctx context.Context, env *cli, args []string) error {
	fmt.Fprintln(env.stdout, "andromeda", node.Version)
	return nil
}
