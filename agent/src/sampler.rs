//! The [`Sampler`] seam: `name()` plus `sample(&mut Buffer)`.
//!
//! A sampler that fails lowers only its own `tidal_agent_sampler_success{sampler}` gauge; it
//! never fails the scrape. Each sampler module has its own `thiserror` enum and converts it
//! into a [`SampleError`], which keeps the enum's fixed label ([`SampleError::reason`]).

use crate::buffer::Buffer;

/// A source of series, run once per interval.
pub trait Sampler: Send {
    /// The `sampler` label of this sampler's self-metrics.
    fn name(&self) -> &'static str;
    /// Reads the source and appends series to `buf`.
    fn sample(&mut self, buf: &mut Buffer) -> Result<(), SampleError>;
}

/// Why a whole sampler run failed: a sampler's own error with its fixed `reason` label. Each
/// sampler module converts its error into this one (`From`), so this seam names no sampler.
#[derive(Debug, thiserror::Error)]
#[error("{inner}")]
pub struct SampleError {
    reason: &'static str,
    inner: Box<dyn std::error::Error + Send + Sync>,
}

impl SampleError {
    /// Wraps a sampler's error `inner`, whose fixed label is `reason`.
    pub fn new(
        reason: &'static str,
        inner: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            reason,
            inner: Box::new(inner),
        }
    }

    /// The fixed `reason` label of this error.
    pub fn reason(&self) -> &'static str {
        self.reason
    }
}
