//! The samplers, one module each: [`node`] (from `/proc`), [`cgroup`] (pods and containers) and
//! [`kafka_lag`] (consumer lag of the clusters in `--kafka-config`).

pub mod cgroup;
pub mod kafka_lag;
pub mod node;
