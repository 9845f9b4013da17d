//! `spec.formula`: a CEL expression over the metrics that replaces the highest per-metric
//! proposal.
//!
//! The `cel` crate (cel-rust) parses the expression, so the syntax, operator precedence and
//! error positions are CEL's. Tidal then checks the tree once against the declared metric names
//! and lowers it to a small numeric tree that evaluates without allocating (well under the
//! 5 µs budget per evaluation). Differences from the CEL interpreter, on purpose:
//!
//! - every number is a double: `lag.value / 1000` is well typed (CEL would need `1000.0`),
//!   and `7 / 2` is `3.5`;
//! - only numbers and booleans exist; strings, lists, maps, macros and member calls are
//!   rejected when compiling;
//! - names are checked when compiling, not when evaluating.
//!
//! Variables: `<metric>.value`, `<metric>.target`, `<metric>.ratio` for each declared metric,
//! and `replicas`, `readyReplicas`, `partitions`. Functions: `ceil`, `floor`, `round`, `abs`,
//! `min(a, b, ...)`, `max(a, b, ...)`, `clamp(x, lo, hi)` (also under `math.`). Operators:
//! `+ - * / %`, unary `-`, comparisons, `&& || !` and `c ? a : b`.

use std::fmt;

use cel::common::ast::{Expr, LiteralValue, operators};

/// An error in `spec.formula`, naming the field and where the problem is.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FormulaError {
    /// CEL syntax error.
    #[error("spec.formula: syntax error at {line}:{column}: {message}")]
    Parse {
        line: usize,
        column: usize,
        message: String,
    },
    /// A name that is neither a variable nor a declared metric.
    #[error(
        "spec.formula: unknown variable {name:?} at {line}:{column} (metrics: {known}; variables: replicas, readyReplicas, partitions)"
    )]
    UnknownVariable {
        name: String,
        line: usize,
        column: usize,
        known: String,
    },
    /// Something that is not supported, or of the wrong type, at a position.
    #[error("spec.formula: {message} at {line}:{column}")]
    Invalid {
        message: String,
        line: usize,
        column: usize,
    },
    /// Division (or `%`) by zero while evaluating.
    #[error("spec.formula: division by zero at {line}:{column}")]
    DivisionByZero { line: usize, column: usize },
    /// A referenced metric has no value this cycle.
    #[error("spec.formula: metric {metric:?} has no valid value")]
    MissingMetric { metric: String },
    /// `partitions` is referenced but no `kafka_lag` metric reported a partition count.
    #[error("spec.formula: partitions is not known (no kafka_lag metric reported partitions)")]
    MissingPartitions,
    /// The result is NaN or infinite.
    #[error("spec.formula: result {value} is not a finite number")]
    NotFinite { value: f64 },
    /// The result is below 0.
    #[error("spec.formula: result {value} is negative")]
    Negative { value: f64 },
}

impl FormulaError {
    /// A fixed label for metrics and conditions.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Parse { .. } => "parse",
            Self::UnknownVariable { .. } => "unknown_variable",
            Self::Invalid { .. } => "invalid",
            Self::DivisionByZero { .. } => "division_by_zero",
            Self::MissingMetric { .. } => "missing_metric",
            Self::MissingPartitions => "missing_partitions",
            Self::NotFinite { .. } => "not_finite",
            Self::Negative { .. } => "negative",
        }
    }
}

/// One metric's variables.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricValues {
    /// The current value (total for External and `kafka_lag`, average per pod for per-pod
    /// metrics, percent of request for utilization).
    pub value: f64,
    /// The target as written (per pod for `average_value`, percent for `utilization`).
    pub target: f64,
    /// The HPA usage ratio: 1 means on target.
    pub ratio: f64,
}

/// What a formula is evaluated against. `metrics` is aligned with the names given to
/// [`Formula::compile`]; `None` means the metric has no valid value this cycle.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    pub metrics: &'a [Option<MetricValues>],
    pub replicas: f64,
    pub ready_replicas: f64,
    pub partitions: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Value,
    Target,
    Ratio,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arith {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Func {
    Ceil,
    Floor,
    Round,
    Abs,
    Min,
    Max,
    Clamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Num,
    Bool,
}

/// The lowered tree. Booleans evaluate to 1.0 / 0.0; types were checked when compiling.
#[derive(Debug, Clone, PartialEq)]
enum Node {
    Const(f64),
    Metric(usize, Field),
    Replicas,
    Ready,
    Partitions,
    Neg(Box<Node>),
    Not(Box<Node>),
    Arith(Arith, Box<Node>, Box<Node>, (usize, usize)),
    Cmp(Cmp, Box<Node>, Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Cond(Box<Node>, Box<Node>, Box<Node>),
    Call(Func, Vec<Node>),
}

/// A compiled `spec.formula`. Compile once per policy generation and keep it.
#[derive(Clone, PartialEq)]
pub struct Formula {
    source: String,
    names: Vec<String>,
    root: Node,
    referenced: Vec<usize>,
    uses_partitions: bool,
}

/// The name the brief and the controller use for a cached [`Formula`].
pub type CompiledFormula = Formula;

impl fmt::Debug for Formula {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Formula")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

struct Lower<'a> {
    src: &'a str,
    info: &'a cel::common::ast::SourceInfo,
    names: &'a [&'a str],
    referenced: Vec<usize>,
    uses_partitions: bool,
}

/// 1-based line and column of a byte offset.
fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(src.len());
    let before = &src[..src.floor_char_boundary(offset)];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

impl Lower<'_> {
    fn pos(&self, id: u64) -> (usize, usize) {
        self.info
            .offset_for(id)
            .map_or((1, 1), |(start, _)| line_col(self.src, start as usize))
    }

    fn invalid(&self, id: u64, message: impl Into<String>) -> FormulaError {
        let (line, column) = self.pos(id);
        FormulaError::Invalid {
            message: message.into(),
            line,
            column,
        }
    }

    fn unknown(&self, id: u64, name: &str) -> FormulaError {
        let (line, column) = self.pos(id);
        FormulaError::UnknownVariable {
            name: name.to_owned(),
            line,
            column,
            known: if self.names.is_empty() {
                "none".into()
            } else {
                self.names.join(", ")
            },
        }
    }

    fn num(&mut self, e: &cel::IdedExpr, what: &str) -> Result<Node, FormulaError> {
        match self.lower(e)? {
            (n, Ty::Num) => Ok(n),
            (_, Ty::Bool) => Err(self.invalid(e.id, format!("{what} needs a number, not a bool"))),
        }
    }

    fn boolean(&mut self, e: &cel::IdedExpr, what: &str) -> Result<Node, FormulaError> {
        match self.lower(e)? {
            (n, Ty::Bool) => Ok(n),
            (_, Ty::Num) => Err(self.invalid(e.id, format!("{what} needs a bool, not a number"))),
        }
    }

    fn lower(&mut self, e: &cel::IdedExpr) -> Result<(Node, Ty), FormulaError> {
        match &e.expr {
            Expr::Literal(l) => match l {
                LiteralValue::Int(i) => Ok((Node::Const(*i.inner() as f64), Ty::Num)),
                LiteralValue::UInt(u) => Ok((Node::Const(*u.inner() as f64), Ty::Num)),
                LiteralValue::Double(d) => Ok((Node::Const(*d.inner()), Ty::Num)),
                LiteralValue::Boolean(b) => Ok((Node::Const(f64::from(u8::from(*b.inner()))), Ty::Bool)),
                _ => Err(self.invalid(e.id, "only numbers and booleans are supported")),
            },
            Expr::Ident(name) => match name.as_str() {
                "replicas" => Ok((Node::Replicas, Ty::Num)),
                "readyReplicas" => Ok((Node::Ready, Ty::Num)),
                "partitions" => {
                    self.uses_partitions = true;
                    Ok((Node::Partitions, Ty::Num))
                }
                _ if self.names.contains(&name.as_str()) => Err(self.invalid(
                    e.id,
                    format!("metric {name:?} needs a field: {name}.value, {name}.target or {name}.ratio"),
                )),
                _ => Err(self.unknown(e.id, name)),
            },
            Expr::Select(sel) if !sel.test => {
                let Expr::Ident(name) = &sel.operand.expr else {
                    return Err(self.invalid(e.id, "only <metric>.value, .target and .ratio can be selected"));
                };
                let Some(idx) = self.names.iter().position(|n| n == name) else {
                    return Err(self.unknown(sel.operand.id, name));
                };
                let field = match sel.field.as_str() {
                    "value" => Field::Value,
                    "target" => Field::Target,
                    "ratio" => Field::Ratio,
                    other => {
                        return Err(self.invalid(
                            e.id,
                            format!("unknown field {other:?} of metric {name:?} (use value, target or ratio)"),
                        ));
                    }
                };
                if !self.referenced.contains(&idx) {
                    self.referenced.push(idx);
                }
                Ok((Node::Metric(idx, field), Ty::Num))
            }
            Expr::Call(call) => self.call(e, call),
            _ => Err(self.invalid(
                e.id,
                "unsupported expression (only numbers, booleans, variables, operators and functions)",
            )),
        }
    }

    fn call(
        &mut self,
        e: &cel::IdedExpr,
        call: &cel::common::ast::CallExpr,
    ) -> Result<(Node, Ty), FormulaError> {
        let name = call.func_name.as_str();
        let args = &call.args;
        if let Some(t) = &call.target {
            let math = matches!(&t.expr, Expr::Ident(n) if n == "math");
            if !math {
                return Err(self.invalid(e.id, format!("method calls are not supported ({name})")));
            }
        }
        let bin = |op: &str| -> Option<Arith> {
            Some(match op {
                operators::ADD => Arith::Add,
                operators::SUBSTRACT => Arith::Sub,
                operators::MULTIPLY => Arith::Mul,
                operators::DIVIDE => Arith::Div,
                operators::MODULO => Arith::Rem,
                _ => return None,
            })
        };
        let cmp = |op: &str| -> Option<Cmp> {
            Some(match op {
                operators::EQUALS => Cmp::Eq,
                operators::NOT_EQUALS => Cmp::Ne,
                operators::LESS => Cmp::Lt,
                operators::LESS_EQUALS => Cmp::Le,
                operators::GREATER => Cmp::Gt,
                operators::GREATER_EQUALS => Cmp::Ge,
                _ => return None,
            })
        };
        if call.target.is_none() {
            if let Some(op) = bin(name) {
                let l = self.num(&args[0], "arithmetic")?;
                let r = self.num(&args[1], "arithmetic")?;
                return Ok((
                    Node::Arith(op, Box::new(l), Box::new(r), self.pos(e.id)),
                    Ty::Num,
                ));
            }
            if let Some(op) = cmp(name) {
                let l = self.num(&args[0], "a comparison")?;
                let r = self.num(&args[1], "a comparison")?;
                return Ok((Node::Cmp(op, Box::new(l), Box::new(r)), Ty::Bool));
            }
            match name {
                operators::NEGATE => {
                    let x = self.num(&args[0], "negation")?;
                    return Ok((Node::Neg(Box::new(x)), Ty::Num));
                }
                operators::LOGICAL_NOT => {
                    let x = self.boolean(&args[0], "!")?;
                    return Ok((Node::Not(Box::new(x)), Ty::Bool));
                }
                operators::LOGICAL_AND | operators::LOGICAL_OR => {
                    let l = self.boolean(&args[0], "&& and ||")?;
                    let r = self.boolean(&args[1], "&& and ||")?;
                    let n = if name == operators::LOGICAL_AND {
                        Node::And(Box::new(l), Box::new(r))
                    } else {
                        Node::Or(Box::new(l), Box::new(r))
                    };
                    return Ok((n, Ty::Bool));
                }
                operators::CONDITIONAL => {
                    let c = self.boolean(&args[0], "the condition of ?:")?;
                    let (a, ta) = self.lower(&args[1])?;
                    let (b, tb) = self.lower(&args[2])?;
                    if ta != tb {
                        return Err(
                            self.invalid(e.id, "both branches of ?: must have the same type")
                        );
                    }
                    return Ok((Node::Cond(Box::new(c), Box::new(a), Box::new(b)), ta));
                }
                _ => {}
            }
        }
        let (func, arity): (Func, &dyn Fn(usize) -> bool) = match name {
            "ceil" => (Func::Ceil, &|n| n == 1),
            "floor" => (Func::Floor, &|n| n == 1),
            "round" => (Func::Round, &|n| n == 1),
            "abs" => (Func::Abs, &|n| n == 1),
            "min" | "least" => (Func::Min, &|n| n >= 1),
            "max" | "greatest" => (Func::Max, &|n| n >= 1),
            "clamp" => (Func::Clamp, &|n| n == 3),
            _ => {
                return Err(self.invalid(
                    e.id,
                    format!("unknown function {name:?} (ceil, floor, round, abs, min, max, clamp)"),
                ));
            }
        };
        if !arity(args.len()) {
            return Err(self.invalid(
                e.id,
                format!("wrong number of arguments to {name} ({})", args.len()),
            ));
        }
        let nodes = args
            .iter()
            .map(|a| self.num(a, name))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((Node::Call(func, nodes), Ty::Num))
    }
}

fn eval(n: &Node, inp: &Inputs<'_>, names: &[String]) -> Result<f64, FormulaError> {
    Ok(match n {
        Node::Const(c) => *c,
        Node::Metric(i, f) => {
            let m = inp.metrics.get(*i).copied().flatten().ok_or_else(|| {
                FormulaError::MissingMetric {
                    metric: names[*i].clone(),
                }
            })?;
            match f {
                Field::Value => m.value,
                Field::Target => m.target,
                Field::Ratio => m.ratio,
            }
        }
        Node::Replicas => inp.replicas,
        Node::Ready => inp.ready_replicas,
        Node::Partitions => inp.partitions.ok_or(FormulaError::MissingPartitions)?,
        Node::Neg(x) => -eval(x, inp, names)?,
        Node::Not(x) => f64::from(u8::from(eval(x, inp, names)? == 0.0)),
        Node::Arith(op, l, r, (line, column)) => {
            let l = eval(l, inp, names)?;
            let r = eval(r, inp, names)?;
            match op {
                Arith::Add => l + r,
                Arith::Sub => l - r,
                Arith::Mul => l * r,
                Arith::Div | Arith::Rem if r == 0.0 => {
                    return Err(FormulaError::DivisionByZero {
                        line: *line,
                        column: *column,
                    });
                }
                Arith::Div => l / r,
                Arith::Rem => l % r,
            }
        }
        Node::Cmp(op, l, r) => {
            let l = eval(l, inp, names)?;
            let r = eval(r, inp, names)?;
            let b = match op {
                Cmp::Eq => l == r,
                Cmp::Ne => l != r,
                Cmp::Lt => l < r,
                Cmp::Le => l <= r,
                Cmp::Gt => l > r,
                Cmp::Ge => l >= r,
            };
            f64::from(u8::from(b))
        }
        Node::And(l, r) => f64::from(u8::from(
            eval(l, inp, names)? != 0.0 && eval(r, inp, names)? != 0.0,
        )),
        Node::Or(l, r) => f64::from(u8::from(
            eval(l, inp, names)? != 0.0 || eval(r, inp, names)? != 0.0,
        )),
        Node::Cond(c, a, b) => {
            if eval(c, inp, names)? != 0.0 {
                eval(a, inp, names)?
            } else {
                eval(b, inp, names)?
            }
        }
        Node::Call(f, args) => match f {
            Func::Ceil => eval(&args[0], inp, names)?.ceil(),
            Func::Floor => eval(&args[0], inp, names)?.floor(),
            Func::Round => eval(&args[0], inp, names)?.round(),
            Func::Abs => eval(&args[0], inp, names)?.abs(),
            Func::Min | Func::Max => {
                let mut acc = eval(&args[0], inp, names)?;
                for a in &args[1..] {
                    let v = eval(a, inp, names)?;
                    // NaN propagates so that the result check catches it.
                    acc = if v.is_nan() || acc.is_nan() {
                        f64::NAN
                    } else if *f == Func::Min {
                        acc.min(v)
                    } else {
                        acc.max(v)
                    };
                }
                acc
            }
            Func::Clamp => {
                let x = eval(&args[0], inp, names)?;
                let lo = eval(&args[1], inp, names)?;
                let hi = eval(&args[2], inp, names)?;
                if x.is_nan() || lo.is_nan() || hi.is_nan() {
                    f64::NAN
                } else {
                    // `lo` wins over `hi` when they cross, like a floor after a ceiling.
                    x.min(hi).max(lo)
                }
            }
        },
    })
}

/// The most operators a formula may have, counting every character of one (`+ - * / % < > =
/// ! & | ? . ( [ {`), and the deepest nesting (unclosed `( [ {` plus the `?` before a point).
///
/// The `cel` parser, the lowering and the evaluation recurse once per operator of a chain
/// (`a + b + c ...` nests to the left, and the parser's own depth limit does not count it),
/// and a nesting level costs several times an operator. A ScalingPolicy whose formula repeated
/// `+` some thousands of times overflowed the controller's stack and crashed the scaler (found
/// by the `formula_chain` fuzz target). With these caps the largest formula compiles and
/// evaluates in under 2 MiB of stack (tokio's worker stack) even in a debug build; real
/// formulas use a few dozen operators and two or three levels.
pub const MAX_FORMULA_OPERATORS: usize = 64;
/// See [`MAX_FORMULA_OPERATORS`].
pub const MAX_FORMULA_NESTING: usize = 24;

/// Where `src` goes over [`MAX_FORMULA_OPERATORS`] or [`MAX_FORMULA_NESTING`], and which.
fn over_caps(src: &str) -> Option<(usize, &'static str)> {
    let (mut operators, mut open, mut conditionals) = (0usize, 0usize, 0usize);
    for (i, c) in src.char_indices() {
        if "+-*/%<>=!&|?.([{".contains(c) {
            operators += 1;
            if operators > MAX_FORMULA_OPERATORS {
                return Some((i, "too many operators"));
            }
        }
        match c {
            '(' | '[' | '{' => open += 1,
            ')' | ']' | '}' => open = open.saturating_sub(1),
            '?' => conditionals += 1,
            _ => continue,
        }
        if open + conditionals > MAX_FORMULA_NESTING {
            return Some((i, "nested too deeply"));
        }
    }
    None
}

impl Formula {
    /// Parse `src` with the `cel` crate and check it against the declared metric names.
    pub fn compile(src: &str, metric_names: &[&str]) -> Result<Self, FormulaError> {
        if let Some((at, what)) = over_caps(src) {
            let (line, column) = line_col(src, at);
            return Err(FormulaError::Invalid {
                message: format!(
                    "{what} (at most {MAX_FORMULA_OPERATORS} operator characters and \
                     {MAX_FORMULA_NESTING} levels of brackets and ?:)"
                ),
                line,
                column,
            });
        }
        let program = cel::Program::compile(src).map_err(|errs| {
            let first = errs.errors.first();
            FormulaError::Parse {
                line: first.map_or(1, |e| e.pos.0.max(1) as usize),
                // `cel` reports 1-based lines and columns.
                column: first.map_or(1, |e| e.pos.1.max(1) as usize),
                message: first.map_or_else(|| errs.to_string(), |e| e.msg.clone()),
            }
        })?;
        let mut lower = Lower {
            src,
            info: program.source_info(),
            names: metric_names,
            referenced: Vec::new(),
            uses_partitions: false,
        };
        let (root, ty) = lower.lower(program.expression())?;
        if ty != Ty::Num {
            return Err(lower.invalid(
                program.expression().id,
                "the formula must give a number, not a bool",
            ));
        }
        let mut referenced = lower.referenced;
        referenced.sort_unstable();
        Ok(Self {
            source: src.to_owned(),
            names: metric_names.iter().map(|n| (*n).to_owned()).collect(),
            root,
            referenced,
            uses_partitions: lower.uses_partitions,
        })
    }

    /// Evaluate: a finite, non-negative number, or an error; nothing is rounded here.
    pub fn eval(&self, inputs: &Inputs<'_>) -> Result<f64, FormulaError> {
        let v = eval(&self.root, inputs, &self.names)?;
        if !v.is_finite() {
            return Err(FormulaError::NotFinite { value: v });
        }
        if v < 0.0 {
            return Err(FormulaError::Negative { value: v });
        }
        Ok(v + 0.0)
    }

    /// The source text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Indexes (into the compiled names) of the metrics the formula reads.
    pub fn referenced_metrics(&self) -> &[usize] {
        &self.referenced
    }

    /// Whether the formula reads `partitions`.
    pub fn uses_partitions(&self) -> bool {
        self.uses_partitions
    }
}

#[cfg(test)]
#[path = "formula_tests.rs"]
mod tests;
