//! Line charts as self-contained SVG: what `tidal-sim plot` draws from a CSV file and what
//! `tidal-sim simulate --output-svg` draws from a replay.
//!
//! - [`read_table`] reads CSV text with the `csv` crate (RFC 4180); [`read_csv`] reads a table whose header is `t,<name1>,<name2>,...`: the first column is the
//!   time in seconds, every other column one [`Series`]; an empty cell means no value at that
//!   time. A header ending in `@right` puts the series on the right y axis (the suffix is not
//!   part of its name), and a series whose name contains `replicas` is drawn as a step line.
//! - [`render_svg`] draws a [`Chart`] with plotters' SVG backend: a title, axes with "nice"
//!   ticks (1, 2 or 5 times a power of ten), grid lines, a legend naming every series in a
//!   distinct color, and an optional second y axis on the right for series with `right_axis`
//!   (replica counts next to a load in thousands per second, for example). Plotters is built
//!   without its font features (`ttf`, `ab_glyph`): its SVG backend writes text as `<text>`
//!   elements for the viewer to set, and lays them out with its own width estimate, so no
//!   font file or system font is read.
//!
//! Errors ([`PlotError`]) name the line and the column of the offending cell. Every number
//! written to the SVG is finite: non-finite points given through the library API are skipped.

use plotters::backend::SVGBackend;
use plotters::chart::ChartBuilder;
use plotters::coord::ranged1d::Ranged;
use plotters::coord::types::RangedCoordf64;
use plotters::drawing::{DrawingAreaErrorKind, IntoDrawingArea};
use plotters::element::{Circle, PathElement, Text};
use plotters::series::LineSeries;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{
    BLACK, Color, FontDesc, FontStyle, IntoFont, RGBColor, TRANSPARENT, TextStyle, WHITE,
};

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
const PALETTE: [RGBColor; 10] = [
    RGBColor(0x4e, 0x79, 0xa7),
    RGBColor(0xf2, 0x8e, 0x2b),
    RGBColor(0xe1, 0x57, 0x59),
    RGBColor(0x76, 0xb7, 0xb2),
    RGBColor(0x59, 0xa1, 0x4f),
    RGBColor(0xed, 0xc9, 0x48),
    RGBColor(0xb0, 0x7a, 0xa1),
    RGBColor(0xff, 0x9d, 0xa7),
    RGBColor(0x9c, 0x75, 0x5f),
    RGBColor(0xba, 0xb0, 0xac),
];
/// Grid lines, and axes, ticks and text.
const GRID: RGBColor = RGBColor(0xe0, 0xe0, 0xe0);
const INK: RGBColor = RGBColor(0x33, 0x33, 0x33);

/// The SVG's width, and the height of all but the legend, in pixels.
const WIDTH: u32 = 960;
const CHART_HEIGHT: u32 = 500;
/// Above the plot: the title.
const TITLE_AREA: u32 = 50;
/// The label areas: beside the plot for a y axis (tick labels and the axis name), below it.
const Y_LABEL_AREA: u32 = 80;
const X_LABEL_AREA: u32 = 50;
const LEGEND_ROW: u32 = 22;
/// The most ticks on the x and on a y axis (plotters takes 1, 2 or 5 times a power of ten).
const X_TICKS: usize = 8;
const Y_TICKS: usize = 6;
/// Font sizes as plotters takes them: its SVG backend writes `size / 1.24` pixels, so these
/// are 12 px (labels, legend) and 16 px (title).
const TEXT_SIZE: f64 = 14.88;
const TITLE_SIZE: f64 = 19.84;

/// A chart that could not be drawn: plotters' error, not expected when drawing to a string.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("drawing the chart: {0}")]
pub struct RenderError(String);

impl<E: std::error::Error + Send + Sync> From<DrawingAreaErrorKind<E>> for RenderError {
    fn from(e: DrawingAreaErrorKind<E>) -> Self {
        Self(e.to_string())
    }
}

/// An axis's range: the data's, with 0 on a y axis (`zero`), one unit (or 10%) either side of
/// a single value, and a y axis rounded out to whole ticks (the x axis spans exactly the data).
fn axis_range(lo: f64, hi: f64, zero: bool) -> (f64, f64) {
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
    if !zero {
        return (lo, hi);
    }
    // Round out to the ticks plotters will draw; a wider range may take a longer step, so
    // again until the ends are ticks (twice at most in practice).
    for _ in 0..4 {
        let step = tick_step(lo, hi, Y_TICKS);
        let out = ((lo / step).floor() * step, (hi / step).ceil() * step);
        if out == (lo, hi) {
            break;
        }
        (lo, hi) = out;
    }
    (lo, hi)
}

/// The distance between the ticks plotters puts on `[lo, hi]` when it may put `n`.
fn tick_step(lo: f64, hi: f64, n: usize) -> f64 {
    match RangedCoordf64::from(lo..hi).key_points(n)[..] {
        [a, b, ..] if b > a => b - a,
        _ => hi - lo,
    }
}

/// The tick labels of `[lo, hi]` with at most `n` ticks: as many decimals as the step needs,
/// and `0` rather than `-0` for a tick a rounding error below zero.
fn tick_label(lo: f64, hi: f64, n: usize) -> impl Fn(&f64) -> String {
    let decimals = (-tick_step(lo, hi, n).log10().floor()).clamp(0.0, 20.0) as usize;
    let zero = 1e-9 * (hi - lo);
    move |v| {
        let v = if v.abs() < zero { 0.0 } else { *v };
        format!("{v:.decimals$}")
    }
}

/// Text for the SVG's `<title>` (plotters escapes the text it draws itself).
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in clean(s).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// A label without control characters, which XML does not allow.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
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
    if s.step {
        // Each value holds until the next point: a horizontal, then a vertical segment.
        let mut steps = Vec::with_capacity(2 * out.len());
        for (i, &(x, y)) in out.iter().enumerate() {
            if let Some(&(_, before)) = i.checked_sub(1).and_then(|j| out.get(j))
                && before != y
            {
                steps.push((x, before));
            }
            steps.push((x, y));
        }
        out = steps;
    }
    out
}

/// A series ready to draw: its color and its drawable points.
struct Drawn<'a> {
    series: &'a Series,
    color: RGBColor,
    points: Vec<(f64, f64)>,
}

/// One legend entry: a color sample and a label, at `x` on a row.
struct LegendEntry {
    color: RGBColor,
    x: u32,
    row: u32,
    label: String,
}

/// The legend's entries left to right, wrapping to a new row at the chart's width; widths are
/// plotters' estimate for `font`.
fn legend_layout(
    drawn: &[Drawn],
    on_right: &dyn Fn(&Series) -> bool,
    font: &FontDesc,
) -> Vec<LegendEntry> {
    let mut legend = Vec::with_capacity(drawn.len());
    let (mut x, mut row) = (Y_LABEL_AREA, 0);
    for d in drawn {
        let s = d.series;
        let label = clean(&if on_right(s) {
            format!("{} (right axis)", s.name)
        } else {
            s.name.clone()
        });
        let w = 34 + font.box_size(&label).map_or(0, |(w, _)| w) + 18;
        if x + w > WIDTH - 10 && x > Y_LABEL_AREA {
            x = Y_LABEL_AREA;
            row += 1;
        }
        legend.push(LegendEntry {
            color: d.color,
            x,
            row,
            label,
        });
        x += w;
    }
    legend
}

/// Draws `chart` as a standalone SVG document, with plotters' SVG backend: text is SVG
/// `<text>` in the viewer's sans-serif (no font file is read), and its widths, for the
/// layout, are plotters' estimate.
pub fn render_svg(chart: &Chart) -> Result<String, RenderError> {
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
    let (x_lo, x_hi) = range(&|p| p.0, None);
    let (x_lo, x_hi) = axis_range(x_lo, x_hi, false);
    let (y_lo, y_hi) = range(&|p| p.1, Some(false));
    let (y_lo, y_hi) = axis_range(y_lo, y_hi, true);
    let (y2_lo, y2_hi) = range(&|p| p.1, Some(true));
    let (y2_lo, y2_hi) = axis_range(y2_lo, y2_hi, true);
    let x_label = tick_label(x_lo, x_hi, X_TICKS);
    let y_label = tick_label(y_lo, y_hi, Y_TICKS);
    let y2_label = tick_label(y2_lo, y2_hi, Y_TICKS);

    let font = ("sans-serif", TEXT_SIZE).into_font();
    let text = TextStyle::from(font.clone()).color(&INK);
    let legend = legend_layout(&drawn, &on_right, &font);
    let rows = legend.last().map_or(0, |l| l.row + 1);
    let height = CHART_HEIGHT + rows * LEGEND_ROW + 16;

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let (top, bottom) = root.split_vertically(CHART_HEIGHT);
        let title = clean(&chart.title);
        if !title.is_empty() {
            let style = TextStyle::from(
                ("sans-serif", TITLE_SIZE)
                    .into_font()
                    .style(FontStyle::Bold),
            )
            .color(&BLACK)
            .pos(Pos::new(HPos::Center, VPos::Top));
            top.draw(&Text::new(title, (to_i32(WIDTH / 2), 14), style))?;
        }
        let mut builder = ChartBuilder::on(&top);
        builder
            .margin_top(TITLE_AREA)
            .margin_bottom(6)
            .margin_left(10)
            .margin_right(if has_right { 10 } else { 30 })
            .x_label_area_size(X_LABEL_AREA)
            .y_label_area_size(Y_LABEL_AREA);
        if has_right {
            builder.right_y_label_area_size(Y_LABEL_AREA);
        }
        let mut ctx = builder
            .build_cartesian_2d(x_lo..x_hi, y_lo..y_hi)?
            .set_secondary_coord(x_lo..x_hi, y2_lo..y2_hi);

        let mut mesh = ctx.configure_mesh();
        mesh.x_labels(X_TICKS)
            .y_labels(Y_TICKS)
            .x_label_formatter(&x_label)
            .y_label_formatter(&y_label)
            .bold_line_style(GRID)
            .light_line_style(TRANSPARENT)
            .axis_style(INK)
            .label_style(text.clone())
            .axis_desc_style(text.clone());
        let (x_desc, y_desc) = (clean(&chart.x_label), clean(&chart.y_label));
        if !x_desc.is_empty() {
            mesh.x_desc(x_desc);
        }
        if !y_desc.is_empty() {
            mesh.y_desc(y_desc);
        }
        mesh.draw()?;
        if has_right {
            let desc = clean(&chart.y2_label.clone().unwrap_or_else(|| {
                drawn
                    .iter()
                    .filter(|d| on_right(d.series))
                    .map(|d| d.series.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            }));
            let mut axes = ctx.configure_secondary_axes();
            axes.y_labels(Y_TICKS)
                .y_label_formatter(&y2_label)
                .axis_style(INK)
                .label_style(text.clone())
                .axis_desc_style(text.clone());
            if !desc.is_empty() {
                axes.y_desc(desc);
            }
            axes.draw()?;
        }

        // The lines: one polyline each; a lone point is a dot, so that it is visible.
        for d in &drawn {
            let line = d.color.stroke_width(2);
            match (on_right(d.series), &d.points[..]) {
                (_, []) => {}
                (false, &[p]) => {
                    ctx.draw_series([Circle::new(p, 2, d.color.filled())])?;
                }
                (true, &[p]) => {
                    ctx.draw_secondary_series([Circle::new(p, 2, d.color.filled())])?;
                }
                (false, points) => {
                    ctx.draw_series(LineSeries::new(points.iter().copied(), line))?;
                }
                (true, points) => {
                    ctx.draw_secondary_series(LineSeries::new(points.iter().copied(), line))?;
                }
            }
        }

        // The legend, below the chart.
        let legend_text = text.pos(Pos::new(HPos::Left, VPos::Center));
        for entry in legend {
            let (x, y) = (to_i32(entry.x), to_i32(16 + entry.row * LEGEND_ROW));
            bottom.draw(&PathElement::new(
                vec![(x, y), (x + 26, y)],
                entry.color.stroke_width(3),
            ))?;
            bottom.draw(&Text::new(entry.label, (x + 32, y), legend_text.clone()))?;
        }
        root.present()?;
    }
    // An XML declaration and a `<title>` (what a browser's tab shows) around plotters' SVG.
    let title = format!("<title>{}</title>\n", escape(&chart.title));
    let at = svg.find(">\n").map_or(svg.len(), |i| i + 2);
    svg.insert_str(at, &title);
    Ok(format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{svg}"))
}

/// A pixel offset (bounded by the chart's size) as plotters' coordinate type.
fn to_i32(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
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

    /// The text of every `<text>` element, trimmed (plotters puts it on a line of its own).
    fn texts(svg: &str) -> Vec<String> {
        svg.split("<text")
            .skip(1)
            .filter_map(|t| {
                let body = &t[t.find('>')? + 1..];
                Some(body[..body.find("</text>")?].trim().to_owned())
            })
            .collect()
    }

    /// The points of every series line (stroke width 2: axes and ticks have 1, the legend's
    /// samples 3), with its color.
    fn lines(svg: &str) -> Vec<(String, Vec<(i32, i32)>)> {
        let attr = |tag: &str, name: &str| {
            let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
            Some(tag[start..start + tag[start..].find('"')?].to_owned())
        };
        svg.lines()
            .filter(|l| l.starts_with("<polyline") && l.contains("stroke-width=\"2\""))
            .map(|l| {
                let points = attr(l, "points")
                    .expect("points")
                    .split_whitespace()
                    .map(|p| {
                        let (x, y) = p.split_once(',').expect("x,y");
                        (x.parse().expect("x"), y.parse().expect("y"))
                    })
                    .collect();
                (attr(l, "stroke").expect("stroke"), points)
            })
            .collect()
    }

    #[test]
    fn svg_is_well_formed_with_every_legend_name() {
        let chart = sample();
        let svg = render_svg(&chart).expect("renders");
        assert_well_formed(&svg);
        assert_numbers_finite(&svg);
        assert!(svg.starts_with("<?xml"));
        assert!(
            svg.contains("<title>load &amp; &lt;replicas&gt;</title>"),
            "the title is escaped"
        );
        let texts = texts(&svg);
        assert!(texts.iter().any(|t| t == "load &amp; &lt;replicas&gt;"));
        for name in [
            "load",
            "lag",
            "tidal replicas (right axis)",
            "empty",
            "nan",
            "time (s)",
            "requests/s",
        ] {
            assert!(texts.iter().any(|t| t == name), "no text {name}: {texts:?}");
        }
        // Distinct colors for the drawn series.
        let mut colors: Vec<String> = lines(&svg).into_iter().map(|(c, _)| c).collect();
        assert_eq!(colors.len(), 3, "{svg}");
        colors.sort_unstable();
        colors.dedup();
        assert_eq!(colors.len(), 3);
        // The right axis is labelled with its series by default, and has its own ticks, up to
        // a tick at its top (replicas 2 to 11 on 0 to 15, beside a lag of up to 30000).
        assert!(texts.iter().any(|t| t == "tidal replicas"));
        assert!(texts.iter().any(|t| t == "15"), "{texts:?}");
        assert!(texts.iter().any(|t| t == "30000"), "{texts:?}");
    }

    #[test]
    fn step_series_use_horizontal_then_vertical_segments() {
        let svg = render_svg(&sample()).expect("renders");
        let lines = lines(&svg);
        // Series 2 (tidal replicas) has the palette's third color.
        let replicas = &lines[2].1;
        assert_eq!(lines[2].0, "#E15759");
        let segments: Vec<_> = replicas.windows(2).map(|w| (w[0], w[1])).collect();
        let horizontal = segments.iter().filter(|(a, b)| a.1 == b.1).count();
        let vertical = segments.iter().filter(|(a, b)| a.0 == b.0).count();
        assert_eq!(horizontal + vertical, segments.len(), "{replicas:?}");
        // 2..=11 replicas: ten levels, each drawn by one horizontal segment, nine rises.
        assert_eq!((horizontal, vertical), (10, 9), "{replicas:?}");
        let load = &lines[0].1;
        assert!(
            load.windows(2)
                .any(|w| w[0].0 != w[1].0 && w[0].1 != w[1].1)
        );
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
            vec![Series::new("control\u{1}chars\u{7f}", vec![(0.0, 1.0)])],
        ] {
            let chart = Chart {
                title: "t".to_owned(),
                x_label: "x".to_owned(),
                y_label: "y".to_owned(),
                y2_label: Some("y2".to_owned()),
                series,
            };
            let svg = render_svg(&chart).expect("renders");
            assert_well_formed(&svg);
            assert_numbers_finite(&svg);
            assert!(!svg.chars().any(|c| c.is_control() && c != '\n'), "{svg}");
        }
        // A lone point is a dot; empty labels draw no text.
        let chart = Chart {
            title: String::new(),
            x_label: String::new(),
            y_label: String::new(),
            y2_label: None,
            series: vec![Series::new("one", vec![(0.0, 0.0)])],
        };
        let svg = render_svg(&chart).expect("renders");
        assert_eq!(svg.matches("<circle").count(), 1, "{svg}");
        assert!(!texts(&svg).iter().any(String::is_empty), "{svg}");
    }

    #[test]
    fn axes_and_ticks() {
        // The x axis spans exactly the data; plotters' ticks inside it, labelled plainly.
        assert_eq!(axis_range(0.0, 7200.0, false), (0.0, 7200.0));
        assert_eq!(tick_step(0.0, 7200.0, X_TICKS), 1000.0);
        assert_eq!(tick_label(0.0, 7200.0, X_TICKS)(&2000.0), "2000");
        assert_eq!(tick_step(0.0, 2400.0, X_TICKS), 500.0);
        // A y axis includes 0 and is rounded out to whole ticks.
        assert_eq!(axis_range(3.0, 94160.0, true), (0.0, 100_000.0));
        assert_eq!(axis_range(0.2, 0.93, true), (0.0, 1.0));
        // Rounded out to 12 (steps of 2), 0 to 12 is labelled in steps of 5: so 15.
        assert_eq!(axis_range(2.0, 11.0, true), (0.0, 15.0));
        assert_eq!(tick_label(0.0, 1.0, Y_TICKS)(&0.2), "0.2");
        assert_eq!(tick_label(-1.0, 1.0, Y_TICKS)(&-1e-17), "0.0");
        // A single value gets room around it.
        let (lo, hi) = axis_range(3.0, 3.0, true);
        assert!(lo == 0.0 && hi >= 3.0, "{lo} {hi}");
        let (lo, hi) = axis_range(5.0, 5.0, false);
        assert!(lo < 5.0 && hi > 5.0, "{lo} {hi}");
        // No data at all.
        assert_eq!(
            axis_range(f64::INFINITY, f64::NEG_INFINITY, false),
            (0.0, 1.0)
        );
    }

    /// The kind, line and column of a CSV error (0 where it has none).
    fn place(e: &PlotError) -> (&'static str, usize, usize) {
        let (line, column) = match e {
            PlotError::Number { line, column, .. } | PlotError::Header { line, column, .. } => {
                (*line, *column)
            }
            PlotError::Columns { line, .. }
            | PlotError::NoSeries { line }
            | PlotError::Syntax { line, .. } => (*line, 0),
            PlotError::Empty | PlotError::NoRows => (0, 0),
        };
        (e.kind(), line, column)
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
        for (csv, at) in [
            // A quoted cell spanning lines, CRLF, comments and blank lines further down.
            ("t,a\n\"0\n\",1\n2,x\n", ("number", 4, 2)),
            ("t,a\r\n\r\n# x\r\n0,1\r\n   \r\n2,x\r\n", ("number", 6, 2)),
            // A row of empty cells is a row (its time is missing), not a blank line.
            ("t,a\n0,1\n,\n", ("number", 3, 1)),
        ] {
            let err = read_csv(csv).expect_err(csv);
            assert_eq!(place(&err), at, "{csv:?}: {err}");
        }
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
        for (csv, at) in [
            ("t,a\n,1\n", ("number", 2, 1)),    // no time
            ("t,a\n0,NaN\n", ("number", 2, 2)), // not finite
            ("t,a\n0,inf\n", ("number", 2, 2)),
            ("t,a,,b\n", ("header", 1, 3)), // an empty name
            ("t,a,a@right\n0,1,2\n", ("header", 1, 3)), // a duplicate
        ] {
            let err = read_csv(csv).expect_err(csv);
            assert_eq!(place(&err), at, "{csv:?}: {err}");
        }
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
