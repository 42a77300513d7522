package snapshots

import (
	"context"
	"fmt"
	"io"
	"path"
	"strings"

	"filippo.io/age"

	"github.com/lawsker/lawsker-deploy/remote"
)

// putStream stores what write produces under key, through a pipe (no
// copy anywhere), encrypted to recipient when given. A failed write or
// store leaves no object behind.
func putStream(ctx context.Context, store Store, key string, recipient age.Recipient, write func(io.Writer) error) (Artifact, error) {
	pr, pw := io.Pipe()
	type put struct {
		a   Artifact
		err error
	}
	ch := make(chan put, 1)
	go func() {
		a, err := store.Put(ctx, key, pr)
		pr.CloseWithError(err) // unblocks the writer if the store failed
		ch <- put{a, err}
	}()
	var out io.Writer = pw
	var sealed io.WriteCloser
	var werr error
	if recipient != nil {
		// age writes its header at once: the store is reading by now.
		if sealed, werr = age.Encrypt(pw, recipient); werr == nil {
			out = sealed
		}
	}
	if werr == nil {
		werr = write(out)
	}
	if sealed != nil && werr == nil {
		werr = sealed.Close() // the last chunk
	}
	pw.CloseWithError(werr)
	p := <-ch
	switch {
	case werr != nil:
		_ = store.Delete(context.WithoutCancel(ctx), key)
		return Artifact{}, werr
	case p.err != nil:
		return Artifact{}, fmt.Errorf("storing %s in %s: %w", key, store, p.err)
	}
	if recipient != nil {
		p.a.Encryption, p.a.Recipient = EncryptionAge, fmt.Sprint(recipient)
	}
	return p.a, nil
}

// putTar stores `tar -czf - .` of dir on the target under key.
func putTar(ctx context.Context, h *remote.Host, store Store, key, dir string, excludes []string, recipient age.Recipient) (Artifact, error) {
	return putStream(ctx, store, key, recipient, func(w io.Writer) error {
		argv := []string{"tar", "-C", dir}
		for _, x := range excludes {
			argv = append(argv, "--exclude="+x)
		}
		return h.RunStream(ctx, nil, w, append(argv, "-czf", "-", ".")...)
	})
}

// folderExcludes are left out of a folder component: previous copies, and
// the Grafana env file (its password is a secret, rewritten by every apply).
var folderExcludes = map[Component][]string{ComponentMonitoring: {"./previous", "./grafana.env"}}

// RestoreFolder puts a folder component back on the target: the tarball is
// copied with its checksum checked (decrypted with id when encrypted),
// unpacked beside the folder, then swapped in (the replaced one kept as
// <folder>.replaced).
func RestoreFolder(ctx context.Context, h *remote.Host, store Store, m *Manifest, component Component, base string, id age.Identity) error {
	art, ok := m.Artifacts[component]
	dir := component.Folder()
	if !ok || dir == "" {
		return fmt.Errorf("snapshot %s has no %s", m.ID, component)
	}
	dst := path.Join(base, dir)
	tgz := path.Join(base, ".restore-"+m.ID+"-"+dir+".tar.gz")
	if err := copyVerified(ctx, h, store, m.ID, art, tgz, id); err != nil {
		return err
	}
	defer h.Remove(tgz)
	script := `set -e; rm -rf "$1.new"; mkdir -p "$1.new"; chmod 700 "$1.new"; tar -xzf "$2" -C "$1.new"; rm -rf "$1.replaced"; if [ -e "$1" ]; then mv "$1" "$1.replaced"; fi; mv "$1.new" "$1"`
	if _, err := h.Run(ctx, "sh", "-c", script, "sh", dst, tgz); err != nil {
		return fmt.Errorf("restoring %s into %s: %w", component, dst, err)
	}
	return nil
}

// folderArtifacts snapshots the folder components the configuration uses
// and that exist on the target; TLS private keys are encrypted when a
// recipient is configured, else a warning says they are not.
func folderArtifacts(ctx context.Context, req CreateRequest, m *Manifest, recipient age.Recipient) error {
	base := path.Join(req.Config.Primary().Root, req.Config.App)
	on := map[Component]bool{ComponentTLS: req.Config.TLS.Enabled, ComponentMonitoring: req.Config.Monitoring.Enabled}
	for _, comp := range FolderComponents {
		if !on[comp] {
			continue
		}
		dir := path.Join(base, comp.Folder())
		if out, err := req.Host.Run(ctx, "sh", "-c", `[ -d "$1" ] && echo yes || true`, "sh", dir); err != nil || strings.TrimSpace(out) != "yes" {
			continue // nothing there yet (no certificate issued, monitoring never applied)
		}
		rcpt := recipient
		if comp != ComponentTLS {
			rcpt = nil
		} else if rcpt == nil {
			m.Warnings = append(m.Warnings, "tls: private keys are stored unencrypted in the snapshot store; set snapshots.age_recipient to encrypt them")
		}
		art, err := putTar(ctx, req.Host, req.Store, m.ID+"/"+comp.Folder()+".tar.gz", dir, folderExcludes[comp], rcpt)
		if err != nil {
			return fmt.Errorf("%s tarball: %w", comp, err)
		}
		m.Artifacts[comp] = art
		m.Components = append(m.Components, comp)
	}
	return nil
}
