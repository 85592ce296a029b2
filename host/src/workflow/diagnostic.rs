//! Problems found in a workflow file, each pointing at the text it is about.

use miette::{GraphicalReportHandler, GraphicalTheme, NamedSource, SourceSpan};
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

/// One problem: what is wrong, where (a byte range of the file), and how to fix it.
#[derive(Debug, Clone, thiserror::Error, miette::Diagnostic)]
#[error("{message}")]
pub struct Diagnostic {
    pub message: String,
    #[label]
    pub span: Option<SourceSpan>,
    #[help]
    pub help: Option<String>,
}

impl Diagnostic {
    /// A problem at `span` of the file.
    pub fn at(span: Range<usize>, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            span: Some(span.into()),
            help: None,
        }
    }

    /// A problem about the file as a whole.
    pub fn global(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            span: None,
            help: None,
        }
    }

    /// Attach the fix.
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

/// The source text of a workflow file, kept to render diagnostics against it.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: Arc<str>,
    pub text: Arc<str>,
}

impl Source {
    /// 1-based line and column of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, col)
    }
}

/// Every problem found in one file. Renders as `path:line:col: message` plus an excerpt.
#[derive(Debug, Clone, thiserror::Error)]
pub struct Diagnostics {
    pub file: Source,
    pub items: Vec<Diagnostic>,
}

impl Diagnostics {
    /// Render with or without colour (colour only on a terminal).
    pub fn render(&self, color: bool) -> String {
        let theme = if color {
            GraphicalTheme::unicode()
        } else {
            GraphicalTheme::unicode_nocolor()
        };
        let handler = GraphicalReportHandler::new_themed(theme).with_context_lines(1);
        let named = NamedSource::new(&self.file.path, self.file.text.to_string());
        let mut out = String::new();
        for item in &self.items {
            let location = match item.span {
                Some(span) => {
                    let (line, col) = self.file.line_col(span.offset());
                    format!("{}:{line}:{col}", self.file.path)
                }
                None => self.file.path.to_string(),
            };
            out.push_str(&format!("error: {location}: {}\n", item.message));
            let report = miette::Report::new(item.clone()).with_source_code(named.clone());
            let mut excerpt = String::new();
            if handler.render_report(&mut excerpt, report.as_ref()).is_ok() {
                out.push_str(&excerpt);
            }
        }
        out
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(false))
    }
}
