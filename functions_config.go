package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/lawsker/lawsker-deploy/builds"
	cfgpkg "github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/deploy"
	"github.com/lawsker/lawsker-deploy/internal/dagger"
)

// Validate checks the configuration and prints a summary with every secret reference and whether it was passed.
//
// Every problem is reported at once, each with its path and line
// (`targets[0].ssh.port: must be 1-65535, got 70000 (line 12)`); unknown keys
// are rejected. Lawsker's legacy deployment_config.json is read too. A
// secret reference not among --secrets is listed with the --secrets form
// that would pass it: the engine reads none of your environment variables
// or files by itself.
func (m *LawskerDeploy) Validate(ctx context.Context) (string, error) {
	l, err := m.load(ctx, "config-import")
	if err != nil {
		return "", err
	}
	res, err := m.secretValues(ctx, l.Config, nil)
	if err != nil {
		return "", err
	}
	var statuses []cfgpkg.SecretStatus
	for _, u := range l.Config.AllSecretRefs() {
		s := cfgpkg.SecretStatus{SecretUse: u, Available: true}
		if key, err := res.ProvidedFor(u.Ref); err != nil || key == "" {
			s.Available, s.Problem = false, "not passed: add --secrets="+u.Ref.URI()
			if err != nil {
				s.Problem = err.Error()
			}
		}
		statuses = append(statuses, s)
	}
	var notes strings.Builder
	for _, n := range l.Notes {
		notes.WriteString("note: " + n + "\n")
	}
	return fmt.Sprintf("valid (%s format)\n%s%s", l.Format, l.Config.Summary(statuses), notes.String()), nil
}

// Plan shows what deploy runs: the build stages before the lock, then the deployment DAG stage by stage.
//
// Which steps run in parallel, their timeouts and retries, and what happens
// on failure. Without --backend-image, deploy first builds, rehearses and
// publishes from the module's source; the plan shows those stages too.
func (m *LawskerDeploy) Plan(
	ctx context.Context,
	// Print the plan as JSON.
	// +optional
	asJSON bool,
	// The prebuilt backend image deploy would get (then nothing is built).
	// +optional
	backendImage string,
	// Deploy would get --skip-rehearsal.
	// +optional
	skipRehearsal bool,
) (string, error) {
	cfg, err := m.loadConfig(ctx)
	if err != nil {
		return "", err
	}
	p, err := deploy.NewPlan(cfg)
	if err != nil {
		return "", err
	}
	if backendImage == "" {
		p.BeforeLock = builds.BeforeLock(cfg, !skipRehearsal)
	}
	if asJSON {
		return p.JSON()
	}
	return p.Text(), nil
}

// ConfigImport converts Lawsker's legacy deployment_config.json into the native deploy.json.
//
// `${VAR}` references become secret references (env:VAR); a password
// written out in the legacy file is refused, never copied.
func (m *LawskerDeploy) ConfigImport(
	ctx context.Context,
	// Lawsker's deployment_config.json.
	legacy *dagger.File,
	// The application name.
	// +default="lawsker"
	app string,
	// The target host reached over SSH.
	// +default="127.0.0.1"
	host string,
	// The SSH user on the target.
	// +default="deploy"
	user string,
	// The backend image repository (default 127.0.0.1:5000/<app>/backend).
	// +optional
	image string,
) (*dagger.File, error) {
	data, err := legacy.Contents(ctx)
	if err != nil {
		return nil, fmt.Errorf("config-import: reading the legacy file: %w", err)
	}
	l, err := cfgpkg.ParseLegacy([]byte(data), cfgpkg.ImportOptions{App: app, Host: host, User: user, Image: image, Verb: "config-import"})
	if err != nil {
		return nil, err
	}
	l.Config.Schema = cfgpkg.SchemaURL
	out, err := cfgpkg.Marshal(l.Config)
	if err != nil {
		return nil, err
	}
	return dag.Directory().WithNewFile("deploy.json", string(out)).File("deploy.json"), nil
}

// ConfigSchema returns the JSON Schema of deploy.json, for editors.
func (m *LawskerDeploy) ConfigSchema() (*dagger.File, error) {
	data, err := cfgpkg.Schema()
	if err != nil {
		return nil, err
	}
	return dag.Directory().WithNewFile("deploy.schema.json", string(data)).File("deploy.schema.json"), nil
}
