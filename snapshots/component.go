package snapshots

import (
	"fmt"
	"slices"
	"strings"
)

// Component is one part of a release a snapshot keeps and a rollback
// restores. Components is the registry every use iterates.
type Component string

// The components.
const (
	ComponentBackend    Component = "backend"    // the image, by digest
	ComponentFrontend   Component = "frontend"   // the release's files, a tarball
	ComponentConfig     Component = "config"     // the deployment configuration (secret references, never values)
	ComponentDatabase   Component = "database"   // a pg_dump -Fc of the app's database
	ComponentTLS        Component = "tls"        // certificates, keys, ACME account (a folder of the app)
	ComponentMonitoring Component = "monitoring" // Prometheus and Grafana configuration (a folder of the app)
)

// Components are all components, in the order plans show them.
var Components = []Component{ComponentBackend, ComponentFrontend, ComponentConfig, ComponentDatabase, ComponentTLS, ComponentMonitoring}

// ReleaseComponents switch together through nginx.
var ReleaseComponents = []Component{ComponentBackend, ComponentFrontend, ComponentConfig}

// FolderComponents are kept as folders of the app on the target.
var FolderComponents = []Component{ComponentTLS, ComponentMonitoring}

// Folder is the folder of the app a folder component keeps ("" for the
// others).
func (c Component) Folder() string {
	if slices.Contains(FolderComponents, c) {
		return string(c)
	}
	return ""
}

// ParseComponent reads a component's name (a --components entry).
func ParseComponent(s string) (Component, error) {
	c := Component(strings.TrimSpace(s))
	if !slices.Contains(Components, c) {
		names := make([]string, len(Components))
		for i, k := range Components {
			names[i] = string(k)
		}
		return "", fmt.Errorf("unknown component %q (%s)", c, strings.Join(names, ", "))
	}
	return c, nil
}

// Names renders components for people.
func Names(cs []Component) string {
	names := make([]string, len(cs))
	for i, c := range cs {
		names[i] = string(c)
	}
	return strings.Join(names, ", ")
}
