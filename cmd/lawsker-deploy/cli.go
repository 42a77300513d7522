package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/deploy"
	"github.com/lawsker/lawsker-deploy/internal/atomicfile"
	"github.com/lawsker/lawsker-deploy/internal/textdist"
	"github.com/lawsker/lawsker-deploy/pipelines"
	"github.com/lawsker/lawsker-deploy/progress"
	"github.com/lawsker/lawsker-deploy/redact"
	"github.com/lawsker/lawsker-deploy/release"
	"github.com/lawsker/lawsker-deploy/report"
)

// Exit codes.
const (
	exitOK     = 0
	exitFailed = 1
	// exitLocked: `lock status` found a target locked.
	exitLocked = 3
	exitUsage  = 2
	// exitSuperseded: a newer deploy replaced this one in the lock's
	// queue (--supersede); nothing was changed.
	exitSuperseded = 4
)

type cli struct {
	stdout, stderr io.Writer
	lookupEnv      func(string) (string, bool)
	abort          <-chan struct{}
	interactive    bool
	now            func() time.Time

	// describing: the describe pass (commands.go) is running
	describing bool

	// global flags
	configPath string
	jsonOut    bool
	verbose    bool
	reportsDir string
	logsDir    string
}

func isTerminal() bool { return progress.IsTerminal(os.Stderr) }

// usageError is a bad command line: exit 2 with the message and a hint.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func (c *cli) globalFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.configPath, "config", c.configPath, "configuration file")
	fs.BoolVar(&c.jsonOut, "json", c.jsonOut, "machine-readable output")
	fs.BoolVar(&c.verbose, "verbose", c.verbose, "more detail")
	fs.StringVar(&c.reportsDir, "reports-dir", c.reportsDir, "reports folder")
	fs.StringVar(&c.logsDir, "logs-dir", c.logsDir, "logs folder")
}

func (c *cli) newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.globalFlags(fs)
	return fs
}

func (c *cli) run(ctx context.Context, args []string) int {
	if c.now == nil {
		c.now = time.Now
	}
	c.configPath, c.reportsDir, c.logsDir = "deploy.json", "reports", "logs"
	args, note, err := legacyArgs(args)
	if err != nil {
		return c.exitCode(err)
	}
	if note != "" {
		fmt.Fprintln(c.stderr, "note:", note)
	}
	global := c.newFlagSet("lawsker-deploy")
	help := global.Bool("help", false, "")
	global.BoolVar(help, "h", false, "")
	if err := global.Parse(args); err != nil {
		return c.usageFail(err)
	}
	rest := global.Args()
	var runErr error
	root := c.rootCommand(ctx, &runErr)
	switch {
	case *help:
		rest = []string{"help"}
	case len(rest) > 0 && !knownVerb(root, rest[0]):
		return c.exitCode(usageError{fmt.Sprintf("unknown command %q%s", rest[0], suggestVerb(root, rest[0]))})
	}
	root.SetArgs(rest)
	if err := root.ExecuteContext(ctx); err != nil {
		var code failureCode
		var u usageError
		if !errors.As(err, &code) && !errors.As(err, &u) {
			err = usageError{err.Error()}
		}
		return c.exitCode(err)
	}
	return c.exitCode(runErr)
}

// knownVerb says whether cobra routes v (a command, help or completion).
func knownVerb(root *cobra.Command, v string) bool {
	for _, cmd := range root.Commands() {
		if cmd.Name() == v || slices.Contains(cmd.Aliases, v) {
			return true
		}
	}
	return v == "help" || v == "completion" || v == cobra.ShellCompRequestCmd || v == cobra.ShellCompNoDescRequestCmd
}

func suggestVerb(root *cobra.Command, v string) string {
	var names []string
	for _, cmd := range root.Commands() {
		if !cmd.Hidden {
			names = append(names, cmd.Name())
		}
	}
	slices.Sort(names)
	for _, known := range names {
		if strings.HasPrefix(known, v) || strings.HasPrefix(v, known) {
			return fmt.Sprintf("; did you mean %q?", known)
		}
	}
	if near := textdist.Closest(v, names); near != "" {
		return fmt.Sprintf("; did you mean %q?", near)
	}
	return ""
}

// failure is a run that went wrong (exit 1), already reported.
type failure struct{ err error }

func (f failure) Error() string { return f.err.Error() }
func (f failure) Unwrap() error { return f.err }

func (c *cli) exitCode(err error) int {
	var u usageError
	var ps config.Problems
	var f failure
	var code failureCode
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &code):
		return int(code)
	case errors.As(err, &u):
		return c.usageFail(err)
	case errors.As(err, &f):
		fmt.Fprintln(c.stderr, "error:", err)
		return exitFailed
	case errors.As(err, &ps):
		fmt.Fprintln(c.stderr, err)
		return exitUsage
	default:
		fmt.Fprintln(c.stderr, "error:", err)
		return exitUsage
	}
}

func (c *cli) usageFail(err error) int {
	fmt.Fprintf(c.stderr, "lawsker-deploy: %v\nRun 'lawsker-deploy help' for usage.\n", err)
	return exitUsage
}

// parseFlags parses a verb's flags (in the describe pass it hands the
// flag set back instead). An unknown flag names the nearest known one.
func (c *cli) parseFlags(fs *flag.FlagSet, args []string) error {
	if c.describing {
		return described{fs}
	}
	if err := fs.Parse(args); err != nil {
		msg := err.Error()
		if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
			var names []string
			fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
			msg = fmt.Sprintf("%s: unknown flag --%s", fs.Name(), name)
			if near := textdist.Closest(name, names); near != "" {
				msg += fmt.Sprintf("; did you mean --%s?", near)
			}
			msg += fmt.Sprintf(" (lawsker-deploy %s --help lists them)", fs.Name())
		}
		return usageError{msg}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("%s: unexpected argument %q", fs.Name(), fs.Arg(0))}
	}
	return nil
}

// session is what every verb run has: an id, a redactor fed by the secret
// resolver, a log file and a report, written whatever happens.
type session struct {
	c      *cli
	id     string
	red    *redact.Redactor
	res    *config.Resolver
	log    *report.Log
	report *report.Report
}

func (c *cli) startSession(verb string) (*session, error) {
	start := c.now()
	s := &session{c: c, id: report.NewID(start), red: redact.New()}
	s.res = &config.Resolver{LookupEnv: c.lookupEnv, OnResolve: func(v string) { s.red.Add(v) }}
	level := slog.LevelInfo
	if c.verbose {
		level = slog.LevelDebug
	}
	lg, err := report.OpenLog(c.logsDir, verb, s.id, s.red, level)
	if err != nil {
		return nil, err
	}
	s.log = lg
	s.report = report.New(verb, s.id, start)
	s.report.ToolVersion, s.report.Config, s.report.LogFile = version, c.configPath, lg.Path
	return s, nil
}

// end sets the report's outcome (for verbs that run no pipeline) and
// writes it; it returns the report's path.
func (s *session) end(status string, runErr error, details any) string {
	errText := ""
	if runErr != nil {
		errText = runErr.Error()
	}
	s.report.Details = details
	s.report.Close(status, errText, s.c.now())
	return s.write(runErr)
}

// write logs the outcome, closes the log and writes the report (whose
// status end or runGraph set); it returns the report's path.
func (s *session) write(runErr error) string {
	if runErr != nil {
		s.log.Logger.Error("run ended", "status", s.report.Status, "error", runErr.Error())
	} else {
		s.log.Logger.Info("run ended", "status", s.report.Status)
	}
	if err := s.log.Close(); err != nil {
		fmt.Fprintln(s.c.stderr, "warning: log file:", err)
	}
	path, err := s.report.Write(s.c.reportsDir, s.red)
	if err != nil {
		fmt.Fprintln(s.c.stderr, "warning:", err)
	}
	return path
}

// out writes human output to stdout through the redactor.
func (s *session) out(format string, args ...any) {
	fmt.Fprint(s.c.stdout, s.red.String(fmt.Sprintf(format, args...)))
}

func (s *session) jsonOut(v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = s.c.stdout.Write(append(s.red.Bytes(data), '\n'))
	return err
}

func (c *cli) load(s *session) (*config.Loaded, error) {
	l, err := config.LoadFile(c.configPath, config.ImportOptions{})
	if err != nil {
		s.log.Logger.Error("configuration rejected", "config", c.configPath, "error", err.Error())
		return nil, err
	}
	// Register every secret that resolves here with the redactor before
	// anything is printed, whatever the verb does with it.
	l.Config.SecretStatuses(s.res)
	s.log.Logger.Info("configuration loaded", "config", c.configPath, "format", string(l.Format))
	return l, nil
}

// begin parses a verb's flags, starts its session and loads the
// configuration; a configuration that does not load ends the session as
// invalid.
func (c *cli) begin(verb string, fs *flag.FlagSet, args []string) (*session, *config.Loaded, error) {
	if err := c.parseFlags(fs, args); err != nil {
		return nil, nil, err
	}
	return c.open(verb)
}

// open starts a verb's session and loads the configuration.
func (c *cli) open(verb string) (*session, *config.Loaded, error) {
	s, err := c.startSession(verb)
	if err != nil {
		return nil, nil, err
	}
	l, err := c.load(s)
	if err != nil {
		s.end(report.StatusInvalid, err, nil)
		return nil, nil, err
	}
	return s, l, nil
}

type validateResult struct {
	Valid    bool                  `json:"valid"`
	Config   string                `json:"config"`
	Format   config.Format         `json:"format,omitempty"`
	Problems config.Problems       `json:"problems,omitempty"`
	Notes    []string              `json:"notes,omitempty"`
	Secrets  []config.SecretStatus `json:"secrets,omitempty"`
	Report   string                `json:"report,omitempty"`
}

func (c *cli) validate(_ context.Context, args []string) error {
	fs := c.newFlagSet("validate")
	requireSecrets := fs.Bool("require-secrets", false, "fail when a secret reference has no value")
	if err := c.parseFlags(fs, args); err != nil {
		return err
	}
	s, err := c.startSession("validate")
	if err != nil {
		return err
	}
	res := validateResult{Config: c.configPath}
	l, err := c.load(s)
	if err != nil {
		var ps config.Problems
		if !errors.As(err, &ps) {
			ps = config.Problems{{Message: err.Error()}}
		}
		res.Problems = ps
		res.Report = s.end(report.StatusInvalid, err, res)
		if c.jsonOut {
			_ = s.jsonOut(res)
			return failureCode(exitUsage)
		}
		return err
	}
	res.Format, res.Notes = l.Format, l.Notes
	res.Secrets = l.Config.SecretStatuses(s.res) // already registered by load; this records availability
	var missing config.Problems
	for _, st := range res.Secrets {
		if !st.Available {
			missing = append(missing, config.Problem{Path: st.Path, Message: st.Problem})
		}
	}
	var runErr error
	status := report.StatusSucceeded
	if *requireSecrets && len(missing) > 0 {
		res.Problems, runErr, status = missing, missing, report.StatusInvalid
	}
	res.Valid = runErr == nil
	res.Report = s.end(status, runErr, res)
	if c.jsonOut {
		if err := s.jsonOut(res); err != nil {
			return err
		}
		if runErr != nil {
			return failureCode(exitUsage)
		}
		return nil
	}
	if runErr != nil {
		return runErr
	}
	s.out("%s: valid (%s format)\n%s", c.configPath, l.Format, l.Config.Summary(res.Secrets))
	for _, n := range l.Notes {
		s.out("note: %s\n", n)
	}
	if len(missing) > 0 {
		s.out("%d secret reference(s) have no value here; deploy will need them (--require-secrets makes this an error)\n", len(missing))
	}
	s.out("report: %s\n", res.Report)
	return nil
}

// failureCode is an exit code whose message was already printed (JSON mode).
type failureCode int

func (f failureCode) Error() string { return fmt.Sprintf("exit %d", int(f)) }

func (c *cli) plan(_ context.Context, args []string) error {
	s, l, err := c.begin("plan", c.newFlagSet("plan"), args)
	if err != nil {
		return err
	}
	p, err := deploy.NewPlan(l.Config)
	if err != nil {
		s.end(report.StatusFailed, err, nil)
		return failure{err}
	}
	path := s.end(report.StatusSucceeded, nil, p)
	if c.jsonOut {
		return s.jsonOut(struct {
			*deploy.Plan
			Report string `json:"report"`
		}{p, path})
	}
	s.out("%s", p.Text())
	for _, n := range l.Notes {
		s.out("note: %s\n", n)
	}
	s.out("report: %s\n", path)
	return nil
}

// runGraph runs a pipeline with progress on stderr (live on a terminal,
// plain lines otherwise, nothing with --json), records it in the log and
// the report, and returns its result.
func (s *session) runGraph(ctx context.Context, g *pipelines.Graph, cfg *config.Config) *pipelines.Result {
	var res *pipelines.Result
	s.withProgress(func(view pipelines.Observer) {
		res = pipelines.Run(ctx, g, release.Options(cfg, s.releaseRequest(cfg, view)))
	})
	s.report.Finish(res, s.c.now())
	return res
}

// runRelease runs a deploy or rollback through the release session that
// the Dagger module runs too, with the same progress and report.
func (s *session) runRelease(ctx context.Context, cfg *config.Config, rel release.Release) release.Result {
	var res release.Result
	s.withProgress(func(view pipelines.Observer) {
		res = release.Run(ctx, s.releaseRequest(cfg, view), rel)
	})
	s.report.Finish(res.Run, s.c.now())
	return res
}

func (s *session) releaseRequest(cfg *config.Config, view pipelines.Observer) release.Request {
	return release.Request{Config: cfg, Resolver: s.res, ID: s.id, Who: who(), Report: s.report.Path(s.c.reportsDir),
		Observer: view, Logger: s.log.Logger, Abort: s.c.abort, Mask: s.red.String}
}

// withProgress gives fn the progress view: live on a terminal, plain lines
// otherwise, none with --json.
func (s *session) withProgress(fn func(pipelines.Observer)) {
	if s.c.jsonOut {
		fn(nil)
		return
	}
	out := s.red.NewWriter(s.c.stderr)
	defer out.Flush()
	if s.c.interactive {
		live := progress.NewLive(out)
		live.Start(200 * time.Millisecond)
		defer live.Stop()
		fn(live)
		return
	}
	fn(progress.NewPlain(out))
}

func (c *cli) preflight(ctx context.Context, args []string) error {
	s, l, err := c.begin("preflight", c.newFlagSet("preflight"), args)
	if err != nil {
		return err
	}
	g, err := deploy.Preflight(l.Config, s.res, deploy.PreflightOptions{})
	if err != nil {
		s.end(report.StatusFailed, err, nil)
		return failure{err}
	}
	res := s.runGraph(ctx, g, l.Config)
	runErr := res.Err()
	path := s.write(runErr)
	if c.jsonOut {
		if err := s.jsonOut(s.report); err != nil {
			return err
		}
	} else {
		s.out("report: %s\n", path)
	}
	return c.failed(s, runErr)
}

// failed is the error a verb returns after its run failed (nil when it did
// not): exit 1, with the masked message unless --json printed the result.
func (c *cli) failed(s *session, runErr error) error {
	if runErr == nil {
		return nil
	}
	if errors.Is(runErr, deploy.ErrSuperseded) {
		if !c.jsonOut {
			fmt.Fprintln(c.stderr, "error:", s.red.Error(runErr))
		}
		return failureCode(exitSuperseded)
	}
	if c.jsonOut {
		return failureCode(exitFailed)
	}
	return failure{s.red.Error(runErr)}
}

func (c *cli) configCmd(args []string) error {
	if len(args) == 0 {
		return usageError{"config needs a subcommand: import or schema"}
	}
	switch args[0] {
	case "schema":
		fs := c.newFlagSet("config schema")
		if err := c.parseFlags(fs, args[1:]); err != nil {
			return err
		}
		data, err := config.Schema()
		if err != nil {
			return failure{err}
		}
		_, err = c.stdout.Write(data)
		return err
	case "import":
		return c.configImport(args[1:])
	}
	return usageError{fmt.Sprintf("unknown config subcommand %q (import or schema)", args[0])}
}

func (c *cli) configImport(args []string) error {
	fs := c.newFlagSet("config import")
	from := fs.String("from", "deployment_config.json", "Lawsker's legacy configuration file")
	out := fs.String("out", "deploy.json", "native configuration to write (- for stdout)")
	force := fs.Bool("force", false, "overwrite --out when it exists")
	var opts config.ImportOptions
	fs.StringVar(&opts.App, "app", "", "application name (default lawsker)")
	fs.StringVar(&opts.Host, "host", "", "target host (default 127.0.0.1)")
	fs.StringVar(&opts.User, "user", "", "SSH user on the target (default deploy)")
	fs.StringVar(&opts.Image, "image", "", "backend image repository (default 127.0.0.1:5000/<app>/backend)")
	if err := c.parseFlags(fs, args); err != nil {
		return err
	}
	data, err := os.ReadFile(*from)
	if err != nil {
		return fmt.Errorf("config import: %w (pass --from with the path of deployment_config.json)", err)
	}
	l, err := config.ParseLegacy(data, opts)
	if err != nil {
		return err
	}
	l.Config.Schema = config.SchemaURL
	native, err := config.Marshal(l.Config)
	if err != nil {
		return failure{err}
	}
	for _, n := range l.Notes {
		fmt.Fprintln(c.stderr, "note:", n)
	}
	if *out == "-" {
		_, err = c.stdout.Write(native)
		return err
	}
	if _, err := os.Stat(*out); err == nil && !*force {
		return usageError{fmt.Sprintf("config import: %s exists; pass --force to overwrite it or --out to write elsewhere", *out)}
	}
	if err := atomicfile.Write(*out, native, 0o644); err != nil {
		return failure{fmt.Errorf("config import: %w", err)}
	}
	fmt.Fprintf(c.stdout, "wrote %s (secrets stay references: %s)\n", *out, secretList(l.Config))
	return nil
}

func secretList(cfg *config.Config) string {
	var refs []string
	for _, u := range cfg.SecretRefs() {
		refs = append(refs, u.Path+" <- "+string(u.Ref))
	}
	if len(refs) == 0 {
		return "none"
	}
	return strings.Join(refs, ", ")
}
