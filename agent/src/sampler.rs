//! The [`Sampler`] seam: `name()` plus `sample(&mut Buffer)`.
//!
//! A sampler that fails lowers only its own `tidal_agent_sampler_success{sampler}` gauge; it
//! never fails the scrape. Each sampler module has its own `thiserror` enum; [`SampleError`]
//! wraps them, and [`SampleError::reason`] maps every variant to a fixed label.

use crate::buffer::Buffer;
use crate::samplers::{cgroup::CgroupError, kafka_lag::KafkaLagError, node::NodeError};

/// A source of series, run once per interval.
pub trait Sampler: Send {
    /// The `sampler` label of this sampler's self-metrics.
    fn name(&self) -> &'static str;
    /// Reads the source and appends series to `buf`.
    fn sample(&mut self, buf: &mut Buffer) -> Result<(), SampleError>;
}

/// Why a whole sampler run failed.
#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    KafkaLag(#[from] KafkaLagError),
}

impl SampleError {
    /// The fixed `reason` label of this error.
    pub fn reason(&self) -> &'static str {
        match self {
            SampleError::Node(e) => e.reason(),
            SampleError::Cgroup(e) => e.reason(),
            SampleError::KafkaLag(e) => e.reason(),
        }
    }
}
