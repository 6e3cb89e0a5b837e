//! Text for failure messages.

/// The first `max_chars` characters of `text` (never cut inside a character): enough
/// of a long value to recognise it in a failure message.
pub fn prefix(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_counts_characters_not_bytes() {
        assert_eq!(prefix("日本語", 2), "日本");
        assert_eq!(prefix("ab", 5), "ab");
    }
}
