//! SPARQL over the store: sophia's engine on the [`UnionDataset`] view, with a deadline and a
//! row limit, results serialised as W3C SPARQL JSON (SELECT/ASK) or N-Triples
//! (CONSTRUCT/DESCRIBE).
//!
//! # `GRAPH ?g` narrowing
//!
//! sophia evaluates `GRAPH ?g { P }` with `?g` unbound by listing every named graph and
//! evaluating `P` in each. With one graph per transaction that is linear in the length of
//! the chain — and it is the shape of the provenance question this store exists for
//! ("in which transaction was `s p o` asserted?"). Before evaluation the query algebra is
//! rewritten: for such a pattern, the required triple pattern of `P` with the most constants
//! is looked up once in the quad indexes, and the pattern becomes
//! `VALUES ?g { <graphs found> } GRAPH ?g { P }`. Every solution of `P` in a graph matches
//! that triple pattern there, so the result is unchanged; sophia then evaluates `P` only in
//! those graphs. The rewrite is skipped when the lookup would read more than
//! [`MAX_CANDIDATE_SCAN`] quads or find more than [`MAX_GRAPH_CANDIDATES`] graphs, and never
//! looks inside subqueries, `OPTIONAL` right sides, `UNION`s or `MINUS`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use sophia_api::MownStr;
use sophia_api::sparql::{SparqlDataset, SparqlResult};
use sophia_api::term::{IriRef, LanguageTag, SimpleTerm};
use sophia_api::term::{Term, TermKind};
use sophia_sparql::{SparqlQuery, SparqlWrapper, SparqlWrapperError};
use spargebra::algebra::GraphPattern;
use spargebra::term::{GroundTerm, NamedNode, NamedNodePattern, TermPattern, TriplePattern};

use crate::dataset::UnionDataset;
use crate::error::{DatasetError, SparqlError};
use crate::store::Store;
use crate::term::{OwnedTerm, XSD_STRING, write_nt};

/// Most graphs a `GRAPH ?g` pattern is narrowed to.
pub const MAX_GRAPH_CANDIDATES: usize = 4096;
/// Most quads read to find them.
pub const MAX_CANDIDATE_SCAN: usize = 65_536;

/// `application/sparql-results+json`.
pub const SPARQL_JSON: &str = "application/sparql-results+json";
/// `application/n-triples`.
pub const N_TRIPLES: &str = "application/n-triples";

/// Bounds on one query's run time and result size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryLimits {
    pub timeout: Duration,
    pub max_rows: usize,
}

impl Default for QueryLimits {
    /// 10 s and 10 000 rows: enough for interactive provenance questions, small enough that a
    /// runaway query cannot hold a blocking thread or build a huge response.
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            max_rows: 10_000,
        }
    }
}

/// A serialised query result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SparqlOutput {
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

fn map_err(e: SparqlWrapperError<DatasetError>, limits: &QueryLimits) -> SparqlError {
    match e {
        SparqlWrapperError::Parse(e) => SparqlError::Parse(e.to_string()),
        SparqlWrapperError::Override(v) => SparqlError::Parse(format!("variable {v} is rebound")),
        SparqlWrapperError::NotImplemented(what) => {
            SparqlError::Parse(format!("{what} is not supported by this endpoint"))
        }
        SparqlWrapperError::Dataset(DatasetError::Timeout) => SparqlError::Timeout(limits.timeout),
        SparqlWrapperError::Dataset(e) => SparqlError::Internal(e.to_string()),
    }
}

/// One RDF term in the W3C SPARQL JSON results format.
pub fn term_json<T: Term>(t: &T) -> Value {
    match t.kind() {
        TermKind::Iri => json!({"type": "uri", "value": t.iri().map(|i| i.as_str().to_owned())}),
        TermKind::BlankNode => {
            json!({"type": "bnode", "value": t.bnode_id().map(|b| b.as_str().to_owned())})
        }
        TermKind::Literal => {
            let mut m = Map::new();
            m.insert("type".into(), "literal".into());
            m.insert(
                "value".into(),
                t.lexical_form()
                    .map(|l| l.to_string())
                    .unwrap_or_default()
                    .into(),
            );
            if let Some(tag) = t.language_tag() {
                m.insert("xml:lang".into(), tag.as_str().into());
            } else if let Some(dt) = t.datatype()
                && dt.as_str() != XSD_STRING
            {
                m.insert("datatype".into(), dt.as_str().into());
            }
            Value::Object(m)
        }
        TermKind::Triple | TermKind::Variable => {
            let mut s = String::new();
            write_nt(t, &mut s);
            json!({"type": "literal", "value": s})
        }
    }
}

fn run(
    ds: &UnionDataset<'_>,
    query: &str,
    limits: &QueryLimits,
    deadline: Instant,
) -> Result<SparqlOutput, SparqlError> {
    let wrapper = SparqlWrapper(ds);
    let mut algebra = spargebra::SparqlParser::new()
        .parse_query(query)
        .map_err(|e| SparqlError::Parse(e.to_string()))?;
    narrow_graph_patterns(&mut algebra, ds).map_err(|e| match e {
        DatasetError::Timeout => SparqlError::Timeout(limits.timeout),
        e => SparqlError::Internal(e.to_string()),
    })?;
    let prepared: SparqlQuery<UnionDataset<'_>> = SparqlQuery::from(algebra);
    let result = wrapper.query(&prepared).map_err(|e| map_err(e, limits))?;
    let check_time = || {
        if Instant::now() >= deadline {
            Err(SparqlError::Timeout(limits.timeout))
        } else {
            Ok(())
        }
    };
    match result {
        SparqlResult::Boolean(b) => {
            let body = serde_json::to_vec(&json!({"head": {}, "boolean": b}))
                .map_err(|e| SparqlError::Internal(e.to_string()))?;
            Ok(SparqlOutput {
                content_type: SPARQL_JSON,
                body,
            })
        }
        SparqlResult::Bindings(bindings) => {
            let vars: Vec<String> = bindings.variables().iter().map(|v| v.to_string()).collect();
            let mut rows = Vec::new();
            for row in bindings {
                check_time()?;
                let row = row.map_err(|e| map_err(e, limits))?;
                if rows.len() >= limits.max_rows {
                    return Err(SparqlError::TooManyRows(limits.max_rows));
                }
                let mut obj = Map::new();
                for (var, val) in vars.iter().zip(row) {
                    if let Some(t) = val {
                        obj.insert(var.clone(), term_json(&t));
                    }
                }
                rows.push(Value::Object(obj));
            }
            let body = serde_json::to_vec(&json!({
                "head": {"vars": vars},
                "results": {"bindings": rows}
            }))
            .map_err(|e| SparqlError::Internal(e.to_string()))?;
            Ok(SparqlOutput {
                content_type: SPARQL_JSON,
                body,
            })
        }
        SparqlResult::Triples(triples) => {
            let mut out = String::new();
            let mut n = 0usize;
            for t in triples {
                check_time()?;
                let [s, p, o] = t.map_err(|e| map_err(e, limits))?;
                n += 1;
                if n > limits.max_rows {
                    return Err(SparqlError::TooManyRows(limits.max_rows));
                }
                write_nt(&s, &mut out);
                out.push(' ');
                write_nt(&p, &mut out);
                out.push(' ');
                write_nt(&o, &mut out);
                out.push_str(" .\n");
            }
            Ok(SparqlOutput {
                content_type: N_TRIPLES,
                body: out.into_bytes(),
            })
        }
    }
}

/// Applies the `GRAPH ?g` narrowing (see the module docs) throughout a query.
fn narrow_graph_patterns(
    query: &mut spargebra::Query,
    ds: &UnionDataset<'_>,
) -> Result<(), DatasetError> {
    use spargebra::Query;
    match query {
        Query::Select { pattern, .. }
        | Query::Construct { pattern, .. }
        | Query::Describe { pattern, .. }
        | Query::Ask { pattern, .. } => narrow(pattern, ds),
    }
}

fn narrow(p: &mut GraphPattern, ds: &UnionDataset<'_>) -> Result<(), DatasetError> {
    use GraphPattern as G;
    match p {
        G::Join { left, right }
        | G::LeftJoin { left, right, .. }
        | G::Union { left, right }
        | G::Minus { left, right } => {
            narrow(left, ds)?;
            narrow(right, ds)
        }
        G::Filter { inner, .. }
        | G::Extend { inner, .. }
        | G::OrderBy { inner, .. }
        | G::Project { inner, .. }
        | G::Distinct { inner }
        | G::Reduced { inner }
        | G::Slice { inner, .. }
        | G::Group { inner, .. }
        | G::Service { inner, .. } => narrow(inner, ds),
        G::Graph { name, inner } => {
            narrow(inner, ds)?;
            let NamedNodePattern::Variable(var) = name else {
                return Ok(());
            };
            let var = var.clone();
            let mut required = Vec::new();
            required_patterns(inner, &mut required);
            let Some(best) = required
                .into_iter()
                .filter_map(|tp| constants(tp).map(|c| (c.iter().flatten().count(), c)))
                .filter(|(n, _)| *n > 0)
                .max_by_key(|(n, _)| *n)
                .map(|(_, c)| c)
            else {
                return Ok(());
            };
            let spo = [best[0].as_ref(), best[1].as_ref(), best[2].as_ref()];
            let Some(graphs) = ds.graphs_matching(spo, MAX_CANDIDATE_SCAN, MAX_GRAPH_CANDIDATES)?
            else {
                return Ok(());
            };
            let mut bindings = Vec::with_capacity(graphs.len());
            for g in graphs {
                // Blank-node graph names cannot go into VALUES: leave the pattern as it is.
                let Some(iri) = g.iri() else {
                    return Ok(());
                };
                bindings.push(vec![Some(GroundTerm::NamedNode(NamedNode::new_unchecked(
                    iri.as_str(),
                )))]);
            }
            let graph = std::mem::replace(p, G::Bgp { patterns: vec![] });
            *p = G::Join {
                left: Box::new(G::Values {
                    variables: vec![var],
                    bindings,
                }),
                right: Box::new(graph),
            };
            Ok(())
        }
        // Bgp, Path, Values (and variants of optional spargebra features).
        _ => Ok(()),
    }
}

/// Triple patterns every solution of `p` matches (in the graph `p` is evaluated on).
fn required_patterns<'p>(p: &'p GraphPattern, out: &mut Vec<&'p TriplePattern>) {
    match p {
        GraphPattern::Bgp { patterns } => out.extend(patterns),
        GraphPattern::Join { left, right } => {
            required_patterns(left, out);
            required_patterns(right, out);
        }
        GraphPattern::LeftJoin { left, .. } => required_patterns(left, out),
        GraphPattern::Filter { inner, .. } | GraphPattern::Extend { inner, .. } => {
            required_patterns(inner, out)
        }
        _ => {}
    }
}

/// The constants of a triple pattern (`None` for variables and blank nodes), or `None` if
/// it has a term the narrowing does not handle (quoted triples, directional literals).
fn constants(tp: &TriplePattern) -> Option<[Option<OwnedTerm>; 3]> {
    fn term(t: &TermPattern) -> Option<Option<OwnedTerm>> {
        match t {
            TermPattern::NamedNode(n) => Some(Some(iri(n.as_str()))),
            TermPattern::Literal(l) => {
                if l.direction().is_some() {
                    return None;
                }
                Some(Some(match l.language() {
                    Some(lang) => SimpleTerm::LiteralLanguage(
                        MownStr::from(l.value().to_owned()),
                        LanguageTag::new_unchecked(MownStr::from(lang.to_owned())),
                        None,
                    ),
                    None => SimpleTerm::LiteralDatatype(
                        MownStr::from(l.value().to_owned()),
                        IriRef::new_unchecked(MownStr::from(l.datatype().as_str().to_owned())),
                    ),
                }))
            }
            TermPattern::BlankNode(_) | TermPattern::Variable(_) => Some(None),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }
    let p = match &tp.predicate {
        NamedNodePattern::NamedNode(n) => Some(iri(n.as_str())),
        NamedNodePattern::Variable(_) => None,
    };
    Some([term(&tp.subject)?, p, term(&tp.object)?])
}

fn iri(s: &str) -> OwnedTerm {
    SimpleTerm::Iri(IriRef::new_unchecked(MownStr::from(s.to_owned())))
}

impl Store {
    /// Runs a SPARQL 1.1 query (sophia_sparql's subset; no SERVICE) against the committed
    /// dataset, whose default graph is the union of all graphs. Blocking: call it from a
    /// blocking pool. Stops with [`SparqlError::Timeout`] once `limits.timeout` has passed
    /// (checked on every quad the engine reads and every result row) and with
    /// [`SparqlError::TooManyRows`] past `limits.max_rows`.
    pub fn sparql(&self, query: &str, limits: &QueryLimits) -> Result<SparqlOutput, SparqlError> {
        let deadline = Instant::now() + limits.timeout;
        let ds = self.dataset().with_deadline(deadline).union();
        // The engine has internal `unwrap`s; a panic on a hostile query must not take the
        // node down.
        match catch_unwind(AssertUnwindSafe(|| run(&ds, query, limits, deadline))) {
            Ok(r) => r,
            Err(_) => Err(SparqlError::Internal(
                "the query engine failed on this query".into(),
            )),
        }
    }
}
