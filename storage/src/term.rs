//! The compact binary term encoding used by the dictionary, and the term type the dataset yields.
//!
//! Encoding (first byte is the tag; strings are UTF-8):
//!
//! | tag | term | layout after the tag |
//! |---|---|---|
//! | 1 | IRI | iri |
//! | 2 | blank node | label |
//! | 3 | literal with datatype | `u32` BE datatype length, datatype IRI, lexical form |
//! | 4 | `xsd:string` literal | lexical form |
//! | 5 | language-tagged literal | `u32` BE tag length, tag (lower case), lexical form |
//! | 6 | directional language-tagged literal | direction (0 ltr, 1 rtl), then as tag 5 |
//!
//! Language tags are lower-cased so that `"a"@EN` and `"a"@en`, equal in RDF, share one id.
//! Variables and RDF 1.2 triple terms are not storable (the parsers run in RDF 1.2 *basic* mode).

use std::sync::Arc;

use sophia_api::MownStr;
use sophia_api::term::{
    BaseDirection, BnodeId, IriRef, LanguageTag, SimpleTerm, Term, TermKind, VarName,
};

/// `xsd:string`, the implicit datatype of plain literals.
pub const XSD_STRING: &str = "http://www.w3.org/2001/XMLSchema#string";
/// `xsd:integer`.
pub const XSD_INTEGER: &str = "http://www.w3.org/2001/XMLSchema#integer";
/// `xsd:dateTime`.
pub const XSD_DATE_TIME: &str = "http://www.w3.org/2001/XMLSchema#dateTime";
const RDF_LANG_STRING: &str = "http://www.w3.org/1999/02/22-rdf-syntax-ns#langString";
const RDF_DIR_LANG_STRING: &str = "http://www.w3.org/1999/02/22-rdf-syntax-ns#dirLangString";

const TAG_IRI: u8 = 1;
const TAG_BNODE: u8 = 2;
const TAG_TYPED: u8 = 3;
const TAG_STRING: u8 = 4;
const TAG_LANG: u8 = 5;
const TAG_DIR_LANG: u8 = 6;
/// Dictionary keys of long terms: this tag plus the blake3 hash of the encoding.
const TAG_HASHED_KEY: u8 = 0xFF;
/// Encodings up to this length are their own dictionary key; longer ones are hashed.
const MAX_INLINE_KEY: usize = 64;

/// An owned RDF term, as produced by [`crate::rdf::parse`].
pub type OwnedTerm = SimpleTerm<'static>;

/// A term read from the store. Cheap to clone (shared), so the id→term cache can hand out
/// copies without allocating.
#[derive(Clone, Debug)]
pub struct StoreTerm(pub(crate) Arc<OwnedTerm>);

impl StoreTerm {
    pub fn new(t: OwnedTerm) -> Self {
        Self(Arc::new(t))
    }
    pub fn as_simple_term(&self) -> &OwnedTerm {
        &self.0
    }
}

impl Term for StoreTerm {
    type BorrowTerm<'x>
        = &'x OwnedTerm
    where
        Self: 'x;

    fn kind(&self) -> TermKind {
        self.0.kind()
    }
    fn iri(&self) -> Option<IriRef<MownStr<'_>>> {
        self.0.iri()
    }
    fn bnode_id(&self) -> Option<BnodeId<MownStr<'_>>> {
        self.0.bnode_id()
    }
    fn lexical_form(&self) -> Option<MownStr<'_>> {
        self.0.lexical_form()
    }
    fn datatype(&self) -> Option<IriRef<MownStr<'_>>> {
        self.0.datatype()
    }
    fn language_tag(&self) -> Option<LanguageTag<MownStr<'_>>> {
        self.0.language_tag()
    }
    fn base_direction(&self) -> Option<BaseDirection> {
        self.0.base_direction()
    }
    fn variable(&self) -> Option<VarName<MownStr<'_>>> {
        None
    }
    fn triple(&self) -> Option<[Self::BorrowTerm<'_>; 3]> {
        None
    }
    fn to_triple(self) -> Option<[Self; 3]> {
        None
    }
    fn borrow_term(&self) -> Self::BorrowTerm<'_> {
        &self.0
    }
}

/// Encodes any sophia term; `None` for terms the store cannot hold (variables, triple terms).
pub fn encode_term<T: Term + ?Sized>(t: &T) -> Option<Vec<u8>> {
    match t.kind() {
        TermKind::Iri => {
            let iri = t.iri()?;
            let mut out = Vec::with_capacity(1 + iri.as_str().len());
            out.push(TAG_IRI);
            out.extend_from_slice(iri.as_str().as_bytes());
            Some(out)
        }
        TermKind::BlankNode => {
            let id = t.bnode_id()?;
            let mut out = Vec::with_capacity(1 + id.as_str().len());
            out.push(TAG_BNODE);
            out.extend_from_slice(id.as_str().as_bytes());
            Some(out)
        }
        TermKind::Literal => {
            let lex = t.lexical_form()?;
            if let Some(tag) = t.language_tag() {
                let tag = tag.as_str().to_ascii_lowercase();
                let mut out = Vec::with_capacity(7 + tag.len() + lex.len());
                match t.base_direction() {
                    None => out.push(TAG_LANG),
                    Some(d) => {
                        out.push(TAG_DIR_LANG);
                        out.push(match d {
                            BaseDirection::Ltr => 0,
                            BaseDirection::Rtl => 1,
                        });
                    }
                }
                out.extend_from_slice(&(tag.len() as u32).to_be_bytes());
                out.extend_from_slice(tag.as_bytes());
                out.extend_from_slice(lex.as_bytes());
                Some(out)
            } else {
                let dt = t.datatype()?;
                let dt = dt.as_str();
                if dt == XSD_STRING {
                    let mut out = Vec::with_capacity(1 + lex.len());
                    out.push(TAG_STRING);
                    out.extend_from_slice(lex.as_bytes());
                    Some(out)
                } else {
                    let mut out = Vec::with_capacity(5 + dt.len() + lex.len());
                    out.push(TAG_TYPED);
                    out.extend_from_slice(&(dt.len() as u32).to_be_bytes());
                    out.extend_from_slice(dt.as_bytes());
                    out.extend_from_slice(lex.as_bytes());
                    Some(out)
                }
            }
        }
        TermKind::Triple | TermKind::Variable => None,
    }
}

/// The dictionary key of an encoded term: the encoding itself when short, else a hash of it,
/// which keeps the term→id tree compact for long literals.
pub fn dictionary_key(encoded: &[u8]) -> Vec<u8> {
    if encoded.len() <= MAX_INLINE_KEY {
        encoded.to_vec()
    } else {
        let mut out = Vec::with_capacity(33);
        out.push(TAG_HASHED_KEY);
        out.extend_from_slice(blake3::hash(encoded).as_bytes());
        out
    }
}

fn utf8(b: &[u8], what: &str) -> Result<String, String> {
    String::from_utf8(b.to_vec()).map_err(|_| format!("{what} is not UTF-8"))
}

fn split_len_prefixed(b: &[u8]) -> Result<(&[u8], &[u8]), String> {
    if b.len() < 4 {
        return Err("truncated length prefix".into());
    }
    let mut n = [0u8; 4];
    n.copy_from_slice(&b[..4]);
    let n = u32::from_be_bytes(n) as usize;
    let rest = &b[4..];
    if rest.len() < n {
        return Err(format!(
            "length prefix {n} exceeds the {} remaining bytes",
            rest.len()
        ));
    }
    Ok(rest.split_at(n))
}

/// Decodes a term encoding. Errors describe the corruption; they never panic.
pub fn decode_term(b: &[u8]) -> Result<OwnedTerm, String> {
    let (&tag, rest) = b.split_first().ok_or("empty term encoding")?;
    Ok(match tag {
        TAG_IRI => SimpleTerm::Iri(IriRef::new_unchecked(MownStr::from(utf8(rest, "IRI")?))),
        TAG_BNODE => SimpleTerm::BlankNode(BnodeId::new_unchecked(MownStr::from(utf8(
            rest,
            "blank node label",
        )?))),
        TAG_STRING => SimpleTerm::LiteralDatatype(
            MownStr::from(utf8(rest, "literal")?),
            IriRef::new_unchecked(MownStr::from(XSD_STRING)),
        ),
        TAG_TYPED => {
            let (dt, lex) = split_len_prefixed(rest)?;
            SimpleTerm::LiteralDatatype(
                MownStr::from(utf8(lex, "literal")?),
                IriRef::new_unchecked(MownStr::from(utf8(dt, "datatype")?)),
            )
        }
        TAG_LANG => {
            let (tag, lex) = split_len_prefixed(rest)?;
            SimpleTerm::LiteralLanguage(
                MownStr::from(utf8(lex, "literal")?),
                LanguageTag::new_unchecked(MownStr::from(utf8(tag, "language tag")?)),
                None,
            )
        }
        TAG_DIR_LANG => {
            let (&dir, rest) = rest.split_first().ok_or("truncated direction")?;
            let dir = match dir {
                0 => BaseDirection::Ltr,
                1 => BaseDirection::Rtl,
                d => return Err(format!("invalid base direction {d}")),
            };
            let (tag, lex) = split_len_prefixed(rest)?;
            SimpleTerm::LiteralLanguage(
                MownStr::from(utf8(lex, "literal")?),
                LanguageTag::new_unchecked(MownStr::from(utf8(tag, "language tag")?)),
                Some(dir),
            )
        }
        t => return Err(format!("unknown term tag {t}")),
    })
}

/// Builders for the terms the store writes itself (chain metadata).
pub fn iri(s: impl Into<String>) -> OwnedTerm {
    SimpleTerm::Iri(IriRef::new_unchecked(MownStr::from(s.into())))
}

pub fn typed_literal(lex: impl Into<String>, datatype: &'static str) -> OwnedTerm {
    SimpleTerm::LiteralDatatype(
        MownStr::from(lex.into()),
        IriRef::new_unchecked(MownStr::from(datatype)),
    )
}

pub fn string_literal(lex: impl Into<String>) -> OwnedTerm {
    typed_literal(lex, XSD_STRING)
}

/// Writes a term in N-Triples syntax (used for CONSTRUCT/DESCRIBE output).
pub fn write_nt<T: Term + ?Sized>(t: &T, out: &mut String) {
    match t.kind() {
        TermKind::Iri => {
            if let Some(i) = t.iri() {
                out.push('<');
                out.push_str(i.as_str());
                out.push('>');
            }
        }
        TermKind::BlankNode => {
            if let Some(b) = t.bnode_id() {
                out.push_str("_:");
                out.push_str(b.as_str());
            }
        }
        TermKind::Literal => {
            let lex = t.lexical_form().map(|l| l.to_string()).unwrap_or_default();
            out.push('"');
            for c in lex.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    c => out.push(c),
                }
            }
            out.push('"');
            if let Some(tag) = t.language_tag() {
                out.push('@');
                out.push_str(tag.as_str());
                if let Some(d) = t.base_direction() {
                    out.push_str("--");
                    out.push_str(match d {
                        BaseDirection::Ltr => "ltr",
                        BaseDirection::Rtl => "rtl",
                    });
                }
            } else if let Some(dt) = t.datatype()
                && dt.as_str() != XSD_STRING
                && dt.as_str() != RDF_LANG_STRING
                && dt.as_str() != RDF_DIR_LANG_STRING
            {
                out.push_str("^^<");
                out.push_str(dt.as_str());
                out.push('>');
            }
        }
        TermKind::Triple | TermKind::Variable => out.push_str("_:unsupported"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_every_kind() {
        let terms = vec![
            iri("http://example.org/a"),
            SimpleTerm::BlankNode(BnodeId::new_unchecked(MownStr::from("abc_1"))),
            string_literal("hello \"world\""),
            typed_literal("42", XSD_INTEGER),
            SimpleTerm::LiteralLanguage(
                MownStr::from("bonjour"),
                LanguageTag::new_unchecked(MownStr::from("fr")),
                None,
            ),
            SimpleTerm::LiteralLanguage(
                MownStr::from("salaam"),
                LanguageTag::new_unchecked(MownStr::from("ar")),
                Some(BaseDirection::Rtl),
            ),
        ];
        for t in terms {
            let enc = encode_term(&t).expect("storable");
            let back = decode_term(&enc).expect("decodes");
            assert!(Term::eq(&t, &back), "{t:?} vs {back:?}");
        }
    }

    #[test]
    fn corrupt_encodings_are_errors() {
        for bad in [
            &[][..],
            &[9, 1, 2],
            &[3, 0, 0, 0, 9, b'a'],
            &[1, 0xff, 0xfe],
            &[6, 7],
        ] {
            assert!(decode_term(bad).is_err(), "{bad:?}");
        }
    }
}
