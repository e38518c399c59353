//! Pub/Sub's subscription filter language over message attributes:
//! `attributes:KEY` (has the key), `attributes.KEY = "v"`, `!=`,
//! `hasPrefix(attributes.KEY, "p")`, `NOT` (or `-`), `AND`, `OR` and
//! parentheses; at most 256 bytes. As in Pub/Sub, `AND` and `OR` are not
//! mixed without parentheses. A key is `[A-Za-z0-9_-]+` or a string
//! literal; values are string literals with `\\`, `\"`, `\n`, `\t`, `\r`
//! escapes.
//!
//! Pub/Sub layer, pure functions. A recursive-descent parser: each byte is
//! looked at once, and nesting is bounded by the length limit, so parsing
//! and evaluation are linear in the filter's size.

/// Pub/Sub's limit on a filter's length.
pub const MAX_FILTER_BYTES: usize = 256;

/// A parsed filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// `attributes:KEY`.
    Has(String),
    /// `attributes.KEY = "v"` (`equal`) or `!=`.
    Compare {
        /// The attribute.
        key: String,
        /// The value.
        value: String,
        /// `=` rather than `!=`.
        equal: bool,
    },
    /// `hasPrefix(attributes.KEY, "p")`.
    Prefix(String, String),
    /// `NOT e`.
    Not(Box<Expr>),
    /// Every one holds.
    And(Vec<Expr>),
    /// One holds.
    Or(Vec<Expr>),
}

impl Expr {
    /// Whether a message with these attributes (an event's, at most a
    /// hundred through Pub/Sub) matches.
    pub fn matches(&self, attributes: &[(String, String)]) -> bool {
        let get = |key: &str| attributes.iter().find(|(k, _)| k == key).map(|(_, v)| v);
        match self {
            Expr::Has(k) => get(k).is_some(),
            // A message without the key matches neither `=` nor `!=`.
            Expr::Compare { key, value, equal } => get(key).is_some_and(|v| (v == value) == *equal),
            Expr::Prefix(k, p) => get(k).is_some_and(|v| v.starts_with(p.as_str())),
            Expr::Not(e) => !e.matches(attributes),
            Expr::And(es) => es.iter().all(|e| e.matches(attributes)),
            Expr::Or(es) => es.iter().any(|e| e.matches(attributes)),
        }
    }
}

/// Parses a filter; the empty filter is `None` (everything matches).
///
/// # Errors
/// A sentence saying what is wrong and where (Pub/Sub answers
/// INVALID_ARGUMENT with it).
pub fn parse(text: &str) -> Result<Option<Expr>, String> {
    if text.len() > MAX_FILTER_BYTES {
        return Err(format!(
            "Invalid filter: it is {} bytes, the limit is {MAX_FILTER_BYTES}.",
            text.len()
        ));
    }
    let mut p = Parser {
        s: text.as_bytes(),
        at: 0,
    };
    p.space();
    if p.at == p.s.len() {
        return Ok(None);
    }
    let e = p.or_and()?;
    p.space();
    if p.at < p.s.len() {
        return Err(p.error("unexpected text"));
    }
    Ok(Some(e))
}

struct Parser<'a> {
    s: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn error(&self, what: &str) -> String {
        format!("Invalid filter: {what} at byte {}.", self.at)
    }

    fn space(&mut self) {
        while self.s.get(self.at).is_some_and(u8::is_ascii_whitespace) {
            self.at += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.at).copied()
    }

    fn eat(&mut self, token: &str) -> bool {
        if self.s[self.at..].starts_with(token.as_bytes()) {
            self.at += token.len();
            true
        } else {
            false
        }
    }

    /// A keyword (`AND`, `OR`, `NOT`) followed by a non-word byte.
    fn keyword(&mut self, word: &str) -> bool {
        let end = self.at + word.len();
        let rest = &self.s[self.at..];
        let after = self.s.get(end).copied();
        if rest.starts_with(word.as_bytes()) && !after.is_some_and(is_word) {
            self.at = end;
            true
        } else {
            false
        }
    }

    /// Terms joined by one kind of operator.
    fn or_and(&mut self) -> Result<Expr, String> {
        let first = self.unary()?;
        let mut terms = vec![first];
        let mut op: Option<&str> = None;
        loop {
            self.space();
            let this = if self.keyword("AND") {
                "AND"
            } else if self.keyword("OR") {
                "OR"
            } else {
                break;
            };
            if op.is_some_and(|o| o != this) {
                return Err(self.error("AND and OR mixed without parentheses"));
            }
            op = Some(this);
            terms.push(self.unary()?);
        }
        Ok(match (op, terms.len()) {
            (_, 1) => terms.pop().expect("one term"),
            (Some("OR"), _) => Expr::Or(terms),
            _ => Expr::And(terms),
        })
    }

    fn unary(&mut self) -> Result<Expr, String> {
        self.space();
        if self.keyword("NOT") || self.eat("-") {
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if self.eat("(") {
            let e = self.or_and()?;
            self.space();
            if !self.eat(")") {
                return Err(self.error("expected ')'"));
            }
            return Ok(e);
        }
        if self.eat("hasPrefix") {
            self.space();
            if !self.eat("(") {
                return Err(self.error("expected '(' after hasPrefix"));
            }
            self.space();
            let key = self.attribute(".")?;
            self.space();
            if !self.eat(",") {
                return Err(self.error("expected ','"));
            }
            self.space();
            let prefix = self.string()?;
            self.space();
            if !self.eat(")") {
                return Err(self.error("expected ')'"));
            }
            return Ok(Expr::Prefix(key, prefix));
        }
        if self.eat("attributes:") {
            return Ok(Expr::Has(self.key()?));
        }
        let key = self.attribute(".")?;
        self.space();
        let equal = if self.eat("!=") {
            false
        } else if self.eat("=") {
            true
        } else {
            return Err(self.error("expected '=' or '!='"));
        };
        self.space();
        let value = self.string()?;
        Ok(Expr::Compare { key, value, equal })
    }

    /// `attributes` + `sep` + a key.
    fn attribute(&mut self, sep: &str) -> Result<String, String> {
        if !self.eat("attributes") || !self.eat(sep) {
            return Err(self.error(&format!("expected 'attributes{sep}KEY'")));
        }
        self.key()
    }

    fn key(&mut self) -> Result<String, String> {
        if self.peek() == Some(b'"') {
            return self.string();
        }
        let start = self.at;
        while self.peek().is_some_and(is_word) {
            self.at += 1;
        }
        if start == self.at {
            return Err(self.error("expected an attribute key"));
        }
        Ok(String::from_utf8_lossy(&self.s[start..self.at]).into_owned())
    }

    /// A double-quoted string literal.
    fn string(&mut self) -> Result<String, String> {
        if !self.eat("\"") {
            return Err(self.error("expected a string literal"));
        }
        let mut out = Vec::new();
        loop {
            let Some(b) = self.peek() else {
                return Err(self.error("unterminated string"));
            };
            self.at += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    let escaped = match self.peek() {
                        Some(b'\\') => b'\\',
                        Some(b'"') => b'"',
                        Some(b'n') => b'\n',
                        Some(b't') => b'\t',
                        Some(b'r') => b'\r',
                        _ => return Err(self.error("unknown escape")),
                    };
                    self.at += 1;
                    out.push(escaped);
                }
                b => out.push(b),
            }
        }
        String::from_utf8(out).map_err(|_| self.error("a string literal that is not UTF-8"))
    }
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn matches(filter: &str, pairs: &[(&str, &str)]) -> bool {
        parse(filter)
            .unwrap()
            .expect("a filter")
            .matches(&attrs(pairs))
    }

    #[test]
    fn the_operators_match_as_pubsub_documents() {
        let eu = [("region", "eu-west"), ("kind", "order")];
        assert!(matches("attributes:region", &eu));
        assert!(!matches("attributes:missing", &eu));
        assert!(matches("attributes.kind = \"order\"", &eu));
        assert!(matches("attributes.kind != \"refund\"", &eu));
        assert!(
            !matches("attributes.nope != \"x\"", &eu),
            "no key: neither = nor !="
        );
        assert!(matches("hasPrefix(attributes.region, \"eu-\")", &eu));
        assert!(matches("NOT attributes:missing", &eu));
        assert!(matches("-attributes:missing", &eu));
        assert!(matches(
            "attributes:region AND attributes.kind = \"order\"",
            &eu
        ));
        assert!(matches(
            "attributes:x OR attributes:kind OR attributes:y",
            &eu
        ));
        assert!(matches(
            "attributes:region AND (attributes.kind = \"x\" OR attributes.kind = \"order\")",
            &eu
        ));
        assert!(matches(
            "attributes.\"odd key\" = \"a\\\"b\"",
            &[("odd key", "a\"b")]
        ));
        assert_eq!(parse("  ").unwrap(), None, "empty: everything matches");
    }

    #[test]
    fn malformed_filters_are_refused_with_a_reason() {
        for bad in [
            "attributes",
            "attributes.k",
            "attributes.k = v",
            "attributes.k = \"v",
            "attributes:",
            "attributes:a AND attributes:b OR attributes:c",
            "(attributes:a",
            "hasPrefix(attributes.k)",
            "attributes:a AND",
            "data = \"x\"",
            "attributes.k = \"\\q\"",
            "attributes:a extra",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.starts_with("Invalid filter:"), "{bad}: {err}");
        }
        assert!(
            parse(&format!("attributes:{}", "k".repeat(250))).is_err(),
            "over 256 bytes"
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_text_parses_or_is_refused(text in ".{0,300}") {
            let _ = parse(&text);
        }
    }
}
