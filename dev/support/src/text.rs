//! Text shown to a person: long values cut to a readable length.

/// `text` cut to at most `max` characters (not bytes: never inside a UTF-8 sequence),
/// with `…` as the last one when something was cut.
pub fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    if max == 0 {
        return String::new();
    }
    let mut clipped: String = text.chars().take(max - 1).collect();
    clipped.push('…');
    clipped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_kept_and_long_text_ends_with_an_ellipsis() {
        assert_eq!(clip("abc", 3), "abc");
        assert_eq!(clip("abcd", 3), "ab…");
        assert_eq!(clip("日本語テキスト", 4), "日本語…");
        assert_eq!(clip("abc", 0), "");
    }
}
