package snapshots

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	gcaws "gocloud.dev/aws"
	"gocloud.dev/blob"
	_ "gocloud.dev/blob/azureblob" // azblob:// URLs
	_ "gocloud.dev/blob/gcsblob"   // gs:// URLs
	"gocloud.dev/blob/s3blob"
	"gocloud.dev/gcerrors"
)

// BlobStore is a bucket of object storage through gocloud.dev/blob: S3 and
// S3-compatible servers (s3://bucket?endpoint=...&region=...&use_path_style=true),
// Google Cloud Storage (gs://bucket) and Azure (azblob://container).
type BlobStore struct {
	Bucket *blob.Bucket
	URL    string // for messages (it holds no secret: credentials come apart)
	Prefix string // key prefix inside the bucket ("" or ending in /)
}

// S3Credentials are static S3 keys (nil: the AWS SDK's default chain).
type S3Credentials struct{ AccessKeyID, SecretAccessKey string }

// OpenBlobStore opens a bucket URL. A path in the URL (s3://bucket/some/prefix)
// becomes the key prefix.
func OpenBlobStore(ctx context.Context, rawURL string, creds *S3Credentials) (*BlobStore, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("snapshots.store: %w", err)
	}
	if u.User != nil {
		return nil, errors.New("snapshots.store: put no credentials in the URL; use snapshots.s3_access_key_id/s3_secret_access_key (secret references) or the provider's environment")
	}
	prefix := strings.Trim(u.Path, "/")
	if prefix != "" {
		prefix += "/"
	}
	shown := u.Scheme + "://" + u.Host + "/" + prefix
	var b *blob.Bucket
	switch u.Scheme {
	case "s3":
		b, err = openS3(ctx, u, creds)
	case "gs", "azblob":
		u.Path = ""
		b, err = blob.OpenBucket(ctx, u.String())
	default:
		return nil, fmt.Errorf("snapshots.store: %q is not an s3://, gs:// or azblob:// URL", u.Scheme)
	}
	if err != nil {
		return nil, fmt.Errorf("snapshots.store %s: %w", shown, err)
	}
	return &BlobStore{Bucket: b, URL: shown, Prefix: prefix}, nil
}

func openS3(ctx context.Context, u *url.URL, creds *S3Credentials) (*blob.Bucket, error) {
	q := u.Query()
	// Multipart objects carry no whole-object checksum; the SDK would say so
	// on stderr at every read. The artifact's SHA-256 is checked instead.
	opts := []func(*s3.Options){func(o *s3.Options) { o.DisableLogOutputChecksumValidationSkipped = true }}
	for _, key := range []string{"use_path_style", "s3ForcePathStyle"} {
		if v := q.Get(key); v != "" {
			q.Del(key)
			on, err := strconv.ParseBool(v)
			if err != nil {
				return nil, fmt.Errorf("%s=%q: must be true or false", key, v)
			}
			opts = append(opts, func(o *s3.Options) { o.UsePathStyle = on })
		}
	}
	cfg, err := gcaws.V2ConfigFromURLParams(ctx, q)
	if err != nil {
		return nil, err
	}
	if creds != nil {
		cfg.Credentials = credentials.NewStaticCredentialsProvider(creds.AccessKeyID, creds.SecretAccessKey, "")
	}
	return s3blob.OpenBucket(ctx, s3.NewFromConfig(cfg, opts...), u.Host, nil)
}

func (s *BlobStore) String() string { return s.URL }

// Close releases the bucket.
func (s *BlobStore) Close() error { return s.Bucket.Close() }

// Put streams r into key; a failed or cancelled write is aborted, so no
// partial object is left.
func (s *BlobStore) Put(ctx context.Context, key string, r io.Reader) (Artifact, error) {
	if err := checkKey(key); err != nil {
		return Artifact{}, err
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := s.Bucket.NewWriter(wctx, s.Prefix+key, &blob.WriterOptions{ContentType: "application/octet-stream", BufferSize: 8 << 20, MaxConcurrency: 2})
	if err != nil {
		return Artifact{}, s.wrap(key, err)
	}
	hr := newHashing(r)
	if _, err := io.Copy(w, &ctxReader{ctx, hr}); err != nil {
		cancel() // aborts the upload
		_ = w.Close()
		return Artifact{}, fmt.Errorf("%s: writing %s: %w", s, key, err)
	}
	if err := w.Close(); err != nil {
		return Artifact{}, s.wrap(key, err)
	}
	return hr.artifact(key), nil
}

// SignedURL returns a URL that reads key for ttl (a target fetches a dump
// with it without the bytes passing through this machine).
func (s *BlobStore) SignedURL(ctx context.Context, key string, ttl time.Duration) (string, error) {
	if err := checkKey(key); err != nil {
		return "", err
	}
	u, err := s.Bucket.SignedURL(ctx, s.Prefix+key, &blob.SignedURLOptions{Expiry: ttl, Method: "GET"})
	if err != nil {
		return "", s.wrap(key, err)
	}
	return u, nil
}

// Open streams key back.
func (s *BlobStore) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	r, err := s.Bucket.NewReader(ctx, s.Prefix+key, nil)
	if err != nil {
		return nil, s.wrap(key, err)
	}
	return r, nil
}

// List returns the keys under prefix.
func (s *BlobStore) List(ctx context.Context, prefix string) ([]string, error) {
	var keys []string
	it := s.Bucket.List(&blob.ListOptions{Prefix: s.Prefix + prefix})
	for {
		obj, err := it.Next(ctx)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, s.wrap(prefix, err)
		}
		if !obj.IsDir {
			keys = append(keys, strings.TrimPrefix(obj.Key, s.Prefix))
		}
	}
	sort.Strings(keys)
	return keys, nil
}

// Delete removes key; a missing key is not an error.
func (s *BlobStore) Delete(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if err := s.Bucket.Delete(ctx, s.Prefix+key); err != nil && gcerrors.Code(err) != gcerrors.NotFound {
		return s.wrap(key, err)
	}
	return nil
}

// wrap names the store and key, and maps not-found to ErrNotFound.
func (s *BlobStore) wrap(key string, err error) error {
	switch gcerrors.Code(err) {
	case gcerrors.NotFound:
		return fmt.Errorf("%s: %s: %w", s, key, ErrNotFound)
	case gcerrors.PermissionDenied:
		return fmt.Errorf("%s: %s: permission denied (check the credentials: snapshots.s3_access_key_id or the provider's environment): %w", s, key, err)
	}
	return fmt.Errorf("%s: %s: %w", s, key, err)
}
