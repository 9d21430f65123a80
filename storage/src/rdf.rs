//! Parsing transaction payloads (Turtle, N-Triples, N-Quads) into owned quads.
//!
//! * **Never panics.** sophia 0.10's N-Triples/N-Quads parsers panic on some truncated inputs
//!   (`<a> <b> "x"`) and the Turtle parser on `<a> <b> "`. The parser runs inside
//!   [`std::panic::catch_unwind`] (the workspace builds with `panic = "unwind"`), and a panic
//!   becomes an [`RdfError`]. Inputs known to trigger it are rejected before parsing, so the
//!   panic path is a last resort (a panic still prints one line through the panic hook).
//! * **Blank nodes are scoped.** sophia labels blank nodes randomly per parse; every distinct
//!   blank node is relabelled `{scope}_{n}` (n in order of first appearance), so the result is
//!   deterministic for a given document and scope, and two transactions' `_:b` never merge.
//!   The node passes the transaction id in hex as the scope.
//! * **Reserved namespace.** Graph names and subjects in `urn:provchain:` are refused: that
//!   namespace holds the chain metadata the store writes itself (see the crate docs), and a
//!   client must not be able to forge it.
//! * RDF 1.2 *basic* syntax: triple terms are refused, directional language tags accepted.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};

use provchain_consensus::RdfFormat;
use sophia_api::MownStr;
use sophia_api::parser::{QuadParser, TripleParser};
use sophia_api::quad::Quad;
use sophia_api::source::{QuadSource, StreamError, TripleSource};
use sophia_api::term::{BnodeId, SimpleTerm, Term, TermKind};
use sophia_api::triple::Triple;
use sophia_api::version::Version;
use sophia_turtle::parser::{nq::NQuadsParser, nt::NTriplesParser, turtle::TurtleParser};

pub use crate::term::OwnedTerm;

/// A parsed quad: subject, predicate, object and graph name (`None` = the document's default
/// graph, which the store maps to the transaction's graph).
pub type OwnedQuad = ([OwnedTerm; 3], Option<OwnedTerm>);

/// Namespace reserved for chain metadata.
pub const RESERVED_PREFIX: &str = "urn:provchain:";

/// Why a document does not parse. `line` and `column` are 1-based when known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct RdfError {
    pub message: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
}

impl std::fmt::Display for RdfError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "line {l}, column {c}: {}", self.message),
            (Some(l), None) => write!(f, "line {l}: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

impl RdfError {
    fn msg(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            line: None,
            column: None,
        }
    }
    fn at(message: impl Into<String>, line: usize, column: usize) -> Self {
        Self {
            message: message.into(),
            line: Some(line),
            column: Some(column),
        }
    }
    fn from_sophia(e: &sophia_turtle::parser::Error) -> Self {
        let (line, col) = e.position();
        Self::at(e.kind().to_string(), line + 1, col + 1)
    }
}

/// Relabels blank nodes into the document's scope and converts terms to owned ones.
struct Converter {
    scope: String,
    labels: HashMap<String, usize>,
}

impl Converter {
    fn new(scope: &str) -> Self {
        let mut s: String = scope
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect();
        if s.is_empty() {
            s.push('x');
        }
        Self {
            scope: s,
            labels: HashMap::new(),
        }
    }

    fn term<T: Term>(&mut self, t: T) -> Result<OwnedTerm, RdfError> {
        match t.kind() {
            TermKind::BlankNode => {
                let label = t
                    .bnode_id()
                    .map(|b| b.as_str().to_owned())
                    .unwrap_or_default();
                let next = self.labels.len();
                let n = *self.labels.entry(label).or_insert(next);
                Ok(SimpleTerm::BlankNode(BnodeId::new_unchecked(
                    MownStr::from(format!("{}_{n}", self.scope)),
                )))
            }
            TermKind::Iri | TermKind::Literal => {
                let owned: OwnedTerm = t.into_term();
                Ok(owned)
            }
            TermKind::Triple => Err(RdfError::msg("RDF 1.2 triple terms are not supported")),
            TermKind::Variable => Err(RdfError::msg("variables are not allowed in data")),
        }
    }

    fn quad(
        &mut self,
        s: impl Term,
        p: impl Term,
        o: impl Term,
        g: Option<impl Term>,
    ) -> Result<OwnedQuad, RdfError> {
        let s = self.term(s)?;
        if let Some(i) = s.iri()
            && i.as_str().starts_with(RESERVED_PREFIX)
        {
            return Err(RdfError::msg(format!(
                "subject <{}> is in the reserved {RESERVED_PREFIX} namespace; chain metadata is \
                 written by the node only",
                i.as_str()
            )));
        }
        let p = self.term(p)?;
        let o = self.term(o)?;
        let g = match g {
            None => None,
            Some(g) => {
                let g = self.term(g)?;
                if let Some(i) = g.iri()
                    && i.as_str().starts_with(RESERVED_PREFIX)
                {
                    return Err(RdfError::msg(format!(
                        "graph name <{}> is in the reserved {RESERVED_PREFIX} namespace; each \
                         transaction's default graph is stored in its own urn:provchain:tx: graph",
                        i.as_str()
                    )));
                }
                Some(g)
            }
        };
        Ok(([s, p, o], g))
    }
}

/// Cheap checks for inputs that make sophia's parsers panic: a string literal left open at
/// the end of the document. Returns the error the parser should have reported.
fn precheck(format: RdfFormat, data: &str) -> Result<(), RdfError> {
    if format == RdfFormat::Turtle {
        // A document ending inside a string literal, like `<a> <b> "`.
        let t = data.trim_end();
        // A valid document ends with '.', a directive or a comment, never with a quote; only
        // a '#' on the last line could make a trailing quote legitimate (inside a comment).
        let last = t.lines().last().unwrap_or("");
        if (t.ends_with('"') || t.ends_with('\'')) && !last.contains('#') {
            return Err(RdfError::at(
                "statement ends inside a string literal (truncated input?)",
                t.lines().count().max(1),
                last.len(),
            ));
        }
    }
    if matches!(format, RdfFormat::NTriples | RdfFormat::NQuads) {
        // Line-based formats: every non-empty, non-comment line must end with '.'.
        for (i, line) in data.lines().enumerate() {
            let t = line.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            let ends_ok = t.ends_with('.') || {
                // A trailing comment after the dot: `<a> <b> <c> . # note`
                t.rfind(" #")
                    .is_some_and(|k| t[..k].trim_end().ends_with('.'))
            };
            if !ends_ok {
                return Err(RdfError::at(
                    "statement is not terminated by '.' (truncated input?)",
                    i + 1,
                    line.len() + 1,
                ));
            }
        }
    }
    Ok(())
}

fn parse_inner(format: RdfFormat, data: &str, scope: &str) -> Result<Vec<OwnedQuad>, RdfError> {
    let mut conv = Converter::new(scope);
    let mut out = Vec::new();
    let result = match format {
        RdfFormat::Turtle => TurtleParser::new()
            .with_version(Version::Rdf12Basic)
            .parse_str(data)
            .try_for_each_triple(|t| {
                out.push(conv.quad(t.s(), t.p(), t.o(), None::<OwnedTerm>)?);
                Ok::<_, RdfError>(())
            }),
        RdfFormat::NTriples => NTriplesParser::new()
            .with_version(Version::Rdf12Basic)
            .parse_str(data)
            .try_for_each_triple(|t| {
                out.push(conv.quad(t.s(), t.p(), t.o(), None::<OwnedTerm>)?);
                Ok::<_, RdfError>(())
            }),
        RdfFormat::NQuads => NQuadsParser::new()
            .with_version(Version::Rdf12Basic)
            .parse_str(data)
            .try_for_each_quad(|q| {
                out.push(conv.quad(q.s(), q.p(), q.o(), q.g())?);
                Ok::<_, RdfError>(())
            }),
    };
    match result {
        Ok(()) => Ok(out),
        Err(StreamError::SourceError(e)) => Err(RdfError::from_sophia(&e)),
        Err(StreamError::SinkError(e)) => Err(e),
    }
}

/// Parses `data` into quads, relabelling blank nodes into `scope`. Duplicate statements are
/// kept (the store deduplicates); the number of distinct quads is the transaction's triple
/// count.
pub fn parse(format: RdfFormat, data: &str, scope: &str) -> Result<Vec<OwnedQuad>, RdfError> {
    precheck(format, data)?;
    install_quiet_hook();
    QUIET.with(|q| q.set(true));
    let result = catch_unwind(AssertUnwindSafe(|| parse_inner(format, data, scope)));
    QUIET.with(|q| q.set(false));
    match result {
        Ok(r) => r,
        Err(_) => Err(RdfError::msg(format!(
            "the {} parser failed on this input (truncated or malformed document)",
            format.name()
        ))),
    }
}

thread_local! {
    /// Set while this thread runs a parser whose panics are contained.
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Wraps the process panic hook (once) so that contained parser panics do not print a
/// backtrace per hostile document; every other panic goes to the previous hook unchanged.
fn install_quiet_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(|q| q.get()) {
                previous(info);
            }
        }));
    });
}

/// Parses and returns the number of distinct statements: what admission control needs.
pub fn count_triples(format: RdfFormat, data: &str) -> Result<usize, RdfError> {
    let mut quads = parse(format, data, "check")?;
    Ok(dedup_quads(&mut quads))
}

/// Deduplicates quads in place, keeping first occurrences; returns the count. Two statements
/// are the same when their terms have the same stored encoding (so `"a"@EN` and `"a"@en`
/// are one statement, as in RDF and as the store keeps them).
pub(crate) fn dedup_quads(quads: &mut Vec<OwnedQuad>) -> usize {
    let mut seen = std::collections::HashSet::with_capacity(quads.len());
    quads.retain(|q| {
        let mut key = Vec::new();
        for t in q.0.iter().chain(q.1.as_ref()) {
            let enc = crate::term::encode_term(t).unwrap_or_default();
            key.extend_from_slice(&(enc.len() as u32).to_be_bytes());
            key.extend_from_slice(&enc);
        }
        seen.insert(key)
    });
    quads.len()
}
