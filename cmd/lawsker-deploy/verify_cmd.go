package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/lawsker/lawsker-deploy/checks"
	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/internal/atomicfile"
	"github.com/lawsker/lawsker-deploy/report"
	"github.com/lawsker/lawsker-deploy/rollout"
)

// verifyDetails is what a verify report holds beyond the run.
type verifyDetails struct {
	BaseURL    string            `json:"base_url"`
	Categories []string          `json:"categories"`
	Baseline   string            `json:"baseline,omitempty"`
	Suite      *checks.Suite     `json:"suite"`
	Summary    map[string]int    `json:"summary"`
	Files      map[string]string `json:"files"`
}

func (c *cli) verify(ctx context.Context, args []string) error {
	fs := c.newFlagSet("verify")
	baseURL := fs.String("base-url", "", "URL to verify (default: verification.base_url, or derived from domains/targets)")
	category := fs.String("category", "", "comma-separated categories: health,functional,performance,security (default: verification.categories)")
	baseline := fs.String("baseline", "", "a previous verify report to compare performance with (default: the newest passing one in --reports-dir)")
	noSSH := fs.Bool("no-ssh", false, "do not connect to the target: database and Redis are dialled from here, file permissions are not checked")
	if err := c.parseFlags(fs, args); err != nil {
		return err
	}
	var s *session
	var cfg *config.Config
	site := false
	if _, statErr := os.Stat(c.configPath); *baseURL != "" && errors.Is(statErr, os.ErrNotExist) {
		// Any URL, no deployment: the checks that need no configuration.
		site, *noSSH = true, true
		var err error
		if cfg, err = config.ForURL(*baseURL); err != nil {
			return usageError{"verify: " + err.Error()}
		}
		if s, err = c.startSession("verify"); err != nil {
			return err
		}
		fmt.Fprintf(c.stderr, "note: no %s: verifying %s with the checks that need no configuration (health of /, response times, load, security headers, TLS)\n", c.configPath, *baseURL)
	} else {
		ss, l, err := c.open("verify")
		if err != nil {
			return err
		}
		s, cfg = ss, l.Config
	}
	req := rollout.VerifyRequest{Config: cfg, Resolver: s.res, BaseURL: *baseURL, Site: site, NoSSH: *noSSH}
	for _, part := range strings.Split(*category, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		if !checks.Category(part).Valid() {
			err := usageError{fmt.Sprintf("verify: unknown category %q (health, functional, performance, security)", part)}
			s.end(report.StatusInvalid, err, nil)
			return err
		}
		req.Categories = append(req.Categories, checks.Category(part))
	}
	d := verifyDetails{BaseURL: checks.BaseURL(cfg, *baseURL), Files: map[string]string{}}
	if *baseline == "" {
		*baseline = newestPassingVerify(c.reportsDir)
	}
	if *baseline != "" {
		b, err := loadBaseline(*baseline)
		if err != nil {
			s.end(report.StatusInvalid, err, nil)
			return fmt.Errorf("verify: --baseline %s: %w", *baseline, err)
		}
		req.Baseline, req.BaselineFrom = b, *baseline
	}
	run, err := rollout.Verify(ctx, req)
	if err != nil {
		s.end(report.StatusInvalid, err, nil)
		return err
	}
	suite, skipNote := run.Suite, run.Note
	d.Baseline = run.BaselineFrom
	if skipNote != "" {
		fmt.Fprintln(c.stderr, "warning:", s.red.String(skipNote))
		s.log.Logger.Warn("verify without the target's tunnel", "reason", skipNote)
	}
	for i := range suite.Results {
		suite.Results[i].Message = s.red.String(suite.Results[i].Message)
	}
	for _, r := range suite.Results {
		d.Categories = appendOnce(d.Categories, string(r.Category))
	}
	d.Suite = suite
	d.Summary = map[string]int{"pass": suite.Count(checks.Pass), "fail": suite.Count(checks.Fail), "warn": suite.Count(checks.Warn), "skip": suite.Count(checks.Skip)}
	junit, err := checks.JUnit(suite)
	if err != nil {
		return failure{err}
	}
	md := checks.Markdown(suite, "Verification of "+cfg.App+" ("+d.BaseURL+")")
	if skipNote != "" {
		md += "\n> " + s.red.String(skipNote) + "\n"
	}
	base := filepath.Join(c.reportsDir, "verify_"+s.id)
	for ext, data := range map[string][]byte{".xml": junit, ".md": []byte(md)} {
		if err := atomicfile.Write(base+ext, s.red.Bytes(data), 0o644); err != nil {
			return failure{err}
		}
		d.Files[ext[1:]] = base + ext
	}
	if summary := os.Getenv("GITHUB_STEP_SUMMARY"); summary != "" {
		if f, err := os.OpenFile(summary, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644); err == nil {
			fmt.Fprintln(f, s.red.String(md))
			f.Close()
		}
	}
	var runErr error
	status := report.StatusSucceeded
	if suite.Failed() {
		var names []string
		for _, r := range suite.Results {
			if r.Status == checks.Fail {
				names = append(names, r.Name)
			}
		}
		runErr = fmt.Errorf("%d check(s) failed: %s", len(names), strings.Join(names, ", "))
		status = report.StatusFailed
	}
	path := s.end(status, runErr, d)
	if c.jsonOut {
		_ = s.jsonOut(struct {
			verifyDetails
			Report string `json:"report"`
		}{d, path})
	} else {
		s.out("%s", checks.Table(suite))
		s.out("report: %s (JUnit %s, summary %s)\n", path, d.Files["xml"], d.Files["md"])
	}
	return c.failed(s, runErr)
}

func appendOnce(xs []string, x string) []string {
	for _, e := range xs {
		if e == x {
			return xs
		}
	}
	return append(xs, x)
}

// newestPassingVerify finds the newest verify report that succeeded.
func newestPassingVerify(dir string) string {
	paths, _ := filepath.Glob(filepath.Join(dir, "verify_*.json"))
	sort.Sort(sort.Reverse(sort.StringSlice(paths))) // ids sort by time
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		var r struct{ Status string }
		if json.Unmarshal(data, &r) == nil && r.Status == report.StatusSucceeded {
			return p
		}
	}
	return ""
}

func loadBaseline(path string) (checks.Baseline, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r struct {
		Verb    string `json:"verb"`
		Details struct {
			Suite *checks.Suite `json:"suite"`
		} `json:"details"`
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("not a verify report: %w", err)
	}
	if r.Verb != "verify" || r.Details.Suite == nil {
		return nil, errors.New("not a verify report (verb or suite missing)")
	}
	return checks.BaselineFrom(r.Details.Suite.Results), nil
}
