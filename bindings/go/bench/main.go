// Command bench compares cache-get latency (p50/p99/p999) and throughput of the Go binding with
// the Rust client core on the same broker in one run.
//
//	cargo build --release -p felix-broker && cargo build --release -p felix-ffi --lib --example rust_cache_bench
//	cd bindings/go && go run -tags felix_release ./bench
//
// Without -addr it starts its own broker, and (-pin, the default) runs it on the upper half of
// the CPUs and both clients on the lower half, as on separate hosts; -pin=false shares every CPU
// between them (see placement). The Rust side is
// target/<profile>/examples/rust_cache_bench, a subprocess that runs one round per request.
// Go and Rust rounds alternate (-rounds of each, per concurrency level), so that both sides
// see the same machine: each side's figures are the median over its rounds, and each ratio is
// the median of the per-round ratios.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	felix "github.com/felix-rs/felix/bindings/go"
)

type result struct {
	Concurrency int     `json:"concurrency"`
	Ops         int     `json:"ops"`
	P50         float64 `json:"p50_us"`
	P99         float64 `json:"p99_us"`
	P999        float64 `json:"p999_us"`
	OpsPerSec   float64 `json:"ops_per_sec"`
	CPU         float64 `json:"cpu_us_per_op"` // the side's process CPU time per get, µs
	Allocs      float64 `json:"-"`             // Go heap allocations per get (Go side only)
}

func main() {
	profile := flag.String("profile", "release", "cargo profile of the broker and rust bench (debug|release)")
	addr := flag.String("addr", "", "broker address (default: start one)")
	ca := flag.String("ca", "", "CA PEM of -addr")
	ops := flag.Int("ops", 20000, "gets per level and side, split over the rounds")
	rounds := flag.Int("rounds", 5, "alternating Go/Rust rounds per level")
	levelList := flag.String("levels", "1,32", "comma-separated concurrency levels")
	goOnly := flag.Bool("go-only", false, "run only the Go rounds (to profile the Go side alone)")
	cpuProfile := flag.String("cpuprofile", "", "write a Go CPU profile of the run to this file")
	pin := flag.Bool("pin", true, "without -addr: broker on the upper half of the CPUs, clients on the lower half (taskset)")
	flag.Parse()
	brokerCPUs := placement(*pin && *addr == "")
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fail(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fail(err)
		}
		defer pprof.StopCPUProfile()
	}
	root := "../.."
	if *addr == "" {
		dir, _ := os.MkdirTemp("", "felix-bench-")
		defer os.RemoveAll(dir)
		*addr, *ca = "127.0.0.1:47123", filepath.Join(dir, "ca.pem")
		argv := []string{filepath.Join(root, "target", *profile, "felix-broker"), "--listen", *addr, "--no-metrics", "--dev-ca-path", *ca}
		if brokerCPUs != "" {
			argv = append([]string{"taskset", "-c", brokerCPUs}, argv...)
			fmt.Printf("broker on CPUs %s, Go and Rust clients on CPUs %s (-pin=false shares every CPU)\n", brokerCPUs, os.Getenv(clientCPUsEnv))
		} else {
			fmt.Println("broker and clients share every CPU")
		}
		cmd := exec.Command(argv[0], argv[1:]...)
		stderr, _ := cmd.StderrPipe()
		if err := cmd.Start(); err != nil {
			fail(err)
		}
		defer func() { cmd.Process.Kill(); cmd.Wait() }()
		sc := bufio.NewScanner(stderr)
		for sc.Scan() && !strings.Contains(sc.Text(), "felix broker serving") {
		}
		go func() {
			for sc.Scan() {
			}
		}()
	}
	ctx := context.Background()
	c, err := felix.Connect(ctx, felix.Options{Addresses: []string{*addr}, CAFile: *ca})
	if err != nil {
		fail(err)
	}
	defer c.Close()
	if _, err := c.CachePut(ctx, "default", "bench", "k", make([]byte, 100), 0); err != nil {
		fail(err)
	}
	rust := exec.Command(filepath.Join(root, "target", *profile, "examples", "rust_cache_bench"), *addr, *ca)
	rustIn, _ := rust.StdinPipe()
	rustOut, _ := rust.StdoutPipe()
	rust.Stderr = os.Stderr
	if err := rust.Start(); err != nil {
		fail(fmt.Errorf("rust bench: %w (build it with cargo build --release -p felix-ffi --lib --example rust_cache_bench)", err))
	}
	defer func() { rustIn.Close(); rust.Wait() }()
	rustLines := bufio.NewScanner(rustOut)
	rustRound := func(conc, ops int) result {
		fmt.Fprintf(rustIn, "%d %d\n", conc, ops)
		if !rustLines.Scan() {
			fail(fmt.Errorf("rust bench ended early"))
		}
		var r result
		if err := json.Unmarshal(rustLines.Bytes(), &r); err != nil {
			fail(err)
		}
		return r
	}
	per := max(*ops / *rounds, 100)
	fmt.Printf("%-5s %-5s %5s %10s %10s %10s %12s %9s %9s\n", "side", "conc", "round", "p50_us", "p99_us", "p999_us", "ops/s", "cpu_us", "allocs")
	row := func(side string, conc, round int, r result) {
		allocs := "-" // counted in this (Go) process only
		if side == "go" {
			allocs = fmt.Sprintf("%.1f", r.Allocs)
		}
		fmt.Printf("%-5s %-5d %5d %10.1f %10.1f %10.1f %12.0f %9.2f %9s\n", side, conc, round, r.P50, r.P99, r.P999, r.OpsPerSec, r.CPU, allocs)
	}
	var levels []int
	for _, f := range strings.Split(*levelList, ",") {
		var n int
		if _, err := fmt.Sscan(f, &n); err != nil || n < 1 {
			fail(fmt.Errorf("bad -levels %q", *levelList))
		}
		levels = append(levels, n)
	}
	goRes, rustRes := map[int][]result{}, map[int][]result{}
	for round := 1; round <= *rounds; round++ {
		for _, conc := range levels {
			run(ctx, c, conc, per/10) // warm-up
			g := run(ctx, c, conc, per)
			if *goOnly {
				row("go", conc, round, g)
				continue
			}
			r := rustRound(conc, per)
			goRes[conc] = append(goRes[conc], g)
			rustRes[conc] = append(rustRes[conc], r)
			row("rust", conc, round, r)
			row("go", conc, round, g)
		}
	}
	if *goOnly {
		return
	}
	fmt.Printf("\nmedians over %d rounds of %d gets\n", *rounds, per)
	fmt.Printf("%-5s %-5s %10s %10s %10s %12s\n", "side", "conc", "p50_us", "p99_us", "p999_us", "ops/s")
	for _, conc := range levels {
		for _, x := range []struct {
			n string
			r []result
		}{{"rust", rustRes[conc]}, {"go", goRes[conc]}} {
			m := func(f func(result) float64) float64 { return median(x.r, f) }
			fmt.Printf("%-5s %-5d %10.1f %10.1f %10.1f %12.0f\n", x.n, conc,
				m(func(r result) float64 { return r.P50 }), m(func(r result) float64 { return r.P99 }),
				m(func(r result) float64 { return r.P999 }), m(func(r result) float64 { return r.OpsPerSec }))
		}
	}
	ratio := func(conc int, f func(result) float64) float64 {
		var rs []result
		for i := range goRes[conc] {
			rs = append(rs, result{P50: f(goRes[conc][i]) / f(rustRes[conc][i])})
		}
		return median(rs, func(r result) float64 { return r.P50 })
	}
	if len(goRes[1]) > 0 {
		fmt.Printf("go/rust p50 at concurrency 1: %.2fx (target <= 1.15x)\n", ratio(1, func(r result) float64 { return r.P50 }))
	}
	if len(goRes[32]) > 0 {
		fmt.Printf("go/rust throughput at concurrency 32: %.2fx (target >= 0.85x)\n", ratio(32, func(r result) float64 { return r.OpsPerSec }))
	}
}

func median(rs []result, f func(result) float64) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	sort.Float64s(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func run(ctx context.Context, c *felix.Client, conc, ops int) result {
	per := max(ops/conc, 1)
	lat := make([][]time.Duration, conc)
	var wg sync.WaitGroup
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	cpu0 := cpuTime()
	start := time.Now()
	for g := 0; g < conc; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			l := make([]time.Duration, 0, per)
			for i := 0; i < per; i++ {
				t := time.Now()
				if _, _, err := c.CacheGet(ctx, "default", "bench", "k"); err != nil {
					fail(err)
				}
				l = append(l, time.Since(t))
			}
			lat[g] = l
		}(g)
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := cpuTime() - cpu0
	runtime.ReadMemStats(&ms1)
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	q := func(p float64) float64 { return float64(all[int(p*float64(len(all)-1))].Nanoseconds()) / 1000 }
	return result{Concurrency: conc, Ops: len(all), P50: q(0.5), P99: q(0.99), P999: q(0.999), OpsPerSec: float64(len(all)) / elapsed.Seconds(), CPU: float64(cpu.Nanoseconds()) / 1000 / float64(len(all)),
		Allocs: float64(ms1.Mallocs-ms0.Mallocs) / float64(len(all))}
}

// cpuTime is the CPU time this process (all its threads, not the broker or the Rust bench) has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}
