//! ISC's standard collection parameters: `limit` (0–250, default 250), `offset`, `count=true`
//! (→ `X-Total-Count`), `filters` (`field op value`, joined by `and`) and `sorters` (`field,-other`), applied
//! to the JSON items a list endpoint returns. Each endpoint names the fields and operators it supports; anything
//! else is a 400 that says what is supported.

use std::cmp::Ordering;
use std::collections::HashMap;

use serde_json::Value;

pub const MAX_LIMIT: usize = 250;

/// What an endpoint allows: `(field, operators)` for filters, and sortable fields.
pub struct Spec {
    pub filters: &'static [(&'static str, &'static [&'static str])],
    pub sorters: &'static [&'static str],
}

#[derive(Debug)]
pub struct Query {
    pub limit: usize,
    pub offset: usize,
    pub count: bool,
    filters: Vec<(String, String, Vec<String>)>,
    sorters: Vec<(String, bool)>,
}

/// The query string as name → value (percent-decoded).
pub fn params(query: Option<&str>) -> HashMap<String, String> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

impl Query {
    pub fn parse(p: &HashMap<String, String>, spec: &Spec) -> Result<Query, String> {
        let num = |name: &str, default: usize| -> Result<usize, String> {
            match p.get(name) {
                None => Ok(default),
                Some(v) => v
                    .parse::<usize>()
                    .map_err(|_| format!("{name}: `{v}` is not a non-negative integer")),
            }
        };
        let limit = num("limit", MAX_LIMIT)?;
        if limit > MAX_LIMIT {
            return Err(format!("limit: must be between 0 and {MAX_LIMIT}"));
        }
        let offset = num("offset", 0)?;
        let count = match p.get("count").map(String::as_str) {
            None | Some("false") => false,
            Some("true") => true,
            Some(v) => return Err(format!("count: `{v}` is not true or false")),
        };
        let filters = match p.get("filters") {
            None => Vec::new(),
            Some(f) => parse_filters(f, spec)?,
        };
        let mut sorters = Vec::new();
        if let Some(s) = p.get("sorters") {
            for part in s.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let (field, desc) = match part.strip_prefix('-') {
                    Some(f) => (f, true),
                    None => (part, false),
                };
                if !spec.sorters.contains(&field) {
                    return Err(format!(
                        "sorters: `{field}` is not sortable here; use {}",
                        spec.sorters.join(", ")
                    ));
                }
                sorters.push((field.to_string(), desc));
            }
        }
        Ok(Query {
            limit,
            offset,
            count,
            filters,
            sorters,
        })
    }

    /// Filter, sort and page `items`; also the total before paging (for `X-Total-Count`).
    pub fn apply(&self, mut items: Vec<Value>) -> (Vec<Value>, usize) {
        items.retain(|item| {
            self.filters
                .iter()
                .all(|(field, op, values)| matches(item.get(field), op, values))
        });
        if !self.sorters.is_empty() {
            items.sort_by(|a, b| {
                for (field, desc) in &self.sorters {
                    let o = compare(a.get(field), b.get(field));
                    let o = if *desc { o.reverse() } else { o };
                    if o != Ordering::Equal {
                        return o;
                    }
                }
                Ordering::Equal
            });
        }
        let total = items.len();
        let page = items
            .into_iter()
            .skip(self.offset)
            .take(self.limit)
            .collect();
        (page, total)
    }
}

fn text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn compare(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    text(a).cmp(&text(b))
}

fn matches(v: Option<&Value>, op: &str, values: &[String]) -> bool {
    let t = text(v);
    let first = values.first().map(String::as_str).unwrap_or("");
    match op {
        "eq" => t == first,
        "ne" => t != first,
        "ge" => t.as_str() >= first,
        "le" => t.as_str() <= first,
        "gt" => t.as_str() > first,
        "lt" => t.as_str() < first,
        "sw" => t.starts_with(first),
        "co" => t.contains(first),
        "in" => values.contains(&t),
        _ => false,
    }
}

/// `field op "value"` or `field in ("a","b")`, joined by ` and `.
fn parse_filters(s: &str, spec: &Spec) -> Result<Vec<(String, String, Vec<String>)>, String> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    let supported = || {
        spec.filters
            .iter()
            .map(|(f, ops)| format!("{f} ({})", ops.join(", ")))
            .collect::<Vec<_>>()
            .join("; ")
    };
    loop {
        let (field, after) = rest
            .split_once(char::is_whitespace)
            .ok_or_else(|| format!("filters: `{s}` is not `field op value`"))?;
        let after = after.trim_start();
        let (op, after) = after
            .split_once(char::is_whitespace)
            .ok_or_else(|| format!("filters: `{s}` is not `field op value`"))?;
        let Some((_, ops)) = spec.filters.iter().find(|(f, _)| *f == field) else {
            return Err(format!(
                "filters: `{field}` cannot be filtered here; supported: {}",
                supported()
            ));
        };
        if !ops.contains(&op) {
            return Err(format!(
                "filters: `{field} {op}` is not supported; supported: {}",
                supported()
            ));
        }
        let after = after.trim_start();
        let (values, after) = if op == "in" {
            let inner = after
                .strip_prefix('(')
                .ok_or("filters: `in` takes a list: in (\"a\",\"b\")")?;
            let end = inner.find(')').ok_or("filters: unclosed `(`")?;
            let mut vals = Vec::new();
            let mut list = inner[..end].trim();
            while !list.is_empty() {
                let (v, r) = string(list)?;
                vals.push(v);
                list = r.trim_start().trim_start_matches(',').trim_start();
            }
            (vals, &inner[end + 1..])
        } else {
            let (v, r) = string(after)?;
            (vec![v], r)
        };
        out.push((field.to_string(), op.to_string(), values));
        let after = after.trim_start();
        if after.is_empty() {
            return Ok(out);
        }
        rest = after
            .strip_prefix("and ")
            .ok_or_else(|| format!("filters: expected `and` before `{after}`"))?
            .trim_start();
    }
}

/// A double-quoted string (with `\"` escapes) or a bare word; and what follows it.
fn string(s: &str) -> Result<(String, &str), String> {
    if let Some(inner) = s.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = inner.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        out.push(n);
                    }
                }
                '"' => return Ok((out, &inner[i + 1..])),
                c => out.push(c),
            }
        }
        Err("filters: unterminated string".into())
    } else {
        let end = s
            .find(|c: char| c.is_whitespace() || c == ',' || c == ')')
            .unwrap_or(s.len());
        if end == 0 {
            return Err("filters: a value is missing".into());
        }
        Ok((s[..end].to_string(), &s[end..]))
    }
}
