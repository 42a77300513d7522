package report

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lawsker/lawsker-deploy/pipelines"
	"github.com/lawsker/lawsker-deploy/redact"
)

func TestReportFromRunIsWrittenMasked(t *testing.T) {
	const secret = "db-pa55word-9f8e"
	red := redact.New()
	red.Add(secret)
	g, err := pipelines.New(
		pipelines.Step{Name: "connect", Run: func(context.Context) error { return errors.New("auth failed for password " + secret) }},
		pipelines.Step{Name: "migrate", Needs: []string{"connect"}, Run: func(context.Context) error { return nil }},
	)
	require.NoError(t, err)
	dir := t.TempDir()
	lg, err := OpenLog(filepath.Join(dir, "logs"), "deploy", "20261126_031206_abcdef", red, slog.LevelDebug)
	require.NoError(t, err)
	start := time.Now()
	res := pipelines.Run(t.Context(), g, pipelines.Options{Logger: lg.Logger})
	lg.Logger.Info("connecting", "dsn", "postgres://app:"+secret+"@db/app")
	require.NoError(t, lg.Close())

	r := New("deploy", "20261126_031206_abcdef", start)
	r.Finish(res, time.Now())
	r.LogFile = lg.Path
	path, err := r.Write(filepath.Join(dir, "reports"), red)
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(dir, "reports", "deploy_20261126_031206_abcdef.json"), path)

	data, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.NotContains(t, string(data), secret)
	var back Report
	require.NoError(t, json.Unmarshal(data, &back))
	assert.Equal(t, StatusFailed, back.Status)
	assert.Equal(t, "step connect: auth failed for password [REDACTED]", back.Error)
	require.Len(t, back.Steps, 2)
	assert.Equal(t, StepReport{Name: "migrate", Status: "skipped", Reason: "needs connect, which failed"}, back.Steps[1])
	assert.Equal(t, 1, back.Steps[0].Attempts)
	assert.NotNil(t, back.Steps[0].Start)

	logData, err := os.ReadFile(lg.Path)
	require.NoError(t, err)
	assert.NotContains(t, string(logData), secret)
	assert.Contains(t, string(logData), `"step":"connect"`)
	assert.Contains(t, string(logData), "[REDACTED]")
}

func TestNewID(t *testing.T) {
	id := NewID(time.Date(2026, 11, 26, 3, 12, 6, 0, time.UTC))
	assert.Regexp(t, `^20261126_031206_[0-9a-f]{6}$`, id)
	assert.True(t, ValidID(id))
	assert.False(t, ValidID("../../etc/passwd"))
	assert.NotEqual(t, id, NewID(time.Date(2026, 11, 26, 3, 12, 6, 0, time.UTC)))
}
