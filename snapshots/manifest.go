package snapshots

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"time"

	"github.com/lawsker/lawsker-deploy/dbschema"
)

// FormatVersion is the manifest format this release writes and reads.
const FormatVersion = 1

// Artifact is one stored file of a snapshot.
type Artifact struct {
	Key    string `json:"key"`
	Size   int64  `json:"size"`   // as stored (encrypted, when it is)
	SHA256 string `json:"sha256"` // of the stored bytes: checks need no key
	// Encryption is "age" when the artifact is encrypted to Recipient.
	Encryption string `json:"encryption,omitempty"`
	Recipient  string `json:"recipient,omitempty"`
}

// Manifest describes a snapshot.
type Manifest struct {
	Format       int                    `json:"format"`
	ID           string                 `json:"id"`
	App          string                 `json:"app"`
	DeploymentID string                 `json:"deployment_id,omitempty"`
	Created      time.Time              `json:"created"`
	Description  string                 `json:"description,omitempty"`
	Trigger      string                 `json:"trigger"` // manual, pre-deploy, post-deploy
	Components   []Component            `json:"components"`
	Artifacts    map[Component]Artifact `json:"artifacts"`
	Images       map[Component]string   `json:"images,omitempty"`
	// ImageTags are the snapshot-<id> tags that keep the images in their
	// registry (component -> tag reference).
	ImageTags map[Component]string `json:"image_tags,omitempty"`
	// Warnings say what the snapshot could not do that does not make it
	// unusable (an image tag the registry refused).
	Warnings []string `json:"warnings,omitempty"`
	// Release is the release serving when the snapshot was taken.
	Release string `json:"release,omitempty"`
	// ConfigHash is the SHA-256 of the deployment configuration (secret
	// references, never values) stored as the "config" artifact.
	ConfigHash string `json:"config_hash,omitempty"`
	// Baseline holds the verification figures of the release (check name
	// -> metric -> value), for comparing later releases with it.
	Baseline map[string]map[string]float64 `json:"baseline,omitempty"`
	// Database identifies what the dump is of, so a dump is never restored
	// into another database by mistake.
	Database *DatabaseInfo `json:"database,omitempty"`
}

// DatabaseInfo is what a database dump was taken from.
type DatabaseInfo struct {
	Name          string `json:"name"`
	Host          string `json:"host"`
	Port          int    `json:"port"`
	ServerVersion string `json:"server_version"`
	// MigrationVersion and MigrationTool are what the migration tool's own
	// table says (dbschema.ReadMigration), for people: decisions compare
	// Schema.
	MigrationVersion string `json:"migration_version,omitempty"`
	MigrationTool    string `json:"migration_tool,omitempty"`
	// Schema is the database's schema as its catalog says (nil in
	// snapshots taken before lawsker-deploy read it).
	Schema *dbschema.Schema `json:"schema,omitempty"`
	// Ownership is what the dump does not carry: the database's owner,
	// privileges and settings, and the extensions' owners (a restore puts
	// them back).
	Ownership *dbschema.Ownership `json:"ownership,omitempty"`
}

// Migration reads as "goose 20240115" or "no migration table seen".
func (d *DatabaseInfo) Migration() string {
	return (&dbschema.Migration{Tool: d.MigrationTool, Version: d.MigrationVersion}).String()
}

var idPattern = regexp.MustCompile(`^snap_[0-9]{8}_[0-9]{6}_[0-9a-f]{6}$`)

// NewID returns snap_YYYYMMDD_HHMMSS_<6 hex>.
func NewID(now time.Time) string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return "snap_" + now.UTC().Format("20060102_150405") + "_" + hex.EncodeToString(b[:])
}

// ValidID reports whether id has the form NewID makes (ids become object
// keys and paths: nothing else is accepted).
func ValidID(id string) bool { return idPattern.MatchString(id) }

// ManifestKey is where a snapshot's manifest lives in a store.
func ManifestKey(id string) string { return id + "/manifest.json" }

// ParseManifest reads a manifest, refusing newer formats and bad ids.
func ParseManifest(data []byte) (*Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("snapshot manifest: not valid JSON: %w", err)
	}
	if m.Format > FormatVersion {
		return nil, fmt.Errorf("snapshot %s has manifest format %d, newer than this lawsker-deploy reads (%d): upgrade lawsker-deploy", m.ID, m.Format, FormatVersion)
	}
	if m.Format < 1 || !ValidID(m.ID) {
		return nil, fmt.Errorf("snapshot manifest: format %d, id %q: not a lawsker-deploy snapshot manifest", m.Format, m.ID)
	}
	return &m, nil
}
