//! The repository's structural rules, checked on every `cargo test` (ARCHITECTURE.md,
//! "Invariants kept by checks"). Each rule names the files that break it; none needs the
//! local stack.
//!
//! 1. SQL lives in `shared/storage`, `migrations/` and the dev-only crates (`dev/`,
//!    `tests/`): no string literal in another crate reads like a statement.
//! 2. The repository stands alone: no tracked file refers to a file outside it (a
//!    relative Markdown link that leaves the checkout or names a missing file, a design
//!    document that is not here, an absolute path of a developer's machine).
//! 3. A source file of a product crate (`functions/`, `shared/`, `infra/`) stays within
//!    [`MAX_PRODUCT_FILE_LINES`]; unit tests go to a sibling `tests.rs`.
//!
//! The fourth rule, the dependency direction, is `infra/tests/dependencies.rs`: it reads
//! Cargo's resolved graph.

use std::path::{Path, PathBuf};
use std::process::Command;

const MAX_PRODUCT_FILE_LINES: usize = 500;

/// Folders whose crates are the product: what runs in Lambda or what an operator runs.
const PRODUCT_ROOTS: &[&str] = &["functions/", "shared/", "infra/"];

/// Where SQL may be written.
const SQL_HOMES: &[&str] = &["shared/storage/", "migrations/", "dev/", "tests/"];

/// Statement openings that no other string needs, matched at a word start in a literal.
const SQL_OPENINGS: &[&str] = &[
    "SELECT ",
    "INSERT INTO",
    "DELETE FROM",
    "UPDATE ",
    "CREATE TABLE",
    "CREATE INDEX",
    "CREATE ROLE",
    "CREATE DATABASE",
    "CREATE EXTENSION",
    "ALTER TABLE",
    "ALTER ROLE",
    "ALTER SYSTEM",
    "DROP TABLE",
    "DROP ROLE",
    "DROP DATABASE",
    "GRANT ",
    "REVOKE ",
    "TRUNCATE ",
];

fn repo_root() -> PathBuf {
    let mut dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    loop {
        let manifest = dir.join("Cargo.toml");
        if std::fs::read_to_string(&manifest).is_ok_and(|text| text.contains("[workspace]")) {
            return dir;
        }
        assert!(
            dir.pop(),
            "no workspace Cargo.toml above {}",
            env!("CARGO_MANIFEST_DIR")
        );
    }
}

/// The tracked files (`git ls-files`), relative to the root: what a clone holds.
fn tracked_files(root: &Path) -> Vec<String> {
    let output = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(root)
        .output()
        .expect("running git ls-files");
    assert!(output.status.success(), "git ls-files failed");
    String::from_utf8(output.stdout)
        .expect("file names are UTF-8")
        .split('\0')
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .filter(|name| root.join(name).is_file())
        .collect()
}

fn read(root: &Path, file: &str) -> Option<String> {
    std::fs::read_to_string(root.join(file)).ok()
}

/// A library or binary source of a product crate (its `tests/` are not product code).
fn is_product_source(file: &str) -> bool {
    PRODUCT_ROOTS.iter().any(|root| file.starts_with(root))
        && file.contains("/src/")
        && file.ends_with(".rs")
}

// ---- rule 1: SQL ----

/// The string literals of a Rust source, outside comments: `"…"`, `r"…"`, `r#"…"#`, `b"…"`.
/// Escapes are kept as written; a statement is recognised by its opening words anyway.
fn string_literals(source: &str) -> Vec<(usize, String)> {
    let bytes = source.as_bytes();
    let mut literals = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\n' => {
                line += 1;
                i += 1;
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let end = source[i + 2..]
                    .find("*/")
                    .map_or(bytes.len(), |at| i + 2 + at + 2);
                line += source[i..end].matches('\n').count();
                i = end;
            }
            b'\'' => {
                // A char literal ('x', '\n', '\'', '"') is skipped whole, so that '"' does not
                // open a string; a lifetime ('a) is just a quote.
                i += 1 + char_literal_len(&source[i + 1..]).map_or(0, |len| len + 1);
            }
            b'r' if !is_ident_byte(bytes.get(i.wrapping_sub(1)).copied())
                && matches!(bytes.get(i + 1), Some(b'"' | b'#')) =>
            {
                let hashes = bytes[i + 1..].iter().take_while(|&&b| b == b'#').count();
                if bytes.get(i + 1 + hashes) != Some(&b'"') {
                    i += 1;
                    continue;
                }
                let start = i + 2 + hashes;
                let closing = format!("\"{}", "#".repeat(hashes));
                let end = source[start..]
                    .find(&closing)
                    .map_or(bytes.len(), |at| start + at);
                literals.push((line, source[start..end].to_owned()));
                line += source[start..end].matches('\n').count();
                i = (end + closing.len()).min(bytes.len());
            }
            b'"' => {
                let start = i + 1;
                let mut end = start;
                while end < bytes.len() && bytes[end] != b'"' {
                    end += if bytes[end] == b'\\' { 2 } else { 1 };
                }
                let end = end.min(bytes.len());
                literals.push((line, source[start..end].to_owned()));
                line += source[start..end].matches('\n').count();
                i = end + 1;
            }
            _ => i += 1,
        }
    }
    literals
}

/// The length of a char literal's body after its opening quote (`x`, `\n`, `\'`,
/// `\u{1F600}`), without the closing quote; `None` for a lifetime or a label.
fn char_literal_len(rest: &str) -> Option<usize> {
    if let Some(escaped) = rest.strip_prefix('\\') {
        let first = escaped.chars().next()?.len_utf8();
        let close = escaped[first..].find('\'')?;
        return Some(1 + first + close);
    }
    let first = rest.chars().next()?.len_utf8();
    rest[first..].starts_with('\'').then_some(first)
}

fn is_ident_byte(byte: Option<u8>) -> bool {
    byte.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn looks_like_sql(literal: &str) -> Option<&'static str> {
    SQL_OPENINGS.iter().copied().find(|opening| {
        literal.match_indices(opening).any(|(at, _)| {
            let before = literal[..at].chars().next_back();
            before.is_none_or(|c| !c.is_alphanumeric() && c != '_')
        })
    })
}

fn sql_outside_its_homes(root: &Path, files: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    for file in files {
        if !file.ends_with(".rs") || SQL_HOMES.iter().any(|home| file.starts_with(home)) {
            continue;
        }
        let Some(source) = read(root, file) else {
            continue;
        };
        for (line, literal) in string_literals(&source) {
            if let Some(opening) = looks_like_sql(&literal) {
                found.push(format!(
                    "{file}:{line}: a string literal opens with `{opening}`"
                ));
            }
        }
    }
    found
}

// ---- rule 2: the repository stands alone ----

/// Names that only exist outside the repository: a design document the repository does
/// not hold, the folder beside the checkout it used to sit in, and a developer machine's
/// home and work folders. Joined from pieces, so that this file does not name them itself.
fn outside_names() -> [String; 4] {
    [
        ["DESIGN", ".md"].concat(),
        ["..", "/shared/"].concat(),
        ["/", "work/"].concat(),
        ["/", "root/"].concat(),
    ]
}

/// `(line, name)` of every outside name in `text`.
fn outside_names_in(text: &str) -> Vec<(usize, String)> {
    let names = outside_names();
    let mut found = Vec::new();
    for (number, line) in text.lines().enumerate() {
        for name in &names {
            if line.contains(name.as_str()) {
                found.push((number + 1, name.clone()));
            }
        }
    }
    found
}

fn references_outside(root: &Path, files: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    for file in files {
        let Some(text) = read(root, file) else {
            continue;
        };
        for (number, name) in outside_names_in(&text) {
            found.push(format!("{file}:{number}: names `{name}`"));
        }
        if file.ends_with(".md") {
            for (number, target) in markdown_links(&text) {
                if let Some(problem) = link_problem(root, file, &target) {
                    found.push(format!("{file}:{number}: link `{target}` {problem}"));
                }
            }
        }
    }
    found
}

/// `(line, target)` of every inline Markdown link `[text](target)`.
fn markdown_links(text: &str) -> Vec<(usize, String)> {
    let mut links = Vec::new();
    let mut in_code_block = false;
    for (number, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_code_block = !in_code_block;
            continue;
        }
        if in_code_block {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            links.push((number + 1, after[..end].to_owned()));
            rest = &after[end..];
        }
    }
    links
}

/// Why a relative link does not resolve to a file inside the repository, if it does not.
fn link_problem(root: &Path, file: &str, target: &str) -> Option<&'static str> {
    let path = target.split('#').next().unwrap_or("").trim();
    if path.is_empty() || path.contains("://") || path.starts_with("mailto:") {
        return None;
    }
    if path.starts_with('/') {
        return Some("is an absolute path");
    }
    let mut resolved = PathBuf::new();
    for part in Path::new(file)
        .parent()
        .unwrap_or(Path::new(""))
        .join(path)
        .components()
    {
        match part {
            std::path::Component::ParentDir => {
                if !resolved.pop() {
                    return Some("leaves the repository");
                }
            }
            std::path::Component::CurDir => {}
            other => resolved.push(other),
        }
    }
    (!root.join(&resolved).exists()).then_some("names a file the repository does not have")
}

// ---- rule 3: file size ----

fn oversized_product_files(root: &Path, files: &[String]) -> Vec<String> {
    files
        .iter()
        .filter(|file| is_product_source(file))
        .filter_map(|file| {
            let lines = read(root, file)?.lines().count();
            (lines > MAX_PRODUCT_FILE_LINES)
                .then(|| format!("{file}: {lines} lines (at most {MAX_PRODUCT_FILE_LINES})"))
        })
        .collect()
}

// ---- the tests ----

fn assert_none(rule: &str, found: Vec<String>) {
    assert!(found.is_empty(), "{rule}:\n  {}", found.join("\n  "));
}

#[test]
fn sql_lives_in_storage_migrations_and_dev_crates() {
    let root = repo_root();
    assert_none(
        "SQL outside shared/storage, migrations/ and the dev crates",
        sql_outside_its_homes(&root, &tracked_files(&root)),
    );
}

#[test]
fn the_repository_stands_alone() {
    let root = repo_root();
    assert_none(
        "references to files outside the repository",
        references_outside(&root, &tracked_files(&root)),
    );
}

#[test]
fn product_source_files_stay_small() {
    let root = repo_root();
    assert_none(
        "product source files over the limit",
        oversized_product_files(&root, &tracked_files(&root)),
    );
}

/// The rules themselves recognise what they must: a planted violation of each is found.
#[test]
fn each_rule_catches_a_planted_violation() {
    let code =
        "let s = \"x\"; // SELECT 1\nconst Q: &str = r#\"\n  SELECT id FROM t\"#;\nlet c = '\"';\nlet e = ['\\'', '\\n'\"DELETE FROM t\"];";
    let literals = string_literals(code);
    assert_eq!(
        literals
            .iter()
            .filter(|(_, l)| looks_like_sql(l).is_some())
            .count(),
        2,
        "{literals:?}"
    );
    assert_eq!(
        literals
            .iter()
            .find(|(_, l)| looks_like_sql(l).is_some())
            .map(|(n, _)| *n),
        Some(2)
    );
    assert!(looks_like_sql("Retry-After").is_none());
    assert!(looks_like_sql("RESELECT 1").is_none());

    let root = repo_root();
    assert_eq!(link_problem(&root, "docs/search.md", "../README.md"), None);
    assert_eq!(
        link_problem(&root, "docs/search.md", "../../elsewhere/notes.md"),
        Some("leaves the repository")
    );
    assert!(link_problem(&root, "README.md", "docs/nope.md").is_some());
    let planted = format!(
        "see {}\nfine\nas in {}",
        outside_names()[0],
        outside_names()[1]
    );
    assert_eq!(
        outside_names_in(&planted),
        [
            (1, outside_names()[0].clone()),
            (3, outside_names()[1].clone())
        ]
    );
    assert_eq!(
        link_problem(&root, "README.md", "https://github.com/pgvector/pgvector"),
        None
    );
}
