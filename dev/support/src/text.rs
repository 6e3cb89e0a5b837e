//! Text cut to a readable length: for failure messages, and for what the tooling shows.

/// The first `max_chars` characters of `text` (never cut inside a character): enough
/// of a long value to recognise it in a failure message.
pub fn prefix(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}

/// `text` cut to at most `max_chars` characters, with `…` as the last one when something
/// was cut (what the demo's summary shows).
pub fn clip(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_owned();
    }
    if max_chars == 0 {
        return String::new();
    }
    prefix(text, max_chars - 1) + "…"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_counts_characters_not_bytes() {
        assert_eq!(prefix("日本語", 2), "日本");
        assert_eq!(prefix("ab", 5), "ab");
    }

    #[test]
    fn short_text_is_kept_and_long_text_ends_with_an_ellipsis() {
        assert_eq!(clip("abc", 3), "abc");
        assert_eq!(clip("abcd", 3), "ab…");
        assert_eq!(clip("日本語テキスト", 4), "日本語…");
        assert_eq!(clip("abc", 0), "");
    }
}
