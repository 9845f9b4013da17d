//! The agent's `/proc` sampler (`tidal_agent::samplers::node::NodeSampler`): `stat` (through
//! the `procfs` crate and the sampler's own `cpuN` numbering), `loadavg`, `meminfo` and
//! `pressure/{cpu,memory,io}`, written from the input under a `--proc-root` of its own.
//!
//! Checks: arbitrary file contents give series or sample errors, never a panic (including
//! arithmetic overflow, which the fuzz build checks), in two consecutive samples (the second
//! computes the CPU utilization from the first).
#![no_main]

use std::time::Instant;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tidal_agent::buffer::Buffer;
use tidal_agent::sampler::Sampler;
use tidal_agent::samplers::node::NodeSampler;

#[derive(Arbitrary, Debug)]
struct Case {
    stat: [String; 2],
    loadavg: String,
    meminfo: String,
    pressure: Option<[String; 3]>,
}

fuzz_target!(|c: Case| {
    let root = std::env::temp_dir().join(format!("tidal-fuzz-proc-{}", std::process::id()));
    let pressure = root.join("pressure");
    let _ = std::fs::remove_dir_all(&pressure);
    std::fs::create_dir_all(&root).expect("mkdir");
    std::fs::write(root.join("loadavg"), &c.loadavg).expect("write");
    std::fs::write(root.join("meminfo"), &c.meminfo).expect("write");
    if let Some(p) = &c.pressure {
        std::fs::create_dir_all(&pressure).expect("mkdir");
        for (name, text) in ["cpu", "memory", "io"].iter().zip(p) {
            std::fs::write(pressure.join(name), text).expect("write");
        }
    }
    let mut sampler = NodeSampler::new(&root);
    for stat in &c.stat {
        std::fs::write(root.join("stat"), stat).expect("write");
        let mut buf = Buffer::new(Instant::now());
        let _ = sampler.sample(&mut buf);
    }
});
