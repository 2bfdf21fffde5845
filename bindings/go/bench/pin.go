package main

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
)

// A bench process restarted on the client CPUs finds both CPU lists in its environment.
const (
	clientCPUsEnv = "FELIX_BENCH_CLIENT_CPUS"
	brokerCPUsEnv = "FELIX_BENCH_BROKER_CPUS"
)

// placement splits this process's CPUs between the broker (the upper half) and the clients
// (the lower half), as separate client and broker hosts would have them. On the shared CPUs of
// one small machine, a client that runs more threads (Go's scheduler spreads goroutines over
// every CPU) takes CPU time from the broker, and the figures then measure that contention
// rather than the client. It restarts this process on the client CPUs (the Rust bench, its
// child, inherits them) and returns the broker's CPU list for taskset, or "" when not pinning
// (asked not to, fewer than 2 CPUs, or no taskset), saying why.
func placement(pin bool) (brokerCPUs string) {
	if !pin {
		return ""
	}
	if broker := os.Getenv(brokerCPUsEnv); broker != "" {
		return broker // restarted on the client CPUs
	}
	cpus, err := allowedCPUs()
	if err != nil || len(cpus) < 2 {
		fmt.Fprintf(os.Stderr, "bench: not pinning (CPUs %v, %v)\n", cpus, err)
		return ""
	}
	taskset, err := exec.LookPath("taskset")
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: not pinning: taskset not found")
		return ""
	}
	half := len(cpus) / 2
	client, broker := cpuList(cpus[:half]), cpuList(cpus[half:])
	exe, err := os.Executable()
	if err != nil {
		fail(err)
	}
	os.Setenv(clientCPUsEnv, client)
	os.Setenv(brokerCPUsEnv, broker)
	args := append([]string{"taskset", "-c", client, exe}, os.Args[1:]...)
	fail(fmt.Errorf("restart on CPUs %s: %w", client, syscall.Exec(taskset, args, os.Environ())))
	return ""
}

// allowedCPUs lists the CPUs this process may run on (Cpus_allowed_list of /proc/self/status).
func allowedCPUs() ([]int, error) {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		list, ok := strings.CutPrefix(line, "Cpus_allowed_list:")
		if !ok {
			continue
		}
		var cpus []int
		for _, r := range strings.Split(strings.TrimSpace(list), ",") {
			lo, hi, isRange := strings.Cut(r, "-")
			a, err := strconv.Atoi(lo)
			if err != nil {
				return nil, fmt.Errorf("Cpus_allowed_list %q", list)
			}
			b := a
			if isRange {
				if b, err = strconv.Atoi(hi); err != nil {
					return nil, fmt.Errorf("Cpus_allowed_list %q", list)
				}
			}
			for c := a; c <= b; c++ {
				cpus = append(cpus, c)
			}
		}
		return cpus, nil
	}
	return nil, fmt.Errorf("no Cpus_allowed_list in /proc/self/status")
}

func cpuList(cpus []int) string {
	s := make([]string, len(cpus))
	for i, c := range cpus {
		s[i] = strconv.Itoa(c)
	}
	return strings.Join(s, ",")
}
