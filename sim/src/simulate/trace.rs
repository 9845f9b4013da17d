//! Load traces: a CSV `t,load` (seconds, requests or messages per second) resampled to one
//! value per second.
//!
//! The time column must increase strictly; it may start anywhere (the replay starts at the
//! first row). Between rows the load is interpolated linearly ([`Interpolation::Linear`], the
//! default) or held until the next row ([`Interpolation::Step`]). An empty load cell is no
//! point (the neighbours are interpolated across). Other columns are ignored, so a trace can
//! carry notes or its own chart series. The syntax is that of [`crate::plot::read_table`].

use crate::plot::{self, PlotError};

/// The longest trace replayed: one week of seconds.
pub const MAX_SECONDS: usize = 7 * 24 * 3600;

/// How the load between two rows is filled in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Interpolation {
    /// A straight line between the two rows.
    #[default]
    Linear,
    /// The earlier row's load until the next row.
    Step,
}

/// A trace that cannot be replayed. Lines count from 1.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TraceError {
    /// Not a CSV table of numbers (the message names the line and column).
    #[error(transparent)]
    Csv(#[from] PlotError),
    /// No column named `load` (and more than one column after the time).
    #[error("line {line}: no `load` column (columns: {columns})")]
    NoLoadColumn { line: usize, columns: String },
    /// A load below zero.
    #[error("line {line}, column {column} (load): {value} is negative")]
    Negative {
        line: usize,
        column: usize,
        value: f64,
    },
    /// A time not after the previous row's.
    #[error("line {line}, column 1 (t): {t} does not come after the previous row's {previous}")]
    NotIncreasing { line: usize, t: f64, previous: f64 },
    /// The `load` column has no value at all.
    #[error("the `load` column has no values")]
    NoLoad,
    /// The trace spans more than [`MAX_SECONDS`].
    #[error("the trace spans {seconds} s; at most {max} s are replayed")]
    TooLong { seconds: f64, max: usize },
}

impl TraceError {
    /// A fixed label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Csv(e) => e.kind(),
            Self::NoLoadColumn { .. } => "no_load_column",
            Self::Negative { .. } => "negative",
            Self::NotIncreasing { .. } => "not_increasing",
            Self::NoLoad => "no_load",
            Self::TooLong { .. } => "too_long",
        }
    }
}

/// A load per second.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    /// The time of the first row (the replay's second 0).
    pub start_t: f64,
    /// The load at `start_t + i` seconds, for each second `i` up to the last row.
    pub load: Vec<f64>,
}

impl Trace {
    /// A trace from loads already at one value per second (for tests and callers with their
    /// own source).
    pub fn from_loads(load: Vec<f64>) -> Self {
        Self { start_t: 0.0, load }
    }

    /// Reads a `t,load` CSV and resamples it to one value per second.
    pub fn from_csv(text: &str, interpolation: Interpolation) -> Result<Self, TraceError> {
        let table = plot::read_table(text)?;
        let column = match table.columns.iter().skip(1).position(|c| c == "load") {
            Some(i) => i,
            None if table.columns.len() == 2 => 0,
            None => {
                return Err(TraceError::NoLoadColumn {
                    line: table.header_line,
                    columns: table.columns.join(", "),
                });
            }
        };
        let mut points: Vec<(f64, f64)> = Vec::with_capacity(table.rows.len());
        let mut previous: Option<f64> = None;
        for row in &table.rows {
            if let Some(p) = previous
                && row.t <= p
            {
                return Err(TraceError::NotIncreasing {
                    line: row.line,
                    t: row.t,
                    previous: p,
                });
            }
            previous = Some(row.t);
            if let Some(v) = row.values[column] {
                if v < 0.0 {
                    return Err(TraceError::Negative {
                        line: row.line,
                        column: column + 2,
                        value: v,
                    });
                }
                points.push((row.t, v));
            }
        }
        if points.is_empty() {
            return Err(TraceError::NoLoad);
        }
        let start_t = table.rows.first().map_or(0.0, |r| r.t);
        let end_t = table.rows.last().map_or(start_t, |r| r.t);
        let span = end_t - start_t;
        if span >= MAX_SECONDS as f64 {
            return Err(TraceError::TooLong {
                seconds: span,
                max: MAX_SECONDS,
            });
        }
        let seconds = span.floor() as usize + 1;
        let mut load = Vec::with_capacity(seconds);
        // `points` is sorted by time: walk it once.
        let mut i = 0;
        for s in 0..seconds {
            let t = start_t + s as f64;
            while i + 1 < points.len() && points[i + 1].0 <= t {
                i += 1;
            }
            let (t0, v0) = points[i];
            let v = if t <= t0 || i + 1 == points.len() {
                // Before the first point or after the last: hold.
                v0
            } else {
                let (t1, v1) = points[i + 1];
                match interpolation {
                    Interpolation::Step => v0,
                    Interpolation::Linear => v0 + (v1 - v0) * (t - t0) / (t1 - t0),
                }
            };
            load.push(v.max(0.0));
        }
        Ok(Self { start_t, load })
    }

    /// Seconds in the trace.
    pub fn seconds(&self) -> usize {
        self.load.len()
    }

    /// The highest load.
    pub fn peak(&self) -> f64 {
        self.load.iter().copied().fold(0.0, f64::max)
    }

    /// The mean load.
    pub fn mean(&self) -> f64 {
        if self.load.is_empty() {
            0.0
        } else {
            self.load.iter().sum::<f64>() / self.load.len() as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_and_step_resampling() {
        let csv = "t,load\n10,100\n12,200\n14,\n16,0\n";
        let lin = Trace::from_csv(csv, Interpolation::Linear).expect("valid");
        assert_eq!(lin.start_t, 10.0);
        assert_eq!(lin.load, vec![100.0, 150.0, 200.0, 150.0, 100.0, 50.0, 0.0]);
        let step = Trace::from_csv(csv, Interpolation::Step).expect("valid");
        assert_eq!(
            step.load,
            vec![100.0, 100.0, 200.0, 200.0, 200.0, 200.0, 0.0]
        );
        assert_eq!(lin.peak(), 200.0);
        assert_eq!(lin.seconds(), 7);
    }

    #[test]
    fn fractional_times_and_other_columns() {
        let csv = "t,note,load\n0,1,10\n2.5,2,20\n";
        let t = Trace::from_csv(csv, Interpolation::Linear).expect("valid");
        assert_eq!(t.load, vec![10.0, 14.0, 18.0]);
        // A lone column after the time is the load whatever its name.
        let t = Trace::from_csv("t,rps\n0,5\n1,6\n", Interpolation::Step).expect("valid");
        assert_eq!(t.load, vec![5.0, 6.0]);
    }

    #[test]
    fn errors_name_the_line() {
        let e = Trace::from_csv("t,load\n0,1\n1,-2\n", Interpolation::Linear).expect_err("neg");
        assert_eq!(
            e,
            TraceError::Negative {
                line: 3,
                column: 2,
                value: -2.0
            }
        );
        let e = Trace::from_csv("t,load\n0,1\n\n0,2\n", Interpolation::Linear).expect_err("order");
        assert_eq!(
            e.to_string(),
            "line 4, column 1 (t): 0 does not come after the previous row's 0"
        );
        let e = Trace::from_csv("t,a,b\n0,1,2\n", Interpolation::Linear).expect_err("no load");
        assert_eq!(e.kind(), "no_load_column");
        assert!(e.to_string().contains("t, a, b"), "{e}");
        let e = Trace::from_csv("t,load\n0,\n1,\n", Interpolation::Linear).expect_err("empty");
        assert_eq!(e, TraceError::NoLoad);
        let e = Trace::from_csv("t,load\n0,x\n", Interpolation::Linear).expect_err("garbage");
        assert!(e.to_string().starts_with("line 2, column 2 (load)"), "{e}");
        let e = Trace::from_csv("", Interpolation::Linear).expect_err("empty input");
        assert_eq!(e.kind(), "empty");
        let e = Trace::from_csv("t,load\n0,1\n1e9,1\n", Interpolation::Linear).expect_err("long");
        assert_eq!(e.kind(), "too_long");
    }
}
