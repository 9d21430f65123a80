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
//!
//! # Triple pattern order
//!
//! sophia evaluates a basic graph pattern left to right as nested loops: every solution of
//! one triple pattern is substituted into the next, which is then looked up in the indexes.
//! Written order can make that a scan: in `?e prov:wasGeneratedBy ?a . ?a
//! prov:wasAssociatedWith <agent>` the first pattern matches every generation, and the second
//! is looked up once per generation. Before evaluation each basic graph pattern is reordered:
//! first the pattern whose bound positions are most selective (a bound subject, then a bound
//! object, then a bound predicate; see `selectivity`), then, among the patterns sharing a
//! variable with those already placed, again the most selective counting those variables as
//! bound, and so on (patterns that share nothing come last, in their written order). A basic
//! graph pattern is a conjunction, so its solutions do not depend on the order; only the
//! order in which rows come out can change, which SPARQL leaves open without `ORDER BY`.
//! No statistics are used: the order is decided from the query alone.

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
    order_triple_patterns(&mut algebra);
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
    for child in sub_patterns(p) {
        narrow(child, ds)?;
    }
    let GraphPattern::Graph { name, inner } = p else {
        return Ok(());
    };
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
    let Some(graphs) = ds.graphs_matching(spo, MAX_CANDIDATE_SCAN, MAX_GRAPH_CANDIDATES)? else {
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
    use GraphPattern as G;
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

/// Reorders every basic graph pattern of a query (see the module docs).
fn order_triple_patterns(query: &mut spargebra::Query) {
    use spargebra::Query;
    match query {
        Query::Select { pattern, .. }
        | Query::Construct { pattern, .. }
        | Query::Describe { pattern, .. }
        | Query::Ask { pattern, .. } => order_patterns(pattern),
    }
}

fn order_patterns(p: &mut GraphPattern) {
    if let GraphPattern::Bgp { patterns } = p {
        order_bgp(patterns);
    }
    for child in sub_patterns(p) {
        order_patterns(child);
    }
}

/// The patterns `p` is built from, where the rewrites look (not inside expressions such as
/// `FILTER EXISTS`). Leaves (basic graph patterns, paths, `VALUES`) have none.
fn sub_patterns(p: &mut GraphPattern) -> Vec<&mut GraphPattern> {
    use GraphPattern as G;
    match p {
        G::Join { left, right }
        | G::LeftJoin { left, right, .. }
        | G::Union { left, right }
        | G::Minus { left, right } => vec![left.as_mut(), right.as_mut()],
        G::Filter { inner, .. }
        | G::Extend { inner, .. }
        | G::OrderBy { inner, .. }
        | G::Project { inner, .. }
        | G::Distinct { inner }
        | G::Reduced { inner }
        | G::Slice { inner, .. }
        | G::Group { inner, .. }
        | G::Service { inner, .. }
        | G::Graph { inner, .. } => vec![inner.as_mut()],
        // Bgp, Path, Values (and variants of optional spargebra features).
        _ => Vec::new(),
    }
}

/// The variable (or blank node, which a basic graph pattern treats as one) at each position
/// of a triple pattern; `None` where the position is a constant.
fn pattern_variables(tp: &TriplePattern) -> [Option<String>; 3] {
    fn term(t: &TermPattern) -> Option<String> {
        match t {
            TermPattern::Variable(v) => Some(format!("?{}", v.as_str())),
            TermPattern::BlankNode(b) => Some(format!("_:{}", b.as_str())),
            _ => None,
        }
    }
    let p = match &tp.predicate {
        NamedNodePattern::Variable(v) => Some(format!("?{}", v.as_str())),
        NamedNodePattern::NamedNode(_) => None,
    };
    [term(&tp.subject), p, term(&tp.object)]
}

/// Rank of a triple pattern whose positions are bound (`true`) or free, most selective
/// first: a bound subject usually identifies one resource, a bound object a few, a bound
/// predicate alone matches a whole property's extent.
fn selectivity([s, p, o]: [bool; 3]) -> u8 {
    match (s, p, o) {
        (true, true, true) => 0,
        (true, _, true) => 1,
        (true, true, false) => 2,
        (false, true, true) => 3,
        (true, false, false) => 4,
        (false, false, true) => 5,
        (false, true, false) => 6,
        (false, false, false) => 7,
    }
}

/// Greedy order of one basic graph pattern (see the module docs).
fn order_bgp(patterns: &mut Vec<TriplePattern>) {
    if patterns.len() < 2 {
        return;
    }
    let vars: Vec<[Option<String>; 3]> = patterns.iter().map(pattern_variables).collect();
    let mut bound: std::collections::HashSet<&str> = std::collections::HashSet::new();
    let mut left: Vec<usize> = (0..patterns.len()).collect();
    let mut order = Vec::with_capacity(patterns.len());
    while !left.is_empty() {
        let pick = left
            .iter()
            .enumerate()
            .min_by_key(|(_, i)| {
                let v = &vars[**i];
                let is_bound = |x: &Option<String>| x.as_deref().is_none_or(|n| bound.contains(n));
                let connected =
                    order.is_empty() || v.iter().flatten().any(|n| bound.contains(n.as_str()));
                let rank = selectivity([is_bound(&v[0]), is_bound(&v[1]), is_bound(&v[2])]);
                (!connected, rank, **i)
            })
            .map(|(pos, _)| pos)
            .unwrap_or_default();
        let i = left.remove(pick);
        bound.extend(vars[i].iter().flatten().map(String::as_str));
        order.push(i);
    }
    if order.iter().enumerate().all(|(k, i)| k == *i) {
        return;
    }
    let mut old: Vec<Option<TriplePattern>> =
        std::mem::take(patterns).into_iter().map(Some).collect();
    *patterns = order.into_iter().filter_map(|i| old[i].take()).collect();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ordered(query: &str) -> Vec<String> {
        let mut q = spargebra::SparqlParser::new()
            .parse_query(query)
            .expect("parse");
        order_triple_patterns(&mut q);
        let spargebra::Query::Select { pattern, .. } = q else {
            panic!("not a SELECT");
        };
        let mut out = Vec::new();
        fn bgps(p: &GraphPattern, out: &mut Vec<String>) {
            match p {
                GraphPattern::Bgp { patterns } => {
                    out.extend(patterns.iter().map(ToString::to_string));
                }
                GraphPattern::Project { inner, .. } | GraphPattern::Filter { inner, .. } => {
                    bgps(inner, out);
                }
                GraphPattern::Join { left, right } => {
                    bgps(left, out);
                    bgps(right, out);
                }
                _ => {}
            }
        }
        bgps(&pattern, &mut out);
        out
    }

    #[test]
    fn selective_patterns_go_first_and_joins_stay_connected() {
        // The benchmark's join: the agent's activities first, then their generations.
        assert_eq!(
            ordered(
                "SELECT * WHERE { ?e <http://p/gen> ?a . ?a <http://p/assoc> <http://agent/7> }"
            ),
            [
                "?a <http://p/assoc> <http://agent/7>",
                "?e <http://p/gen> ?a"
            ]
        );
        // A bound subject beats a bound object; a pattern sharing no variable waits until
        // the connected ones are placed, even if it is more selective than they are.
        assert_eq!(
            ordered(
                "SELECT * WHERE { ?x <http://p/q> ?y . ?y <http://p/r> \"v\" . \
                 <http://s/1> <http://p/q> ?z . ?y <http://p/s> ?w . ?z <http://p/t> ?x }"
            ),
            [
                "<http://s/1> <http://p/q> ?z",
                "?z <http://p/t> ?x",
                "?x <http://p/q> ?y",
                "?y <http://p/r> \"v\"",
                "?y <http://p/s> ?w",
            ]
        );
        // Blank nodes join like variables; an already good order is left alone.
        assert_eq!(
            ordered("SELECT * WHERE { <http://s/1> <http://p/part> _:b . _:b <http://p/v> ?v }"),
            ["<http://s/1> <http://p/part> _:b", "_:b <http://p/v> ?v"]
        );
    }
}
