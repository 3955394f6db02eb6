//! Fuzzing the tag-expression parser: an admin's (or an attacker's, with a stolen
//! admin token) text goes straight into it, and what it parses becomes SQL. proptest
//! properties on stable (`PROPTEST_CASES` inputs each: 256 in the suite, many more
//! with `scripts/fuzz`).
//!
//! Properties: nothing panics or overflows the stack, whatever the text; a refusal
//! names a position inside the text (or one past its end); every expression
//! re-parses from its canonical form to itself and matches the same subscribers; its
//! SQL binds every tag as a parameter and never carries the text.

use super::targeting::{parse, Expr, MAX_LEN};
use proptest::prelude::*;

/// Tags as stored (lowercase, with a `:` so never a keyword).
fn tag() -> impl Strategy<Value = String> {
    "[a-z]{1,6}:[a-z0-9-]{1,8}"
}

/// Well-formed expressions, shallow enough for the parser's limits.
fn expr() -> impl Strategy<Value = Expr> {
    tag().prop_map(Expr::Tag).prop_recursive(4, 24, 2, |inner| {
        prop_oneof![
            inner.clone().prop_map(|e| Expr::Not(Box::new(e))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Expr::And(Box::new(a), Box::new(b))),
            (inner.clone(), inner).prop_map(|(a, b)| Expr::Or(Box::new(a), Box::new(b))),
        ]
    })
}

/// Texts made of the grammar's own pieces in any order: the inputs most likely to
/// reach deep into the parser.
fn token_soup() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("AND".to_owned()),
        Just("or".to_owned()),
        Just("Not".to_owned()),
        Just("(".to_owned()),
        Just(")".to_owned()),
        Just(" ".to_owned()),
        Just("\t".to_owned()),
        tag(),
        "[^ ()]{1,4}",
    ];
    proptest::collection::vec(piece, 0..60).prop_map(|pieces| pieces.join(" "))
}

fn checked(text: &str) {
    let length = text.chars().count();
    match parse(text) {
        Ok(e) => {
            let again = parse(&e.to_string()).expect("a canonical form parses");
            assert_eq!(again, e, "the canonical form of {text:?}");
        }
        Err(error) => {
            assert!(
                (1..=length.max(MAX_LEN) + 1).contains(&error.position),
                "position {} outside {text:?}",
                error.position
            );
            assert!(!error.message.is_empty());
        }
    }
}

proptest! {
    #[test]
    fn any_text_parses_or_is_refused_at_a_position_inside_it(text in any::<String>()) {
        checked(&text);
    }

    #[test]
    fn any_order_of_the_grammar_s_pieces_parses_or_is_refused_at_a_position_inside_it(
        text in token_soup()
    ) {
        checked(&text);
    }

    #[test]
    fn every_expression_reparses_from_its_canonical_form_and_matches_the_same_subscribers(
        e in expr(),
        held in proptest::collection::vec(tag(), 0..6),
    ) {
        let text = e.to_string();
        let parsed = parse(&text).expect("a well-formed expression parses");
        prop_assert_eq!(&parsed, &e);
        prop_assert_eq!(parsed.matches(&held), e.matches(&held));
    }

    #[test]
    fn sql_binds_every_tag_as_a_parameter_and_never_carries_the_text(e in expr()) {
        let mut params = Vec::new();
        let sql = e.to_sql(3, &mut params);
        for (n, tag) in params.iter().enumerate() {
            let placeholder = format!("${}", n + 3);
            prop_assert!(sql.contains(&placeholder), "{sql}");
            prop_assert!(!sql.contains(tag.as_str()), "{sql}");
        }
    }

    #[test]
    fn deep_nesting_is_refused_without_overflowing_the_stack(
        depth in 30usize..5_000,
        opener in prop_oneof![Just("("), Just("NOT "), Just("( NOT ")],
    ) {
        let text = format!("{}a:b{}", opener.repeat(depth), ")".repeat(depth));
        checked(&text);
    }
}
