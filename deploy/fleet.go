package deploy

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// BatchSize is the number of web hosts per batch rollout.batch asks for
// (a count, or a percentage rounded up) out of n; 0 (empty): all at once.
func BatchSize(batch string, n int) int {
	b := strings.TrimSpace(batch)
	if b == "" || n == 0 {
		return n
	}
	if p, ok := strings.CutSuffix(b, "%"); ok {
		v, _ := strconv.Atoi(p)
		return max(1, min(n, int(math.Ceil(float64(v)*float64(n)/100))))
	}
	v, _ := strconv.Atoi(b)
	return max(1, min(n, v))
}

// batches are the web targets' indexes in their batches, in the order of
// targets (the first target, which migrates, is in the first batch).
func (d *Deployment) batches() [][]int {
	var web []int
	for i, tr := range d.targets {
		if tr.cfg.HasRole("web") {
			web = append(web, i)
		}
	}
	size := BatchSize(d.req.Config.Rollout.Batch, len(web))
	var out [][]int
	for len(web) > 0 {
		k := min(size, len(web))
		out = append(out, web[:k])
		web = web[k:]
	}
	return out
}

func (d *Deployment) targetNames(idx []int) string {
	names := make([]string, len(idx))
	for i, j := range idx {
		names[i] = d.targets[j].cfg.Name
	}
	return strings.Join(names, ", ")
}

// watchBatch watches a switched batch for rollout.batch_watch: the health
// path through each host's nginx, and each new backend running steadily.
// The first failure fails the step: the run then puts every switched host
// back.
func (d *Deployment) watchBatch(ctx context.Context, batch []int) error {
	cfg := d.req.Config
	until := time.Now().Add(cfg.Rollout.BatchWatch.D())
	g := cfg.Backend.HealthGate
	for {
		for _, i := range batch {
			tr := d.targets[i]
			if tr.noop != "" {
				continue
			}
			client := tunnelClient(tr.host, g.RequestTimeout.D())
			err := checkHealth(ctx, client, "http://"+nginxAddr(tr.cfg.Nginx)+cfg.Backend.HealthPath, hostHeader(cfg), cfg.Backend.HealthExpect)
			client.CloseIdleConnections()
			if err != nil {
				return fmt.Errorf("%s: the health path through nginx failed while its batch was watched: %w", tr.cfg.Name, err)
			}
			if why := d.crashOf(ctx, tr); why != "" {
				return fmt.Errorf("%s: the new backend %s %s while its batch was watched", tr.cfg.Name, tr.container, why)
			}
		}
		if !time.Now().Before(until) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(min(250*time.Millisecond, time.Until(until)+time.Millisecond)):
		}
	}
}
