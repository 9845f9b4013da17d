//! The samplers, one file each: [`node`] (from `/proc`) and [`cgroup`] (pods and containers).

pub mod cgroup;
pub mod node;
