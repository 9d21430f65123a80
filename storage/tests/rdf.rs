//! `rdf::parse`: hostile input yields errors (never panics); valid documents parse fully.

use provchain_consensus::RdfFormat;
use provchain_storage::rdf::{count_triples, parse};

fn err(format: RdfFormat, data: &str) -> provchain_storage::RdfError {
    match parse(format, data, "scope") {
        Err(e) => e,
        Ok(q) => panic!("{data:?} parsed as {} quads", q.len()),
    }
}

#[test]
fn truncated_and_malformed_input_is_an_error_not_a_panic() {
    let cases: &[(RdfFormat, &str)] = &[
        (RdfFormat::NTriples, "<a> <b> \"x\""),
        (RdfFormat::NTriples, "<http://a> <http://b> \"x\""),
        (RdfFormat::NTriples, "<http://a> <http://b> \"x"),
        (RdfFormat::NTriples, "<http://a> <http://b> <http://c>"),
        (
            RdfFormat::NTriples,
            "<http://a> <http://b> \"x\" . # ok\n<http://a> <http://b> \"y\"",
        ),
        (RdfFormat::NQuads, "<http://a> <http://b> \"x\" <http://g>"),
        (RdfFormat::NQuads, "<a> <b> \"x\""),
        (RdfFormat::Turtle, "<a> <b> \""),
        (RdfFormat::Turtle, "<http://a> <http://b> \""),
        (RdfFormat::Turtle, "<http://a> <http://b> \"\"\"abc"),
        (RdfFormat::Turtle, "<http://a> <http://b> <http://c>"),
        (
            RdfFormat::Turtle,
            "@prefix ex: <http://ex.org/> .\nex:a ex:b ex:c ;\n",
        ),
        (RdfFormat::Turtle, "ex:a ex:b ex:c ."),
        (RdfFormat::Turtle, "<http://a> <http://b> [ <http://c> "),
        (RdfFormat::Turtle, "<http://a> <http://b> ( 1 2 "),
        (RdfFormat::Turtle, "<http://a> <http://b> 'x"),
        (RdfFormat::Turtle, "<http://a> <http://b> \"x\"^^"),
        (RdfFormat::Turtle, "<http://a> <http://b> \"x\"@"),
        (
            RdfFormat::Turtle,
            "<< <http://a> <http://b> <http://c> >> <http://p> 1 .",
        ),
    ];
    for (format, data) in cases {
        let e = err(*format, data);
        assert!(!e.message.is_empty(), "{data:?}");
    }
    // Every prefix of a valid document, in every format: errors or quads, never a panic.
    let nt = "<http://a> <http://b> \"x\\n\\\"y\"@en .\n_:b1 <http://b> \"1\"^^<http://www.w3.org/2001/XMLSchema#integer> .\n";
    let nq = "<http://a> <http://b> \"x\" <http://g> .\n_:b1 <http://b> _:b2 _:g .\n";
    let ttl = "@prefix ex: <http://ex.org/> .\nex:a ex:b \"\"\"long\nstring\"\"\" , [ ex:c ( 1 2.5 \"x\" ) ] ;\n  ex:d 'y'@fr .\n";
    for (format, doc) in [
        (RdfFormat::NTriples, nt),
        (RdfFormat::NQuads, nq),
        (RdfFormat::Turtle, ttl),
    ] {
        for end in 0..doc.len() {
            if doc.is_char_boundary(end) {
                let _ = parse(format, &doc[..end], "s");
            }
        }
    }
}

#[test]
fn errors_carry_line_and_column() {
    let e = err(
        RdfFormat::Turtle,
        "<http://a> <http://b> <http://c> .\n<http://a> <http://b> <http://c> ;; .\n<http://a> oops",
    );
    assert!(e.line.is_some(), "{e}");
    assert!(e.to_string().starts_with("line "), "{e}");
    let e = err(
        RdfFormat::NTriples,
        "<http://a> <http://b> <http://c> .\n<http://a> <http://b> \"x\"",
    );
    assert_eq!(e.line, Some(2), "{e}");
    let e = err(
        RdfFormat::NTriples,
        "<http://a> <http://b> <http://c> .\n<http://a> <http://b> ?x .",
    );
    assert_eq!(e.line, Some(2), "{e}");
    assert!(e.to_string().contains("line 2, column"), "{e}");
}

#[test]
fn valid_documents_parse_with_the_right_counts() {
    let ttl = "@prefix ex: <http://ex.org/> .\nex:a ex:knows ex:b , ex:c ;\n  ex:name \"A\"@en .\nex:b ex:knows [ ex:name \"anon\" ] .\n";
    assert_eq!(parse(RdfFormat::Turtle, ttl, "t").expect("parses").len(), 5);
    let nt = "<http://a> <http://b> <http://c> .\n# comment\n\n<http://a> <http://b> \"x\" . # trailing\n<http://a> <http://b> <http://c> .\n";
    assert_eq!(
        parse(RdfFormat::NTriples, nt, "t").expect("parses").len(),
        3
    );
    assert_eq!(count_triples(RdfFormat::NTriples, nt).expect("parses"), 2);
    let nq = "<http://a> <http://b> <http://c> <http://g> .\n<http://a> <http://b> <http://c> .\n_:x <http://b> \"1\" _:g .\n";
    let quads = parse(RdfFormat::NQuads, nq, "t").expect("parses");
    assert_eq!(quads.len(), 3);
    assert_eq!(quads.iter().filter(|q| q.1.is_some()).count(), 2);
}

#[test]
fn blank_nodes_are_relabelled_deterministically_into_the_scope() {
    let doc = "_:b <http://p> _:c .\n_:c <http://p> _:b .\n[] <http://p> \"x\" .";
    let a = parse(RdfFormat::Turtle, doc, "abc123").expect("parses");
    let b = parse(RdfFormat::Turtle, doc, "abc123").expect("parses");
    let label = |q: &provchain_storage::OwnedQuad| {
        use sophia_api::term::Term;
        q.0[0].bnode_id().map(|b| b.as_str().to_owned())
    };
    let la: Vec<_> = a.iter().map(label).collect();
    let lb: Vec<_> = b.iter().map(label).collect();
    assert_eq!(la, lb);
    assert_eq!(la[0].as_deref(), Some("abc123_0"));
    assert_eq!(la[1].as_deref(), Some("abc123_1"));
    assert_eq!(la[2].as_deref(), Some("abc123_2"));
    let other = parse(RdfFormat::Turtle, doc, "def").expect("parses");
    assert_ne!(other.iter().map(label).collect::<Vec<_>>(), la);
}
