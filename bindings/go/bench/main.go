// Command bench compares cache-get latency (p50/p99) and throughput of the Go binding with the
// Rust client core on the same broker in one run.
//
//	cargo build --release -p felix-broker && cargo build --release -p felix-ffi --lib --example rust_cache_bench
//	cd bindings/go && go run -tags felix_release ./bench
//
// Without -addr it starts its own broker (-broker). The Rust side runs
// target/<profile>/examples/rust_cache_bench as a subprocess and reports JSON.
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
	"sort"
	"strings"
	"sync"
	"time"

	felix "github.com/felix-rs/felix/bindings/go"
)

type result struct {
	Concurrency int     `json:"concurrency"`
	Ops         int     `json:"ops"`
	P50         float64 `json:"p50_us"`
	P99         float64 `json:"p99_us"`
	OpsPerSec   float64 `json:"ops_per_sec"`
}

func main() {
	profile := flag.String("profile", "release", "cargo profile of the broker and rust bench (debug|release)")
	addr := flag.String("addr", "", "broker address (default: start one)")
	ca := flag.String("ca", "", "CA PEM of -addr")
	ops := flag.Int("ops", 20000, "gets per level")
	flag.Parse()
	root := "../.."
	if *addr == "" {
		dir, _ := os.MkdirTemp("", "felix-bench-")
		defer os.RemoveAll(dir)
		*addr, *ca = "127.0.0.1:47123", filepath.Join(dir, "ca.pem")
		cmd := exec.Command(filepath.Join(root, "target", *profile, "felix-broker"), "--listen", *addr, "--no-metrics", "--dev-ca-path", *ca)
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
	var goRes []result
	for _, conc := range []int{1, 32} {
		run(ctx, c, conc, *ops/10)
		goRes = append(goRes, run(ctx, c, conc, *ops))
	}
	out, err := exec.Command(filepath.Join(root, "target", *profile, "examples", "rust_cache_bench"), *addr, *ca, fmt.Sprint(*ops), "1,32").Output()
	if err != nil {
		fail(fmt.Errorf("rust bench: %w (build it with cargo build --release -p felix-ffi --lib --example rust_cache_bench)", err))
	}
	var rustRes []result
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var r result
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			fail(err)
		}
		rustRes = append(rustRes, r)
	}
	fmt.Printf("%-5s %-5s %10s %10s %12s\n", "side", "conc", "p50_us", "p99_us", "ops/s")
	for i := range goRes {
		for _, x := range []struct {
			n string
			r result
		}{{"rust", rustRes[i]}, {"go", goRes[i]}} {
			fmt.Printf("%-5s %-5d %10.1f %10.1f %12.0f\n", x.n, x.r.Concurrency, x.r.P50, x.r.P99, x.r.OpsPerSec)
		}
	}
	fmt.Printf("go/rust p50 at concurrency 1: %.2fx (target <= 1.15x)\n", goRes[0].P50/rustRes[0].P50)
	fmt.Printf("go/rust throughput at concurrency 32: %.2fx (target >= 0.85x)\n", goRes[1].OpsPerSec/rustRes[1].OpsPerSec)
}

func run(ctx context.Context, c *felix.Client, conc, ops int) result {
	per := max(ops/conc, 1)
	lat := make([][]time.Duration, conc)
	var wg sync.WaitGroup
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
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	q := func(p float64) float64 { return float64(all[int(p*float64(len(all)-1))].Nanoseconds()) / 1000 }
	return result{Concurrency: conc, Ops: len(all), P50: q(0.5), P99: q(0.99), OpsPerSec: float64(len(all)) / elapsed.Seconds()}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}
