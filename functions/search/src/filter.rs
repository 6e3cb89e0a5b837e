//! The filter language (JSON) parsed into storage's typed [`Filter`], within limits.
//!
//! A field maps to a literal (equality) or to an operator object
//! (`$eq $ne $gt $gte $lt $lte $in $nin $exists`); `$and`, `$or` (arrays of filters)
//! and `$not` (a filter) combine. Several entries in one object are ANDed.

use std::cmp::Ordering;

use edge::json_type;
use serde_json::{Map, Value};
use storage::jsonb::contains_nul;
use storage::{Comparison, Filter, Scalar};

use crate::error::{ApiError, ErrorCode};

/// Bounds on a filter's complexity.
#[derive(Clone, Copy, Debug)]
pub struct FilterLimits {
    /// `MAX_FILTER_DEPTH` (default 6): nesting of `$and`/`$or`/`$not`.
    pub max_depth: usize,
    /// `MAX_FILTER_CONDITIONS` (default 64): field conditions in the whole filter.
    pub max_conditions: usize,
    /// `MAX_FILTER_IN_VALUES` (default 1024): values in one `$in`/`$nin`.
    pub max_in_values: usize,
    /// `MAX_FILTER_KEY_BYTES` (default 256): length of one metadata key.
    pub max_key_bytes: usize,
    /// `MAX_FILTER_NODES` (default 256): JSON objects and arrays in the whole filter,
    /// at any level and empty ones included: filter objects, operator objects,
    /// `$and`/`$or`/`$in`/`$nin` arrays, and the objects and arrays inside values. Field
    /// conditions are bounded by `max_conditions`; this bounds everything else
    /// (`{"$and": [{}, {}, …]}` has no condition at all, yet each `{}` costs parsing,
    /// memory and SQL text).
    pub max_nodes: usize,
}

impl Default for FilterLimits {
    fn default() -> Self {
        Self {
            max_depth: 6,
            max_conditions: 64,
            max_in_values: 1024,
            max_key_bytes: 256,
            max_nodes: 256,
        }
    }
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidFilter, message)
}

/// Parses a filter object; `{}` is no filter.
pub fn parse_filter(value: &Value, limits: &FilterLimits) -> Result<Option<Filter>, ApiError> {
    let mut parser = Parser {
        limits,
        conditions: 0,
        nodes: 0,
    };
    let filter = parser.object(value, 1)?;
    Ok(match filter {
        Filter::And(parts) if parts.is_empty() => None,
        other => Some(other),
    })
}

struct Parser<'l> {
    limits: &'l FilterLimits,
    conditions: usize,
    /// Objects and arrays met so far (`MAX_FILTER_NODES`).
    nodes: usize,
}

impl Parser<'_> {
    /// Counts one JSON object or array against `MAX_FILTER_NODES`. Called before the
    /// node's contents are looked at, so a filter made of thousands of empty groups is
    /// refused at the first one past the limit, not after all of them were walked.
    fn node(&mut self) -> Result<(), ApiError> {
        self.nodes += 1;
        if self.nodes > self.limits.max_nodes {
            return Err(invalid(format!(
                "the filter has more than {} objects and arrays (MAX_FILTER_NODES); every \
                 object and array counts, empty ones included: drop empty or redundant \
                 groups, merge conditions into fewer objects, or raise MAX_FILTER_NODES",
                self.limits.max_nodes
            )));
        }
        Ok(())
    }

    fn object(&mut self, value: &Value, depth: usize) -> Result<Filter, ApiError> {
        if depth > self.limits.max_depth {
            return Err(invalid(format!(
                "the filter nests deeper than {} levels (MAX_FILTER_DEPTH)",
                self.limits.max_depth
            )));
        }
        let Value::Object(map) = value else {
            return Err(invalid(format!(
                "a filter must be a JSON object, got {}",
                json_type(value)
            )));
        };
        self.node()?;
        let mut parts = Vec::with_capacity(map.len());
        for (key, value) in map {
            parts.push(match key.as_str() {
                "$and" => Filter::And(self.list(key, value, depth)?),
                "$or" => Filter::Or(self.list(key, value, depth)?),
                "$not" => Filter::Not(Box::new(self.object(value, depth + 1)?)),
                op if op.starts_with('$') => {
                    return Err(invalid(format!(
                        "unknown combinator {op:?}: use $and, $or or $not at this level, or an operator inside a field"
                    )))
                }
                field => self.field(field, value)?,
            });
        }
        Ok(if parts.len() == 1 {
            parts.pop().expect("one part")
        } else {
            Filter::And(parts)
        })
    }

    fn list(&mut self, key: &str, value: &Value, depth: usize) -> Result<Vec<Filter>, ApiError> {
        let Value::Array(items) = value else {
            return Err(invalid(format!(
                "{key} takes an array of filters, got {}",
                json_type(value)
            )));
        };
        self.node()?;
        if items.is_empty() {
            return Err(invalid(format!("{key} needs at least one filter")));
        }
        items
            .iter()
            .map(|item| self.object(item, depth + 1))
            .collect()
    }

    fn field(&mut self, key: &str, value: &Value) -> Result<Filter, ApiError> {
        if key.len() > self.limits.max_key_bytes {
            return Err(invalid(format!(
                "a metadata key is {} bytes, the limit is {} (MAX_FILTER_KEY_BYTES)",
                key.len(),
                self.limits.max_key_bytes
            )));
        }
        if key.contains('\0') {
            return Err(invalid("metadata keys cannot contain NUL characters"));
        }
        let operators = match value {
            Value::Object(map) if map.keys().next().is_some_and(|k| k.starts_with('$')) => map,
            literal => {
                let literal = self.literal(literal)?;
                return self.condition(key, Comparison::Eq(literal));
            }
        };
        self.node()?;
        let mut parts = Vec::with_capacity(operators.len());
        for (op, operand) in operators {
            let comparison = self.comparison(key, op, operand)?;
            parts.push(self.condition(key, comparison)?);
        }
        Ok(if parts.len() == 1 {
            parts.pop().expect("one part")
        } else {
            Filter::And(parts)
        })
    }

    fn condition(&mut self, key: &str, op: Comparison) -> Result<Filter, ApiError> {
        self.conditions += 1;
        if self.conditions > self.limits.max_conditions {
            return Err(invalid(format!(
                "the filter has more than {} conditions (MAX_FILTER_CONDITIONS)",
                self.limits.max_conditions
            )));
        }
        Ok(Filter::Field {
            key: key.to_owned(),
            op,
        })
    }

    fn comparison(&mut self, key: &str, op: &str, operand: &Value) -> Result<Comparison, ApiError> {
        Ok(match op {
            "$eq" => Comparison::Eq(self.literal(operand)?),
            "$ne" => Comparison::Ne(self.literal(operand)?),
            "$gt" => Comparison::Gt(scalar(key, op, operand)?),
            "$gte" => Comparison::Gte(scalar(key, op, operand)?),
            "$lt" => Comparison::Lt(scalar(key, op, operand)?),
            "$lte" => Comparison::Lte(scalar(key, op, operand)?),
            "$in" => Comparison::In(self.values(key, op, operand)?),
            "$nin" => Comparison::Nin(self.values(key, op, operand)?),
            "$exists" => match operand {
                Value::Bool(b) => Comparison::Exists(*b),
                other => return Err(invalid(format!("{key}: $exists takes true or false, got {}", json_type(other)))),
            },
            unknown => {
                return Err(invalid(format!(
                    "{key}: unknown operator {unknown:?}; use $eq $ne $gt $gte $lt $lte $in $nin $exists"
                )))
            }
        })
    }

    fn values(&mut self, key: &str, op: &str, operand: &Value) -> Result<Vec<Value>, ApiError> {
        let Value::Array(items) = operand else {
            return Err(invalid(format!(
                "{key}: {op} takes an array, got {}",
                json_type(operand)
            )));
        };
        self.node()?;
        if items.len() > self.limits.max_in_values {
            return Err(invalid(format!(
                "{key}: {op} has {} values, the limit is {} (MAX_FILTER_IN_VALUES)",
                items.len(),
                self.limits.max_in_values
            )));
        }
        items.iter().map(|item| self.literal(item)).collect()
    }

    /// A literal compared for equality: any JSON value without NUL characters. Its own
    /// objects and arrays count against `MAX_FILTER_NODES` like the filter's.
    fn literal(&mut self, value: &Value) -> Result<Value, ApiError> {
        let mut pending = vec![value];
        while let Some(next) = pending.pop() {
            match next {
                Value::Array(items) => {
                    self.node()?;
                    pending.extend(items);
                }
                Value::Object(map) => {
                    self.node()?;
                    pending.extend(map.values());
                }
                _ => {}
            }
        }
        if contains_nul(value) {
            return Err(invalid("filter values cannot contain NUL characters"));
        }
        if let Value::Object(map) = value {
            if map.keys().any(|k| k.starts_with('$')) {
                return Err(invalid(
                    "operators cannot be mixed with literal keys in one object",
                ));
            }
        }
        Ok(value.clone())
    }
}

fn scalar(key: &str, op: &str, operand: &Value) -> Result<Scalar, ApiError> {
    match operand {
        Value::Number(n) => Ok(Scalar::Number(n.clone())),
        Value::String(s) if !s.contains('\0') => Ok(Scalar::String(s.clone())),
        other => Err(invalid(format!(
            "{key}: {op} takes a number or a string, got {}",
            json_type(other)
        ))),
    }
}

/// Evaluates a filter over one row's metadata in Rust, with the semantics the SQL
/// compiler implements; the integration tests compare the two.
pub fn matches(filter: &Filter, metadata: &Map<String, Value>) -> bool {
    match filter {
        Filter::And(parts) => parts.iter().all(|p| matches(p, metadata)),
        Filter::Or(parts) => parts.iter().any(|p| matches(p, metadata)),
        Filter::Not(inner) => !matches(inner, metadata),
        Filter::Field { key, op } => {
            let field = metadata.get(key);
            match op {
                Comparison::Eq(v) => field.is_some_and(|f| json_eq(f, v)),
                Comparison::Ne(v) => !field.is_some_and(|f| json_eq(f, v)),
                Comparison::Gt(s) => order(field, s).is_some_and(|o| o.is_gt()),
                Comparison::Gte(s) => order(field, s).is_some_and(|o| o.is_ge()),
                Comparison::Lt(s) => order(field, s).is_some_and(|o| o.is_lt()),
                Comparison::Lte(s) => order(field, s).is_some_and(|o| o.is_le()),
                Comparison::In(vs) => field.is_some_and(|f| vs.iter().any(|v| json_eq(f, v))),
                Comparison::Nin(vs) => !field.is_some_and(|f| vs.iter().any(|v| json_eq(f, v))),
                Comparison::Exists(b) => field.is_some() == *b,
            }
        }
    }
}

/// JSON equality as PostgreSQL's `jsonb` implements it: numbers by exact decimal value,
/// arrays in order, objects by key set, everything else by type and content.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => compare_numbers(x, y).is_eq(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

fn order(field: Option<&Value>, operand: &Scalar) -> Option<Ordering> {
    match (field?, operand) {
        (Value::Number(f), Scalar::Number(n)) => Some(compare_numbers(f, n)),
        (Value::String(f), Scalar::String(s)) => Some(f.as_bytes().cmp(s.as_bytes())),
        _ => None,
    }
}

/// Compares two JSON numbers by the exact decimal value of their JSON text, which is
/// what PostgreSQL's `numeric` (inside `jsonb`) compares: `1` equals `1.0`, and
/// `9007199254740993` is greater than `9007199254740992` (`f64` would say equal).
pub fn compare_numbers(a: &serde_json::Number, b: &serde_json::Number) -> Ordering {
    Decimal::parse(&a.to_string()).cmp(&Decimal::parse(&b.to_string()))
}

/// A finite decimal: sign, significant digits without leading or trailing zeros, and
/// the exponent of the first digit (`value = 0.d1d2… × 10^exponent`). Zero has no digits.
#[derive(PartialEq, Eq)]
struct Decimal {
    negative: bool,
    digits: Vec<u8>,
    exponent: i64,
}

impl Decimal {
    /// Parses JSON number text (`-?int(.frac)?([eE][+-]?exp)?`).
    fn parse(text: &str) -> Self {
        let (negative, rest) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (mantissa, exp) = match rest.find(['e', 'E']) {
            Some(at) => (&rest[..at], rest[at + 1..].parse::<i64>().unwrap_or(0)),
            None => (rest, 0),
        };
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let all: Vec<u8> = int.bytes().chain(frac.bytes()).map(|b| b - b'0').collect();
        let leading = all.iter().take_while(|d| **d == 0).count();
        let mut digits = all[leading..].to_vec();
        while digits.last() == Some(&0) {
            digits.pop();
        }
        if digits.is_empty() {
            return Self {
                negative: false,
                digits,
                exponent: 0,
            };
        }
        let exponent = int.len() as i64 - leading as i64 + exp;
        Self {
            negative,
            digits,
            exponent,
        }
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Self) -> Ordering {
        let sign = |d: &Decimal| match (d.digits.is_empty(), d.negative) {
            (true, _) => 0,
            (false, true) => -1,
            (false, false) => 1,
        };
        let (s, o) = (sign(self), sign(other));
        if s != o || s == 0 {
            return s.cmp(&o);
        }
        let magnitude = self
            .exponent
            .cmp(&other.exponent)
            .then_with(|| self.digits.cmp(&other.digits));
        if s < 0 {
            magnitude.reverse()
        } else {
            magnitude
        }
    }
}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests;
