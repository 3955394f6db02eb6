//! What a citizen's chat message to the OA asks for: a dossier lookup ("tra cứu
//! <mã>", or the code alone when it looks like one), an opt-out from broadcasts
//! ("huỷ", see [`crate::broadcasts::is_opt_out`]), or anything else (left for the
//! OA's staff). A pure function of the text: the webhook handler decides what to do
//! with the answer, and the fuzz target (`command_fuzz.rs`) can hammer it.

use loa_contracts::text::{fold_vietnamese, is_combining_mark};

/// Longest dossier code accepted (codes are opaque strings of at most 50 characters).
pub const MAX_CODE_CHARS: usize = 50;

/// What a chat message asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Look a dossier up by its code (as typed: codes are opaque).
    Lookup {
        /// The dossier code, without surrounding punctuation, at most
        /// [`MAX_CODE_CHARS`] characters, never empty, without whitespace.
        code: String,
    },
    /// Stop broadcasts ("huỷ").
    OptOut,
    /// Anything else.
    Other,
}

/// Reads a citizen's chat message. Opt-out first (its words never look like a
/// lookup), then "tra cứu <mã>" in any case, with or without diacritics (composed or
/// decomposed), with any spacing ("TRA CỨU:  HS-0301", "tracuu HS-0301"), then a
/// message that is a dossier code alone (`000.00.06.H56-261128-0001`).
pub fn parse(text: &str) -> Command {
    if crate::broadcasts::is_opt_out(text) {
        return Command::OptOut;
    }
    if let Some(code) = lookup_keyword(text) {
        return Command::Lookup { code };
    }
    let alone = trim_punctuation(text.trim());
    if looks_like_dossier_code(alone) {
        return Command::Lookup {
            code: alone.to_owned(),
        };
    }
    Command::Other
}

/// Whether `text` has the shape of a one-stop system's dossier code, `{agency
/// identifier}-{yyMMdd}-{counter}` (`000.00.06.H56-231027-0361`, `38.98.H29-210519-0003`):
/// an agency part of letters, digits and dots with at least one letter, a six-digit
/// date, a counter of four digits or more. Other systems' codes are accepted after
/// "tra cứu" only: a bare number or word is more likely a greeting or a phone.
pub fn looks_like_dossier_code(text: &str) -> bool {
    if text.is_empty() || text.chars().count() > MAX_CODE_CHARS {
        return false;
    }
    let mut parts = text.rsplitn(3, '-');
    let (Some(counter), Some(date), Some(agency)) = (parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    counter.len() >= 4
        && digits(counter)
        && date.len() == 6
        && digits(date)
        && !agency.is_empty()
        && agency
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.')
        && agency.bytes().any(|b| b.is_ascii_alphabetic())
        && !agency.starts_with('.')
        && !agency.ends_with('.')
}

/// The dossier code of a "tra cuu <code>" message, whatever its case and diacritics;
/// `None` for any other text. The code is returned as typed, without trailing
/// punctuation, at most [`MAX_CODE_CHARS`] characters.
fn lookup_keyword(text: &str) -> Option<String> {
    // Combining marks (decomposed input) go first, so indices agree with `folded`.
    let chars: Vec<char> = text
        .trim()
        .chars()
        .filter(|c| !is_combining_mark(*c))
        .collect();
    let folded: Vec<char> = chars.iter().map(|&c| fold_vietnamese(c)).collect();
    let mut i = 0;
    for (n, word) in ["tra", "cuu"].iter().enumerate() {
        if n > 0 {
            while folded.get(i).copied().is_some_and(is_separator) {
                i += 1;
            }
        }
        for expected in word.chars() {
            if folded.get(i) != Some(&expected) {
                return None;
            }
            i += 1;
        }
    }
    if folded.get(i).is_some_and(|c| c.is_alphanumeric()) {
        // "tra cuuX…": the keyword runs into another word.
        return None;
    }
    let rest: String = chars[i..].iter().collect();
    let code = rest
        .split(|c: char| c.is_whitespace() || c == ':')
        .map(trim_punctuation)
        .find(|w| !w.is_empty() && *w != "-")?;
    (code.chars().count() <= MAX_CODE_CHARS).then(|| code.to_owned())
}

fn trim_punctuation(word: &str) -> &str {
    word.trim_matches(|c: char| {
        matches!(
            c,
            '.' | ',' | '!' | '?' | '"' | '\'' | '“' | '”' | '(' | ')' | ';'
        )
    })
}

fn is_separator(c: char) -> bool {
    c.is_whitespace() || c == '-' || c == '_'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(code: &str) -> Command {
        Command::Lookup {
            code: code.to_owned(),
        }
    }

    #[test]
    fn lookups_are_recognised_whatever_their_case_and_diacritics() {
        for text in [
            "tra cuu HS-0301",
            "Tra cứu HS-0301",
            "TRA CỨU   HS-0301.",
            "tra cuu: HS-0301",
            "tracuu HS-0301",
            "  Tra-cứu HS-0301 giúp em",
            "tra\tcứu\n HS-0301",
            "Tra cứu (HS-0301)",
        ] {
            assert_eq!(parse(text), lookup("HS-0301"), "{text}");
        }
    }

    #[test]
    fn a_dossier_code_alone_is_a_lookup() {
        for (text, code) in [
            ("000.00.06.H56-261128-0001", "000.00.06.H56-261128-0001"),
            ("  000.00.06.h56-261128-0001. ", "000.00.06.h56-261128-0001"),
            ("38.98.H29-210519-0003", "38.98.H29-210519-0003"),
            ("H56-261128-00017", "H56-261128-00017"),
        ] {
            assert_eq!(parse(text), lookup(code), "{text}");
        }
    }

    #[test]
    fn numbers_words_and_almost_codes_alone_are_not_lookups() {
        for text in [
            "0903123456",
            "HS-0301",
            "000.00.06-261128-0001",
            "000.00.06.H56-26112-0001",
            "000.00.06.H56-261128-001",
            "H56.-261128-0001",
            "H56 261128 0001",
            "xin chào",
            "",
        ] {
            assert_eq!(parse(text), Command::Other, "{text}");
        }
    }

    #[test]
    fn other_messages_are_not_lookups() {
        for text in [
            "xin chào",
            "tra cuu",
            "tra cứu   ",
            "tra cuuHS-0301",
            "hãy tra cứu HS-0301",
            "trà",
            "tra cứu ...",
        ] {
            assert_eq!(parse(text), Command::Other, "{text}");
        }
    }

    #[test]
    fn a_code_longer_than_fifty_characters_is_not_a_lookup() {
        let long = "A".repeat(51);
        assert_eq!(parse(&format!("tra cứu {long}")), Command::Other);
        let fifty = "A".repeat(50);
        assert_eq!(parse(&format!("tra cứu {fifty}")), lookup(&fifty));
    }

    #[test]
    fn huy_opts_out_and_is_never_a_lookup() {
        for text in ["huỷ", "Hủy thông báo", "HUY"] {
            assert_eq!(parse(text), Command::OptOut, "{text}");
        }
        assert_eq!(parse("huỷ hồ sơ giúp em"), Command::Other);
    }

    #[test]
    fn decomposed_diacritics_are_folded_too() {
        // "cứu" as `u` + combining horn + combining acute, as some keyboards type it.
        let text = "Tra cu\u{31b}\u{301}u HS-0301";
        assert_eq!(parse(text), lookup("HS-0301"));
        assert_eq!(fold_vietnamese('Đ'), 'd');
        assert_eq!(fold_vietnamese('Ự'), 'u');
        assert_eq!(fold_vietnamese('x'), 'x');
    }
}
