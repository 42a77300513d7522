package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/lawsker/lawsker-deploy/internal/textdist"
)

// The command tree is spf13/cobra's (per-command --help with flags,
// defaults and examples, "did you mean" for commands, bash and zsh
// completion); each verb's flags are its own Go flag set, defined once in
// its handler, which parses them (parseFlags) as before. cobra learns them
// by a describe pass: the handler runs with c.describing set, and
// parseFlags hands its flag set back instead of parsing.

// verb is one command of the tree.
type verb struct {
	use, short, long, example string
	// run is the handler with its arguments (subcommand name first for
	// the verbs that have them).
	run func(ctx context.Context, args []string) error
	// describe are the arguments the describe pass runs run with: a
	// stand-in "ID" where the verb takes a positional id, so the handler
	// reaches its flag parsing.
	describe []string
	subs     []verb
}

// described carries a verb's flag set out of the describe pass.
type described struct{ fs *flag.FlagSet }

func (described) Error() string { return "described" }

func (c *cli) verbs(ctx context.Context) []verb {
	sub := func(name string, run func(context.Context, []string) error) func(context.Context, []string) error {
		return func(ctx context.Context, args []string) error { return run(ctx, append([]string{name}, args...)) }
	}
	configRun := func(_ context.Context, args []string) error { return c.configCmd(args) }
	return []verb{
		{use: "validate", short: "check a configuration: every problem at once, each with its path and line",
			long:    "Reads the configuration (deploy.json, or Lawsker's legacy deployment_config.json), checks every field and rule, resolves every secret reference (never printing a value) and prints a summary with the routing table. Nothing is contacted.",
			example: "  lawsker-deploy validate --config deploy.json\n  lawsker-deploy validate --json", run: c.validate},
		{use: "plan", short: "show the deployment DAG that deploy runs, stage by stage",
			long:    "Prints the steps deploy runs for this configuration (the same graph, built by the same code), their stages, timeouts and retries, the routing table and what happens on failure. Nothing is contacted.",
			example: "  lawsker-deploy plan\n  lawsker-deploy plan --json", run: c.plan},
		{use: "preflight", short: "check from here that deploy can reach what it needs",
			long:    "Resolves every secret, connects over SSH to every target (host key checked) and asks the registry. Nothing is changed.",
			example: "  lawsker-deploy preflight --config deploy.json", run: c.preflight},
		{use: "deploy", short: "put a release on every target (snapshots, verification, automatic rollback)",
			long:    "Deploys the backend image (pinned by digest) and the built frontend: pre-deploy snapshot, migrations, new backend beside the old one, health gate, switch, verification suite and watch window, post-deploy snapshot. A rollback trigger puts the previous release back, database included. Secrets and the image's digest are checked before the lock (exit 2, nothing on the target).",
			example: "  lawsker-deploy deploy --backend-image 127.0.0.1:5000/app/backend@sha256:0123... --frontend-dir frontend/dist --message \"release 42\"", run: c.deploy},
		{use: "rollback", short: "switch back to the warm previous release, or roll back to a snapshot",
			long:    "--previous switches back to the previous release, still running (refused when the database's schema is not the one it ran on, naming the snapshot to roll back to; --force switches anyway). --snapshot ID brings a snapshot's release back and, when its schema differs, its database (--dry-run shows the plan).",
			example: "  lawsker-deploy rollback --previous\n  lawsker-deploy rollback --snapshot snap_20261203_101500_ab12cd --dry-run\n  lawsker-deploy rollback --snapshot snap_20261203_101500_ab12cd --components backend,frontend", run: c.rollback},
		{use: "releases", short: "list the releases on every target (current, previous, ...)",
			example: "  lawsker-deploy releases --json", run: c.releases},
		{use: "promote", short: "finish a canary held by deploy --canary-hold: every client on the new release",
			long:    "Switches every web target's site from the canary's split to the new release alone, keeps the release (the previous one stays warm for backend.rollback_window) and releases the deploy lock the held canary kept.",
			example: "  lawsker-deploy deploy --backend-image ... --canary-hold\n  lawsker-deploy promote", run: c.promote},
		{use: "abort", short: "end a canary held by deploy --canary-hold: the previous release alone again",
			long:    "Replays the held canary's journal on every target, as a failed deploy's revert would: the previous release serves every client again, the new one is removed, and the database is restored from the pre-deploy snapshot when the release's migrations changed it.",
			example: "  lawsker-deploy abort", run: c.abortCanary},
		{use: "maintenance", short: "maintenance mode: on [--message M], off, status",
			long:    "on: every web target's nginx answers 503 with Retry-After and the maintenance page (maintenance.page, or a plain page with the message), the health path and ACME tokens still served; deploys and switches are refused until off puts the serving release back. Taken under each target's deploy lock; all or nothing.",
			example: "  lawsker-deploy maintenance on --message \"Database upgrade, back at 14:00\"\n  lawsker-deploy maintenance status\n  lawsker-deploy maintenance off", run: c.maintenance, describe: []string{"on"}},
		{use: "logs", short: "show a release's backend output, or nginx's access and error logs, every secret masked",
			long:    "Prints the lines on every target, oldest first: the current release's output, the previous one's (--release previous) or any release's still on the host (--release ID); --source access or error reads nginx's logs. With monitoring.logs they come from the log store on each target (VictoriaLogs, through SSH); where it is down, or without it, the backend's output is read with docker logs over SSH, and the command says so.",
			example: "  lawsker-deploy logs --since 10m\n  lawsker-deploy logs --release previous --grep ERROR\n  lawsker-deploy logs --source access --json\n  lawsker-deploy logs --follow", run: c.logs},
		{use: "verify", short: "run the verification suite (exit 1 when a check fails)",
			long:    "Runs the health, functional, performance and security checks against the deployment. With --base-url and no configuration file, it verifies any URL with the checks that need no configuration: health of /, response times, load, security headers and TLS.",
			example: "  lawsker-deploy verify\n  lawsker-deploy verify --category health,security\n  lawsker-deploy verify --base-url https://example.com", run: c.verify},
		{use: "snapshot", short: "create, list, show, check, delete and prune snapshots", subs: []verb{
			{use: "create", short: "snapshot the serving release and its database now", example: "  lawsker-deploy snapshot create --description \"before the migration\"", run: sub("create", c.snapshotCmd)},
			{use: "list", short: "list the snapshots in the store", example: "  lawsker-deploy snapshot list --json", run: sub("list", c.snapshotCmd)},
			{use: "show ID", short: "show a snapshot's manifest", example: "  lawsker-deploy snapshot show snap_20261203_101500_ab12cd", run: sub("show", c.snapshotCmd), describe: []string{"ID"}},
			{use: "check ID", short: "check a snapshot's artifacts against their checksums", example: "  lawsker-deploy snapshot check snap_20261203_101500_ab12cd", run: sub("check", c.snapshotCmd), describe: []string{"ID"}},
			{use: "delete ID", short: "delete a snapshot", example: "  lawsker-deploy snapshot delete snap_20261203_101500_ab12cd", run: sub("delete", c.snapshotCmd), describe: []string{"ID"}},
			{use: "prune", short: "apply retention (never the snapshots of the current or previous release)", example: "  lawsker-deploy snapshot prune --dry-run", run: sub("prune", c.snapshotCmd)},
		}},
		{use: "lock", short: "the deploy lock on every target", subs: []verb{
			{use: "status", short: "say who holds the lock (exit 3 when locked)", example: "  lawsker-deploy lock status --json", run: sub("status", c.lockCmd)},
			{use: "release", short: "remove the lock of a deploy that died", example: "  lawsker-deploy lock release --force", run: sub("release", c.lockCmd)},
		}},
		{use: "tls", short: "certificates of every domain (lego)", subs: []verb{
			{use: "issue", short: "issue missing or due certificates", example: "  lawsker-deploy tls issue", run: sub("issue", c.tlsCmd)},
			{use: "renew", short: "renew certificates with a third of their lifetime left", example: "  lawsker-deploy tls renew", run: sub("renew", c.tlsCmd)},
			{use: "status", short: "show every certificate's dates and issuer", example: "  lawsker-deploy tls status --json", run: sub("status", c.tlsCmd)},
		}},
		{use: "monitoring", short: "Prometheus and Grafana for the serving release", subs: []verb{
			{use: "apply", short: "render, check with promtool and apply", example: "  lawsker-deploy monitoring apply --dry-run", run: sub("apply", c.monitoringCmd)},
		}},
		{use: "config", short: "convert Lawsker's legacy configuration, print the JSON Schema", subs: []verb{
			{use: "import", short: "convert Lawsker's deployment_config.json into deploy.json", example: "  lawsker-deploy config import --from deployment_config.json --out deploy.json", run: sub("import", configRun)},
			{use: "schema", short: "print the JSON Schema of deploy.json", example: "  lawsker-deploy config schema > deploy.schema.json", run: sub("schema", configRun)},
		}},
		{use: "version", short: "print the version", example: "  lawsker-deploy version", run: func(_ context.Context, args []string) error {
			if err := c.parseFlags(c.newFlagSet("version"), args); err != nil {
				return err
			}
			fmt.Fprintln(c.stdout, "lawsker-deploy", version)
			return nil
		}},
	}
}

// flagsOf runs v's describe pass: its flag set without the global flags.
func (c *cli) flagsOf(ctx context.Context, v verb) *flag.FlagSet {
	c.describing = true
	defer func() { c.describing = false }()
	var d described
	if err := v.run(ctx, v.describe); !errors.As(err, &d) {
		return nil
	}
	global := c.newFlagSet("")
	own := flag.NewFlagSet(v.use, flag.ContinueOnError)
	d.fs.VisitAll(func(f *flag.Flag) {
		if global.Lookup(f.Name) == nil {
			own.Var(f.Value, f.Name, f.Usage)
			own.Lookup(f.Name).DefValue = f.DefValue
		}
	})
	return own
}

// rootCommand builds the tree; a handler's error is stored in *runErr
// (cobra's own errors, a bad command, are returned).
func (c *cli) rootCommand(ctx context.Context, runErr *error) *cobra.Command {
	root := &cobra.Command{
		Use:           "lawsker-deploy",
		Short:         "deploy, verify, snapshot and roll back a web application",
		Long:          rootLong,
		SilenceErrors: true, SilenceUsage: true,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_ = cmd.Help()
			return failureCode(exitUsage)
		},
		CompletionOptions: cobra.CompletionOptions{HiddenDefaultCmd: false, DisableDescriptions: false},
	}
	root.SetOut(c.stdout)
	root.SetErr(c.stderr)
	gfs := c.newFlagSet("lawsker-deploy")
	root.PersistentFlags().AddGoFlagSet(gfs)
	for _, v := range c.verbs(ctx) {
		root.AddCommand(c.command(ctx, v, runErr))
	}
	return root
}

func (c *cli) command(ctx context.Context, v verb, runErr *error) *cobra.Command {
	name, _, _ := strings.Cut(v.use, " ")
	cmd := &cobra.Command{Use: v.use, Short: v.short, Long: v.long, Example: v.example}
	if cmd.Long == "" {
		cmd.Long = strings.ToUpper(v.short[:1]) + v.short[1:] + "."
	}
	if len(v.subs) > 0 {
		names := []string{}
		for _, s := range v.subs {
			cmd.AddCommand(c.command(ctx, s, runErr))
			n, _, _ := strings.Cut(s.use, " ")
			names = append(names, n)
		}
		cmd.RunE = func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageError{fmt.Sprintf("%s needs a subcommand: %s (lawsker-deploy %s --help)", name, strings.Join(names, ", "), name)}
			}
			hint := ""
			if near := textdist.Closest(args[0], names); near != "" {
				hint = fmt.Sprintf("; did you mean %q?", near)
			}
			return usageError{fmt.Sprintf("unknown %s subcommand %q (%s)%s", name, args[0], strings.Join(names, ", "), hint)}
		}
		return cmd
	}
	if fs := c.flagsOf(ctx, v); fs != nil {
		cmd.Flags().AddGoFlagSet(fs)
	}
	// The handler parses its own flags (the same set): cobra only routes.
	cmd.DisableFlagParsing = true
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		for _, a := range args {
			if a == "--" {
				break
			}
			if a == "-h" || a == "--help" || a == "-help" {
				return cmd.Help()
			}
		}
		*runErr = v.run(ctx, args)
		return nil
	}
	return cmd
}

const rootLong = `lawsker-deploy: deploy, verify, snapshot and roll back a web application.

Every command has --help with its flags, their defaults and an example:
  lawsker-deploy deploy --help

Global flags (before or after the command):
  --config FILE       configuration file (default deploy.json; Lawsker's
                      legacy deployment_config.json is read too)
  --json              machine-readable output on stdout
  --verbose           debug records in the log file and more detail on stderr
  --reports-dir DIR   where reports/<verb>_<id>.json go (default reports)
  --logs-dir DIR      where logs/<verb>_<id>.log go (default logs)

The old toolkit's invocations still work and print their native form:
  --action deploy|verify|rollback|list-snapshots|create-snapshot,
  --snapshot-id ID, --deployment-id ID, --description D, --base-url URL

Exit codes:
  0  success
  1  the run failed or was cancelled
  2  usage or configuration error (nothing was changed)
  3  lock status: a target is locked

Secrets are never values in the configuration: secret fields hold references
(env:NAME, file:PATH) resolved at run time, and no secret reaches the
terminal, a log or a report.

Shell completion: lawsker-deploy completion bash|zsh --help`
