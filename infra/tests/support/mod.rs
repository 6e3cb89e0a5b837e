//! Shared helpers for the deployment-model tests: the repository's own kit.toml.

#![allow(dead_code)] // each test file uses a different subset

use std::path::{Path, PathBuf};

use kit::deploy::budget::{self, Rule, Violation};
use kit::deploy::model::KitConfig;

/// The repository root (the directory holding kit.toml).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("infra/ has a parent")
        .to_path_buf()
}

/// The committed kit.toml, parsed.
pub fn committed_config() -> KitConfig {
    KitConfig::load(&repo_root().join("kit.toml")).expect("the committed kit.toml parses")
}

/// The committed kit.toml after `change`, with its violations.
pub fn violations_after(change: impl FnOnce(&mut KitConfig)) -> Vec<Violation> {
    let mut config = committed_config();
    change(&mut config);
    budget::check(&config)
}

/// The one violation of `rule` that `change` causes; fails when there is not exactly one.
pub fn only_violation(rule: Rule, change: impl FnOnce(&mut KitConfig)) -> Violation {
    let all = violations_after(change);
    let matching: Vec<&Violation> = all.iter().filter(|v| v.rule == rule).collect();
    assert_eq!(
        matching.len(),
        1,
        "expected one {rule:?} violation, got: {all:#?}"
    );
    matching[0].clone()
}

/// Asserts `text` contains every fragment, showing the text when it does not.
pub fn assert_mentions(text: &str, fragments: &[&str]) {
    for fragment in fragments {
        assert!(text.contains(fragment), "expected {fragment:?} in:\n{text}");
    }
}
