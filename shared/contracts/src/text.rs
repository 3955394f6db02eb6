//! Text that cannot trick a reader.
//!
//! A name or a reason reaches a citizen's Zalo message and an official's console page.
//! Characters that do not show but change what is shown could make it say something
//! else: a right-to-left override (U+202E) reverses what follows it, so a name can
//! make a dossier code or an amount read backwards; zero-width characters make two
//! equal-looking names differ, or hide text. Such characters have no place in a
//! Vietnamese name, procedure or reason, so upstream text carrying one is refused,
//! naming the field and the character ([`first_invisible`]); text Loa cannot refuse
//! (what a citizen writes to the OA through Zalo's webhooks) has them removed
//! ([`strip_invisible`]).

/// Whether `c` is invisible or changes the direction or joining of the text around
/// it: C0/C1 controls, the bidirectional embeddings, overrides and isolates
/// (U+202A–U+202E, U+2066–U+2069) and marks (U+200E, U+200F, U+061C), zero-width
/// characters (U+200B–U+200D, U+2060–U+2064, U+FEFF), the soft hyphen, the Mongolian
/// vowel separator, the deprecated format characters (U+206A–U+206F), interlinear
/// annotations (U+FFF9–U+FFFB) and tag characters (U+E0000–U+E007F).
///
/// Ordinary spaces (including the no-break space U+00A0 a pasted name may carry) are
/// visible as space and allowed.
pub fn is_invisible(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{061C}'
                | '\u{115F}'
                | '\u{1160}'
                | '\u{17B4}'
                | '\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FEFF}'
                | '\u{FFA0}'
                | '\u{FFF9}'..='\u{FFFB}'
                | '\u{1D173}'..='\u{1D17A}'
                | '\u{E0000}'..='\u{E0FFF}'
        )
}

/// The first invisible character of `text` ([`is_invisible`]) and its position in
/// characters (0-based), for an error message that lets the sender find it.
pub fn first_invisible(text: &str) -> Option<(usize, char)> {
    text.chars().enumerate().find(|(_, c)| is_invisible(*c))
}

/// Why `text` is refused, if it is: "must not contain invisible or text-direction
/// characters (U+202E at character 4)".
pub fn invisible_refusal(text: &str) -> Option<String> {
    first_invisible(text).map(|(at, c)| {
        format!(
            "must not contain invisible or text-direction characters (U+{:04X} at character {})",
            u32::from(c),
            at + 1
        )
    })
}

/// `text` without its invisible characters; line breaks and tabs, which a citizen's
/// message may hold and which show as such, are kept.
pub fn strip_invisible(text: &str) -> String {
    text.chars()
        .filter(|c| matches!(c, '\n' | '\t') || !is_invisible(*c))
        .collect()
}

/// Whether `c` is a combining diacritical mark (U+0300–U+036F): what a decomposed
/// Vietnamese letter carries after its base letter, as some keyboards type it.
pub fn is_combining_mark(c: char) -> bool {
    ('\u{300}'..='\u{36f}').contains(&c)
}

/// Lowercases a Vietnamese letter and strips its diacritics (`Ứ` → `u`, `Đ` → `d`),
/// so a citizen's chat command matches however it was typed ("Hủy", "HUY", "huỷ");
/// drop [`is_combining_mark`]s first for decomposed text.
pub fn fold_vietnamese(c: char) -> char {
    const GROUPS: [(&str, char); 7] = [
        ("àáảãạăằắẳẵặâầấẩẫậ", 'a'),
        ("èéẻẽẹêềếểễệ", 'e'),
        ("ìíỉĩị", 'i'),
        ("òóỏõọôồốổỗộơờớởỡợ", 'o'),
        ("ùúủũụưừứửữự", 'u'),
        ("ỳýỷỹỵ", 'y'),
        ("đ", 'd'),
    ];
    let lower = c.to_lowercase().next().unwrap_or(c);
    GROUPS
        .iter()
        .find(|(group, _)| group.contains(lower))
        .map_or(lower, |&(_, base)| base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vietnamese_letters_fold_to_their_lowercase_base_letter() {
        let folded: String = "Tra Cứu ĐĂNG KÝ Hủy"
            .chars()
            .filter(|c| !is_combining_mark(*c))
            .map(fold_vietnamese)
            .collect();
        assert_eq!(folded, "tra cuu dang ky huy");
        assert!(is_combining_mark('\u{301}'));
        assert!(!is_combining_mark('a'));
    }

    #[test]
    fn vietnamese_text_with_its_diacritics_and_spaces_is_visible() {
        let name = "Nguyễn Thị Ánh Tuyết\u{00A0}– Sở Tư pháp (Đồng Nai), 1.500.000 đ";
        assert_eq!(first_invisible(name), None);
        assert_eq!(strip_invisible(name), name);
    }

    #[test]
    fn every_bidi_control_and_zero_width_character_is_caught() {
        let listed = [
            '\u{202A}',
            '\u{202B}',
            '\u{202C}',
            '\u{202D}',
            '\u{202E}',
            '\u{2066}',
            '\u{2067}',
            '\u{2068}',
            '\u{2069}',
            '\u{200B}',
            '\u{200C}',
            '\u{200D}',
            '\u{200E}',
            '\u{200F}',
            '\u{2060}',
            '\u{FEFF}',
            '\u{061C}',
            '\u{00AD}',
            '\u{E0041}',
            '\u{0007}',
            '\u{009B}',
        ];
        for c in listed {
            assert!(is_invisible(c), "U+{:04X}", u32::from(c));
        }
    }

    #[test]
    fn a_refusal_names_the_code_point_and_where_it_is() {
        assert_eq!(
            invisible_refusal("Lê\u{202E}000.005").as_deref(),
            Some("must not contain invisible or text-direction characters (U+202E at character 3)")
        );
    }

    #[test]
    fn stripping_keeps_line_breaks_and_removes_overrides_and_zero_widths() {
        assert_eq!(
            strip_invisible("Xin\u{200B} chào\n\u{202E}cán bộ\u{2069}\t!"),
            "Xin chào\ncán bộ\t!"
        );
    }
}
