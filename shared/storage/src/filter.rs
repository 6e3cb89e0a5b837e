//! Metadata filters: a typed tree, compiled to SQL whose text holds only fixed
//! fragments and `$n` placeholders. Keys and values are always bound parameters.
//!
//! Semantics (also what the reference evaluator, `search::filter::matches`, implements;
//! the integration tests compare the two over a corpus of varied metadata):
//! - a key names a top-level metadata field, whatever characters it contains (no paths:
//!   `"a.b"` is the key `a.b`);
//! - `Eq` is `jsonb` equality: same JSON type and value; numbers by exact decimal value
//!   (`1` equals `1.0`, `9007199254740993` does not equal `9007199254740992`); strings
//!   byte for byte (no Unicode normalization); arrays element by element in order;
//!   objects by key set and values. A JSON `null` value matches only a present `null`;
//! - `Ne` is the negation of `Eq`: it also matches rows where the field is absent;
//! - `Gt`/`Gte`/`Lt`/`Lte` match only fields of the same JSON type as the operand
//!   (numbers by exact decimal value, strings bytewise in UTF-8, i.e. code point order);
//!   an absent field or one of another type matches none of them;
//! - `In` matches when the field equals (as `Eq`) one of the values; `Nin` when it is
//!   absent or equals none of them; `Exists(b)` when the field's presence is `b` (a
//!   present `null` exists);
//! - `And([])` is true, `Or([])` false, `Not` is plain negation: every compiled fragment
//!   is TRUE or FALSE, never NULL, so SQL's three-valued logic never shows through.

use serde_json::{Map, Value};

/// A filter over `metadata`.
#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
    Field { key: String, op: Comparison },
}

/// An operator applied to one metadata field.
#[derive(Clone, Debug, PartialEq)]
pub enum Comparison {
    Eq(Value),
    Ne(Value),
    Gt(Scalar),
    Gte(Scalar),
    Lt(Scalar),
    Lte(Scalar),
    In(Vec<Value>),
    Nin(Vec<Value>),
    Exists(bool),
}

/// An orderable operand.
#[derive(Clone, Debug, PartialEq)]
pub enum Scalar {
    Number(serde_json::Number),
    String(String),
}

/// A value bound to a placeholder of the compiled filter.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Bind {
    Text(String),
    Jsonb(Value),
    JsonbArray(Vec<Value>),
}

/// SQL text plus its binds, numbered from the `first` placeholder given to [`compile`].
#[derive(Debug, Default)]
pub(crate) struct CompiledFilter {
    pub sql: String,
    pub binds: Vec<Bind>,
}

/// The longest SQL text a filter may compile to. The request parser's limits
/// (`MAX_FILTER_CONDITIONS`, `MAX_FILTER_NODES`, `MAX_FILTER_DEPTH`) keep filters far
/// below it at their defaults (64 conditions of the longest fragment are about 9 KiB);
/// this is the backstop when they are raised, or for a [`Filter`] built in code: the
/// statement PostgreSQL parses and plans per search stays bounded whatever reaches the
/// compiler.
pub const MAX_FILTER_SQL_BYTES: usize = 64 * 1024;

/// The most bind parameters one statement can carry: the extended protocol counts them
/// in 16 bits.
pub const MAX_STATEMENT_PARAMETERS: usize = 65_535;

/// A filter too large to compile; nothing was sent to the database.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FilterTooLarge {
    #[error(
        "the filter compiles to more than {limit} bytes of SQL (MAX_FILTER_SQL_BYTES); \
         use fewer conditions and groups, or lower MAX_FILTER_CONDITIONS / MAX_FILTER_NODES \
         so that such filters are refused as they are parsed"
    )]
    Sql { limit: usize },
    #[error(
        "the filter needs more than {limit} bind parameters, the most a PostgreSQL \
         statement can carry; use fewer conditions"
    )]
    Parameters { limit: usize },
}

/// Compiles `filter` against the `metadata` column; placeholders start at `$first`.
/// Refuses a filter whose SQL text would exceed [`MAX_FILTER_SQL_BYTES`] (checked as
/// the text is built, so no oversized string is ever assembled) or whose binds would
/// pass [`MAX_STATEMENT_PARAMETERS`].
pub(crate) fn compile(filter: &Filter, first: usize) -> Result<CompiledFilter, FilterTooLarge> {
    compile_within(filter, first, MAX_FILTER_SQL_BYTES)
}

fn compile_within(
    filter: &Filter,
    first: usize,
    max_sql_bytes: usize,
) -> Result<CompiledFilter, FilterTooLarge> {
    let mut out = Compiler {
        next: first,
        binds: Vec::new(),
        max_sql_bytes,
    };
    let sql = out.filter(filter)?;
    Ok(CompiledFilter {
        sql,
        binds: out.binds,
    })
}

struct Compiler {
    next: usize,
    binds: Vec<Bind>,
    max_sql_bytes: usize,
}

impl Compiler {
    fn bind(&mut self, value: Bind) -> Result<String, FilterTooLarge> {
        if self.next > MAX_STATEMENT_PARAMETERS {
            return Err(FilterTooLarge::Parameters {
                limit: MAX_STATEMENT_PARAMETERS,
            });
        }
        self.binds.push(value);
        self.next += 1;
        Ok(format!("${}", self.next - 1))
    }

    fn bounded(&self, sql: String) -> Result<String, FilterTooLarge> {
        if sql.len() > self.max_sql_bytes {
            return Err(FilterTooLarge::Sql {
                limit: self.max_sql_bytes,
            });
        }
        Ok(sql)
    }

    /// Every fragment is parenthesized and never NULL, so `AND`, `OR` and `NOT` over
    /// fragments are plain two-valued logic, exactly as the reference evaluator's.
    fn filter(&mut self, filter: &Filter) -> Result<String, FilterTooLarge> {
        let sql = match filter {
            Filter::And(parts) => self.join(parts, " AND ", "TRUE")?,
            Filter::Or(parts) => self.join(parts, " OR ", "FALSE")?,
            Filter::Not(inner) => format!("(NOT {})", self.filter(inner)?),
            Filter::Field { key, op } => self.field(key, op)?,
        };
        self.bounded(sql)
    }

    /// The parts' fragments joined; the running length is checked after each part, so a
    /// group of a million parts stops at the first one past the bound.
    fn join(
        &mut self,
        parts: &[Filter],
        separator: &str,
        empty: &str,
    ) -> Result<String, FilterTooLarge> {
        if parts.is_empty() {
            return Ok(format!("({empty})"));
        }
        let mut sql = String::from("(");
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                sql.push_str(separator);
            }
            let fragment = self.filter(part)?;
            sql.push_str(&fragment);
            sql = self.bounded(sql)?;
        }
        sql.push(')');
        Ok(sql)
    }

    /// `{key: value}` for containment.
    fn containment(&mut self, key: &str, value: &Value) -> Result<String, FilterTooLarge> {
        let mut object = Map::new();
        object.insert(key.to_owned(), value.clone());
        self.bind(Bind::Jsonb(Value::Object(object)))
    }

    // How the planner sees these matters as much as what they mean: it chooses between
    // the HNSW index and an exact scan from the estimated share of matching rows.
    // Containment (`@>`) and key existence (`?`) are estimated from the column's
    // statistics; any other comparison on an expression without statistics would get a
    // default of 0.5% (equality) or 0.5% × 33% (type check and order), which made the
    // planner expect a handful of rows and pick a sequential scan plus a sort over every
    // matching row. Wrapping those in `COALESCE(…, FALSE)` (never NULL) makes them a
    // boolean expression the planner estimates at 50%, and keeps the HNSW index in use.
    fn field(&mut self, key: &str, op: &Comparison) -> Result<String, FilterTooLarge> {
        Ok(match op {
            // For a scalar, `{"k": x} @> {"k": v}` holds exactly when `x` is a scalar
            // equal to `v` (an array does not contain a scalar below the top level), so
            // containment alone is equality, estimated from statistics and GIN-indexed.
            Comparison::Eq(value) if is_scalar(value) => {
                let contains = self.containment(key, value)?;
                format!("(metadata @> {contains}::jsonb)")
            }
            // Containers: containment narrows through the GIN index, equality makes it
            // exact (containment alone would also match supersets).
            Comparison::Eq(value) => {
                let contains = self.containment(key, value)?;
                let k = self.bind(Bind::Text(key.to_owned()))?;
                let v = self.bind(Bind::Jsonb(value.clone()))?;
                format!(
                    "(metadata @> {contains}::jsonb AND COALESCE(metadata -> {k}::text = {v}::jsonb, FALSE))"
                )
            }
            Comparison::Ne(value) if is_scalar(value) => {
                let contains = self.containment(key, value)?;
                format!("(NOT (metadata @> {contains}::jsonb))")
            }
            Comparison::Ne(value) => {
                let k = self.bind(Bind::Text(key.to_owned()))?;
                let v = self.bind(Bind::Jsonb(value.clone()))?;
                format!("((metadata -> {k}::text) IS DISTINCT FROM {v}::jsonb)")
            }
            Comparison::Gt(s) => self.order(key, ">", s)?,
            Comparison::Gte(s) => self.order(key, ">=", s)?,
            Comparison::Lt(s) => self.order(key, "<", s)?,
            Comparison::Lte(s) => self.order(key, "<=", s)?,
            Comparison::In(values) => {
                let k = self.bind(Bind::Text(key.to_owned()))?;
                let vs = self.bind(Bind::JsonbArray(values.clone()))?;
                format!("COALESCE(metadata -> {k}::text = ANY({vs}::jsonb[]), FALSE)")
            }
            Comparison::Nin(values) => {
                let k = self.bind(Bind::Text(key.to_owned()))?;
                let vs = self.bind(Bind::JsonbArray(values.clone()))?;
                format!("(NOT COALESCE(metadata -> {k}::text = ANY({vs}::jsonb[]), FALSE))")
            }
            Comparison::Exists(true) => {
                let k = self.bind(Bind::Text(key.to_owned()))?;
                format!("(metadata ? {k}::text)")
            }
            Comparison::Exists(false) => {
                let k = self.bind(Bind::Text(key.to_owned()))?;
                format!("(NOT (metadata ? {k}::text))")
            }
        })
    }

    /// `operator` is one of four fixed strings chosen above, never user input.
    fn order(
        &mut self,
        key: &str,
        operator: &str,
        operand: &Scalar,
    ) -> Result<String, FilterTooLarge> {
        let k = self.bind(Bind::Text(key.to_owned()))?;
        Ok(match operand {
            Scalar::Number(n) => {
                let v = self.bind(Bind::Jsonb(Value::Number(n.clone())))?;
                format!(
                    "COALESCE(jsonb_typeof(metadata -> {k}::text) = 'number' AND metadata -> {k}::text {operator} {v}::jsonb, FALSE)"
                )
            }
            Scalar::String(s) => {
                let v = self.bind(Bind::Text(s.clone()))?;
                format!(
                    "COALESCE(jsonb_typeof(metadata -> {k}::text) = 'string' AND (metadata ->> {k}::text) COLLATE \"C\" {operator} {v}::text COLLATE \"C\", FALSE)"
                )
            }
        })
    }
}

fn is_scalar(value: &Value) -> bool {
    !matches!(value, Value::Array(_) | Value::Object(_))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_and_values_never_reach_the_sql_text() {
        let hostile = "x' OR '1'='1' --; DROP TABLE embeddings";
        let field = |op| Filter::Field {
            key: hostile.into(),
            op,
        };
        let filter = Filter::And(vec![
            field(Comparison::Eq(json!(hostile))),
            field(Comparison::Eq(json!([hostile]))),
            field(Comparison::Ne(json!({hostile: hostile}))),
            field(Comparison::Gt(Scalar::String(hostile.into()))),
            field(Comparison::Lte(Scalar::Number(7.into()))),
            Filter::Not(Box::new(field(Comparison::In(vec![json!(hostile)])))),
            field(Comparison::Nin(vec![json!(hostile)])),
            field(Comparison::Exists(true)),
        ]);
        let compiled = compile(&filter, 4).unwrap();
        for fragment in ["DROP", "'1'", "x'", "--"] {
            assert!(!compiled.sql.contains(fragment), "{}", compiled.sql);
        }
        assert!(
            compiled.sql.starts_with("((metadata @> $4::jsonb) AND "),
            "{}",
            compiled.sql
        );
        assert_eq!(compiled.binds.len(), 1 + 3 + 2 + 2 + 2 + 2 + 2 + 1);
        assert!(compiled
            .sql
            .contains(&format!("${}", 4 + compiled.binds.len() - 1)));
    }

    #[test]
    fn scalar_equality_is_containment_alone() {
        let eq = |value: Value| {
            compile(
                &Filter::Field {
                    key: "k".into(),
                    op: Comparison::Eq(value),
                },
                1,
            )
            .unwrap()
        };
        for scalar in [json!("en"), json!(1.5), json!(true), Value::Null] {
            let compiled = eq(scalar.clone());
            assert_eq!(compiled.sql, "(metadata @> $1::jsonb)");
            assert_eq!(compiled.binds, vec![Bind::Jsonb(json!({"k": scalar}))]);
        }
        assert!(eq(json!(["a"])).sql.contains("= $3::jsonb"));
        assert!(eq(json!({})).sql.contains("= $3::jsonb"));
    }

    #[test]
    fn empty_combinators_are_constants() {
        assert_eq!(compile(&Filter::And(vec![]), 1).unwrap().sql, "(TRUE)");
        assert_eq!(compile(&Filter::Or(vec![]), 1).unwrap().sql, "(FALSE)");
    }

    fn order_condition(i: usize) -> Filter {
        Filter::Field {
            key: format!("k{i}"),
            op: Comparison::Gte(Scalar::String("x".into())),
        }
    }

    #[test]
    fn the_sql_text_is_bounded() {
        // Wide: a thousand of the longest fragment (what MAX_FILTER_CONDITIONS=1000
        // lets through the parser) is well past the bound.
        let wide = Filter::Or((0..1000).map(order_condition).collect());
        let err = compile(&wide, 11).unwrap_err();
        assert_eq!(
            err,
            FilterTooLarge::Sql {
                limit: MAX_FILTER_SQL_BYTES
            }
        );
        let message = err.to_string();
        assert!(
            message.contains(&MAX_FILTER_SQL_BYTES.to_string())
                && message.contains("MAX_FILTER_CONDITIONS"),
            "{message}"
        );
        // Empty groups compile to constants, yet a million of them are still refused,
        // and at the first part past the bound.
        let empties = Filter::And(vec![Filter::And(vec![]); 1_000_000]);
        assert!(matches!(
            compile(&empties, 11),
            Err(FilterTooLarge::Sql { .. })
        ));
        // Deep: the bound holds on nested fragments too.
        let mut deep = order_condition(0);
        for _ in 0..200 {
            deep = Filter::Not(Box::new(Filter::And(vec![deep])));
        }
        assert!(compile_within(&deep, 11, 1000).is_err());
        // Just under the bound compiles, just over does not.
        let some = Filter::Or((0..100).map(order_condition).collect());
        let len = compile(&some, 11).unwrap().sql.len();
        assert!(compile_within(&some, 11, len).is_ok());
        assert!(compile_within(&some, 11, len - 1).is_err());
    }

    #[test]
    fn bind_parameters_stay_within_the_protocol() {
        let exists = |i: usize| Filter::Field {
            key: format!("k{i}"),
            op: Comparison::Exists(true),
        };
        // 65,535 - 10 fixed parameters fit; one more does not.
        let fits = Filter::And((0..65_525).map(exists).collect());
        assert_eq!(
            compile_within(&fits, 11, usize::MAX).unwrap().binds.len(),
            65_525
        );
        let over = Filter::And((0..65_526).map(exists).collect());
        assert_eq!(
            compile_within(&over, 11, usize::MAX).unwrap_err(),
            FilterTooLarge::Parameters {
                limit: MAX_STATEMENT_PARAMETERS
            }
        );
    }
}
