//! What a cycle reports.

/// One cycle's summary (for logs, tests and the benchmark).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CycleReport {
    pub due: usize,
    pub scaled: usize,
    pub failures: usize,
}
