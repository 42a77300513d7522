package deploy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/lawsker/lawsker-deploy/pipelines"
	"github.com/lawsker/lawsker-deploy/remote"
)

// UndoKind is what an undo entry puts back. Each step that changes a host
// records its entry (and saves state.json) before the change: do and undo
// are written side by side, in the step's own code.
type UndoKind string

// The undo entries, each with the field it uses.
const (
	// UndoFolder removes Path (a release folder the run creates).
	UndoFolder UndoKind = "remove-folder"
	// UndoContainer removes Container (the new backend, a migration).
	UndoContainer UndoKind = "remove-container"
	// UndoSite points nginx's site, the `current` link and the serving
	// container file at To again (nil To: the app had no site), then
	// checks and reloads nginx.
	UndoSite UndoKind = "restore-site"
	// UndoHistory puts state.json's releases back to History.
	UndoHistory UndoKind = "restore-history"
	// UndoMonitoring points Prometheus at To's backend again.
	UndoMonitoring UndoKind = "restore-monitoring"
	// UndoDatabase restores the database from the pre-deploy Snapshot
	// when the run's migrations changed it (Hooks.RestoreDatabase decides).
	// It runs once every target serves its previous release again.
	UndoDatabase UndoKind = "restore-database"
	// UndoUnhold puts a hold's change back from Token (Hooks.Unhold: the
	// database swapped in by a rollback goes back to the one it replaced).
	UndoUnhold UndoKind = "undo-hold"
)

var undoKinds = []UndoKind{UndoFolder, UndoContainer, UndoSite, UndoHistory, UndoMonitoring, UndoDatabase, UndoUnhold}

func (k UndoKind) known() bool { return slices.Contains(undoKinds, k) }

// Undo is one journal entry: how to put back one change to the host.
type Undo struct {
	Kind      UndoKind  `json:"kind"`
	Path      string    `json:"path,omitempty"`
	Container string    `json:"container,omitempty"`
	To        *Release  `json:"to,omitempty"`
	History   []Release `json:"history,omitempty"`
	Snapshot  string    `json:"snapshot,omitempty"`
	Token     string    `json:"token,omitempty"`
}

// legacyUndo turns a format-1 journal (phases, no entries) into the entries
// that undo it: the site back on the current release when it may point at
// the interrupted one, its container and folder removed.
func legacyUndo(s *State, l Layout, j *Journal) []Undo {
	u := []Undo{{Kind: UndoFolder, Path: l.Release(j.ID)}}
	if j.Container != "" {
		u = append(u, Undo{Kind: UndoContainer, Container: j.Container})
	}
	if j.Phase == "switching" {
		var to *Release
		if cur, ok := s.Current(); ok {
			to = &cur
		}
		u = append(u, Undo{Kind: UndoSite, To: to})
	}
	return u
}

// record appends undo entries to the target's journal and saves state.json,
// before the change they undo is made (write-ahead).
func (tr *targetRun) record(phase string, entries ...Undo) error {
	j := tr.state.InProgress
	j.Phase = phase
	j.Undo = append(j.Undo, entries...)
	return SaveState(tr.host, tr.layout, tr.state)
}

// undoEnv is what replaying a journal needs on one target.
type undoEnv struct {
	host   *remote.Host
	layout Layout
	docker Docker
	nginx  Nginx
	state  *State
	// monitoring points Prometheus at a release's backend.
	monitoring func(ctx context.Context, to Release) error
	// database restores the database from a snapshot when its schema
	// changed (nil: this run cannot; the error says which run can).
	database func(ctx context.Context, h *remote.Host, snapshot string) error
	// unhold puts a hold's change back (nil: this run cannot).
	unhold func(ctx context.Context, h *remote.Host, token string) error
	// siteBack is told when a site undo was replayed, with the release
	// the site went back to (nil: none): it waits for nginx to serve it,
	// and ends a hold.
	siteBack func(ctx context.Context, to *Release)
	log      *slog.Logger
}

// replay undoes the journal's entries in reverse order, except those skip
// keeps. Undone entries leave the journal; an empty journal is cleared.
// It stops at the first failure and keeps what is not undone, so the next
// run's converge replays exactly the rest. Every entry is idempotent: a
// replay cut short by a crash is replayed whole again.
func (u undoEnv) replay(ctx context.Context, skip func(Undo) bool) error {
	j := u.state.InProgress
	if j == nil {
		return nil
	}
	var kept []Undo
	var err error
	var siteTo *string // the release the site was put back on (replayed first)
	i := len(j.Undo) - 1
	for ; i >= 0; i-- {
		e := j.Undo[i]
		if skip != nil && skip(e) {
			kept = append([]Undo{e}, kept...)
			continue
		}
		if e.Kind == UndoSite && siteTo != nil && *siteTo == releaseID(e.To) {
			continue // the same site again (a hold's, then the switch's): already there
		}
		if err = u.undo(ctx, e); err != nil {
			err = fmt.Errorf("undo %s: %w", e.Kind, err)
			break
		}
		u.log.Info("undone", "deploy", j.ID, "undo", string(e.Kind))
		if e.Kind == UndoSite {
			to := releaseID(e.To)
			siteTo = &to
			if u.siteBack != nil {
				u.siteBack(ctx, e.To)
			}
		}
	}
	rest := append(append([]Undo(nil), j.Undo[:i+1]...), kept...)
	if len(rest) == 0 {
		u.state.InProgress = nil
	} else {
		j.Undo = rest
	}
	if serr := SaveState(u.host, u.layout, u.state); serr != nil {
		return errors.Join(err, serr)
	}
	return err
}

func releaseID(r *Release) string {
	if r == nil {
		return ""
	}
	return r.ID
}

func (u undoEnv) undo(ctx context.Context, e Undo) error {
	switch e.Kind {
	case UndoFolder:
		_, err := u.host.Run(ctx, "rm", "-rf", "--", e.Path)
		return err
	case UndoContainer:
		return removeContainer(ctx, u.host, u.docker, e.Container)
	case UndoSite:
		_, err := u.host.RunScript(ctx, nil, siteCmds(u.layout, u.nginx, e.To)...)
		return err
	case UndoHistory:
		u.state.Releases = append([]Release(nil), e.History...)
		return nil
	case UndoMonitoring:
		if e.To == nil {
			return nil // no previous backend to point Prometheus at
		}
		return u.monitoring(ctx, *e.To)
	case UndoDatabase:
		if u.database == nil {
			return fmt.Errorf("the interrupted deploy %s ran its migrations; the database goes back to snapshot %s, which this command cannot do: run `lawsker-deploy deploy` (it converges, database included) or `lawsker-deploy rollback --snapshot %s --components database`", u.state.InProgress.ID, e.Snapshot, e.Snapshot)
		}
		err := u.database(ctx, u.host, e.Snapshot)
		if _, skipped := pipelines.IsSkip(err); skipped {
			return nil // the schema had not changed: nothing to restore
		}
		return err
	case UndoStart:
		if _, err := u.host.Run(ctx, u.docker.Start(e.Container)...); err != nil && !strings.Contains(err.Error(), "No such container") {
			return err
		}
		return nil
	case UndoUnhold:
		if u.unhold == nil {
			return fmt.Errorf("the interrupted run %s swapped a database in under a hold; putting it back (%s) needs `lawsker-deploy deploy` or `lawsker-deploy rollback` with this configuration's database section", u.state.InProgress.ID, e.Token)
		}
		return u.unhold(ctx, u.host, e.Token)
	}
	return fmt.Errorf("unknown undo kind %q", e.Kind)
}

// removeContainer removes a container; one already gone is not an error.
func removeContainer(ctx context.Context, h *remote.Host, dk Docker, name string) error {
	if _, err := h.Run(ctx, dk.Remove(name)...); err != nil && !strings.Contains(err.Error(), "No such container") {
		return err
	}
	return nil
}

// siteCmds point nginx's site, the `current` link and the serving-container
// file at release to (nil: remove them: the app had no site), then check
// and reload nginx: one session.
func siteCmds(l Layout, n Nginx, to *Release) [][]string {
	var cmds [][]string
	if to == nil {
		cmds = append(cmds, []string{"rm", "-f", l.SitePath, l.Current(), l.CurrentContainer()})
	} else {
		cmds = append(cmds, remote.SymlinkCmds(l.SiteConf(to.ID), l.SitePath)...)
	}
	cmds = append(cmds, n.Test(), n.Reload())
	if to != nil {
		cmds = append(cmds, remote.SymlinkCmds(l.Release(to.ID), l.Current())...)
		cmds = append(cmds, writeFileCmd(to.Container+"\n", l.CurrentContainer()))
	}
	return cmds
}

// writeFileCmd replaces a small file atomically with content (a constant
// script; the content and path are arguments).
func writeFileCmd(content, path string) []string {
	return []string{"sh", "-c", `printf '%s' "$1" > "$2.tmp-lawsker" && mv -f "$2.tmp-lawsker" "$2"`, "sh", content, path}
}
