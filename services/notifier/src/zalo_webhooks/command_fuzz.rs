//! Fuzzing the chat-command parser: any Zalo user can send the OA any text, and what
//! it parses to decides whether a dossier lookup goes to the tracker or a citizen is
//! unsubscribed. proptest properties on stable (`PROPTEST_CASES` inputs each: 256 in
//! the suite, many more with `scripts/fuzz`).
//!
//! Properties: nothing panics, whatever the text; a lookup's code is never empty, has
//! no whitespace, is at most 50 characters and was typed by the citizen; "tra cứu"
//! spelled in any case, with or without diacritics (composed or decomposed) and with
//! any spacing, followed by a code, is a lookup of exactly that code; a dossier code
//! alone is a lookup of itself; opt-outs are exactly what the broadcasts' own
//! recogniser says; surrounding whitespace never changes the answer.

use super::command::{parse, Command, MAX_CODE_CHARS};
use proptest::prelude::*;

/// "tra cứu" in the spellings citizens type.
fn keyword() -> impl Strategy<Value = String> {
    let tra = prop_oneof![Just("tra"), Just("Tra"), Just("TRA"), Just("trA")];
    let cuu = prop_oneof![
        Just("cứu"),
        Just("cuu"),
        Just("CỨU"),
        Just("Cứu"),
        Just("CUU"),
        Just("cu\u{31b}\u{301}u"),
        Just("cưu"),
        Just("cuú"),
    ];
    let gap = prop_oneof![
        Just(""),
        Just(" "),
        Just("   "),
        Just("\t"),
        Just("-"),
        Just(" _ ")
    ];
    (tra, gap, cuu).prop_map(|(t, g, c)| format!("{t}{g}{c}"))
}

/// Codes as sources send them: letters, digits, dots, dashes and slashes.
fn code() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9./-]{0,48}[A-Za-z0-9]"
}

/// Dossier codes in the one-stop systems' shape.
fn dossier_code() -> impl Strategy<Value = String> {
    (
        "([0-9]{2,3}\\.){0,3}[A-Z][0-9]{2}",
        "[0-9]{6}",
        "[0-9]{4,6}",
    )
        .prop_map(|(agency, date, counter)| format!("{agency}-{date}-{counter}"))
}

/// Texts made of the parser's own pieces in any order.
fn soup() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        keyword(),
        code(),
        dossier_code(),
        Just("huỷ".to_owned()),
        Just("thông báo".to_owned()),
        Just(":".to_owned()),
        Just(".".to_owned()),
        Just("\u{301}".to_owned()),
        Just("\u{202e}".to_owned()),
        "\\PC{0,6}",
    ];
    proptest::collection::vec(piece, 0..12).prop_map(|pieces| pieces.join(" "))
}

fn checked(text: &str) -> Command {
    let command = parse(text);
    if let Command::Lookup { code } = &command {
        assert!(!code.is_empty(), "{text:?}");
        assert!(code.chars().count() <= MAX_CODE_CHARS, "{text:?}");
        assert!(!code.chars().any(char::is_whitespace), "{text:?}");
        let typed: String = text
            .chars()
            .filter(|c| !('\u{300}'..='\u{36f}').contains(c))
            .collect();
        assert!(typed.contains(code.as_str()), "{code:?} not in {text:?}");
    }
    assert_eq!(
        command == Command::OptOut,
        crate::broadcasts::is_opt_out(text),
        "{text:?}"
    );
    assert_eq!(parse(&format!("  {text}\n")), command, "{text:?} padded");
    command
}

proptest! {
    #[test]
    fn any_text_parses_without_panicking(text in "\\PC{0,200}") {
        checked(&text);
    }

    #[test]
    fn any_mix_of_the_grammar_s_pieces_parses_consistently(text in soup()) {
        checked(&text);
    }

    #[test]
    fn tra_cuu_and_a_code_is_a_lookup_of_that_code(
        keyword in keyword(),
        code in code(),
        colon in prop_oneof![Just(""), Just(":"), Just(" :")],
        tail in prop_oneof![Just(""), Just("."), Just(" giúp em"), Just("?")],
    ) {
        let text = format!("{keyword}{colon} {code}{tail}");
        prop_assert_eq!(checked(&text), Command::Lookup { code });
    }

    #[test]
    fn a_dossier_code_alone_is_a_lookup_of_itself(code in dossier_code()) {
        prop_assert_eq!(checked(&code), Command::Lookup { code: code.clone() });
        let lower = code.to_lowercase();
        prop_assert_eq!(checked(&lower), Command::Lookup { code: lower.clone() });
    }
}
