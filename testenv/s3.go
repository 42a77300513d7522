package testenv

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// S3 is a throwaway S3-compatible server (versitygw over a POSIX folder).
type S3 struct {
	Endpoint  string // http://127.0.0.1:port
	AccessKey string
	SecretKey string
	Region    string
	Dir       string // top folder: each sub-folder is a bucket
	proc      *Process
}

// StartS3 starts versitygw; CreateBucket makes buckets (folders).
func StartS3(t testing.TB) *S3 {
	t.Helper()
	dir := TempDir(t, "s3")
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	port := FreePort(t)
	s := &S3{Endpoint: fmt.Sprintf("http://127.0.0.1:%d", port), AccessKey: "lawsker-test-access", SecretKey: "lawsker-test-secret-key", Region: "us-east-1", Dir: data}
	cmd := exec.Command(Bin(t, "versitygw"), "--port", fmt.Sprintf("127.0.0.1:%d", port), "posix", data)
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+s.AccessKey, "ROOT_SECRET_KEY="+s.SecretKey)
	s.proc = Start(t, "versitygw", cmd)
	// An unsigned request is refused with 403: the S3 API is answering.
	s.proc.WaitFor(t, 20*time.Second, "answering S3 requests", func(ctx context.Context) error {
		return httpStatus(ctx, http.DefaultClient, s.Endpoint+"/", http.StatusForbidden)
	})
	return s
}

// CreateBucket creates a bucket (a folder under Dir, as versitygw's POSIX
// backend stores them).
func (s *S3) CreateBucket(t testing.TB, name string) {
	t.Helper()
	if err := os.Mkdir(filepath.Join(s.Dir, name), 0o755); err != nil {
		t.Fatalf("testenv: %v", err)
	}
}
