package checks

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// SystemReader reads a target's system figures (target.Host over SFTP).
type SystemReader interface {
	ReadFile(path string) ([]byte, error)
	DiskUsage(path string) (total, avail uint64, err error)
}

// SystemThresholds are the limits, in percent.
type SystemThresholds struct{ CPU, Memory, Disk int }

// System measures CPU (two /proc/stat samples half a second apart), memory
// (/proc/meminfo: MemAvailable of MemTotal) and the disk holding diskPath
// (statvfs) on the target, and fails each figure above its threshold.
func System(r SystemReader, diskPath string, th SystemThresholds) func(context.Context) (Result, error) {
	return func(ctx context.Context) (Result, error) {
		busy1, total1, err := cpuSample(r)
		if err != nil {
			return Result{}, err
		}
		select {
		case <-ctx.Done():
			return Result{}, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
		busy2, total2, err := cpuSample(r)
		if err != nil {
			return Result{}, err
		}
		cpu := 0.0
		if total2 > total1 {
			cpu = 100 * float64(busy2-busy1) / float64(total2-total1)
		}
		mem, err := memoryUsed(r)
		if err != nil {
			return Result{}, err
		}
		total, avail, err := r.DiskUsage(diskPath)
		if err != nil {
			return Result{}, err
		}
		disk := 0.0
		if total > 0 {
			disk = 100 * float64(total-avail) / float64(total)
		}
		msg := fmt.Sprintf("CPU %.0f%% (limit %d%%), memory %.0f%% (limit %d%%), disk %.0f%% of %s at %s (limit %d%%)",
			cpu, th.CPU, mem, th.Memory, disk, bytesHuman(total), diskPath, th.Disk)
		var over []string
		if cpu > float64(th.CPU) {
			over = append(over, "CPU")
		}
		if mem > float64(th.Memory) {
			over = append(over, "memory")
		}
		if disk > float64(th.Disk) {
			over = append(over, "disk")
		}
		r2 := Passed("%s", msg)
		if len(over) > 0 {
			r2 = Failed("%s over the limit: %s", strings.Join(over, " and "), msg)
		}
		return r2.With("cpu_percent", cpu, "memory_percent", mem, "disk_percent", disk), nil
	}
}

// cpuSample returns busy and total jiffies from /proc/stat's "cpu" line.
func cpuSample(r SystemReader) (busy, total uint64, err error) {
	data, err := r.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	var v []uint64
	for _, s := range f[1:] {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/stat: %q is not a number", s)
		}
		v = append(v, n)
	}
	for _, n := range v {
		total += n
	}
	idle := v[3] // idle
	if len(v) > 4 {
		idle += v[4] // iowait
	}
	return total - idle, total, nil
}

func memoryUsed(r SystemReader) (float64, error) {
	data, err := r.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	vals := map[string]float64{}
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) > 0 {
			n, _ := strconv.ParseFloat(f[0], 64)
			vals[k] = n
		}
	}
	total, avail := vals["MemTotal"], vals["MemAvailable"]
	if total == 0 {
		return 0, fmt.Errorf("/proc/meminfo: no MemTotal")
	}
	return 100 * (total - avail) / total, nil
}

func bytesHuman(n uint64) string {
	const gib = 1 << 30
	if n >= gib {
		return fmt.Sprintf("%.1f GiB", float64(n)/gib)
	}
	return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
}
