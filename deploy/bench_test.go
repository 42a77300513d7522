package deploy

import (
	"slices"
	"testing"
	"time"

	"github.com/lawsker/lawsker-deploy/config"
	"github.com/lawsker/lawsker-deploy/pipelines"
	"github.com/lawsker/lawsker-deploy/report"
)

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkSwitchBack: switching to the warm previous release (connect,
// lock, health-check it once, nginx -t, reload, record, unlock), repeated;
// reports the median.
func BenchmarkSwitchBack(b *testing.B) {
	r := newRig(b)
	cfg := r.config(b, "")
	r.deployB(b, cfg, r.imageB(b, "v1"), frontendB(b, "v1"), false)
	r.deployB(b, cfg, r.imageB(b, "v2"), frontendB(b, "v2"), false)
	var times []time.Duration
	for b.Loop() {
		d, err := PrepareSwitchBack(Request{Config: cfg, Who: "bench@ci", ID: report.NewID(time.Now()),
			Resolver: &config.Resolver{LookupEnv: func(string) (string, bool) { return "", false }}})
		if err != nil {
			b.Fatal(err)
		}
		res := pipelines.Run(b.Context(), d.Graph(), pipelines.Options{MaxWorkers: 2})
		d.Close()
		if res.Err() != nil {
			b.Fatal(res.Err())
		}
		times = append(times, res.Duration())
	}
	b.ReportMetric(median(times).Seconds(), "s_median_switch_back")
}

// BenchmarkDeployWarm: a deploy whose image is already on the host (two
// images alternate, --force), timed without the health gate's wait (which
// is the backend's start-up, not ours); reports the median.
func BenchmarkDeployWarm(b *testing.B) {
	r := newRig(b)
	cfg := r.config(b, "")
	images := []string{r.imageB(b, "v1"), r.imageB(b, "v2")}
	front := frontendB(b, "v1")
	r.deployB(b, cfg, images[0], front, false)
	r.deployB(b, cfg, images[1], front, false)
	var times []time.Duration
	i := 0
	for b.Loop() {
		res := r.deployB(b, cfg, images[i%2], front, true)
		i++
		gate, _ := res.Step("health-gate:local")
		times = append(times, res.Duration()-gate.Duration())
	}
	b.ReportMetric(median(times).Seconds(), "s_median_deploy_excl_health_gate")
}
