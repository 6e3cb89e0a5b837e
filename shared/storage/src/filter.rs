//! Metadata filters: a typed tree, compiled to SQL whose text holds only fixed
//! fragments and `$n` placeholders. Keys and values are always bound parameters.
//!
//! Semantics (also what the tests' reference evaluator implements):
//! - a key names a top-level metadata field, whatever characters it contains;
//! - `Eq` is JSON equality (numbers by value: `1` equals `1.0`); `Ne` also matches rows
//!   where the field is absent;
//! - `Gt`/`Gte`/`Lt`/`Lte` match only fields of the same JSON type as the operand
//!   (numbers numerically, strings bytewise in UTF-8 order);
//! - `In` matches when the field equals one of the values; `Nin` when it is absent or
//!   equals none of them; `Exists(b)` when the field's presence is `b`.

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

/// Compiles `filter` against the `metadata` column; placeholders start at `$first`.
pub(crate) fn compile(filter: &Filter, first: usize) -> CompiledFilter {
    let mut out = Compiler {
        next: first,
        binds: Vec::new(),
    };
    let sql = out.filter(filter);
    CompiledFilter {
        sql,
        binds: out.binds,
    }
}

struct Compiler {
    next: usize,
    binds: Vec<Bind>,
}

impl Compiler {
    fn bind(&mut self, value: Bind) -> String {
        self.binds.push(value);
        self.next += 1;
        format!("${}", self.next - 1)
    }

    fn filter(&mut self, filter: &Filter) -> String {
        match filter {
            Filter::And(parts) => self.join(parts, " AND ", "TRUE"),
            Filter::Or(parts) => self.join(parts, " OR ", "FALSE"),
            Filter::Not(inner) => format!("NOT COALESCE({}, FALSE)", self.filter(inner)),
            Filter::Field { key, op } => self.field(key, op),
        }
    }

    fn join(&mut self, parts: &[Filter], separator: &str, empty: &str) -> String {
        if parts.is_empty() {
            return empty.to_owned();
        }
        let compiled: Vec<String> = parts.iter().map(|p| self.filter(p)).collect();
        format!("({})", compiled.join(separator))
    }

    fn field(&mut self, key: &str, op: &Comparison) -> String {
        let k = self.bind(Bind::Text(key.to_owned()));
        match op {
            Comparison::Eq(value) => {
                // Containment lets the GIN index narrow the rows; the equality makes it exact
                // (containment alone would also match objects that merely include `value`).
                let mut object = Map::new();
                object.insert(key.to_owned(), value.clone());
                let contains = self.bind(Bind::Jsonb(Value::Object(object)));
                let v = self.bind(Bind::Jsonb(value.clone()));
                format!("(metadata @> {contains}::jsonb AND metadata -> {k}::text = {v}::jsonb)")
            }
            Comparison::Ne(value) => {
                let v = self.bind(Bind::Jsonb(value.clone()));
                format!("(metadata -> {k}::text) IS DISTINCT FROM {v}::jsonb")
            }
            Comparison::Gt(s) => self.order(&k, ">", s),
            Comparison::Gte(s) => self.order(&k, ">=", s),
            Comparison::Lt(s) => self.order(&k, "<", s),
            Comparison::Lte(s) => self.order(&k, "<=", s),
            Comparison::In(values) => {
                let vs = self.bind(Bind::JsonbArray(values.clone()));
                format!("COALESCE(metadata -> {k}::text = ANY({vs}::jsonb[]), FALSE)")
            }
            Comparison::Nin(values) => {
                let vs = self.bind(Bind::JsonbArray(values.clone()));
                format!("NOT COALESCE(metadata -> {k}::text = ANY({vs}::jsonb[]), FALSE)")
            }
            Comparison::Exists(true) => format!("(metadata ? {k}::text)"),
            Comparison::Exists(false) => format!("NOT (metadata ? {k}::text)"),
        }
    }

    /// `operator` is one of four fixed strings chosen above, never user input.
    fn order(&mut self, k: &str, operator: &str, operand: &Scalar) -> String {
        match operand {
            Scalar::Number(n) => {
                let v = self.bind(Bind::Jsonb(Value::Number(n.clone())));
                format!(
                    "(jsonb_typeof(metadata -> {k}::text) = 'number' AND metadata -> {k}::text {operator} {v}::jsonb)"
                )
            }
            Scalar::String(s) => {
                let v = self.bind(Bind::Text(s.clone()));
                format!(
                    "(jsonb_typeof(metadata -> {k}::text) = 'string' AND (metadata ->> {k}::text) COLLATE \"C\" {operator} {v}::text COLLATE \"C\")"
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_and_values_never_reach_the_sql_text() {
        let hostile = "x' OR '1'='1' --; DROP TABLE embeddings";
        let filter = Filter::And(vec![
            Filter::Field {
                key: hostile.into(),
                op: Comparison::Eq(json!(hostile)),
            },
            Filter::Field {
                key: hostile.into(),
                op: Comparison::Gt(Scalar::String(hostile.into())),
            },
            Filter::Not(Box::new(Filter::Field {
                key: hostile.into(),
                op: Comparison::In(vec![json!(hostile)]),
            })),
        ]);
        let compiled = compile(&filter, 4);
        assert!(!compiled.sql.contains("DROP"), "{}", compiled.sql);
        assert!(!compiled.sql.contains("'1'"), "{}", compiled.sql);
        assert!(
            compiled.sql.starts_with("((metadata @> $5::jsonb"),
            "{}",
            compiled.sql
        );
        assert_eq!(compiled.binds.len(), 7);
    }

    #[test]
    fn empty_combinators_are_constants() {
        assert_eq!(compile(&Filter::And(vec![]), 1).sql, "TRUE");
        assert_eq!(compile(&Filter::Or(vec![]), 1).sql, "FALSE");
    }
}
