//! Recognising a citizen's "huỷ" (cancel) written to the OA: the chat way to opt out
//! of broadcasts. A pure function, so the general chat-command parser can call it.
//!
//! A message is an opt-out when, ignoring case, diacritics (composed or decomposed),
//! surrounding punctuation and repeated spaces, it is `huy` alone or `huy` followed by
//! what it cancels: `thong bao`, `nhan tin`, `dang ky`, `tin`. Anything longer is a
//! sentence that merely contains the word ("huỷ hồ sơ giúp em" is about a dossier) and
//! is not taken as an opt-out: unsubscribing someone by accident is worse than asking
//! them to write one word again.

use loa_contracts::text::{fold_vietnamese, is_combining_mark};

/// What may follow `huy` in an opt-out.
const OBJECTS: [&str; 5] = ["", "thong bao", "nhan tin", "dang ky", "tin"];

/// Whether `text`, a citizen's chat message to the OA, asks to stop broadcasts.
pub fn is_opt_out(text: &str) -> bool {
    let folded: String = text
        .chars()
        .filter(|c| !is_combining_mark(*c))
        .map(fold_vietnamese)
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .collect();
    let words: Vec<&str> = folded.split_whitespace().collect();
    match words.split_first() {
        Some((&"huy", rest)) => OBJECTS.contains(&rest.join(" ").as_str()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::is_opt_out;

    #[test]
    fn huy_in_any_spelling_is_an_opt_out() {
        for text in [
            "huỷ",
            "Hủy",
            "HUY",
            "huy",
            "  huỷ!  ",
            "hu\u{1ef7}",
            "hu\u{79}\u{309}",
            "Huỷ thông báo",
            "huy nhan tin.",
            "Hủy đăng ký",
            "huỷ   tin",
        ] {
            assert!(is_opt_out(text), "{text:?}");
        }
    }

    #[test]
    fn sentences_that_merely_contain_the_word_are_not() {
        for text in [
            "",
            "huyện Phú Thủy",
            "huỷ hồ sơ giúp em",
            "tra cứu HS-0301",
            "không huỷ",
            "huy hieu",
            "hủy bỏ hồ sơ",
        ] {
            assert!(!is_opt_out(text), "{text:?}");
        }
    }
}
