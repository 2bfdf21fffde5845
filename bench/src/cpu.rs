//! CPU time spent by the bench process (the clients) and by the server process (broker or
//! echo server) during a measured phase, from `/proc/<pid>/task/*/schedstat` (nanosecond
//! run time per thread; Linux only, absent elsewhere). Divided by the operation count this
//! says where the work goes, independently of scheduling noise.

/// Total on-CPU time of every thread of `pid`, nanoseconds.
pub fn process_cpu_ns(pid: u32) -> Option<u64> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0u64;
    for t in dir.flatten() {
        let s = std::fs::read_to_string(t.path().join("schedstat")).ok()?;
        total += s.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// CPU time of both sides across a phase.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuUsage {
    pub client_ns: Option<u64>,
    pub server_ns: Option<u64>,
    /// Operations performed while metering.
    pub ops: u64,
}

impl CpuUsage {
    /// Accumulates another phase.
    pub fn add(&mut self, o: CpuUsage) {
        let sum = |a: Option<u64>, b: Option<u64>, first: bool| {
            if first {
                b
            } else {
                Some(a? + b?)
            }
        };
        let first = self.ops == 0;
        self.client_ns = sum(self.client_ns, o.client_ns, first);
        self.server_ns = sum(self.server_ns, o.server_ns, first);
        self.ops += o.ops;
    }

    pub fn client_us_per_op(&self) -> Option<f64> {
        Some(self.client_ns? as f64 / 1e3 / self.ops.max(1) as f64)
    }

    pub fn server_us_per_op(&self) -> Option<f64> {
        Some(self.server_ns? as f64 / 1e3 / self.ops.max(1) as f64)
    }
}

/// Started at the beginning of a measured phase.
pub struct CpuMeter {
    client: Option<u64>,
    server: Option<u64>,
    server_pid: u32,
}

impl CpuMeter {
    /// `server_pid` 0: no server process to meter.
    pub fn start(server_pid: u32) -> Self {
        Self {
            client: process_cpu_ns(std::process::id()),
            server: (server_pid != 0)
                .then(|| process_cpu_ns(server_pid))
                .flatten(),
            server_pid,
        }
    }

    /// CPU used since `start`, over `ops` operations.
    pub fn stop(&self, ops: usize) -> CpuUsage {
        let diff = |a: Option<u64>, b: Option<u64>| Some(b?.saturating_sub(a?));
        CpuUsage {
            client_ns: diff(self.client, process_cpu_ns(std::process::id())),
            server_ns: diff(
                self.server,
                (self.server_pid != 0)
                    .then(|| process_cpu_ns(self.server_pid))
                    .flatten(),
            ),
            ops: ops as u64,
        }
    }
}
