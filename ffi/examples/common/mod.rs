//! Shared by the bench examples.

/// CPU time used by this process so far, in seconds (all threads; clock ticks of 10 ms).
pub fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the ')'.
    (ticks(11) + ticks(12)) / 100.0
}

/// The broker address and CA file from the command line (`ADDR CA_PEM`), with the dev
/// broker's defaults.
pub fn addr_and_ca(args: &[String]) -> (String, String) {
    let addr = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:5000".into());
    let ca = args
        .get(2)
        .cloned()
        .unwrap_or_else(|| felix_client::default_dev_ca_path().display().to_string());
    (addr, ca)
}
