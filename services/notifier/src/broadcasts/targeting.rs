//! Tag expressions: who of a tenant's opted-in subscribers a broadcast reaches.
//!
//! `ward:phu-thuy AND (topic:nong-nghiep OR topic:thuy-san)`: tags joined by `AND`,
//! `OR` and `NOT` (any case) and grouped by parentheses; `NOT` binds tightest, then
//! `AND`, then `OR`. [`parse`] is a pure `&str -> Result`: a bad expression is a
//! [`ParseError`] naming the 1-based character position where it goes wrong, which
//! the API answers as a `422`. A parsed [`Expr`] compiles to SQL over the subscribers'
//! `tags` array ([`Expr::to_sql`]: `tags @> ARRAY[$n]` per tag, which the GIN index
//! serves) and can be evaluated in memory ([`Expr::matches`]), the reference the SQL
//! is held to in the tests.
//!
//! Limits keep a hostile expression cheap: at most [`MAX_LEN`] characters,
//! [`MAX_TAGS`] tags and [`MAX_DEPTH`] nested parentheses or `NOT`s (the parser
//! recurses, and must not overflow its stack on `((((…`).

use std::fmt;

/// Longest expression accepted, in characters.
pub const MAX_LEN: usize = 2000;
/// Most tags in one expression.
pub const MAX_TAGS: usize = 64;
/// Deepest nesting of parentheses and `NOT`s.
pub const MAX_DEPTH: usize = 32;
/// Longest tag, in characters.
pub const MAX_TAG_CHARS: usize = 64;

/// A parsed tag expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// Subscribers carrying this tag.
    Tag(String),
    /// Those not matching the inner expression.
    Not(Box<Expr>),
    /// Those matching both.
    And(Box<Expr>, Box<Expr>),
    /// Those matching either.
    Or(Box<Expr>, Box<Expr>),
}

/// Why an expression does not parse, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based character position of the offending token (one past the end for an
    /// expression that stops too early).
    pub position: usize,
    /// What is wrong there.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at position {}", self.message, self.position)
    }
}

impl std::error::Error for ParseError {}

/// A tag as stored: trimmed and lowercased; letters (any script), digits and `:`,
/// `-`, `_`, `.`; 1 to [`MAX_TAG_CHARS`] characters. The reason when it is not one.
pub fn normalize_tag(raw: &str) -> Result<String, String> {
    let tag = raw.trim().to_lowercase();
    if tag.is_empty() {
        return Err("a tag cannot be empty".to_owned());
    }
    if tag.chars().count() > MAX_TAG_CHARS {
        return Err(format!("a tag has at most {MAX_TAG_CHARS} characters"));
    }
    if let Some(c) = tag
        .chars()
        .find(|c| !(c.is_alphanumeric() || matches!(c, ':' | '-' | '_' | '.')))
    {
        return Err(format!(
            "`{c}` cannot be part of a tag (letters, digits, `:`, `-`, `_`, `.`)"
        ));
    }
    Ok(tag)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Open,
    Close,
    And,
    Or,
    Not,
    Word(String),
}

/// Splits an expression into tokens, each with its 1-based position.
fn tokenize(input: &str) -> Vec<(Token, usize)> {
    let mut tokens = Vec::new();
    let mut chars = input.chars().enumerate().peekable();
    while let Some((i, c)) = chars.next() {
        let position = i + 1;
        match c {
            c if c.is_whitespace() => {}
            '(' => tokens.push((Token::Open, position)),
            ')' => tokens.push((Token::Close, position)),
            _ => {
                let mut word = String::from(c);
                while let Some(&(_, next)) = chars.peek() {
                    if next.is_whitespace() || next == '(' || next == ')' {
                        break;
                    }
                    word.push(next);
                    chars.next();
                }
                let token = match word.to_ascii_uppercase().as_str() {
                    "AND" => Token::And,
                    "OR" => Token::Or,
                    "NOT" => Token::Not,
                    _ => Token::Word(word),
                };
                tokens.push((token, position));
            }
        }
    }
    tokens
}

struct Parser {
    tokens: Vec<(Token, usize)>,
    at: usize,
    end: usize,
    tags: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at).map(|(t, _)| t)
    }

    fn position(&self) -> usize {
        self.tokens.get(self.at).map_or(self.end, |(_, p)| *p)
    }

    fn error(&self, message: impl Into<String>) -> ParseError {
        ParseError {
            position: self.position(),
            message: message.into(),
        }
    }

    fn or(&mut self, depth: usize) -> Result<Expr, ParseError> {
        let mut left = self.and(depth)?;
        while self.peek() == Some(&Token::Or) {
            self.at += 1;
            let right = self.and(depth)?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self, depth: usize) -> Result<Expr, ParseError> {
        let mut left = self.unary(depth)?;
        while self.peek() == Some(&Token::And) {
            self.at += 1;
            let right = self.unary(depth)?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self, depth: usize) -> Result<Expr, ParseError> {
        if depth >= MAX_DEPTH {
            return Err(self.error(format!("nested deeper than {MAX_DEPTH} levels")));
        }
        match self.peek().cloned() {
            Some(Token::Not) => {
                self.at += 1;
                Ok(Expr::Not(Box::new(self.unary(depth + 1)?)))
            }
            Some(Token::Open) => {
                self.at += 1;
                let inner = self.or(depth + 1)?;
                if self.peek() != Some(&Token::Close) {
                    return Err(self.error("expected `)`"));
                }
                self.at += 1;
                Ok(inner)
            }
            Some(Token::Word(word)) => {
                let tag = normalize_tag(&word).map_err(|m| self.error(m))?;
                self.tags += 1;
                if self.tags > MAX_TAGS {
                    return Err(self.error(format!("more than {MAX_TAGS} tags")));
                }
                self.at += 1;
                Ok(Expr::Tag(tag))
            }
            Some(Token::Close) => Err(self.error("unexpected `)`: expected a tag")),
            Some(Token::And) | Some(Token::Or) => {
                Err(self.error("expected a tag, `NOT` or `(` before the operator"))
            }
            None => Err(self.error("the expression ends where a tag was expected")),
        }
    }
}

/// Parses a tag expression (see the module docs).
pub fn parse(input: &str) -> Result<Expr, ParseError> {
    let length = input.chars().count();
    if length > MAX_LEN {
        return Err(ParseError {
            position: MAX_LEN + 1,
            message: format!("longer than {MAX_LEN} characters"),
        });
    }
    let mut parser = Parser {
        tokens: tokenize(input),
        at: 0,
        end: length + 1,
        tags: 0,
    };
    if parser.tokens.is_empty() {
        return Err(parser.error("the expression is empty"));
    }
    let expr = parser.or(0)?;
    match parser.peek() {
        None => Ok(expr),
        Some(Token::Close) => Err(parser.error("unexpected `)`")),
        Some(_) => Err(parser.error("expected `AND`, `OR` or the end")),
    }
}

impl Expr {
    /// Whether a subscriber with these tags matches.
    pub fn matches(&self, tags: &[String]) -> bool {
        match self {
            Self::Tag(t) => tags.iter().any(|x| x == t),
            Self::Not(e) => !e.matches(tags),
            Self::And(a, b) => a.matches(tags) && b.matches(tags),
            Self::Or(a, b) => a.matches(tags) || b.matches(tags),
        }
    }

    /// The expression as a SQL condition over the `tags` column, each tag a bind
    /// parameter appended to `params` and numbered from `first` on (`$first` is the
    /// first tag's).
    pub fn to_sql(&self, first: usize, params: &mut Vec<String>) -> String {
        match self {
            Self::Tag(t) => {
                params.push(t.clone());
                format!("tags @> ARRAY[${}::text]", first + params.len() - 1)
            }
            Self::Not(e) => format!("NOT ({})", e.to_sql(first, params)),
            Self::And(a, b) => format!(
                "({} AND {})",
                a.to_sql(first, params),
                b.to_sql(first, params)
            ),
            Self::Or(a, b) => format!(
                "({} OR {})",
                a.to_sql(first, params),
                b.to_sql(first, params)
            ),
        }
    }
}

impl fmt::Display for Expr {
    /// The canonical form: tags lowercased, every binary operation parenthesised.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tag(t) => f.write_str(t),
            Self::Not(e) => write!(f, "NOT {e}"),
            Self::And(a, b) => write!(f, "({a} AND {b})"),
            Self::Or(a, b) => write!(f, "({a} OR {b})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(list: &[&str]) -> Vec<String> {
        list.iter().map(|t| (*t).to_owned()).collect()
    }

    #[test]
    fn the_issue_s_example_parses_with_and_binding_tighter_than_or() {
        let e = parse("ward:phu-thuy AND (topic:nong-nghiep OR topic:thuy-san)").unwrap();
        assert_eq!(
            e.to_string(),
            "(ward:phu-thuy AND (topic:nong-nghiep OR topic:thuy-san))"
        );
        assert!(e.matches(&tags(&["ward:phu-thuy", "topic:thuy-san"])));
        assert!(!e.matches(&tags(&["ward:phu-thuy"])));
        assert!(!e.matches(&tags(&["topic:thuy-san"])));

        let e = parse("a OR b AND c").unwrap();
        assert_eq!(e.to_string(), "(a OR (b AND c))");
    }

    #[test]
    fn not_binds_tightest_and_keywords_and_tags_ignore_case() {
        let e = parse("not Ward:A and B").unwrap();
        assert_eq!(e.to_string(), "(NOT ward:a AND b)");
        assert!(e.matches(&tags(&["b"])));
        assert!(!e.matches(&tags(&["ward:a", "b"])));
        assert_eq!(
            parse("NOT NOT x").unwrap(),
            Expr::Not(Box::new(Expr::Not(Box::new(Expr::Tag("x".into())))))
        );
    }

    #[test]
    fn bad_expressions_name_their_position() {
        let cases = [
            ("", 1, "empty"),
            ("a AND", 6, "ends where a tag"),
            ("(a OR b", 8, "expected `)`"),
            ("a b", 3, "expected `AND`, `OR`"),
            ("a AND )", 7, "unexpected `)`"),
            ("a)", 2, "unexpected `)`"),
            ("OR a", 1, "before the operator"),
            ("a AND b$c", 7, "cannot be part of a tag"),
            ("phường:phú-thủy AND (x OR", 26, "ends where"),
        ];
        for (input, position, message) in cases {
            let e = parse(input).unwrap_err();
            assert_eq!(e.position, position, "{input:?}: {e}");
            assert!(e.message.contains(message), "{input:?}: {e}");
        }
    }

    #[test]
    fn tags_in_any_script_are_accepted_lowercased() {
        assert_eq!(
            parse("Phường:Phú-Thủy").unwrap(),
            Expr::Tag("phường:phú-thủy".into())
        );
        assert!(normalize_tag(&"x".repeat(MAX_TAG_CHARS + 1)).is_err());
    }

    #[test]
    fn hostile_expressions_are_refused_without_recursing_deeply() {
        let deep = format!("{}a{}", "(".repeat(500), ")".repeat(500));
        let e = parse(&deep).unwrap_err();
        assert!(e.message.contains("nested deeper"), "{e}");
        let nots = format!("{}a", "NOT ".repeat(1_000));
        assert!(parse(&nots).is_err());
        let many = vec!["t"; MAX_TAGS + 1].join(" OR ");
        assert!(parse(&many).unwrap_err().message.contains("more than"));
        assert!(parse(&"a".repeat(MAX_LEN + 1)).is_err());
    }

    #[test]
    fn the_sql_binds_every_tag_as_a_numbered_parameter() {
        let e = parse("a AND NOT (b OR c)").unwrap();
        let mut params = Vec::new();
        let sql = e.to_sql(3, &mut params);
        assert_eq!(
            sql,
            "(tags @> ARRAY[$3::text] AND NOT ((tags @> ARRAY[$4::text] OR tags @> ARRAY[$5::text])))"
        );
        assert_eq!(params, ["a", "b", "c"]);
        // A quote in a tag is refused, so nothing but parameters ever reaches the SQL.
        assert!(parse("a' OR 1=1 --").is_err());
    }
}
