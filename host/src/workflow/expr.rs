//! Expressions (CEL) for `if` and `${{ ... }}` templates, the names they read, and evaluation.

use cel::common::ast::{EntryExpr, Expr as Ast, IdedExpr};
use serde_json::Value as Json;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

/// The CEL environment: the standard library plus the strings, lists and math extensions
/// (`upperAscii()`, `split()`, `math.greatest()`...).
fn env() -> Arc<cel::Env> {
    static ENV: std::sync::LazyLock<Arc<cel::Env>> = std::sync::LazyLock::new(|| {
        let mut env = cel::Env::stdlib();
        for extension in [
            cel::extensions::strings,
            cel::extensions::lists,
            cel::extensions::math,
        ] {
            if let Err(e) = env.add_extension(extension) {
                tracing::error!("cannot add a CEL extension: {e}");
            }
        }
        Arc::new(env)
    });
    ENV.clone()
}

/// The top-level names an expression may read.
pub const ROOTS: &[&str] = &["inputs", "steps", "secrets", "env", "run"];
/// The fields of `run`.
pub const RUN_FIELDS: &[&str] = &["id", "trigger", "workflow"];

/// Why an expression could not be compiled or evaluated.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ExprError {
    #[error("expression `{expr}` does not parse: {message}")]
    Parse { expr: String, message: String },
    #[error("template is missing its closing `}}}}`")]
    Unclosed,
    #[error("template `${{{{ }}}}` is empty")]
    Empty,
    #[error("expression `{expr}` failed: {message}")]
    Eval { expr: String, message: String },
}

/// A name an expression reads, e.g. `inputs.db_user` or `steps.build.outputs.image`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// `inputs.NAME`, or all of `inputs` when None.
    Input(Option<String>),
    /// `steps.ID...`, or all of `steps` when None.
    Step(Option<String>),
    Secret(Option<String>),
    Env(Option<String>),
    Run(Option<String>),
    /// A top-level name that is none of the above.
    Unknown(String),
}

/// A compiled CEL expression with the names it reads.
#[derive(Clone)]
pub struct Expr {
    pub source: String,
    program: Arc<cel::Program>,
    pub references: Vec<Reference>,
    /// Set when the whole expression is a plain name like `steps.x.outputs.rows`: it is then
    /// read straight from the scope's JSON, without converting the scope to CEL values (large
    /// step outputs made that the slowest part of a run).
    path: Option<Vec<String>>,
}

impl fmt::Debug for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Expr({:?})", self.source)
    }
}

impl Expr {
    /// Compile `source`; fails with the parser's message.
    pub fn compile(source: &str) -> Result<Self, ExprError> {
        let source = source.trim();
        if source.is_empty() {
            return Err(ExprError::Empty);
        }
        let program = env().compile(source).map_err(|e| ExprError::Parse {
            expr: source.to_string(),
            message: e.to_string().lines().next().unwrap_or_default().to_string(),
        })?;
        let mut names = Vec::new();
        collect_names(program.expression(), &mut Vec::new(), &mut names);
        let references = names.iter().map(|segments| classify(segments)).collect();
        let path = qualified_name(program.expression())
            .filter(|segments| super::expr::ROOTS.contains(&segments[0].as_str()));
        Ok(Self {
            source: source.to_string(),
            program: Arc::new(program),
            references,
            path,
        })
    }

    /// Evaluate against `scope`, as JSON.
    pub fn eval(&self, scope: &Scope) -> Result<Json, ExprError> {
        self.eval_shared(scope).map(Cow::into_owned)
    }

    /// Evaluate against `scope`; a plain name is borrowed from the scope, not copied.
    pub fn eval_shared<'s>(&self, scope: &'s Scope) -> Result<Cow<'s, Json>, ExprError> {
        if let Some(path) = &self.path {
            return self.lookup(path, scope);
        }
        let mut context = cel::Context::with_env(env());
        for (name, value) in scope.roots() {
            if self.reads_root(name) {
                context.add_variable_from_value(name, json_to_cel(value));
            }
        }
        if self.reads_root("steps") {
            let steps: HashMap<String, cel::Value> = scope
                .steps
                .iter()
                .map(|(id, step)| (id.clone(), json_to_cel(step)))
                .collect();
            context.add_variable_from_value("steps", cel::Value::from(steps));
        }
        let fail = |message: String| ExprError::Eval {
            expr: self.source.clone(),
            message,
        };
        let value = self
            .program
            .execute(&context)
            .map_err(|e| fail(e.to_string()))?;
        value
            .json()
            .map(Cow::Owned)
            .map_err(|e| fail(e.to_string()))
    }

    /// Read a plain name from the scope; a missing key fails like CEL's `No such key`.
    fn lookup<'s>(&self, path: &[String], scope: &'s Scope) -> Result<Cow<'s, Json>, ExprError> {
        let missing = |key: &str| ExprError::Eval {
            expr: self.source.clone(),
            message: format!("No such key: {key}"),
        };
        let (root, mut rest) = path.split_first().expect("a name has a root");
        let mut value = if root == "steps" {
            let Some((id, after)) = rest.split_first() else {
                return Ok(Cow::Owned(scope.steps_json()));
            };
            rest = after;
            &**scope.steps.get(id).ok_or_else(|| missing(id))?
        } else {
            scope
                .roots()
                .into_iter()
                .find(|(name, _)| name == root)
                .map(|(_, v)| v)
                .expect("the root was checked at compile time")
        };
        for key in rest {
            value = value.get(key).ok_or_else(|| missing(key))?;
        }
        Ok(Cow::Borrowed(value))
    }

    /// Evaluate as a condition: must be a boolean.
    pub fn eval_bool(&self, scope: &Scope) -> Result<bool, ExprError> {
        match &*self.eval_shared(scope)? {
            Json::Bool(b) => Ok(*b),
            other => Err(ExprError::Eval {
                expr: self.source.clone(),
                message: format!("expected a boolean, got {other}"),
            }),
        }
    }

    fn reads_root(&self, root: &str) -> bool {
        self.references.iter().any(|r| {
            matches!(
                (r, root),
                (Reference::Input(_), "inputs")
                    | (Reference::Step(_), "steps")
                    | (Reference::Secret(_), "secrets")
                    | (Reference::Env(_), "env")
                    | (Reference::Run(_), "run")
            )
        })
    }
}

/// Collect qualified names (`a.b.c` as segments) read by `expr`, skipping comprehension
/// variables in `bound`.
fn collect_names(expr: &IdedExpr, bound: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match &expr.expr {
        Ast::Ident(name) => {
            if !bound.contains(name) {
                out.push(vec![name.clone()]);
            }
        }
        Ast::Select(select) => {
            if let Some(mut segments) = qualified_name(expr) {
                if !bound.contains(&segments[0]) {
                    if select.test {
                        segments.pop(); // has(a.b): reads `a`, tests `b`
                    }
                    out.push(segments);
                }
            } else {
                collect_names(&select.operand, bound, out);
            }
        }
        Ast::Call(call) => {
            if let Some(target) = &call.target {
                collect_names(target, bound, out);
            }
            for arg in &call.args {
                collect_names(arg, bound, out);
            }
        }
        Ast::Comprehension(c) => {
            collect_names(&c.iter_range, bound, out);
            collect_names(&c.accu_init, bound, out);
            let depth = bound.len();
            bound.push(c.iter_var.clone());
            bound.extend(c.iter_var2.clone());
            bound.push(c.accu_var.clone());
            collect_names(&c.loop_cond, bound, out);
            collect_names(&c.loop_step, bound, out);
            collect_names(&c.result, bound, out);
            bound.truncate(depth);
        }
        Ast::List(list) => {
            for e in &list.elements {
                collect_names(e, bound, out);
            }
        }
        Ast::Map(map) => {
            for entry in &map.entries {
                if let EntryExpr::MapEntry(e) = &entry.expr {
                    collect_names(&e.key, bound, out);
                    collect_names(&e.value, bound, out);
                }
            }
        }
        Ast::Struct(s) => {
            for entry in &s.entries {
                if let EntryExpr::StructField(f) = &entry.expr {
                    collect_names(&f.value, bound, out);
                }
            }
        }
        Ast::Literal(_) | Ast::Unspecified => {}
    }
}

/// `a.b.c` as `["a", "b", "c"]` when `expr` is an identifier with field selections.
fn qualified_name(expr: &IdedExpr) -> Option<Vec<String>> {
    let mut segments = Vec::new();
    let mut current = expr;
    loop {
        match &current.expr {
            Ast::Ident(name) => {
                segments.push(name.clone());
                segments.reverse();
                return Some(segments);
            }
            Ast::Select(select) => {
                segments.push(select.field.clone());
                current = &select.operand;
            }
            _ => return None,
        }
    }
}

fn classify(segments: &[String]) -> Reference {
    let second = segments.get(1).cloned();
    match segments[0].as_str() {
        "inputs" => Reference::Input(second),
        "steps" => Reference::Step(second),
        "secrets" => Reference::Secret(second),
        "env" => Reference::Env(second),
        "run" => Reference::Run(second),
        other => Reference::Unknown(other.to_string()),
    }
}

/// Convert JSON to a CEL value; integers stay integers so `inputs.n > 3` type-checks.
pub fn json_to_cel(value: &Json) -> cel::Value {
    match value {
        Json::Null => cel::Value::Null,
        Json::Bool(b) => cel::Value::Bool(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => cel::Value::Int(i),
            None => cel::Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => cel::Value::String(Arc::new(s.clone())),
        Json::Array(items) => cel::Value::List(Arc::new(items.iter().map(json_to_cel).collect())),
        Json::Object(map) => {
            let map: HashMap<String, cel::Value> = map
                .iter()
                .map(|(k, v)| (k.clone(), json_to_cel(v)))
                .collect();
            cel::Value::from(map)
        }
    }
}

/// What expressions can read while a run is going: each root is a JSON object.
/// Shared (`Arc`) so each step's scope costs no copy of large inputs or outputs.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub inputs: Arc<Json>,
    /// `ID -> { status, outputs: {..} }` for the finished steps a step reads, each shared with
    /// the run: a step that reads a 100k-row output gets it without a copy.
    pub steps: BTreeMap<String, Arc<Json>>,
    pub secrets: Arc<Json>,
    pub env: Arc<Json>,
    pub run: Arc<Json>,
}

impl Scope {
    /// The roots held as one JSON value each (`steps` is held per step).
    fn roots(&self) -> [(&'static str, &Json); 4] {
        [
            ("inputs", &*self.inputs),
            ("secrets", &*self.secrets),
            ("env", &*self.env),
            ("run", &*self.run),
        ]
    }

    /// `steps` as one JSON object (a copy), for an expression that reads all of it.
    fn steps_json(&self) -> Json {
        Json::Object(
            self.steps
                .iter()
                .map(|(id, step)| (id.clone(), Json::clone(step)))
                .collect(),
        )
    }
}

/// One piece of a templated string.
#[derive(Debug, Clone)]
pub enum Part {
    Text(String),
    Expr(Expr),
}

/// A `with` value whose strings may hold `${{ expr }}` templates.
#[derive(Debug, Clone)]
pub enum Template {
    /// No template inside: used as is.
    Literal(Json),
    /// A string with at least one `${{ }}`.
    String(Vec<Part>),
    Array(Vec<Template>),
    Object(Vec<(String, Template)>),
}

impl Template {
    /// Parse every string of `value` for templates; errors carry the offending text.
    pub fn parse(value: &Json) -> Result<Self, (String, ExprError)> {
        Ok(match value {
            Json::String(s) if s.contains("${{") => {
                Template::String(parse_parts(s).map_err(|e| (s.clone(), e))?)
            }
            Json::Array(items) if contains_template(value) => Template::Array(
                items
                    .iter()
                    .map(Template::parse)
                    .collect::<Result<_, _>>()?,
            ),
            Json::Object(map) if contains_template(value) => Template::Object(
                map.iter()
                    .map(|(k, v)| Ok((k.clone(), Template::parse(v)?)))
                    .collect::<Result<_, _>>()?,
            ),
            other => Template::Literal(other.clone()),
        })
    }

    /// Every expression inside, for reference checks.
    pub fn exprs(&self) -> Vec<&Expr> {
        let mut out = Vec::new();
        self.collect_exprs(&mut out);
        out
    }

    fn collect_exprs<'a>(&'a self, out: &mut Vec<&'a Expr>) {
        match self {
            Template::Literal(_) => {}
            Template::String(parts) => out.extend(parts.iter().filter_map(|p| match p {
                Part::Expr(e) => Some(e),
                Part::Text(_) => None,
            })),
            Template::Array(items) => items.iter().for_each(|t| t.collect_exprs(out)),
            Template::Object(fields) => fields.iter().for_each(|(_, t)| t.collect_exprs(out)),
        }
    }

    /// Substitute every template. A string that is exactly one `${{ expr }}` takes the
    /// expression's type (number, list...); otherwise values are spliced into the text.
    pub fn render(&self, scope: &Scope) -> Result<Json, ExprError> {
        self.render_shared(scope).map(Rendered::into_value)
    }

    /// [`Template::render`], borrowing what it can: literals from the template, and the values
    /// that plain names (`${{ steps.x.outputs.rows }}`) read from the scope.
    pub fn render_shared<'a>(&'a self, scope: &'a Scope) -> Result<Rendered<'a>, ExprError> {
        Ok(match self {
            Template::Literal(v) => Rendered::Value(Cow::Borrowed(v)),
            Template::String(parts) => match parts.as_slice() {
                [Part::Expr(e)] => Rendered::Value(e.eval_shared(scope)?),
                parts => {
                    let mut text = String::new();
                    for part in parts {
                        match part {
                            Part::Text(t) => text.push_str(t),
                            Part::Expr(e) => match &*e.eval_shared(scope)? {
                                Json::String(s) => text.push_str(s),
                                other => text.push_str(&other.to_string()),
                            },
                        }
                    }
                    Rendered::Value(Cow::Owned(Json::String(text)))
                }
            },
            Template::Array(items) => Rendered::Array(
                items
                    .iter()
                    .map(|t| t.render_shared(scope))
                    .collect::<Result<_, _>>()?,
            ),
            Template::Object(fields) => Rendered::Object(
                fields
                    .iter()
                    .map(|(k, t)| Ok((k.as_str(), t.render_shared(scope)?)))
                    .collect::<Result<_, ExprError>>()?,
            ),
        })
    }

    /// The value with every template left as its text, to check the rest against a schema
    /// before run time (string-typed fields then pass; others are excused by the caller).
    pub fn skeleton(&self) -> Json {
        match self {
            Template::Literal(v) => v.clone(),
            Template::String(parts) => Json::String(
                parts
                    .iter()
                    .map(|p| match p {
                        Part::Text(t) => t.clone(),
                        Part::Expr(e) => format!("${{{{ {} }}}}", e.source),
                    })
                    .collect(),
            ),
            Template::Array(items) => Json::Array(items.iter().map(Template::skeleton).collect()),
            Template::Object(fields) => Json::Object(
                fields
                    .iter()
                    .map(|(k, t)| (k.clone(), t.skeleton()))
                    .collect(),
            ),
        }
    }
}

/// A rendered `with` that borrows its large parts (see [`Template::render_shared`]): it
/// serialises as the value it stands for, byte for byte, and becomes that value on request.
#[derive(Debug, Clone)]
pub enum Rendered<'a> {
    Value(Cow<'a, Json>),
    Array(Vec<Rendered<'a>>),
    /// Keys in the template's order, which is the order of a JSON object's keys.
    Object(Vec<(&'a str, Rendered<'a>)>),
}

impl Rendered<'_> {
    /// The value, copying what is borrowed.
    pub fn into_value(self) -> Json {
        match self {
            Rendered::Value(v) => v.into_owned(),
            Rendered::Array(items) => {
                Json::Array(items.into_iter().map(Rendered::into_value).collect())
            }
            Rendered::Object(fields) => Json::Object(
                fields
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.into_value()))
                    .collect(),
            ),
        }
    }

    /// The value, as a copy.
    pub fn to_value(&self) -> Json {
        self.clone().into_value()
    }

    /// The values it owns (what CEL computed, spliced text), without what it borrows: to free
    /// them elsewhere.
    pub fn into_owned_parts(self) -> Vec<Json> {
        fn gather(rendered: Rendered<'_>, owned: &mut Vec<Json>) {
            match rendered {
                Rendered::Value(Cow::Owned(v)) => owned.push(v),
                Rendered::Value(Cow::Borrowed(_)) => {}
                Rendered::Array(items) => items.into_iter().for_each(|r| gather(r, owned)),
                Rendered::Object(fields) => fields.into_iter().for_each(|(_, r)| gather(r, owned)),
            }
        }
        let mut owned = Vec::new();
        gather(self, &mut owned);
        owned
    }

    /// Whether the value holds at least `n` JSON values (counting stops there).
    pub fn holds_at_least(&self, n: usize) -> bool {
        /// Count one value off `left`; true once none is left.
        fn tick(left: &mut usize) -> bool {
            *left = left.saturating_sub(1);
            *left == 0
        }
        fn spent(value: &Json, left: &mut usize) -> bool {
            tick(left)
                || match value {
                    Json::Array(items) => items.iter().any(|v| spent(v, left)),
                    Json::Object(map) => map.values().any(|v| spent(v, left)),
                    _ => false,
                }
        }
        fn walk(rendered: &Rendered<'_>, left: &mut usize) -> bool {
            match rendered {
                Rendered::Value(v) => spent(v, left),
                Rendered::Array(items) => tick(left) || items.iter().any(|r| walk(r, left)),
                Rendered::Object(fields) => tick(left) || fields.iter().any(|(_, r)| walk(r, left)),
            }
        }
        n == 0 || walk(self, &mut { n })
    }
}

impl serde::Serialize for Rendered<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self {
            Rendered::Value(v) => v.serialize(serializer),
            Rendered::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Rendered::Object(fields) => {
                let mut map = serializer.serialize_map(Some(fields.len()))?;
                for (k, v) in fields {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

fn contains_template(value: &Json) -> bool {
    match value {
        Json::String(s) => s.contains("${{"),
        Json::Array(items) => items.iter().any(contains_template),
        Json::Object(map) => map.values().any(contains_template),
        _ => false,
    }
}

fn parse_parts(mut text: &str) -> Result<Vec<Part>, ExprError> {
    let mut parts = Vec::new();
    while let Some(start) = text.find("${{") {
        if start > 0 {
            parts.push(Part::Text(text[..start].to_string()));
        }
        let rest = &text[start + 3..];
        let end = rest.find("}}").ok_or(ExprError::Unclosed)?;
        parts.push(Part::Expr(Expr::compile(&rest[..end])?));
        text = &rest[end + 2..];
    }
    if !text.is_empty() {
        parts.push(Part::Text(text.to_string()));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scope() -> Scope {
        Scope {
            inputs: json!({"db_user": "etl", "n": 4, "tags": ["a", "b"]}).into(),
            steps: [(
                "make".to_string(),
                json!({"status": "succeeded", "outputs": {"pw": "s3cret"}}).into(),
            )]
            .into(),
            ..Scope::default()
        }
    }

    #[test]
    fn evaluates_condition_on_inputs() {
        let e = Expr::compile("inputs.db_user != '' && inputs.n > 3").unwrap();
        assert!(e.eval_bool(&scope()).unwrap());
    }

    #[test]
    fn collects_references_but_not_comprehension_variables() {
        let e = Expr::compile("inputs.tags.all(t, t != steps.make.outputs.pw) && has(inputs.x)")
            .unwrap();
        assert!(
            e.references
                .contains(&Reference::Input(Some("tags".into())))
        );
        assert!(e.references.contains(&Reference::Step(Some("make".into()))));
        assert!(e.references.contains(&Reference::Input(None)));
        assert!(
            !e.references
                .iter()
                .any(|r| matches!(r, Reference::Unknown(_)))
        );
    }

    #[test]
    fn plain_names_are_read_directly_and_missing_keys_fail() {
        let e = Expr::compile("steps.make.outputs.pw").unwrap();
        assert_eq!(e.eval(&scope()).unwrap(), json!("s3cret"));
        let missing = Expr::compile("steps.make.outputs.nope").unwrap();
        assert!(
            missing
                .eval(&scope())
                .unwrap_err()
                .to_string()
                .contains("No such key: nope")
        );
        let computed = Expr::compile("inputs.n + 1").unwrap();
        assert_eq!(computed.eval(&scope()).unwrap(), json!(5));
    }

    #[test]
    fn unknown_root_is_reported() {
        let e = Expr::compile("input.db_user == ''").unwrap();
        assert_eq!(e.references, vec![Reference::Unknown("input".into())]);
    }

    #[test]
    fn whole_template_keeps_type_and_mixed_template_splices() {
        let t =
            Template::parse(&json!({"n": "${{ inputs.n }}", "s": "user=${{ inputs.db_user }}!"}))
                .unwrap();
        assert_eq!(
            t.render(&scope()).unwrap(),
            json!({"n": 4, "s": "user=etl!"})
        );
        assert_eq!(
            t.skeleton(),
            json!({"n": "${{ inputs.n }}", "s": "user=${{ inputs.db_user }}!"})
        );
    }

    #[test]
    fn a_shared_render_borrows_whole_values_and_serialises_as_the_render() {
        let t = Template::parse(&json!({
            "z": "${{ steps.make.outputs }}",
            "a": {"tags": "${{ inputs.tags }}", "lit": [1, {"k": "v"}], "s": "n=${{ inputs.n }}"},
            "computed": "${{ inputs.n * 2 }}",
            "list": ["${{ inputs.db_user }}", "x"],
        }))
        .unwrap();
        let scope = scope();
        let shared = t.render_shared(&scope).unwrap();
        let owned = t.render(&scope).unwrap();
        assert_eq!(
            serde_json::to_string(&shared).unwrap(),
            serde_json::to_string(&owned).unwrap()
        );
        assert_eq!(shared.to_value(), owned);
        let Rendered::Object(fields) = &shared else {
            panic!("{shared:?}")
        };
        let z = &fields.iter().find(|(k, _)| *k == "z").unwrap().1;
        assert!(
            matches!(z, Rendered::Value(Cow::Borrowed(v)) if std::ptr::eq(*v, &scope.steps["make"]["outputs"])),
            "a plain name is borrowed from the scope: {z:?}"
        );
        // 16 values: the object; `a`, `lit` and its 3, `s`, `tags` and its 2; `computed`; `list`
        // and its 2; `z` and its `pw`.
        assert!(shared.holds_at_least(1) && shared.holds_at_least(16));
        assert!(!shared.holds_at_least(17));
        // Owned: the spliced `a.s`, then `computed`; the rest is borrowed.
        let parts = shared.clone().into_owned_parts();
        assert_eq!(parts, [json!("n=4"), json!(8)], "{parts:?}");
        assert_eq!(shared.into_value(), owned);
    }

    #[test]
    fn rejects_unclosed_and_unparsable_templates() {
        assert!(matches!(
            Template::parse(&json!("${{ inputs.x")),
            Err((_, ExprError::Unclosed))
        ));
        assert!(matches!(
            Template::parse(&json!("${{ inputs. }}")),
            Err((_, ExprError::Parse { .. }))
        ));
    }
}
