//! Cache-get throughput and CPU cost through the C ABI alone: one thread keeps `CONCURRENCY`
//! gets in flight on a driven completion queue, the way the Go dispatcher does, with no Go in
//! the way. Set against `rust_cache_bench` (the core), it shows what the C ABI itself costs per
//! call; set against the Go bench, what Go adds.
//!
//! ```sh
//! cargo run --release -p felix-ffi --example ffi_cache_bench -- ADDR CA_PEM [CONCURRENCY] [OPS]
//! ```

mod common;

use common::cpu_seconds;
use std::ptr;
use std::time::Instant;

use felix_ffi::*;

fn bytes(s: &str) -> FelixBytes {
    FelixBytes {
        ptr: s.as_ptr(),
        len: s.len(),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (addr, ca) = common::addr_and_ca(&args);
    let conc: usize = args.get(3).and_then(|v| v.parse().ok()).unwrap_or(32);
    let ops: usize = args.get(4).and_then(|v| v.parse().ok()).unwrap_or(200_000);
    // SAFETY: every pointer handed to the C ABI below is valid for the call.
    unsafe {
        let mut opts = std::mem::zeroed::<FelixConnectOptions>();
        felix_connect_options_init(&mut opts);
        let a = [bytes(&addr)];
        opts.addresses = a.as_ptr();
        opts.addresses_len = 1;
        opts.ca_file = bytes(&ca);
        let mut client = ptr::null_mut();
        let st = felix_client_connect(&opts, &mut client, ptr::null_mut());
        assert_eq!(st, FelixStatus::Ok, "connect");
        let value = [7u8; 100];
        let v = FelixBytes {
            ptr: value.as_ptr(),
            len: value.len(),
        };
        let st = felix_cache_put(
            client,
            bytes("default"),
            bytes("bench"),
            bytes("k"),
            v,
            0,
            ptr::null_mut(),
            ptr::null_mut(),
        );
        assert_eq!(st, FelixStatus::Ok, "put");
        let q = felix_completion_queue_new_driven();
        let start_get = |token: u64| {
            let st = felix_cache_get_start(
                client,
                bytes("default"),
                bytes("bench"),
                bytes("k"),
                q,
                token,
                ptr::null_mut(),
            );
            assert_eq!(st, FelixStatus::Ok, "get start");
        };
        for round in [ops / 10, ops] {
            let (cpu0, t0) = (cpu_seconds(), Instant::now());
            let mut started = 0;
            while started < conc.min(round) {
                start_get(started as u64);
                started += 1;
            }
            let mut done = 0;
            let mut buf: Vec<FelixCompletion> = Vec::with_capacity(128);
            while done < round {
                let mut n = 0;
                let st = felix_completion_queue_wait(
                    q,
                    buf.as_mut_ptr(),
                    128,
                    100,
                    &mut n,
                    ptr::null_mut(),
                );
                assert_eq!(st, FelixStatus::Ok, "wait");
                buf.set_len(n);
                for c in buf.drain(..) {
                    assert_eq!(c.status, FelixStatus::Ok, "get");
                    felix_result_free(c.result);
                    done += 1;
                    if started < round {
                        start_get(started as u64);
                        started += 1;
                    }
                }
            }
            let (secs, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - cpu0);
            if round == ops {
                println!(
                    "ffi   {conc:<5} {:>12.0} ops/s  cpu {:.2} us/get",
                    round as f64 / secs,
                    cpu * 1e6 / round as f64
                );
            }
        }
        felix_completion_queue_free(q);
        felix_client_free(client);
    }
}
