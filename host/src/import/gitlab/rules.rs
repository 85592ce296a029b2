//! GitLab `rules:` as one CEL `if`: each rule's `if` expression translated (`$VAR`, strings,
//! `==`, `!=`, `=~`, `!~`, `&&`, `||`, parentheses), and the list folded the way GitLab reads it
//! (the first rule that matches decides; none matching means the job is not added).

use super::template_to_cel;
use serde_norway::Value;

/// What a `$NAME` in an expression stands for.
pub(crate) enum Var {
    /// A CEL expression of type string.
    Cel(String),
    /// No equivalent in orch; the reason.
    Unknown(String),
}

/// The folded condition: `None` when the job always runs.
pub(crate) struct Folded {
    pub cel: Option<String>,
    /// The rules never let the job run.
    pub never: bool,
    /// What could not be translated, each with what was done instead.
    pub notes: Vec<(String, String)>,
}

/// Fold `rules` into one condition; `var` maps variables, and `manual` is the CEL that stands
/// for a person starting the job (`when: manual`), e.g. a boolean input.
pub(crate) fn fold(rules: &[Value], var: &dyn Fn(&str) -> Var, manual: &str) -> Folded {
    let mut notes = Vec::new();
    // GitLab: no rule matches -> not added.
    let mut expr = Cel::False;
    for (i, rule) in rules.iter().enumerate().rev() {
        let at = format!("rules[{i}]");
        let when = rule
            .get("when")
            .and_then(Value::as_str)
            .unwrap_or("on_success");
        let outcome = match when {
            "on_success" | "always" => Cel::True,
            "never" => Cel::False,
            "delayed" => {
                notes.push((
                    format!("{at}.when: delayed"),
                    "orch has no delayed start; the job runs without waiting".into(),
                ));
                Cel::True
            }
            "manual" => {
                notes.push((
                    format!("{at}.when: manual"),
                    format!("orch has no manual gate: the job runs when `{manual}` is true"),
                ));
                Cel::Expr(manual.to_string(), 3)
            }
            other => {
                notes.push((
                    format!("{at}.when: {other}"),
                    "no equivalent (orch runs a step when its needs succeeded or were skipped); this rule does not run the job".into(),
                ));
                Cel::False
            }
        };
        let runs = outcome != Cel::False;
        for key in ["changes", "exists"] {
            if let Some(v) = rule.get(key) {
                notes.push((
                    format!("{at}.{key}: {}", super::load::one_line(v)),
                    format!(
                        "an orch run is not tied to a commit, so `{key}` cannot be checked; treated as matching"
                    ),
                ));
            }
        }
        for key in ["variables", "allow_failure", "needs", "start_in"] {
            if rule.get(key).is_some() {
                notes.push((
                    format!("{at}.{key}"),
                    "a rule's own settings are not translated; ignored".into(),
                ));
            }
        }
        // What has no equivalent is taken the way that keeps the job: true in a rule that
        // runs it, false in one that stops it.
        let (assume, taken) = match runs {
            true => (Cel::True, "taken as true, so this rule can run the job"),
            false => (
                Cel::False,
                "taken as false, so this rule does not stop the job",
            ),
        };
        let cond = match rule.get("if").and_then(Value::as_str) {
            None => Cel::True,
            Some(text) => match translate(text, var, &assume) {
                Ok((cel, unknown)) => {
                    for reason in unknown {
                        notes.push((format!("{at}.if: {text}"), format!("{reason}; {taken}")));
                    }
                    cel
                }
                Err(e) => {
                    notes.push((
                        format!("{at}.if: {text}"),
                        format!("cannot read the expression ({e}); {taken}"),
                    ));
                    assume.clone()
                }
            },
        };
        expr = match outcome {
            Cel::True => Cel::or(cond, expr),
            Cel::False => Cel::and(Cel::not(cond), expr),
            gate => Cel::or(Cel::and(cond.clone(), gate), Cel::and(Cel::not(cond), expr)),
        };
    }
    Folded {
        never: matches!(expr, Cel::False),
        cel: match expr {
            Cel::True => None,
            Cel::False => Some("false".into()),
            Cel::Expr(text, _) => Some(text),
        },
        notes,
    }
}

/// A CEL expression with its precedence (1: `||`, 2: `&&`, 3: a comparison or call, 4: a
/// negation), or a constant.
#[derive(Debug, Clone, PartialEq)]
enum Cel {
    True,
    False,
    Expr(String, u8),
}

impl Cel {
    fn text(&self, at_least: u8) -> String {
        match self {
            Cel::True => "true".into(),
            Cel::False => "false".into(),
            Cel::Expr(text, prec) if *prec < at_least => format!("({text})"),
            Cel::Expr(text, _) => text.clone(),
        }
    }

    fn or(a: Cel, b: Cel) -> Cel {
        match (a, b) {
            (Cel::True, _) | (_, Cel::True) => Cel::True,
            (Cel::False, x) | (x, Cel::False) => x,
            (a, b) => Cel::Expr(format!("{} || {}", a.text(1), b.text(1)), 1),
        }
    }

    fn and(a: Cel, b: Cel) -> Cel {
        match (a, b) {
            (Cel::False, _) | (_, Cel::False) => Cel::False,
            (Cel::True, x) | (x, Cel::True) => x,
            (a, b) => Cel::Expr(format!("{} && {}", a.text(2), b.text(2)), 2),
        }
    }

    fn not(a: Cel) -> Cel {
        match a {
            Cel::True => Cel::False,
            Cel::False => Cel::True,
            other => Cel::Expr(format!("!{}", other.text(4)), 4),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Var(String),
    Str(String),
    Regex(String),
    Null,
    Op(&'static str),
    Open,
    Close,
}

fn tokens(text: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            ' ' | '\t' | '\n' => i += 1,
            '(' => {
                out.push(Token::Open);
                i += 1;
            }
            ')' => {
                out.push(Token::Close);
                i += 1;
            }
            '$' => {
                let braced = next == Some('{');
                let start = if braced { i + 2 } else { i + 1 };
                let mut end = start;
                while end < chars.len() && (chars[end].is_ascii_alphanumeric() || chars[end] == '_')
                {
                    end += 1;
                }
                if end == start {
                    return Err(format!("`$` without a name at {i}"));
                }
                out.push(Token::Var(chars[start..end].iter().collect()));
                i = end;
                if braced {
                    if chars.get(i) != Some(&'}') {
                        return Err("unclosed `${`".into());
                    }
                    i += 1;
                }
            }
            '"' | '\'' => {
                let end = chars[i + 1..]
                    .iter()
                    .position(|&d| d == c)
                    .ok_or("unclosed string")?;
                out.push(Token::Str(chars[i + 1..i + 1 + end].iter().collect()));
                i += end + 2;
            }
            '/' if matches!(out.last(), Some(Token::Op("=~" | "!~"))) => {
                let mut end = i + 1;
                while end < chars.len() && chars[end] != '/' {
                    end += if chars[end] == '\\' { 2 } else { 1 };
                }
                if end >= chars.len() {
                    return Err("unclosed regular expression".into());
                }
                let mut pattern: String = chars[i + 1..end].iter().collect();
                i = end + 1;
                while i < chars.len() && chars[i].is_ascii_alphabetic() {
                    if chars[i] == 'i' {
                        pattern = format!("(?i){pattern}");
                    }
                    i += 1;
                }
                out.push(Token::Regex(pattern));
            }
            _ => {
                let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
                if let Some(op) = ["==", "!=", "=~", "!~", "&&", "||"]
                    .into_iter()
                    .find(|o| *o == two)
                {
                    out.push(Token::Op(op));
                    i += 2;
                } else if text[text.char_indices().nth(i).map_or(0, |(b, _)| b)..]
                    .starts_with("null")
                {
                    out.push(Token::Null);
                    i += 4;
                } else {
                    return Err(format!("unexpected `{c}`"));
                }
            }
        }
    }
    Ok(out)
}

/// An operand: CEL of type string, or absent (`null`, an unknown variable).
enum Operand {
    Cel(String),
    Null,
    Unknown,
}

struct Parser<'a> {
    tokens: Vec<Token>,
    at: usize,
    var: &'a dyn Fn(&str) -> Var,
    /// What a comparison with no equivalent counts as.
    assume: &'a Cel,
    unknown: Vec<String>,
}

/// Translate one `if` expression; the CEL and why parts of it were taken as true.
fn translate(
    text: &str,
    var: &dyn Fn(&str) -> Var,
    assume: &Cel,
) -> Result<(Cel, Vec<String>), String> {
    let mut parser = Parser {
        tokens: tokens(text)?,
        at: 0,
        var,
        assume,
        unknown: Vec::new(),
    };
    let cel = parser.or()?;
    if parser.at != parser.tokens.len() {
        return Err(format!("unexpected {:?}", parser.tokens[parser.at]));
    }
    Ok((cel, parser.unknown))
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn or(&mut self) -> Result<Cel, String> {
        let mut left = self.and()?;
        while self.peek() == Some(&Token::Op("||")) {
            self.at += 1;
            let right = self.and()?;
            left = Cel::or(left, right);
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Cel, String> {
        let mut left = self.comparison()?;
        while self.peek() == Some(&Token::Op("&&")) {
            self.at += 1;
            let right = self.comparison()?;
            left = Cel::and(left, right);
        }
        Ok(left)
    }

    fn comparison(&mut self) -> Result<Cel, String> {
        if self.peek() == Some(&Token::Open) {
            self.at += 1;
            let inner = self.or()?;
            if self.peek() != Some(&Token::Close) {
                return Err("missing `)`".into());
            }
            self.at += 1;
            return Ok(inner);
        }
        let left = self.operand()?;
        let op = match self.peek() {
            Some(Token::Op(op @ ("==" | "!=" | "=~" | "!~"))) => *op,
            // A bare operand: defined and not empty.
            _ => {
                return Ok(match left {
                    Operand::Cel(cel) => Cel::Expr(format!("{cel} != \"\""), 3),
                    Operand::Null => Cel::False,
                    Operand::Unknown => self.assume.clone(),
                });
            }
        };
        self.at += 1;
        if matches!(op, "=~" | "!~") {
            let Some(Token::Regex(pattern)) = self.tokens.get(self.at).cloned() else {
                return Err(format!("`{op}` needs a /regular expression/"));
            };
            self.at += 1;
            return Ok(match left {
                Operand::Cel(cel) => {
                    let matches = format!("{cel}.matches({})", quote(&pattern));
                    let cel = Cel::Expr(matches, 3);
                    if op == "=~" { cel } else { Cel::not(cel) }
                }
                Operand::Null => Cel::False,
                Operand::Unknown => self.assume.clone(),
            });
        }
        let right = self.operand()?;
        let equal = op == "==";
        Ok(match (left, right) {
            (Operand::Unknown, _) | (_, Operand::Unknown) => self.assume.clone(),
            (Operand::Null, Operand::Null) => {
                if equal {
                    Cel::True
                } else {
                    Cel::False
                }
            }
            // Inputs and variables are always defined here.
            (Operand::Null, _) | (_, Operand::Null) => {
                if equal {
                    Cel::False
                } else {
                    Cel::True
                }
            }
            // Two literals (variables with fixed values) are compared here.
            (Operand::Cel(a), Operand::Cel(b)) => match (literal(&a), literal(&b)) {
                (Some(x), Some(y)) if (x == y) == equal => Cel::True,
                (Some(_), Some(_)) => Cel::False,
                _ => Cel::Expr(format!("{a} {op} {b}"), 3),
            },
        })
    }

    fn operand(&mut self) -> Result<Operand, String> {
        let token = self.peek().cloned().ok_or("the expression ends early")?;
        self.at += 1;
        match token {
            Token::Null => Ok(Operand::Null),
            Token::Str(text) => Ok(Operand::Cel(template_to_cel(&text))),
            Token::Var(name) => match (self.var)(&name) {
                Var::Cel(cel) => Ok(Operand::Cel(cel)),
                Var::Unknown(reason) => {
                    self.unknown.push(reason);
                    Ok(Operand::Unknown)
                }
            },
            other => Err(format!("expected a variable or a string, found {other:?}")),
        }
    }
}

/// The text of a CEL string literal made by [`quote`] (no concatenation).
fn literal(cel: &str) -> Option<String> {
    let inner = cel.strip_prefix('\'')?.strip_suffix('\'')?;
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '\'' => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

/// `text` as a CEL string literal (single-quoted, so it reads well inside a TOML string).
pub(crate) fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(name: &str) -> Var {
        match name {
            "LEVEL" => Var::Cel("'info'".into()),
            "DEPLOY" => Var::Cel("env.DEPLOY".into()),
            other => Var::Unknown(format!("`${other}` has no equivalent in orch")),
        }
    }

    fn rules(yaml: &str) -> Folded {
        let value: Value = serde_norway::from_str(yaml).unwrap();
        fold(value.as_sequence().unwrap(), &var, "inputs.run_job")
    }

    #[test]
    fn an_input_rule_with_a_never_fallback_is_the_input_test() {
        let folded = rules("- if: '\"${{inputs.db_user}}\" != \"\"'\n- when: never\n");
        assert_eq!(folded.cel.as_deref(), Some("inputs.db_user != ''"));
        assert!(folded.notes.is_empty());
        let both = rules(
            "- if: '\"${{inputs.topic}}\" != \"\" && \"${{inputs.group}}\" != \"\"'\n- when: never\n",
        );
        assert_eq!(
            both.cel.as_deref(),
            Some("inputs.topic != '' && inputs.group != ''")
        );
    }

    #[test]
    fn rules_fold_in_order_with_never_and_manual() {
        let folded = rules(
            "- if: $CI_COMMIT_TAG\n  when: never\n- if: '$DEPLOY =~ /^y(es)?$/i'\n- when: manual\n",
        );
        assert_eq!(
            folded.cel.as_deref(),
            Some("env.DEPLOY.matches('(?i)^y(es)?$') || inputs.run_job"),
            "the unknown CI_COMMIT_TAG is taken as false in its `never` rule"
        );
        let tag = folded
            .notes
            .iter()
            .find(|(k, _)| k.contains("CI_COMMIT_TAG"));
        assert!(
            tag.unwrap()
                .1
                .ends_with("so this rule does not stop the job")
        );
        assert!(folded.notes.iter().any(|(k, _)| k.contains("when: manual")));
        let manual = rules("- if: '$DEPLOY == \"x\"'\n  when: never\n- when: manual\n");
        assert_eq!(
            manual.cel.as_deref(),
            Some("!(env.DEPLOY == 'x') && inputs.run_job")
        );
        let fixed = rules("- if: '$LEVEL == \"debug\"'\n  when: never\n- when: manual\n");
        assert_eq!(
            fixed.cel.as_deref(),
            Some("inputs.run_job"),
            "literals compare at import"
        );
    }

    #[test]
    fn changes_and_unknown_variables_are_reported_not_dropped() {
        let folded = rules("- if: $CI_PIPELINE_SOURCE == \"push\"\n  changes: [infra/**/*]\n");
        assert!(folded.cel.is_none(), "treated as matching: always runs");
        let keys: Vec<&str> = folded.notes.iter().map(|(k, _)| k.as_str()).collect();
        assert!(
            keys.iter().any(|k| k.starts_with("rules[0].changes")),
            "{keys:?}"
        );
        assert!(
            keys.iter().any(|k| k.contains("CI_PIPELINE_SOURCE")),
            "{keys:?}"
        );
        let never = rules("- when: never\n");
        assert!(never.never);
    }

    #[test]
    fn nested_parentheses_and_null_compare_as_gitlab_does() {
        let folded = rules("- if: '($DEPLOY != null) && ($DEPLOY == \"a\" || $DEPLOY == \"b\")'\n");
        assert_eq!(
            folded.cel.as_deref(),
            Some("env.DEPLOY == 'a' || env.DEPLOY == 'b'")
        );
        assert!(
            rules("- if: '$LEVEL ==='\n").notes[0]
                .1
                .contains("cannot read")
        );
    }
}
