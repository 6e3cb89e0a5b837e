//! The dependency direction ARCHITECTURE.md states, read from Cargo's resolved graph
//! (`cargo metadata`, normal dependencies: what a binary links):
//!
//! - nothing in the product (`functions/`, `shared/`, `infra/`) depends on `dev/*` or
//!   `tests/`;
//! - `functions/*` and `infra/` build on `shared/*`, never on each other, and `shared/*`
//!   on neither;
//! - the operator CLI (`kit`) links no function crate and no Lambda runtime or event
//!   types, and does not itself depend on an HTTP client stack (the AWS SDK's, which
//!   `shared/credentials` reads secrets with, is the only one it may reach).

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::Value;

mod support;

/// One workspace crate: its package name, its folder (relative to the workspace root),
/// its direct normal dependencies and everything those link in turn.
struct Crate {
    folder: String,
    direct: BTreeSet<String>,
    linked: BTreeSet<String>,
}

/// The workspace's crates by package name.
fn workspace() -> BTreeMap<String, Crate> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .current_dir(support::repo_root())
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let metadata: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata's JSON");
    let root = metadata["workspace_root"].as_str().expect("workspace_root");
    let names: BTreeMap<&str, &str> = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    // Each package's direct normal dependencies, by id.
    let normal: BTreeMap<&str, Vec<&str>> = metadata["resolve"]["nodes"]
        .as_array()
        .expect("resolve.nodes")
        .iter()
        .map(|node| {
            let deps = node["deps"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|dep| {
                    dep["dep_kinds"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|kind| kind["kind"].is_null())
                })
                .map(|dep| dep["pkg"].as_str().unwrap())
                .collect();
            (node["id"].as_str().unwrap(), deps)
        })
        .collect();
    let linked_from = |id: &str| {
        let mut seen = BTreeSet::new();
        let mut stack = normal[id].clone();
        while let Some(next) = stack.pop() {
            if seen.insert(next) {
                stack.extend(&normal[next]);
            }
        }
        seen.into_iter().map(|id| names[id].to_owned()).collect()
    };
    metadata["workspace_members"]
        .as_array()
        .expect("workspace_members")
        .iter()
        .map(|id| {
            let id = id.as_str().unwrap();
            let package = metadata["packages"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["id"] == id)
                .unwrap();
            let manifest = package["manifest_path"].as_str().unwrap();
            let folder = manifest
                .strip_prefix(root)
                .and_then(|m| m.strip_suffix("/Cargo.toml"))
                .unwrap_or(manifest)
                .trim_start_matches('/')
                .to_owned();
            let direct = normal[id].iter().map(|d| names[d].to_owned()).collect();
            (
                names[id].to_owned(),
                Crate {
                    folder,
                    direct,
                    linked: linked_from(id),
                },
            )
        })
        .collect()
}

fn in_folder<'a>(crates: &'a BTreeMap<String, Crate>, prefix: &str) -> BTreeSet<&'a str> {
    crates
        .iter()
        .filter(|(_, c)| c.folder == prefix.trim_end_matches('/') || c.folder.starts_with(prefix))
        .map(|(name, _)| name.as_str())
        .collect()
}

fn is_product(folder: &str) -> bool {
    ["functions/", "shared/"]
        .iter()
        .any(|prefix| folder.starts_with(prefix))
        || folder == "infra"
}

#[test]
fn the_workspace_has_the_folders_the_rules_name() {
    let crates = workspace();
    for (folder, expected) in [
        ("functions/", "ingest"),
        ("shared/", "storage"),
        ("infra", "kit"),
        ("dev/", "kit-support"),
        ("dev/", "kit-dev"),
        ("tests", "kit-tests"),
    ] {
        assert!(
            in_folder(&crates, folder).contains(expected),
            "{expected} is not under {folder}: the rules below would check nothing"
        );
    }
}

#[test]
fn nothing_in_the_product_links_the_tooling() {
    let crates = workspace();
    let tooling: BTreeSet<&str> = crates
        .iter()
        .filter(|(_, c)| !is_product(&c.folder))
        .map(|(name, _)| name.as_str())
        .collect();
    for (name, c) in crates.iter().filter(|(_, c)| is_product(&c.folder)) {
        let wrong: Vec<&String> = c
            .linked
            .iter()
            .filter(|d| tooling.contains(d.as_str()))
            .collect();
        assert!(
            wrong.is_empty(),
            "{name} ({}) links the tooling crates {wrong:?}: the product must not depend on dev/* or tests/ (ARCHITECTURE.md)",
            c.folder
        );
    }
}

#[test]
fn dependencies_point_down_functions_and_cli_to_shared() {
    let crates = workspace();
    let functions = in_folder(&crates, "functions/");
    let cli = in_folder(&crates, "infra");
    let rules = [
        (
            "shared/",
            functions.union(&cli).copied().collect::<BTreeSet<_>>(),
        ),
        ("functions/", cli.clone()),
        ("infra", functions.clone()),
    ];
    for (folder, above) in rules {
        for name in in_folder(&crates, folder) {
            let wrong: Vec<&String> = crates[name]
                .linked
                .iter()
                .filter(|d| above.contains(d.as_str()))
                .collect();
            assert!(
                wrong.is_empty(),
                "{name} ({folder}) links {wrong:?}: functions/* and infra/ build on shared/*, never on each other, and shared/* on neither (ARCHITECTURE.md)"
            );
        }
    }
}

#[test]
fn the_operator_cli_links_no_function_and_no_lambda_runtime() {
    let crates = workspace();
    let kit = &crates["kit"];
    let mut forbidden: BTreeSet<&str> = in_folder(&crates, "functions/");
    forbidden.extend(["aws_lambda_events", "lambda_runtime", "lambda_http"]);
    let wrong: Vec<&String> = kit
        .linked
        .iter()
        .filter(|d| forbidden.contains(d.as_str()))
        .collect();
    assert!(
        wrong.is_empty(),
        "kit links {wrong:?}: the operator CLI must not compile the functions (that tooling is kit-dev, dev/tools)"
    );
    let http: Vec<&String> = kit
        .direct
        .iter()
        .filter(|d| ["hyper", "hyper-util", "http-body-util"].contains(&d.as_str()))
        .collect();
    assert!(
        http.is_empty(),
        "kit depends on {http:?} itself: an HTTP client is the demo's (kit-dev), not the operator CLI's"
    );
}
