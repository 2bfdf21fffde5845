package main

import (
	"fmt"
	"os"
	"os/exec"
	"sort"
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
// (the lower half), as separate client and broker hosts would have them; hyperthread siblings
// stay on one side. On the shared CPUs of one small machine, a client that runs more threads
// (Go's scheduler spreads goroutines over every CPU) takes CPU time from the broker, and the
// figures then measure that contention rather than the client. It restarts this process on
// the client CPUs (the Rust bench, its child, inherits them) and returns the broker's CPU list
// for taskset, or "" when not pinning (asked not to, a single core, or no usable taskset),
// saying why. With 2 or 3 cores the clients get one: Go then runs with GOMAXPROCS=1 (or 2
// with hyperthreads).
func placement(pin bool) (brokerCPUs string) {
	if !pin {
		return ""
	}
	cpus, err := allowedCPUs()
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: not pinning: %v\n", err)
		return ""
	}
	broker := os.Getenv(brokerCPUsEnv)
	if broker != "" && os.Getenv(clientCPUsEnv) == cpuList(cpus) {
		return broker // this is the restarted process
	}
	cores := byCore(cpus)
	if len(cores) < 2 {
		fmt.Fprintf(os.Stderr, "bench: not pinning: one core (CPUs %v)\n", cpus)
		return ""
	}
	var client, brokerSide []int
	for i, core := range cores {
		if i < len(cores)/2 {
			client = append(client, core...)
		} else {
			brokerSide = append(brokerSide, core...)
		}
	}
	// Compared with Cpus_allowed_list (ascending) after the restart.
	sort.Ints(client)
	sort.Ints(brokerSide)
	taskset, err := exec.LookPath("taskset")
	if err == nil {
		err = exec.Command(taskset, "-c", cpuList(client), "true").Run()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: not pinning: taskset: %v\n", err)
		return ""
	}
	exe, err := os.Executable()
	if err != nil {
		fail(err)
	}
	os.Setenv(clientCPUsEnv, cpuList(client))
	os.Setenv(brokerCPUsEnv, cpuList(brokerSide))
	args := append([]string{"taskset", "-c", cpuList(client), exe}, os.Args[1:]...)
	fail(fmt.Errorf("restart on CPUs %s: %w", cpuList(client), syscall.Exec(taskset, args, os.Environ())))
	return ""
}

// byCore groups CPUs by physical core (hyperthread siblings together), in CPU order; each CPU
// is its own core when the topology cannot be read.
func byCore(cpus []int) [][]int {
	index := map[string]int{}
	var cores [][]int
	for _, c := range cpus {
		key := strconv.Itoa(c)
		dir := fmt.Sprintf("/sys/devices/system/cpu/cpu%d/topology/", c)
		pkg, err1 := os.ReadFile(dir + "physical_package_id")
		core, err2 := os.ReadFile(dir + "core_id")
		if err1 == nil && err2 == nil {
			key = strings.TrimSpace(string(pkg)) + "/" + strings.TrimSpace(string(core))
		}
		i, ok := index[key]
		if !ok {
			i = len(cores)
			index[key] = i
			cores = append(cores, nil)
		}
		cores[i] = append(cores[i], c)
	}
	return cores
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
