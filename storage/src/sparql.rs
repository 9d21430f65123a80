//! SPARQL over the store: sophia's engine on the [`UnionDataset`] view, with a deadline and a
//! row limit, results serialised as W3C SPARQL JSON (SELECT/ASK) or N-Triples
//! (CONSTRUCT/DESCRIBE).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use sophia_api::sparql::{SparqlDataset, SparqlResult};
use sophia_api::term::{Term, TermKind};
use sophia_sparql::{SparqlWrapper, SparqlWrapperError};

use crate::dataset::UnionDataset;
use crate::error::{DatasetError, SparqlError};
use crate::store::Store;
use crate::term::{XSD_STRING, write_nt};

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
    let prepared = wrapper
        .prepare_query(query)
        .map_err(|e| map_err(e, limits))?;
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
