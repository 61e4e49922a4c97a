package main

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/andromeda-runner/andromeda/api"
)

// The lifecycle steps: deploy, start and stop (rm is in client_cmds.go).

func (env *cli) deployCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "deploy NAME",
		Short: "Prepare a service without starting it",
		Long: `Deploy prepares a service that has no deployment (admitted, stopped or
failed): it unpacks its files, installs its dependencies and makes and
checks its driver's deployment, and leaves it deployed, not started. It
prints the answer in the shape of the Golem runtime API's deploy output:
start_mode (blocking for a server-mode service, which keeps warm workers;
empty for a command-mode one), valid (ok, or err with the message: the
service is then failed and deploy exits 1) and volumes. A deployed service
answers again; a started one must be stopped first.`,
		Example: `  andromeda deploy greeter
  andromeda deploy greeter --json`,
		Args: wantArgs(1, 1),
	}
	cf := addClientFlags(cmd)
	cmd.ValidArgsFunction = env.serviceNames(cf)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := env.client(cf)
		if err != nil {
			return err
		}
		res, err := c.Deploy(cmd.Context(), args[0])
		if err != nil {
			return err
		}
		if cf.json {
			if err := printJSON(env.stdout, res); err != nil {
				return err
			}
		} else {
			printDeploy(env.stdout, res)
		}
		if res.Valid.Err != nil {
			return fmt.Errorf("deploy %s: %s", args[0], *res.Valid.Err)
		}
		return nil
	}
	return cmd
}

func printDeploy(w io.Writer, r api.DeployResult) {
	s := r.Service
	tw := table(w)
	fmt.Fprintf(tw, "Service:\t%s %s\n", s.Name, s.Version)
	fmt.Fprintf(tw, "Phase:\t%s\n", s.Phase)
	fmt.Fprintf(tw, "Start mode:\t%s\n", r.StartMode)
	switch {
	case r.Valid.Ok != nil:
		fmt.Fprintf(tw, "Valid:\tok (driver %s, digest %s)\n", r.Valid.Ok.Driver, r.Valid.Ok.Digest)
	case r.Valid.Err != nil:
		fmt.Fprintf(tw, "Valid:\terr: %s\n", *r.Valid.Err)
	}
	vols := "none"
	for i, v := range r.Volumes {
		if i == 0 {
			vols = ""
		} else {
			vols += ", "
		}
		vols += v.Name + " at " + v.Path
	}
	fmt.Fprintf(tw, "Volumes:\t%s\n", vols)
	tw.Flush()
}

func (env *cli) startCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "start NAME",
		Short: "Arm a service's triggers",
		Long: `Start arms a service's triggers (cron, events, webhooks, fire). A service
with no deployment (admitted, stopped, failed) is deployed first. Events
published to its topics while it was stopped wait in the stream and run
now; cron ticks that fell due while it was stopped are not run.`,
		Example: `  andromeda start greeter
  andromeda start greeter --json`,
		Args: wantArgs(1, 1),
	}
	cf := addClientFlags(cmd)
	cmd.ValidArgsFunction = env.serviceNames(cf)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return ask(env, cf, func(c *api.Client) (api.Service, error) { return c.Start(cmd.Context(), args[0]) }, printPhase)
	}
	return cmd
}

func (env *cli) stopCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "stop NAME",
		Short: "Disarm a service, end its runs and release its deployment",
		Long: `Stop disarms a service's triggers and refuses new runs (fire answers 409),
gives its runs in flight --grace to finish (default the node's
lifecycle.stop_grace, 5s), then kills them, and releases its deployment.
Its files, state and run history stay; start runs it again. Events
published to its topics meanwhile wait in the stream. Stop returns once
the runs in flight are recorded.`,
		Example: `  andromeda stop greeter
  andromeda stop greeter --grace 30s --json`,
		Args: wantArgs(1, 1),
	}
	cf := addClientFlags(cmd)
	grace := cmd.Flags().Duration("grace", 0, "how long runs in flight may finish before they are killed (default the node's lifecycle.stop_grace)")
	cmd.ValidArgsFunction = env.serviceNames(cf)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if *grace < 0 {
			return usagef("--grace: must not be negative")
		}
		return ask(env, cf, func(c *api.Client) (api.Service, error) {
			start := time.Now()
			s, err := c.Stop(cmd.Context(), args[0], *grace)
			if err == nil && !cf.json {
				fmt.Fprintf(env.stderr, "stopped in %s\n", roundDur(time.Since(start)))
			}
			return s, err
		}, printPhase)
	}
	return cmd
}

func printPhase(w io.Writer, s api.Service) {
	fmt.Fprintf(w, "%s %s %s\n", s.Name, s.Version, s.Phase)
}
