//! Line charts as self-contained SVG, written by hand (no plotting dependency): what
//! `tidal-sim plot` draws from a CSV file and what `tidal-sim simulate --output-svg`
//! draws from a replay.
//!
//! - [`read_csv`] reads a table whose header is `t,<name1>,<name2>,...`: the first column is the
//!   time in seconds, every other column one [`Series`]; an empty cell means no value at that
//!   time. A header ending in `@right` puts the series on the right y axis (the suffix is not
//!   part of its name), and a series whose name contains `replicas` is drawn as a step line.
//! - [`render_svg`] draws a [`Chart`]: a title, axes with "nice" ticks (1, 2 or 5 times a power
//!   of ten), grid lines, a legend naming every series in a distinct color, and an optional
//!   second y axis on the right for series with `right_axis` (replica counts next to a load
//!   in thousands per second, for example).
//!
//! Errors ([`PlotError`]) name the line and the column of the offending cell. Every number
//! written to the SVG is finite: non-finite points given through the library API are skipped.

use std::fmt::Write as _;

/// One line of a chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The legend entry.
    pub name: String,
    /// `(x, y)` points; drawn in increasing `x`.
    pub points: Vec<(f64, f64)>,
    /// Draw against the right y axis.
    pub right_axis: bool,
    /// Draw as a step line (the value holds until the next point), as suits replica counts.
    pub step: bool,
}

impl Series {
    /// A series with the defaults [`read_csv`] applies: the right axis when `name` ends with
    /// `@right` (removed from the name), a step line when the name contains `replicas`.
    pub fn new(name: &str, points: Vec<(f64, f64)>) -> Self {
        let (name, right_axis) = match name.strip_suffix("@right") {
            Some(base) => (base.trim_end(), true),
            None => (name, false),
        };
        Self {
            name: name.to_owned(),
            points,
            right_axis,
            step: name.contains("replicas"),
        }
    }
}

/// A chart: labels and series.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    pub title: String,
    pub x_label: String,
    /// Label of the left y axis.
    pub y_label: String,
    /// Label of the right y axis (default: the names of the right-axis series).
    pub y2_label: Option<String>,
    pub series: Vec<Series>,
}

/// A CSV that cannot be plotted. Lines and columns count from 1.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum PlotError {
    /// No header row (the text is empty or holds only blank lines and `#` comments).
    #[error("the CSV is empty: expected a header row `t,<series>,...`")]
    Empty,
    /// The header names no series after the time column.
    #[error("line {line}: the header names no series after the time column (`t,<series>,...`)")]
    NoSeries { line: usize },
    /// A header cell is empty or repeats an earlier name.
    #[error("line {line}, column {column}: {reason}")]
    Header {
        line: usize,
        column: usize,
        reason: String,
    },
    /// The header is followed by no data row.
    #[error("the CSV has a header but no data rows")]
    NoRows,
    /// A row has more or fewer cells than the header.
    #[error("line {line}: {found} cells, but the header has {expected}")]
    Columns {
        line: usize,
        expected: usize,
        found: usize,
    },
    /// Not CSV: the `csv` reader stopped (a quote left open is read to the end instead, so
    /// this is not expected from text).
    #[error("line {line}: {reason}")]
    Syntax { line: usize, reason: String },
    /// A cell is not a finite number (or the time cell is empty).
    #[error("line {line}, column {column} ({name}): {text:?} is not a finite number")]
    Number {
        line: usize,
        column: usize,
        name: String,
        text: String,
    },
}

impl PlotError {
    /// A fixed label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::NoSeries { .. } => "no_series",
            Self::Header { .. } => "header",
            Self::NoRows => "no_rows",
            Self::Columns { .. } => "columns",
            Self::Syntax { .. } => "syntax",
            Self::Number { .. } => "number",
        }
    }
}

/// A CSV table as read, before it becomes [`Series`]: the trimmed header cells and the data
/// rows with their line numbers (for errors found later, such as a negative load).
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// The header line's number.
    pub header_line: usize,
    /// The header cells, trimmed; the first names the time column.
    pub columns: Vec<String>,
    pub rows: Vec<Row>,
}

/// One data row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Line number in the text (from 1).
    pub line: usize,
    /// The time (first column).
    pub t: f64,
    /// One cell per column after the time; `None` for an empty cell.
    pub values: Vec<Option<f64>>,
}

/// Reads `t,<name1>,<name2>,...` CSV text as a [`Table`].
///
/// The text is RFC 4180 CSV, read by the `csv` crate: a cell may be quoted (`"a, b"`, with
/// `""` for a quote inside). Blank lines and lines starting with `#` are skipped; cells are
/// trimmed. The first column is the time (required in every row); an empty cell elsewhere
/// means no value. Every number must be finite. Column names must be non-empty.
pub fn read_table(text: &str) -> Result<Table, PlotError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        // Rows of the wrong length are reported by us, with the header's length.
        .flexible(true)
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_reader(text.as_bytes());
    let mut lines = LineCounter::new(text);
    let mut records = reader.records().filter_map(|record| {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                return Some(Err(PlotError::Syntax {
                    line: e.position().map_or(0, |p| lines.line_of(p)),
                    reason: e.to_string(),
                }));
            }
        };
        let line = record.position().map_or(0, |p| lines.line_of(p));
        // A line of blanks is one empty cell once trimmed: skipped, as an empty line is.
        let blank = record.len() == 1 && record[0].is_empty();
        (!blank).then_some(Ok((line, record)))
    });
    let (header_line, header) = records.next().ok_or(PlotError::Empty)??;
    let columns: Vec<String> = header.iter().map(str::to_owned).collect();
    if columns.len() < 2 {
        return Err(PlotError::NoSeries { line: header_line });
    }
    if let Some(i) = columns.iter().position(|c| c.is_empty()) {
        return Err(PlotError::Header {
            line: header_line,
            column: i + 1,
            reason: "empty column name".to_owned(),
        });
    }
    let mut rows = Vec::new();
    for record in records {
        let (line, cells) = record?;
        if cells.len() != columns.len() {
            return Err(PlotError::Columns {
                line,
                expected: columns.len(),
                found: cells.len(),
            });
        }
        let number = |column: usize, text: &str| -> Result<f64, PlotError> {
            text.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| PlotError::Number {
                    line,
                    column: column + 1,
                    name: columns[column].clone(),
                    text: text.to_owned(),
                })
        };
        let t = number(0, &cells[0])?;
        let values = cells
            .iter()
            .enumerate()
            .skip(1)
            .map(|(i, c)| (!c.is_empty()).then(|| number(i, c)).transpose())
            .collect::<Result<Vec<_>, _>>()?;
        rows.push(Row { line, t, values });
    }
    if rows.is_empty() {
        return Err(PlotError::NoRows);
    }
    Ok(Table {
        header_line,
        columns,
        rows,
    })
}

/// The line numbers of the records the `csv` reader returns, counted in the text (`\n` ends a
/// line). The reader's own position of a record that follows skipped empty or `#` lines is
/// that of the first skipped line (BurntSushi/rust-csv#208, open in csv 1.4), so the record's
/// start is found from there: past line ends and whole comment lines.
struct LineCounter<'a> {
    text: &'a [u8],
    /// A byte offset and the line it is on: positions only grow, so counting resumes there.
    at: usize,
    line: usize,
}

impl<'a> LineCounter<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            text: text.as_bytes(),
            at: 0,
            line: 1,
        }
    }

    /// The line (from 1) where the record the reader placed at `position` starts.
    fn line_of(&mut self, position: &csv::Position) -> usize {
        let text = self.text;
        let mut i = usize::try_from(position.byte()).map_or(text.len(), |b| b.min(text.len()));
        loop {
            match text.get(i) {
                Some(b'\r' | b'\n') => i += 1,
                // A comment: the reader skips `#` lines only where a record would start.
                Some(b'#') => {
                    let end = text[i..].iter().position(|&c| c == b'\n');
                    i = end.map_or(text.len(), |n| i + n + 1);
                }
                _ => break,
            }
        }
        if i < self.at {
            (self.at, self.line) = (0, 1);
        }
        self.line += text[self.at..i].iter().filter(|&&c| c == b'\n').count();
        self.at = i;
        self.line
    }
}

/// Reads `t,<name1>,<name2>,...` CSV text ([`read_table`]) into one [`Series`] per column
/// after the time. Column headers go through [`Series::new`] (`@right`, `replicas`); a name
/// that is empty once `@right` is removed, or repeats another, is an error.
pub fn read_csv(text: &str) -> Result<Vec<Series>, PlotError> {
    let table = read_table(text)?;
    let mut series: Vec<Series> = Vec::with_capacity(table.columns.len() - 1);
    for (i, name) in table.columns.iter().enumerate().skip(1) {
        let s = Series::new(name, Vec::with_capacity(table.rows.len()));
        let reason = if s.name.is_empty() {
            "empty column name".to_owned()
        } else if series.iter().any(|o| o.name == s.name) {
            format!("duplicate series name {:?}", s.name)
        } else {
            series.push(s);
            continue;
        };
        return Err(PlotError::Header {
            line: table.header_line,
            column: i + 1,
            reason,
        });
    }
    for row in &table.rows {
        for (s, v) in series.iter_mut().zip(&row.values) {
            if let Some(v) = v {
                s.points.push((row.t, *v));
            }
        }
    }
    Ok(series)
}

/// Tableau 10: distinct hues that stay readable for most color-vision deficiencies.
const PALETTE: [&str; 10] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac",
];

const WIDTH: f64 = 960.0;
const PLOT_TOP: f64 = 50.0;
const PLOT_HEIGHT: f64 = 380.0;
const MARGIN_LEFT: f64 = 80.0;
const LEGEND_ROW: f64 = 22.0;

/// An axis: the data range rounded out to nice ticks.
struct Axis {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
    decimals: usize,
}

impl Axis {
    /// Ticks for `[lo, hi]`. A y axis (`zero`) includes 0 and is rounded out to whole ticks;
    /// the x axis spans exactly the data.
    fn new(lo: f64, hi: f64, zero: bool) -> Self {
        let (mut lo, mut hi) = if lo.is_finite() && hi.is_finite() {
            (lo, hi)
        } else {
            (0.0, 1.0)
        };
        if zero {
            lo = lo.min(0.0);
            hi = hi.max(0.0);
        }
        if hi - lo < 1e-12 * (lo.abs() + hi.abs()).max(1e-300) {
            // A single value: one unit (or 10%) either side.
            let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
            if zero && lo >= 0.0 {
                hi = lo + pad;
                lo = lo.min(0.0);
            } else {
                lo -= pad;
                hi += pad;
            }
        }
        let (lo, hi, step) = if zero {
            // A y axis: rounded out to whole ticks.
            let step = nice(nice(hi - lo, false) / 5.0, true);
            ((lo / step).floor() * step, (hi / step).ceil() * step, step)
        } else {
            // The x axis: exactly the data, ticks inside it.
            (lo, hi, nice((hi - lo) / 6.0, true))
        };
        let first = (lo / step - 1e-9).ceil();
        let last = (hi / step + 1e-9).floor();
        let n = (last - first).max(0.0) as usize;
        let ticks = (0..=n).map(|i| (first + i as f64) * step).collect();
        let decimals = (-step.log10().floor()).max(0.0) as usize;
        Self {
            lo,
            hi,
            ticks,
            decimals,
        }
    }

    /// The fraction of the axis at `v` (0 at `lo`).
    fn frac(&self, v: f64) -> f64 {
        (v - self.lo) / (self.hi - self.lo)
    }

    fn label(&self, v: f64) -> String {
        // `-0` would print for a tick a rounding error below zero.
        let v = if v.abs() < 1e-9 * (self.hi - self.lo) {
            0.0
        } else {
            v
        };
        format!("{v:.*}", self.decimals)
    }
}

/// Heckbert's nice number: 1, 2, 5 or 10 times a power of ten, near `x` (rounded) or at
/// least `x` (not rounded).
fn nice(x: f64, round: bool) -> f64 {
    if !(x.is_finite() && x > 0.0) {
        return 1.0;
    }
    let exp = x.log10().floor();
    let base = 10f64.powf(exp);
    let f = x / base;
    let n = if round {
        match f {
            f if f < 1.5 => 1.0,
            f if f < 3.0 => 2.0,
            f if f < 7.0 => 5.0,
            _ => 10.0,
        }
    } else {
        match f {
            f if f <= 1.0 => 1.0,
            f if f <= 2.0 => 2.0,
            f if f <= 5.0 => 5.0,
            _ => 10.0,
        }
    };
    n * base
}

/// Text for SVG character data and attribute values.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// The finite points of a series, sorted by x, with points that add nothing to the drawing
/// removed (a step line keeps only changes; a polyline drops the middle of flat runs).
fn drawable(s: &Series) -> Vec<(f64, f64)> {
    let mut pts: Vec<(f64, f64)> = s
        .points
        .iter()
        .copied()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n = pts.len();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let same_as_prev = i > 0 && pts[i - 1].1 == pts[i].1;
        let same_as_next = i + 1 < n && pts[i + 1].1 == pts[i].1;
        let keep = if s.step {
            // Keep changes and the last point (where the line ends).
            !same_as_prev || i + 1 == n
        } else {
            !(same_as_prev && same_as_next)
        };
        if keep {
            out.push(pts[i]);
        }
    }
    out
}

/// A series ready to draw: its color and its drawable points.
struct Drawn<'a> {
    series: &'a Series,
    color: &'static str,
    points: Vec<(f64, f64)>,
}

/// Estimated width of `text` in the 12px sans-serif of the legend.
fn text_width(text: &str) -> f64 {
    text.chars().count() as f64 * 7.0
}

/// Draws `chart` as a standalone SVG document.
pub fn render_svg(chart: &Chart) -> String {
    let drawn: Vec<Drawn> = chart
        .series
        .iter()
        .enumerate()
        .map(|(i, s)| Drawn {
            color: PALETTE[i % PALETTE.len()],
            series: s,
            points: drawable(s),
        })
        .collect();
    // Right-axis series need a left axis to be next to; alone they take the left one.
    let has_left = drawn.iter().any(|d| !d.series.right_axis);
    let on_right = |s: &Series| has_left && s.right_axis;
    let has_right = drawn.iter().any(|d| on_right(d.series));

    let range = |pick: &dyn Fn(&(f64, f64)) -> f64, right: Option<bool>| {
        let mut lo = f64::INFINITY;
        let mut hi = f64::NEG_INFINITY;
        for d in &drawn {
            if right.is_some_and(|r| on_right(d.series) != r) {
                continue;
            }
            for p in &d.points {
                lo = lo.min(pick(p));
                hi = hi.max(pick(p));
            }
        }
        (lo, hi)
    };
    let (xlo, xhi) = range(&|p| p.0, None);
    let x_axis = Axis::new(xlo, xhi, false);
    let (ylo, yhi) = range(&|p| p.1, Some(false));
    let y_axis = Axis::new(ylo, yhi, true);
    let (y2lo, y2hi) = range(&|p| p.1, Some(true));
    let y2_axis = Axis::new(y2lo, y2hi, true);

    let left = MARGIN_LEFT;
    let right = WIDTH - if has_right { MARGIN_LEFT } else { 30.0 };
    let top = PLOT_TOP;
    let bottom = top + PLOT_HEIGHT;
    let px = |x: f64| left + x_axis.frac(x) * (right - left);
    let py = |axis: &Axis, y: f64| bottom - axis.frac(y) * (bottom - top);

    // Legend layout: entries left to right, wrapping.
    let mut legend = Vec::with_capacity(drawn.len());
    let (mut lx, mut row) = (left, 0usize);
    for d in &drawn {
        let s = d.series;
        let label = if on_right(s) {
            format!("{} (right axis)", s.name)
        } else {
            s.name.clone()
        };
        let w = 34.0 + text_width(&label) + 18.0;
        if lx + w > WIDTH - 10.0 && lx > left {
            lx = left;
            row += 1;
        }
        legend.push((d.color, lx, row, label));
        lx += w;
    }
    let legend_top = bottom + 62.0;
    let rows = legend.last().map_or(0, |l| l.2 + 1);
    let height = legend_top + rows as f64 * LEGEND_ROW + 8.0;

    let mut out =
        String::with_capacity(4096 + 16 * drawn.iter().map(|d| d.points.len()).sum::<usize>());
    // `write!` to a String cannot fail; the results are ignored throughout.
    let _ = write!(
        out,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w:.0}\" height=\"{height:.0}\" \
         viewBox=\"0 0 {w:.0} {height:.0}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <title>{title}</title>\n\
         <rect x=\"0\" y=\"0\" width=\"{w:.0}\" height=\"{height:.0}\" fill=\"#ffffff\"/>\n\
         <text x=\"{cx:.1}\" y=\"28\" text-anchor=\"middle\" font-size=\"16\" \
         font-weight=\"bold\">{title}</text>\n",
        w = WIDTH,
        title = escape(&chart.title),
        cx = WIDTH / 2.0,
    );

    // Grid and ticks of the left axis, ticks of the right one, ticks of x.
    out.push_str("<g class=\"grid\" stroke=\"#e0e0e0\" stroke-width=\"1\">\n");
    for &t in &y_axis.ticks {
        let y = py(&y_axis, t);
        let _ = writeln!(
            out,
            "<line x1=\"{left:.2}\" y1=\"{y:.2}\" x2=\"{right:.2}\" y2=\"{y:.2}\"/>"
        );
    }
    for &t in &x_axis.ticks {
        let x = px(t);
        let _ = writeln!(
            out,
            "<line x1=\"{x:.2}\" y1=\"{top:.2}\" x2=\"{x:.2}\" y2=\"{bottom:.2}\"/>"
        );
    }
    out.push_str("</g>\n");

    out.push_str("<g class=\"axes\" stroke=\"#333333\" stroke-width=\"1\" fill=\"none\">\n");
    let _ = writeln!(
        out,
        "<line x1=\"{left:.2}\" y1=\"{bottom:.2}\" x2=\"{right:.2}\" y2=\"{bottom:.2}\"/>\n\
         <line x1=\"{left:.2}\" y1=\"{top:.2}\" x2=\"{left:.2}\" y2=\"{bottom:.2}\"/>"
    );
    if has_right {
        let _ = writeln!(
            out,
            "<line x1=\"{right:.2}\" y1=\"{top:.2}\" x2=\"{right:.2}\" y2=\"{bottom:.2}\"/>"
        );
    }
    out.push_str("</g>\n<g class=\"ticks\" fill=\"#333333\">\n");
    for &t in &x_axis.ticks {
        let x = px(t);
        let _ = writeln!(
            out,
            "<line x1=\"{x:.2}\" y1=\"{bottom:.2}\" x2=\"{x:.2}\" y2=\"{:.2}\" stroke=\"#333333\"/>\n\
             <text x=\"{x:.2}\" y=\"{:.2}\" text-anchor=\"middle\">{}</text>",
            bottom + 5.0,
            bottom + 19.0,
            x_axis.label(t)
        );
    }
    for &t in &y_axis.ticks {
        let y = py(&y_axis, t);
        let _ = writeln!(
            out,
            "<line x1=\"{:.2}\" y1=\"{y:.2}\" x2=\"{left:.2}\" y2=\"{y:.2}\" stroke=\"#333333\"/>\n\
             <text x=\"{:.2}\" y=\"{:.2}\" text-anchor=\"end\">{}</text>",
            left - 5.0,
            left - 8.0,
            y + 4.0,
            y_axis.label(t)
        );
    }
    if has_right {
        for &t in &y2_axis.ticks {
            let y = py(&y2_axis, t);
            let _ = writeln!(
                out,
                "<line x1=\"{right:.2}\" y1=\"{y:.2}\" x2=\"{:.2}\" y2=\"{y:.2}\" stroke=\"#333333\"/>\n\
                 <text x=\"{:.2}\" y=\"{:.2}\" text-anchor=\"start\">{}</text>",
                right + 5.0,
                right + 8.0,
                y + 4.0,
                y2_axis.label(t)
            );
        }
    }
    out.push_str("</g>\n");

    // Axis labels.
    let mid_y = (top + bottom) / 2.0;
    let _ = writeln!(
        out,
        "<text x=\"{:.2}\" y=\"{:.2}\" text-anchor=\"middle\">{}</text>\n\
         <text x=\"18\" y=\"{mid_y:.2}\" text-anchor=\"middle\" \
         transform=\"rotate(-90 18 {mid_y:.2})\">{}</text>",
        (left + right) / 2.0,
        bottom + 40.0,
        escape(&chart.x_label),
        escape(&chart.y_label),
    );
    if has_right {
        let label = chart.y2_label.clone().unwrap_or_else(|| {
            drawn
                .iter()
                .filter(|d| on_right(d.series))
                .map(|d| d.series.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        });
        let x = WIDTH - 18.0;
        let _ = writeln!(
            out,
            "<text x=\"{x:.2}\" y=\"{mid_y:.2}\" text-anchor=\"middle\" \
             transform=\"rotate(90 {x:.2} {mid_y:.2})\">{}</text>",
            escape(&label)
        );
    }

    // The lines.
    out.push_str(
        "<g class=\"series\" fill=\"none\" stroke-width=\"1.8\" stroke-linejoin=\"round\">\n",
    );
    for d in &drawn {
        let (s, pts, color) = (d.series, &d.points, d.color);
        let Some(&(x0, y0)) = pts.first() else {
            continue;
        };
        let axis = if on_right(s) { &y2_axis } else { &y_axis };
        let _ = write!(
            out,
            "<path stroke=\"{color}\" data-series=\"{}\" d=\"M{:.2} {:.2}",
            escape(&s.name),
            px(x0),
            py(axis, y0)
        );
        if pts.len() == 1 {
            // A lone point: a short tick so it is visible.
            let _ = write!(out, " h2");
        }
        for &(x, y) in &pts[1..] {
            if s.step {
                let _ = write!(out, " H{:.2} V{:.2}", px(x), py(axis, y));
            } else {
                let _ = write!(out, " L{:.2} {:.2}", px(x), py(axis, y));
            }
        }
        out.push_str("\"/>\n");
    }
    out.push_str("</g>\n");

    // The legend.
    out.push_str("<g class=\"legend\">\n");
    for (color, x, row, label) in &legend {
        let y = legend_top + *row as f64 * LEGEND_ROW;
        let _ = writeln!(
            out,
            "<line x1=\"{x:.2}\" y1=\"{y:.2}\" x2=\"{:.2}\" y2=\"{y:.2}\" stroke=\"{color}\" \
             stroke-width=\"3\"/>\n<text x=\"{:.2}\" y=\"{:.2}\">{}</text>",
            x + 26.0,
            x + 32.0,
            y + 4.0,
            escape(label)
        );
    }
    out.push_str("</g>\n</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks that every tag is closed in order and that the text holds no stray `<` or `&`.
    fn assert_well_formed(svg: &str) {
        let mut stack: Vec<String> = Vec::new();
        let mut rest = svg;
        while let Some(open) = rest.find('<') {
            let text = &rest[..open];
            assert!(!text.contains('>'), "stray > in {text:?}");
            for (i, _) in text.match_indices('&') {
                let ent = &text[i..];
                assert!(
                    ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"]
                        .iter()
                        .any(|e| ent.starts_with(e)),
                    "bare & in {text:?}"
                );
            }
            let close = rest[open..].find('>').expect("tag is closed") + open;
            let tag = &rest[open + 1..close];
            assert!(!tag.contains('<'), "< inside tag {tag:?}");
            assert_eq!(
                tag.matches('"').count() % 2,
                0,
                "unbalanced quotes in {tag:?}"
            );
            if tag.starts_with('?') {
                // The XML declaration.
            } else if let Some(name) = tag.strip_prefix('/') {
                let top = stack
                    .pop()
                    .unwrap_or_else(|| panic!("</{name}> closes nothing"));
                assert_eq!(top, name, "</{name}> closes <{top}>");
            } else if !tag.ends_with('/') {
                let name = tag.split_whitespace().next().expect("tag name");
                stack.push(name.to_owned());
            }
            rest = &rest[close + 1..];
        }
        assert!(stack.is_empty(), "unclosed tags {stack:?}");
        assert!(rest.trim().is_empty());
    }

    /// Every number in the document is finite.
    fn assert_numbers_finite(svg: &str) {
        for bad in ["NaN", "inf"] {
            assert!(!svg.contains(bad), "{bad} in the SVG");
        }
        let mut n = 0;
        for token in svg.split(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == 'e'))
        {
            if let Ok(v) = token.parse::<f64>() {
                assert!(v.is_finite());
                n += 1;
            }
        }
        assert!(n > 20, "expected coordinates, found {n} numbers");
    }

    fn sample() -> Chart {
        Chart {
            title: "load & <replicas>".to_owned(),
            x_label: "time (s)".to_owned(),
            y_label: "requests/s".to_owned(),
            y2_label: None,
            series: vec![
                Series::new(
                    "load",
                    (0..100)
                        .map(|t| (t as f64, 1000.0 + 10.0 * t as f64))
                        .collect(),
                ),
                Series::new("lag", vec![(0.0, 0.0), (50.0, 30000.0), (99.0, 0.0)]),
                Series::new(
                    "tidal replicas@right",
                    (0..100).map(|t| (t as f64, (2 + t / 10) as f64)).collect(),
                ),
                Series::new("empty", Vec::new()),
                Series::new("nan", vec![(1.0, f64::NAN), (f64::INFINITY, 2.0)]),
            ],
        }
    }

    #[test]
    fn svg_is_well_formed_with_every_legend_name() {
        let chart = sample();
        let svg = render_svg(&chart);
        assert_well_formed(&svg);
        assert_numbers_finite(&svg);
        assert!(
            svg.contains("load &amp; &lt;replicas&gt;"),
            "the title is escaped"
        );
        for name in ["load", "lag", "tidal replicas (right axis)", "empty", "nan"] {
            assert!(
                svg.contains(&format!(">{name}</text>")),
                "legend lacks {name}"
            );
        }
        // Distinct colors for the drawn series.
        let colors: Vec<&str> = svg
            .lines()
            .filter(|l| l.starts_with("<path"))
            .filter_map(|l| l.split("stroke=\"").nth(1)?.split('"').next())
            .collect();
        assert_eq!(colors.len(), 3, "{svg}");
        let mut unique = colors.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), colors.len());
        // The right axis is labelled with its series by default.
        assert!(svg.contains(">tidal replicas</text>"));
    }

    #[test]
    fn step_series_use_horizontal_then_vertical_segments() {
        let svg = render_svg(&sample());
        let path = |name: &str| {
            svg.lines()
                .find(|l| l.contains(&format!("data-series=\"{name}\"")))
                .unwrap_or_else(|| panic!("no path for {name}"))
                .to_owned()
        };
        let replicas = path("tidal replicas");
        assert!(
            replicas.contains(" H") && replicas.contains(" V"),
            "{replicas}"
        );
        assert!(!replicas.contains(" L"));
        // 2..=11 replicas: ten levels, each one H and one V after the start.
        assert_eq!(replicas.matches(" H").count(), 10, "{replicas}");
        let load = path("load");
        assert!(load.contains(" L") && !load.contains(" H"));
    }

    #[test]
    fn degenerate_charts_still_render() {
        for series in [
            vec![],
            vec![Series::new("flat", vec![(5.0, 3.0), (5.0, 3.0)])],
            vec![Series::new("one", vec![(0.0, 0.0)])],
            vec![Series::new("neg", vec![(-10.0, -5.0), (-1.0, -2.0)])],
            vec![Series::new(
                "only replicas@right",
                vec![(0.0, 1.0), (9.0, 4.0)],
            )],
            vec![Series::new("tiny", vec![(0.0, 1e-9), (1.0, 3e-9)])],
            vec![Series::new("huge", vec![(0.0, 1e12), (1e6, 3e12)])],
        ] {
            let chart = Chart {
                title: "t".to_owned(),
                x_label: "x".to_owned(),
                y_label: "y".to_owned(),
                y2_label: Some("y2".to_owned()),
                series,
            };
            let svg = render_svg(&chart);
            assert_well_formed(&svg);
            assert_numbers_finite(&svg);
        }
    }

    #[test]
    fn nice_ticks() {
        let a = Axis::new(0.0, 7200.0, false);
        assert_eq!(
            a.ticks,
            (0..8).map(|i| f64::from(i) * 1000.0).collect::<Vec<_>>()
        );
        assert_eq!((a.lo, a.hi), (0.0, 7200.0));
        assert_eq!(a.label(2000.0), "2000");
        let a = Axis::new(0.0, 2400.0, false);
        assert_eq!(a.ticks, vec![0.0, 500.0, 1000.0, 1500.0, 2000.0]);
        let a = Axis::new(3.0, 94160.0, true);
        assert_eq!((a.lo, a.hi), (0.0, 100_000.0));
        assert_eq!(a.ticks.len(), 6);
        let a = Axis::new(0.2, 0.93, true);
        assert_eq!(a.lo, 0.0);
        assert_eq!(a.hi, 1.0);
        assert_eq!(a.label(0.2), "0.2");
        let a = Axis::new(3.0, 3.0, true);
        assert!(a.hi >= 3.0 && a.lo == 0.0 && a.ticks.len() > 2);
    }

    #[test]
    fn csv_reads_series_axes_steps_and_gaps() {
        let csv = "# a comment\nt, load ,replicas@right,lag\n0,10,1,\n\n1.5,20,2,5\n3,,3,0\n";
        let s = read_csv(csv).expect("valid CSV");
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].name, "load");
        assert_eq!(s[0].points, vec![(0.0, 10.0), (1.5, 20.0)]);
        assert!(!s[0].right_axis && !s[0].step);
        assert_eq!(s[1].name, "replicas");
        assert!(s[1].right_axis && s[1].step);
        assert_eq!(s[1].points.len(), 3);
        assert_eq!(s[2].points, vec![(1.5, 5.0), (3.0, 0.0)]);
    }

    #[test]
    fn csv_is_rfc_4180_quoted_cells_and_crlf() {
        // Quoted cells (a comma and a doubled quote inside), CRLF line ends, a line of blanks.
        let csv = "t,\"load, per s\",\"say \"\"hi\"\"\"\r\n0,\"10\",1\r\n   \r\n1, 20 ,\r\n";
        let s = read_csv(csv).expect("valid CSV");
        assert_eq!(s[0].name, "load, per s");
        assert_eq!(s[0].points, vec![(0.0, 10.0), (1.0, 20.0)]);
        assert_eq!(s[1].name, "say \"hi\"");
        assert_eq!(s[1].points, vec![(0.0, 1.0)]);
        // Line numbers count every line, the skipped ones too.
        let table = read_table("# c\n\nt,a\n\n0,1\n").expect("valid");
        assert_eq!((table.header_line, table.rows[0].line), (3, 5));
        // A quoted cell spanning lines, CRLF, comments and blank lines further down.
        let err = read_csv("t,a\n\"0\n\",1\n2,x\n").expect_err("garbage");
        assert!(
            matches!(
                err,
                PlotError::Number {
                    line: 4,
                    column: 2,
                    ..
                }
            ),
            "{err}"
        );
        let err = read_csv("t,a\r\n\r\n# x\r\n0,1\r\n   \r\n2,x\r\n").expect_err("garbage");
        assert!(
            matches!(
                err,
                PlotError::Number {
                    line: 6,
                    column: 2,
                    ..
                }
            ),
            "{err}"
        );
        // A row of empty cells is a row (its time is missing), not a blank line.
        let err = read_csv("t,a\n0,1\n,\n").expect_err("no time");
        assert!(
            matches!(
                err,
                PlotError::Number {
                    line: 3,
                    column: 1,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn csv_errors_name_line_and_column() {
        let err = read_csv("t,load\n0,1\n1,abc\n").expect_err("garbage");
        assert_eq!(
            err,
            PlotError::Number {
                line: 3,
                column: 2,
                name: "load".to_owned(),
                text: "abc".to_owned()
            }
        );
        assert_eq!(
            err.to_string(),
            "line 3, column 2 (load): \"abc\" is not a finite number"
        );
        let err = read_csv("t,a,b\n0,1,2\n1,2\n").expect_err("short row");
        assert_eq!(
            err,
            PlotError::Columns {
                line: 3,
                expected: 3,
                found: 2
            }
        );
        let err = read_csv("t,a\n,1\n").expect_err("no time");
        assert!(
            matches!(
                err,
                PlotError::Number {
                    line: 2,
                    column: 1,
                    ..
                }
            ),
            "{err}"
        );
        let err = read_csv("t,a\n0,NaN\n").expect_err("NaN");
        assert!(
            matches!(
                err,
                PlotError::Number {
                    line: 2,
                    column: 2,
                    ..
                }
            ),
            "{err}"
        );
        let err = read_csv("t,a\n0,inf\n").expect_err("inf");
        assert!(
            matches!(
                err,
                PlotError::Number {
                    line: 2,
                    column: 2,
                    ..
                }
            ),
            "{err}"
        );
        let err = read_csv("t,a,,b\n").expect_err("empty name");
        assert!(
            matches!(
                err,
                PlotError::Header {
                    line: 1,
                    column: 3,
                    ..
                }
            ),
            "{err}"
        );
        let err = read_csv("t,a,a@right\n0,1,2\n").expect_err("duplicate");
        assert!(
            matches!(
                err,
                PlotError::Header {
                    line: 1,
                    column: 3,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(read_csv("t\n0\n"), Err(PlotError::NoSeries { line: 1 }));
    }

    #[test]
    fn empty_input_is_an_error() {
        assert_eq!(read_csv(""), Err(PlotError::Empty));
        assert_eq!(read_csv("\n  \n# only a comment\n"), Err(PlotError::Empty));
        assert_eq!(read_csv("t,load\n"), Err(PlotError::NoRows));
        assert_eq!(PlotError::NoRows.kind(), "no_rows");
    }
}
