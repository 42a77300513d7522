package snapshots

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lawsker/lawsker-deploy/testenv"
)

func TestTagImageInTheRegistry(t *testing.T) {
	d := testenv.DockerEngine(t)
	reg := testenv.StartRegistry(t)
	bin := testenv.BuildStatic(t, "./testenv/testdata/hello", "hello")
	image := d.PushBinaryImage(t, bin, reg.Addr+"/lawsker/backend", "v1")
	require.Contains(t, image, "@sha256:")
	id := "snap_20261126_040000_abcdef"

	tag, err := TagImage(t.Context(), image, id, RegistryAuth{})
	require.NoError(t, err)
	assert.Equal(t, reg.Addr+"/lawsker/backend:snapshot-"+id, tag)
	// The registry resolves the tag to the same digest: a manifest tag, not a copy.
	req, err := http.NewRequestWithContext(t.Context(), http.MethodHead, "http://"+reg.Addr+"/v2/lawsker/backend/manifests/snapshot-"+id, nil)
	require.NoError(t, err)
	req.Header.Set("Accept", "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, image[strings.Index(image, "@")+1:], resp.Header.Get("Docker-Content-Digest"))

	_, err = TagImage(t.Context(), reg.Addr+"/lawsker/backend:v1", id, RegistryAuth{})
	assert.ErrorContains(t, err, "is not pinned by digest")
	_, err = TagImage(t.Context(), reg.Addr+"/lawsker/backend@sha256:"+strings.Repeat("0", 64), id, RegistryAuth{})
	assert.ErrorContains(t, err, "reading "+reg.Addr+"/lawsker/backend@sha256:000")
}
