package rollout

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/lawsker/lawsker-deploy/checks"
	"github.com/lawsker/lawsker-deploy/config"
)

func TestClassifyTriggers(t *testing.T) {
	rb := config.Rollback{Auto: true, HealthCheckThreshold: 3, ErrorRateThreshold: 0.1, PerformanceDegradationThreshold: 2}
	suite := func(rs ...checks.Result) *checks.Suite { return &checks.Suite{Results: rs} }
	res := func(name string, c checks.Category, st checks.Status, kv ...any) checks.Result {
		return checks.Result{Name: name, Category: c, Status: st, Message: "msg"}.With(kv...)
	}
	pass := res("backend health", checks.Health, checks.Pass)
	for _, tc := range []struct {
		name string
		s    *checks.Suite
		w    *Watch
		rb   func(*config.Rollback)
		want string
	}{
		{"all pass", suite(pass, res("load /", checks.Performance, checks.Pass, "error_rate", 0.0)), nil, nil, ""},
		{"watch", suite(pass), &Watch{Triggered: true, MaxConsecutive: 3, Threshold: 3}, nil, TriggerHealth},
		{"failed health check", suite(res("postgresql", checks.Health, checks.Fail)), &Watch{Checks: 10}, nil, TriggerHealth},
		{"error rate", suite(pass, res("load /", checks.Performance, checks.Fail, "error_rate", 0.25)), nil, nil, TriggerErrorRate},
		{"slow load, no errors", suite(pass, res("load /", checks.Performance, checks.Fail, "error_rate", 0.0)), nil, nil, TriggerPerformance},
		{"baseline", suite(pass, res("baseline", checks.Performance, checks.Fail)), nil, nil, TriggerPerformance},
		{"host resources are not the release's", suite(pass, res("system resources prod", checks.Performance, checks.Fail)), nil, nil, ""},
		{"functional", suite(pass, res("api GET /cases", checks.Functional, checks.Fail)), nil, nil, TriggerFunctional},
		{"security off", suite(pass, res("security headers", checks.Security, checks.Fail)), nil, nil, ""},
		{"security on", suite(pass, res("security headers", checks.Security, checks.Fail)), nil, func(r *config.Rollback) { r.OnSecurityFailure = true }, TriggerSecurity},
		{"warnings are not triggers", suite(pass, res("postgresql", checks.Health, checks.Warn)), nil, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rb
			if tc.rb != nil {
				tc.rb(&r)
			}
			got := Classify(tc.s, tc.w, r)
			if tc.want == "" {
				assert.Nil(t, got)
				return
			}
			if assert.NotNil(t, got) {
				assert.Equal(t, tc.want, got.Kind)
				assert.NotEmpty(t, got.Reason)
			}
		})
	}
}
