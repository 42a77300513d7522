package rollout

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/dbschema"
	"github.com/lawsker/lawsker-deploy/snapshots"
	"github.com/lawsker/lawsker-deploy/testenv"
)

// OpenFGA migrates with goose (goose_db_version) through its own
// `openfga migrate`, listens on the host:port addresses it is given (HTTP
// and gRPC, both per release: {port} and {port.grpc}), answers its API
// under /stores, and 1.5 adds a migration 1.3 does not know.
var (
	openfga137 = testenv.ThirdParty{Module: "github.com/openfga/openfga", Package: "github.com/openfga/openfga/cmd/openfga", Version: "v1.3.7", Args: []string{"run"}}
	openfga150 = testenv.ThirdParty{Module: "github.com/openfga/openfga", Package: "github.com/openfga/openfga/cmd/openfga", Version: "v1.5.0", Args: []string{"run"}}
)

// OpenFGA: bootstrapped on an empty PostgreSQL and migrated by its
// migrate_command; upgraded with a release that fails a check after its
// migration (rolled back with the database); upgraded for real; then
// `rollback --previous` refuses and `rollback --snapshot` brings 1.3 back
// with its schema. Schema and rows are checked after every step.
func TestOpenFGAReleasesTravelWithTheirDatabase(t *testing.T) {
	r := newAppRig(t, "openfga")
	v137 := r.ThirdPartyImage(t, openfga137, "openfga")
	v150 := r.ThirdPartyImage(t, openfga150, "openfga")
	store := snapshots.FileStore{Dir: r.store}
	// A frontend beside the API: nginx sends /stores (any method) and the
	// health path to OpenFGA, everything else to the frontend's files.
	r.frontend = frontendDir(t, "fga")
	backend := `"health_path": "/healthz", "health_expect": {"json": {"status": "SERVING"}}, "routes": ["/stores*"], "extra_ports": ["grpc"], "migrate_command": ["/app/openfga", "migrate"],
	    "env": {"OPENFGA_HTTP_ADDR": "127.0.0.1:{port}", "OPENFGA_GRPC_ADDR": "127.0.0.1:{port.grpc}", "OPENFGA_DATASTORE_ENGINE": "postgres",
	      "OPENFGA_PLAYGROUND_ENABLED": "false", "OPENFGA_METRICS_ENABLED": "false", "OPENFGA_LOG_FORMAT": "json"}`
	cfg := r.config(t, backend, `"categories": ["health", "functional"],
	    "endpoints": [{"path": "/healthz"}, {"path": "/stores"}]`)
	cfg.Database.URLEnv = "OPENFGA_DATASTORE_URI"
	goose := func() string {
		return r.psql(t, "SELECT max(version_id) FROM goose_db_version WHERE is_applied")
	}
	stores := func() string { return r.psql(t, "SELECT string_agg(name, ',' ORDER BY name) FROM store") }
	c := &http.Client{Timeout: 10 * time.Second}
	createStore := func(name string) {
		t.Helper()
		code, body := r.status(c, "POST", "/stores", `{"name": "`+name+`"}`)
		require.Equal(t, 201, code, body)
		var s struct{ ID string }
		require.NoError(t, json.Unmarshal([]byte(body), &s))
		require.NotEmpty(t, s.ID, body)
	}

	// A frontend file under a backend route would never be served:
	// refused before the lock, nothing on the target.
	shadow := frontendDir(t, "shadow")
	require.NoError(t, os.MkdirAll(filepath.Join(shadow, "stores"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(shadow, "stores", "index.json"), []byte("[]"), 0o644))
	dr := r.request(cfg)
	dr.Image, dr.FrontendDir = v137, shadow
	_, err := Prepare(Request{Deploy: dr})
	require.ErrorContains(t, err, "backend.routes: the frontend's stores/index.json (/stores*, backend.routes[0]) would never be served (nginx sends those paths to the backend)")
	entries, err := os.ReadDir(r.Root)
	require.NoError(t, err)
	assert.Empty(t, entries, "nothing on the target")

	// First deploy on an empty PostgreSQL: bootstrap, the pre-deploy
	// snapshot, then goose's migrations by `openfga migrate`.
	out, err := r.deploy(t, cfg, v137)
	require.NoError(t, err, "%s", jsonOf(out))
	code, body := r.status(c, "GET", "/", "")
	require.Equal(t, 200, code, body)
	assert.Contains(t, body, "frontend fga", "/ is the frontend's")
	code, body = r.status(c, "GET", "/assets/fga.css", "")
	assert.Equal(t, 200, code, body)
	code, body = r.status(c, "GET", "/healthz", "")
	assert.Equal(t, 200, code, body)
	assert.Contains(t, body, "SERVING", "the health path is the backend's, though no route names it")
	v1 := goose()
	post137 := load(t, store, out.PostSnapshot)
	assert.Equal(t, "goose "+v1, post137.Database.Migration())
	schema137 := post137.Database.Schema
	require.NotNil(t, schema137)
	createStore("acme")
	assert.Equal(t, "acme", stores())
	// The addresses as the app wants them: each release its own HTTP and
	// gRPC port on loopback.
	code, body = r.status(c, "GET", "/stores", "")
	require.Equal(t, 200, code, body)
	assert.Contains(t, body, `"name":"acme"`)

	// 1.5 migrates, then fails a check: rolled back with its database.
	failing := *cfg
	failing.Verification.Endpoints = append(append([]config.Endpoint(nil), cfg.Verification.Endpoints...), config.Endpoint{Path: "/stores/not-a-store-id", Expect: []int{200}})
	out, err = r.deploy(t, &failing, v150)
	require.Error(t, err, "%s", jsonOf(out))
	require.NotNil(t, out.Trigger, "%+v", out)
	assert.Equal(t, TriggerFunctional, out.Trigger.Kind, out.Trigger.Reason)
	require.NotNil(t, out.Database)
	assert.Equal(t, DatabaseRestored, out.Database.Status, out.Database.Detail)
	assert.Contains(t, out.Database.Detail, "the release changed it: schema: ")
	assert.Equal(t, v1, goose(), "1.5's migrations are undone")
	assert.Equal(t, "acme", stores())

	// 1.5 for real.
	out, err = r.deploy(t, cfg, v150)
	require.NoError(t, err, "%s", jsonOf(out))
	v2 := goose()
	require.NotEqual(t, v1, v2, "1.5 adds a migration")
	post150 := load(t, store, out.PostSnapshot)
	assert.Equal(t, "goose "+v2, post150.Database.Migration())
	t.Logf("goose_db_version: 1.3.7 at %s, 1.5.0 at %s; %s", v1, v2, dbschema.Change(schema137, post150.Database.Schema))
	createStore("globex")
	assert.Equal(t, "acme,globex", stores())

	// rollback --previous: 1.3 is warm, but the schema is 1.5's.
	err = r.switchBack(t, cfg, false)
	require.Error(t, err)
	m := regexp.MustCompile("Run `lawsker-deploy rollback --snapshot (snap_[0-9a-f_]+)`").FindStringSubmatch(err.Error())
	require.NotNil(t, m, err.Error())
	assert.Equal(t, out.PreSnapshot, m[1], "the snapshot taken before 1.5 replaced 1.3")

	// rollback --snapshot: code and database together.
	plan, out := r.rollbackTo(t, cfg, m[1])
	assert.Contains(t, plan.Components, snapshots.ComponentDatabase)
	assert.Positive(t, out.HoldSeconds)
	t.Logf("rollback --snapshot %s: the maintenance hold lasted %.3f s", m[1], out.HoldSeconds)
	assert.Equal(t, v1, goose())
	assert.Equal(t, "acme", stores(), "the database as it was before 1.5")
	code, body = r.status(c, "GET", "/stores", "")
	require.Equal(t, 200, code, body)
	assert.Contains(t, body, `"name":"acme"`)
}
