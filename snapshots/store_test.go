package snapshots

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lawsker/lawsker-deploy/remote"
	"github.com/lawsker/lawsker-deploy/testenv"
)

// failingReader fails after some bytes: a dump cut off half-way.
type failingReader struct{ n int }

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, errors.New("pg_dump died")
	}
	n := min(len(p), f.n)
	f.n -= n
	return n, nil
}

func TestStores(t *testing.T) {
	s := testenv.StartSSHD(t)
	key, err := os.ReadFile(s.KeyPath)
	require.NoError(t, err)
	h, err := remote.Connect(t.Context(), remote.Endpoint{Host: s.Host, Port: s.Port, User: s.User, PrivateKey: key, KnownHosts: s.KnownHosts}, 1)
	require.NoError(t, err)
	defer h.Close()
	s3 := testenv.StartS3(t)
	s3.CreateBucket(t, "snapshots")
	bucket, err := OpenBlobStore(t.Context(), s3URL(s3, "snapshots", "lawsker/prod"), &S3Credentials{AccessKeyID: s3.AccessKey, SecretAccessKey: s3.SecretKey})
	require.NoError(t, err)
	defer bucket.Close()
	for name, st := range map[string]Store{"file": FileStore{Dir: t.TempDir()}, "target": TargetStore{Host: h, Dir: t.TempDir() + "/snapshots"}, "s3": bucket} {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			keys, err := st.List(ctx, "")
			require.NoError(t, err)
			assert.Empty(t, keys, "an empty (or missing) store lists nothing")
			data := bytes.Repeat([]byte("dump-bytes "), 100000)
			a, err := st.Put(ctx, "snap_20261126_040000_abcdef/database.dump", bytes.NewReader(data))
			require.NoError(t, err)
			assert.Equal(t, int64(len(data)), a.Size)
			assert.Len(t, a.SHA256, 64)
			r, err := st.Open(ctx, a.Key)
			require.NoError(t, err)
			back, _ := io.ReadAll(r)
			r.Close()
			assert.Equal(t, data, back)

			_, err = st.Put(ctx, "snap_20261126_040000_abcdef/broken.dump", &failingReader{n: 5000})
			require.Error(t, err)
			keys, err = st.List(ctx, "snap_")
			require.NoError(t, err)
			assert.Equal(t, []string{"snap_20261126_040000_abcdef/database.dump"}, keys, "a failed write leaves nothing behind")

			_, err = st.Open(ctx, "snap_20261126_040000_abcdef/absent")
			assert.ErrorIs(t, err, ErrNotFound)
			for _, bad := range []string{"../escape", "/abs", "a\nb", ""} {
				_, err := st.Put(ctx, bad, strings.NewReader("x"))
				assert.ErrorContains(t, err, "bad key", bad)
			}
			require.NoError(t, st.Delete(ctx, a.Key))
			require.NoError(t, st.Delete(ctx, a.Key), "deleting twice is fine")
			keys, _ = st.List(ctx, "")
			assert.Empty(t, keys)
		})
	}
}

func s3URL(s *testenv.S3, bucket, prefix string) string {
	return "s3://" + bucket + "/" + prefix + "?endpoint=" + s.Endpoint + "&region=" + s.Region + "&use_path_style=true"
}

func TestBlobStoreBadInput(t *testing.T) {
	ctx := t.Context()
	s3 := testenv.StartS3(t)
	s3.CreateBucket(t, "snapshots")
	_, err := OpenBlobStore(ctx, "s3://key:secret@snapshots?region=us-east-1", nil)
	assert.ErrorContains(t, err, "put no credentials in the URL")
	_, err = OpenBlobStore(ctx, "s3://snapshots?use_path_style=maybe", nil)
	assert.ErrorContains(t, err, `use_path_style="maybe": must be true or false`)

	wrong, err := OpenBlobStore(ctx, s3URL(s3, "snapshots", ""), &S3Credentials{AccessKeyID: s3.AccessKey, SecretAccessKey: "not-the-secret"})
	require.NoError(t, err)
	defer wrong.Close()
	_, err = wrong.Put(ctx, "snap_20261126_040000_abcdef/manifest.json", strings.NewReader("{}"))
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "not-the-secret")
	_, err = wrong.List(ctx, "")
	assert.Error(t, err, "a store that refuses us is an error, not an empty list")

	missing, err := OpenBlobStore(ctx, s3URL(s3, "no-such-bucket", ""), &S3Credentials{AccessKeyID: s3.AccessKey, SecretAccessKey: s3.SecretKey})
	require.NoError(t, err)
	defer missing.Close()
	_, err = missing.Put(ctx, "snap_20261126_040000_abcdef/manifest.json", strings.NewReader("{}"))
	assert.ErrorContains(t, err, "s3://no-such-bucket/")

	down, err := OpenBlobStore(ctx, "s3://snapshots?endpoint=http://127.0.0.1:1&region=us-east-1&use_path_style=true", &S3Credentials{AccessKeyID: "a", SecretAccessKey: "b"})
	require.NoError(t, err)
	defer down.Close()
	_, err = down.List(ctx, "")
	assert.ErrorContains(t, err, "connection refused")
}
