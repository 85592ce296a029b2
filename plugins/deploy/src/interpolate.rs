//! Compose variable interpolation: `.env` files and `${VAR}` forms in string scalars.
//!
//! It runs on the parsed YAML tree, before the typed parse, so that a value such as
//! `ports: ["${PORT:-8080}:80"]` is checked by the same rules as a literal one, and so that an
//! error can name the YAML path of the value that failed.

use serde_norway::Value;
use std::collections::BTreeMap;

/// Variables visible to interpolation: `.env` first, then the step's `env` on top.
pub type Vars = BTreeMap<String, String>;

/// Parse a `.env` (or `env_file`) text: `KEY=VALUE` lines, `#` comments, optional single or
/// double quotes, and a tolerated `export ` prefix. Values are taken literally (no
/// interpolation inside the file), as a line-oriented file is easy to get wrong otherwise.
pub fn parse_dotenv(text: &str) -> Result<Vars, String> {
    let mut vars = Vars::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").map_or(line, str::trim_start);
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!(
                "line {}: expected KEY=VALUE, got `{}`",
                i + 1,
                line.escape_debug()
            ));
        };
        let key = key.trim();
        if !is_name(key) {
            return Err(format!(
                "line {}: `{}` is not a variable name",
                i + 1,
                key.escape_debug()
            ));
        }
        vars.insert(key.to_string(), dotenv_value(value.trim()));
    }
    Ok(vars)
}

/// One value of a `.env` line: quoted values keep their content (double quotes understand
/// `\n`, `\"` and `\\`); an unquoted value ends at ` #`.
fn dotenv_value(value: &str) -> String {
    let quoted = |q: char| {
        value
            .strip_prefix(q)
            .and_then(|v| v.rfind(q).map(|end| &v[..end]))
    };
    if let Some(inner) = quoted('\'') {
        return inner.to_string();
    }
    if let Some(inner) = quoted('"') {
        let mut out = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            }
        }
        return out;
    }
    let value = value.find(" #").map_or(value, |at| &value[..at]);
    value.trim_end().to_string()
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// What interpolation noticed without failing: variables used while unset.
#[derive(Default, Debug)]
pub struct Report {
    /// Unset variables that were replaced by an empty string, each once.
    pub unset: std::collections::BTreeSet<String>,
}

/// Interpolate every string scalar under `value` in place. Mapping keys are left alone, as in
/// compose. `path` is the YAML path of `value`, used in error messages.
pub fn interpolate_tree(
    value: &mut Value,
    path: &str,
    vars: &Vars,
    report: &mut Report,
) -> Result<(), String> {
    match value {
        Value::String(s) => {
            if s.contains('$') {
                *s = interpolate(s, vars, report)
                    .map_err(|e| format!("{}: {e}", display_path(path)))?;
            }
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate_tree(item, &format!("{path}[{i}]"), vars, report)?;
            }
        }
        Value::Mapping(map) => {
            for (key, item) in map.iter_mut() {
                let key = key_text(key);
                let path = if path.is_empty() {
                    key
                } else {
                    format!("{path}.{key}")
                };
                interpolate_tree(item, &path, vars, report)?;
            }
        }
        Value::Tagged(tagged) => interpolate_tree(&mut tagged.value, path, vars, report)?,
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
    Ok(())
}

fn display_path(path: &str) -> &str {
    if path.is_empty() { "." } else { path }
}

/// A mapping key as it appears in a path.
pub fn key_text(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => "?".to_string(),
    }
}

/// Interpolate one string: `$$`, `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`,
/// `${VAR:?message}`, `${VAR?message}`, `${VAR:+alt}` and `${VAR+alt}`; defaults and
/// alternatives may themselves contain `${...}`. A `$` followed by anything else is an error,
/// as in compose: a price like `$5` must be written `$$5`.
pub fn interpolate(s: &str, vars: &Vars, report: &mut Report) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body_and_tail) = after.strip_prefix('{') {
            let end = closing_brace(body_and_tail).ok_or_else(|| {
                format!(
                    "unterminated `${{` in `{}` (write `$$` for a literal `$`)",
                    s.escape_debug()
                )
            })?;
            out.push_str(&braced(&body_and_tail[..end], vars, report)?);
            rest = &body_and_tail[end + 1..];
        } else {
            let len = after
                .char_indices()
                .find(|&(i, c)| {
                    !(c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()))
                })
                .map_or(after.len(), |(i, _)| i);
            if len == 0 {
                return Err(format!(
                    "invalid interpolation format in `{}`: write `$$` for a literal `$`",
                    s.escape_debug()
                ));
            }
            out.push_str(&lookup(&after[..len], vars, report));
            rest = &after[len..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The index of the `}` closing a `${`, given the text after the `{`; nested `${...}` count.
fn closing_brace(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'$') => i += 1,
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

fn lookup(name: &str, vars: &Vars, report: &mut Report) -> String {
    match vars.get(name) {
        Some(v) => v.clone(),
        None => {
            report.unset.insert(name.to_string());
            String::new()
        }
    }
}

/// The inside of `${...}`.
fn braced(body: &str, vars: &Vars, report: &mut Report) -> Result<String, String> {
    let name_len = body
        .char_indices()
        .find(|&(_, c)| !(c == '_' || c.is_ascii_alphanumeric()))
        .map_or(body.len(), |(i, _)| i);
    let name = &body[..name_len];
    if !is_name(name) {
        return Err(format!(
            "invalid interpolation `${{{}}}`: expected a variable name",
            body.escape_debug()
        ));
    }
    let op_and_arg = &body[name_len..];
    let value = vars.get(name);
    let (op, arg) = [":-", ":?", ":+", "-", "?", "+"]
        .iter()
        .find_map(|op| op_and_arg.strip_prefix(op).map(|arg| (*op, arg)))
        .unwrap_or(("", op_and_arg));
    if op.is_empty() {
        if !arg.is_empty() {
            return Err(format!(
                "invalid interpolation `${{{}}}`: after the name use `:-`, `-`, `:?`, `?`, `:+` or `+`",
                body.escape_debug()
            ));
        }
        return Ok(lookup(name, vars, report));
    }
    // `:` forms treat an empty value like an unset one.
    let present = match value {
        Some(v) => !op.starts_with(':') || !v.is_empty(),
        None => false,
    };
    match op.trim_start_matches(':') {
        "-" if present => Ok(value.cloned().unwrap_or_default()),
        "-" => interpolate(arg, vars, report),
        "?" if present => Ok(value.cloned().unwrap_or_default()),
        "?" => {
            let message = interpolate(arg, vars, report)?;
            let state = if value.is_some() { "empty" } else { "not set" };
            Err(if message.is_empty() {
                format!("required variable `{name}` is {state}")
            } else {
                format!("required variable `{name}` is {state}: {message}")
            })
        }
        "+" if present => interpolate(arg, vars, report),
        _ => Ok(String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        [("A", "1"), ("EMPTY", ""), ("NAME", "web")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn run(s: &str) -> Result<String, String> {
        interpolate(s, &vars(), &mut Report::default())
    }

    #[test]
    fn expands_every_compose_variable_form() {
        assert_eq!(run("x$A-${A}").unwrap(), "x1-1");
        assert_eq!(run("$$A").unwrap(), "$A");
        assert_eq!(run("${EMPTY:-d}|${EMPTY-d}|${NOPE-d}").unwrap(), "d||d");
        assert_eq!(
            run("${A:+yes}|${EMPTY:+yes}|${EMPTY+yes}").unwrap(),
            "yes||yes"
        );
        assert_eq!(run("${NOPE:-${NAME}-x}").unwrap(), "web-x");
        assert_eq!(run("${NOPE:-a}}").unwrap(), "a}");
        let err = run("${NOPE:?give a password}").unwrap_err();
        assert!(err.contains("`NOPE` is not set: give a password"), "{err}");
        assert!(run("${EMPTY?fine}").is_ok());
        assert!(run("${EMPTY:?no}").is_err());
        assert!(run("cost $5").is_err());
        assert!(run("${A").is_err());
        assert!(run("${A B}").is_err());
        assert!(run("$").is_err());
        let mut report = Report::default();
        assert_eq!(interpolate("[$NOPE]", &vars(), &mut report).unwrap(), "[]");
        assert!(report.unset.contains("NOPE"));
    }

    #[test]
    fn names_the_yaml_path_of_a_failed_interpolation() {
        let mut v: Value =
            serde_norway::from_str("services:\n  db:\n    environment:\n      P: ${PW:?set it}\n")
                .unwrap();
        let err = interpolate_tree(&mut v, "", &vars(), &mut Report::default()).unwrap_err();
        assert!(
            err.starts_with("services.db.environment.P: required variable `PW`"),
            "{err}"
        );
    }

    #[test]
    fn reads_dotenv_quotes_comments_and_export() {
        let vars =
            parse_dotenv("# c\nexport A=1\nB = 'x # y'\nC=\"a\\nb\"\nD=plain # comment\nE=\n")
                .unwrap();
        assert_eq!(vars["A"], "1");
        assert_eq!(vars["B"], "x # y");
        assert_eq!(vars["C"], "a\nb");
        assert_eq!(vars["D"], "plain");
        assert_eq!(vars["E"], "");
        assert!(parse_dotenv("nope").is_err());
    }
}
