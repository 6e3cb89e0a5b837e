//! Shared helpers for the deployment-model tests: the repository's own kit.toml.

#![allow(dead_code)] // each test file uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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

/// A scratch repository holding a copy of the committed kit.toml, rendered.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("kit-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(repo_root().join("kit.toml"), dir.join("kit.toml")).unwrap();
        let scratch = Scratch(dir);
        let out = scratch.kit(&["render"]);
        assert!(out.status.success(), "{}", text(&out));
        scratch
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn kit(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_kit"))
            .args(args)
            .current_dir(&self.0)
            .env_remove("RUST_BACKTRACE")
            .output()
            .expect("kit runs")
    }

    pub fn edit_config(&self, from: &str, to: &str) {
        let path = self.0.join("kit.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{from:?} not in kit.toml");
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A command's stdout and stderr, as text.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
