package deploy

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"strings"
	"time"

	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/dbschema"
	"github.com/lawsker/lawsker-deploy/remote"
)

// StateFormat is the version of state.json this release reads and writes
// (1: no undo journal; read and converted).
const StateFormat = 2

// Layout is where an app lives on a target:
//
//	<root>/<app>/releases/<id>/   frontend/, nginx.conf, backend.env (0600), manifest.json
//	<root>/<app>/current          symlink to the serving release
//	<root>/<app>/state.json       release history and the journal of a deploy in progress
//	<root>/<app>/.lock/           the deploy lock (lock.json inside)
//	<root>/<app>/current.container the serving backend container's name
type Layout struct {
	App      string
	Base     string // <root>/<app>
	SitePath string // the file nginx includes (a symlink to a release's nginx.conf)
	// Name is the deployment's in a shared nginx (upstream, zones).
	Name string
}

// NewLayout returns the layout of cfg's app on t.
func NewLayout(cfg *config.Config, t config.Target) Layout {
	site := t.Nginx.SitePath
	if site == "" {
		site = "/etc/nginx/sites-enabled/" + cfg.App + ".conf"
		if cfg.Environment != "" && cfg.Environment != "production" {
			site = "/etc/nginx/sites-enabled/" + cfg.App + "-" + cfg.Environment + ".conf"
		}
	}
	base := path.Join(t.Root, cfg.App)
	return Layout{App: cfg.App, Base: base, SitePath: site, Name: deploymentName(cfg.App, cfg.Environment, base)}
}

// deploymentName names a deployment (app, environment, root) in what it
// shares with others on a host (nginx's upstreams and zones): an nginx
// identifier of the app, the environment and a hash of the base folder.
func deploymentName(app, env, base string) string {
	sum := sha256.Sum256([]byte(base))
	id := strings.ReplaceAll(app, "-", "_")
	if env != "" {
		id += "_" + strings.ReplaceAll(env, "-", "_")
	}
	return id + "_" + hex.EncodeToString(sum[:4])
}

func (l Layout) Releases() string           { return path.Join(l.Base, "releases") }
func (l Layout) Release(id string) string   { return path.Join(l.Base, "releases", id) }
func (l Layout) Current() string            { return path.Join(l.Base, "current") }
func (l Layout) StateFile() string          { return path.Join(l.Base, "state.json") }
func (l Layout) LockDir() string            { return path.Join(l.Base, ".lock") }
func (l Layout) CurrentContainer() string   { return path.Join(l.Base, "current.container") }
func (l Layout) Container(id string) string { return l.App + "-" + id + "-" + l.baseTag() }
func (l Layout) Migration(id string) string { return l.App + "-migrate-" + id + "-" + l.baseTag() }
func (l Layout) Worker(id string) string    { return l.App + "-worker-" + id + "-" + l.baseTag() }

// baseTag tells apart the containers of two hosts, or two roots, that
// share a Docker engine: a hash of the base folder and the environment
// (the deployment's name).
func (l Layout) baseTag() string {
	sum := sha256.Sum256([]byte(l.Name + "\x00" + l.Base))
	return hex.EncodeToString(sum[:3])
}
func (l Layout) SiteConf(id string) string  { return path.Join(l.Release(id), "nginx.conf") }
func (l Layout) EnvFile(id string) string   { return path.Join(l.Release(id), "backend.env") }
func (l Layout) Frontend(id string) string  { return path.Join(l.Release(id), "frontend") }
func (l Layout) Manifest(id string) string  { return path.Join(l.Release(id), "manifest.json") }
func (l Layout) AccessLog(id string) string { return path.Join(l.Release(id), "access.log") }

// Release is one deployed release as recorded in state.json.
type Release struct {
	ID           string `json:"id"`
	Image        string `json:"image"` // repository@sha256:...
	FrontendHash string `json:"frontend_hash,omitempty"`
	ConfigHash   string `json:"config_hash"`
	// SecretsHash is a keyed hash of the secret values the release was
	// given (SecretsHash; never a value): a rotated secret redeploys.
	SecretsHash string `json:"secrets_hash,omitempty"`
	Container   string `json:"container"`
	Port        int    `json:"port"`
	// Ports are the release's backend.extra_ports.
	Ports   map[string]int `json:"ports,omitempty"`
	Who     string         `json:"who"`
	When    time.Time      `json:"when"`
	Message string         `json:"message,omitempty"`
	// Status: current, previous (still warm), retired (container stopped).
	Status string `json:"status"`
	// Verified: the release passed its deploy's verification and was kept.
	// A release switched to but never verified is undone by converge.
	Verified bool `json:"verified"`
	// Schema is the database's schema the release ran on, read from the
	// catalog once its backend passed the health gate (whatever migrated
	// it: a migrate_command or the app at its start); nil without a
	// database, or when it could not be read (then unknown: a switch back
	// to this release asks for --force).
	Schema *dbschema.Schema `json:"schema,omitempty"`
}

// Release statuses.
const (
	StatusCurrent  = "current"
	StatusPrevious = "previous"
	StatusRetired  = "retired"
)

// Journal is the write-ahead undo journal of a run in progress on a target
// (undo.go): before a step changes the host it appends how to undo that
// change and saves state.json; a revert, or the next run after a crash
// (converge), replays the entries in reverse. It is cleared once the
// release is verified and kept.
type Journal struct {
	ID        string    `json:"id"`
	Phase     string    `json:"phase"` // the last change recorded, for people
	Container string    `json:"container,omitempty"`
	Port      int       `json:"port,omitempty"`
	Started   time.Time `json:"started"`
	Undo      []Undo    `json:"undo"`
}

// State is state.json.
type State struct {
	Format     int       `json:"format"`
	App        string    `json:"app"`
	Releases   []Release `json:"releases"` // oldest first
	InProgress *Journal  `json:"in_progress,omitempty"`
}

// Current returns the serving release, if any.
func (s *State) Current() (Release, bool) { return s.find(StatusCurrent) }

// Previous returns the warm previous release, if any.
func (s *State) Previous() (Release, bool) { return s.find(StatusPrevious) }

func (s *State) find(status string) (Release, bool) {
	for i := len(s.Releases) - 1; i >= 0; i-- {
		if s.Releases[i].Status == status {
			return s.Releases[i], true
		}
	}
	return Release{}, false
}

// LoadState reads state.json ("no releases yet" when it does not exist).
func LoadState(h *remote.Host, l Layout) (*State, error) {
	data, err := h.ReadFile(l.StateFile())
	if errors.Is(err, os.ErrNotExist) {
		return &State{Format: StateFormat, App: l.App}, nil
	}
	if err != nil {
		return nil, err
	}
	s, err := ParseState(data, l)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", h.Endpoint.Addr(), err)
	}
	return s, nil
}

// ParseState reads state.json's contents: a damaged, truncated or newer
// file is an error naming it and what to do (nothing is changed). A format
// 1 file is converted: its releases were kept, so they count as verified,
// and its journal becomes undo entries.
func ParseState(data []byte, l Layout) (*State, error) {
	var s State
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("%s is damaged or truncated (%v): nothing was changed; restore it from a backup or move it aside (the next deploy then starts a new history), then run again", l.StateFile(), err)
	}
	switch {
	case s.Format > StateFormat:
		return nil, fmt.Errorf("%s has format %d, newer than this lawsker-deploy reads (%d): nothing was changed; upgrade lawsker-deploy", l.StateFile(), s.Format, StateFormat)
	case s.Format < 1:
		return nil, fmt.Errorf("%s has no valid format (%d): nothing was changed; it was not written by lawsker-deploy, move it aside", l.StateFile(), s.Format)
	case s.App != l.App:
		return nil, fmt.Errorf("%s belongs to app %q, not %q: nothing was changed; is targets[].root shared between apps?", l.StateFile(), s.App, l.App)
	}
	for i, r := range s.Releases {
		if r.ID == "" || r.Status != StatusCurrent && r.Status != StatusPrevious && r.Status != StatusRetired {
			return nil, fmt.Errorf("%s: releases[%d] has id %q and status %q (want current, previous or retired): nothing was changed; fix or move the file aside", l.StateFile(), i, r.ID, r.Status)
		}
	}
	if s.Format == 1 {
		for i := range s.Releases {
			s.Releases[i].Verified = true
		}
		if j := s.InProgress; j != nil {
			j.Undo = legacyUndo(&s, l, j)
		}
		s.Format = StateFormat
	}
	if j := s.InProgress; j != nil {
		for i, u := range j.Undo {
			if !u.Kind.known() {
				return nil, fmt.Errorf("%s: in_progress.undo[%d] has kind %q, which this lawsker-deploy cannot undo: nothing was changed; converge with the version that wrote it", l.StateFile(), i, u.Kind)
			}
		}
	}
	return &s, nil
}

// SaveState writes state.json atomically.
func SaveState(h *remote.Host, l Layout, s *State) error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return h.WriteFile(l.StateFile(), append(data, '\n'), 0o644)
}

// PrimaryLayout is the layout of cfg's app on its primary target.
func PrimaryLayout(cfg *config.Config) Layout { return NewLayout(cfg, cfg.Primary()) }
