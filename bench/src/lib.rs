//! tidal-bench: the benchmarks' driver. Each part runs its measurement against the local
//! stack (or this host) and writes its section of bench/RESULTS.md through [`results`], the
//! one writer of that file; `scripts/bench*.sh` build it, check the environment and call it.

pub mod py;
pub mod results;
pub mod run;

pub mod agent;
pub mod cells;
pub mod cgroups;
pub mod drive;
pub mod kafka;
pub mod node;
pub mod parts;
pub mod peers;
pub mod process;
pub mod scaler;
