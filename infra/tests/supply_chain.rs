//! The supply-chain pins (docs/security-supply-chain.md), checked statically: each test
//! fails when its pin is removed. No Docker engine is needed: the image's pins are read
//! from pgbouncer/Dockerfile and pgbouncer/entrypoint.sh, which also runs here with a
//! stand-in for PgBouncer.

mod support;

use std::path::Path;
use std::process::Command;

use support::repo_root;

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_root().join(path))
        .unwrap_or_else(|err| panic!("{path} is missing or unreadable: {err}"))
}

fn toml_file(path: &str) -> toml::Table {
    read(path)
        .parse()
        .unwrap_or_else(|err| panic!("{path} is not TOML: {err}"))
}

// --- the toolchain -------------------------------------------------------------------------

#[test]
fn the_toolchain_is_pinned_to_an_exact_release_with_rustfmt_and_clippy() {
    let file = toml_file("rust-toolchain.toml");
    let toolchain = file["toolchain"]
        .as_table()
        .expect("rust-toolchain.toml has a [toolchain] table");
    let channel = toolchain["channel"].as_str().expect("toolchain.channel");
    let parts: Vec<&str> = channel.split('.').collect();
    assert!(
        parts.len() == 3 && parts.iter().all(|p| p.parse::<u32>().is_ok()),
        "rust-toolchain.toml: channel = {channel:?} is not an exact release like \"1.95.0\" \
         (stable, beta or a bare 1.95 move under the build)"
    );
    let components: Vec<&str> = toolchain["components"]
        .as_array()
        .expect("toolchain.components")
        .iter()
        .filter_map(|c| c.as_str())
        .collect();
    for needed in ["rustfmt", "clippy"] {
        assert!(
            components.contains(&needed),
            "rust-toolchain.toml: components lacks {needed:?} (make lint runs it)"
        );
    }
    // Cargo.toml's rust-version names the same release: the one every build and test uses.
    let manifest = toml_file("Cargo.toml");
    let rust_version = manifest["workspace"]["package"]["rust-version"]
        .as_str()
        .expect("workspace.package.rust-version");
    assert_eq!(
        rust_version,
        format!("{}.{}", parts[0], parts[1]),
        "Cargo.toml's rust-version and rust-toolchain.toml's channel {channel} disagree: bump both together"
    );
}

// --- --locked on every cargo command line ----------------------------------------------------

/// Cargo subcommands that resolve dependencies, and so may rewrite Cargo.lock without --locked.
const RESOLVING: &[&str] = &[
    "build", "b", "run", "r", "test", "t", "clippy", "check", "c", "doc", "bench", "install",
];

/// The words after which `cargo` stands in command position on a shell line.
fn in_command_position(prefix: &str) -> bool {
    let mut rest = prefix.trim_end();
    loop {
        if rest.is_empty() {
            return true;
        }
        if [";", "&&", "||", "|", "(", "$(", "`", "{", "!"]
            .iter()
            .any(|end| rest.ends_with(end))
        {
            return true;
        }
        let (before, last) = match rest.rsplit_once(char::is_whitespace) {
            Some((before, last)) => (before.trim_end(), last),
            None => ("", rest),
        };
        let env_assignment = last.split_once('=').is_some_and(|(name, _)| {
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        });
        if env_assignment
            || [
                "do",
                "then",
                "else",
                "exec",
                "setsid",
                "nice",
                "time",
                "env",
                "$(WITH_STACK_ENV)",
            ]
            .contains(&last)
        {
            rest = before;
            continue;
        }
        return false;
    }
}

/// Every `cargo <resolving subcommand>` in command position in `lines`, with its line number,
/// that lacks --locked (or --frozen) before a `--` separator.
fn unlocked_cargo_commands(lines: &[(usize, String)]) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (number, line) in lines {
        let mut from = 0;
        while let Some(offset) = line[from..].find("cargo ") {
            let at = from + offset;
            from = at + "cargo ".len();
            if !in_command_position(&line[..at]) {
                continue;
            }
            let mut words = line[from..]
                .split_whitespace()
                .skip_while(|w| w.starts_with('+'));
            let resolving = match words.next() {
                Some("lambda") => matches!(words.next(), Some("build" | "watch")),
                Some(sub) => RESOLVING.contains(&sub),
                None => false,
            };
            if !resolving {
                continue;
            }
            let args = line[from..].split(" -- ").next().unwrap_or_default();
            let locked = args
                .split_whitespace()
                .any(|w| w == "--locked" || w == "--frozen");
            if !locked {
                found.push((*number, line.trim().to_owned()));
            }
        }
    }
    found
}

/// A shell script's or Makefile's lines, comments dropped, `\`-continued lines joined.
fn shell_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with('#') {
            continue;
        }
        let (start, mut joined) = pending.take().unwrap_or((i + 1, String::new()));
        match line.strip_suffix('\\') {
            Some(head) => {
                joined.push_str(head);
                pending = Some((start, joined));
            }
            None => {
                joined.push_str(line);
                out.push((start, joined));
            }
        }
    }
    out.extend(pending);
    out
}

/// The lines of a Markdown file's fenced code blocks (what a reader copies and runs).
fn markdown_code_lines(text: &str) -> Vec<(usize, String)> {
    let mut inside = false;
    let mut lines = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            inside = !inside;
            continue;
        }
        if inside {
            lines.push((i + 1, line.to_owned()));
        }
    }
    shell_lines(
        &lines
            .iter()
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
    )
    .into_iter()
    .map(|(n, l)| (lines[n - 1].0, l))
    .collect()
}

/// Every file whose cargo command lines must be --locked: the Makefile, CI, the scripts and
/// the docs' code blocks.
fn command_files() -> Vec<String> {
    let root = repo_root();
    let mut files = vec![
        "Makefile".to_owned(),
        ".ci/run".to_owned(),
        "README.md".to_owned(),
        "ARCHITECTURE.md".to_owned(),
    ];
    for dir in ["scripts", "scripts/lib", "docs"] {
        let mut names: Vec<String> = std::fs::read_dir(root.join(dir))
            .unwrap_or_else(|err| panic!("{dir}: {err}"))
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sh") || n.ends_with(".md"))
            .map(|n| format!("{dir}/{n}"))
            .collect();
        names.sort();
        files.extend(names);
    }
    files
}

#[test]
fn every_cargo_build_run_and_test_command_line_is_locked() {
    let mut unlocked = Vec::new();
    for file in command_files() {
        let text = read(&file);
        let lines = if file.ends_with(".md") {
            markdown_code_lines(&text)
        } else {
            shell_lines(&text)
        };
        for (line, command) in unlocked_cargo_commands(&lines) {
            unlocked.push(format!("{file}:{line}: {command}"));
        }
    }
    assert!(
        unlocked.is_empty(),
        "cargo command lines without --locked (they may re-resolve and rewrite Cargo.lock; \
         add --locked before any `--`):\n{}",
        unlocked.join("\n")
    );
}

#[test]
fn kit_build_runs_cargo_lambda_locked() {
    let argv = kit::deploy::cli::build_command();
    assert!(
        argv.iter().any(|a| a == "--locked"),
        "kit build's command line lacks --locked: {}",
        argv.join(" ")
    );
}

#[test]
fn the_locked_check_sees_what_it_must() {
    let lines = |text: &str| shell_lines(text);
    for unlocked in [
        "cargo test --workspace",
        "  cargo run -q -p kit -- migrate up --locked",
        "$(WITH_STACK_ENV) cargo run -q -p kit -- migrate up",
        "RUST_LOG=warn setsid cargo lambda watch --ignore-changes",
        "for f in a b; do cargo build --bin \"$f\"; done",
        "cargo +1.95.0 clippy --workspace \\\n  -- -D warnings",
        "x && cargo install cargo-deny",
    ] {
        assert_eq!(
            unlocked_cargo_commands(&lines(unlocked)).len(),
            1,
            "{unlocked:?} should count as unlocked"
        );
    }
    for fine in [
        "cargo test --locked --workspace",
        "cargo run --locked -q -p kit -- migrate up",
        "cargo fmt --all -- --check",
        "# cargo test, in a comment",
        "fail \"another cargo lambda watch? pick another port\"",
        "cargo lambda --version",
        "cargo build --frozen",
    ] {
        assert!(
            unlocked_cargo_commands(&lines(fine)).is_empty(),
            "{fine:?} should not count as unlocked"
        );
    }
    let md = "text `cargo run -p kit` in prose\n```sh\ncargo run -p kit -- check\n```\n";
    assert_eq!(
        unlocked_cargo_commands(&markdown_code_lines(md)),
        vec![(3, "cargo run -p kit -- check".to_owned())]
    );
}

// --- the tools the scripts install ---------------------------------------------------------

#[test]
fn cargo_lambda_and_cargo_deny_are_installed_at_pinned_versions() {
    let deps = read("scripts/install-deps.sh");
    let pins = deps
        .lines()
        .find(|l| l.starts_with("CARGO_LAMBDA_PINS="))
        .expect("scripts/install-deps.sh sets CARGO_LAMBDA_PINS");
    for tool in ["cargo-lambda==", "ziglang=="] {
        let version = pins
            .split(tool)
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_else(|| panic!("CARGO_LAMBDA_PINS lacks {tool}<version>: {pins}"));
        assert!(
            version.split('.').count() == 3 && version.split('.').all(|p| p.parse::<u32>().is_ok()),
            "{tool}{version} is not an exact version"
        );
    }
    assert!(
        deps.contains(r#"ensure_venv "$venv" "${CARGO_LAMBDA_PINS[@]}""#),
        "scripts/install-deps.sh must install cargo-lambda through ensure_venv with its pins"
    );
    assert!(
        !deps.contains("--upgrade"),
        "scripts/install-deps.sh upgrades a tool past its pin"
    );

    let deny = read("scripts/install-deny.sh");
    let version = deny
        .lines()
        .find_map(|l| l.strip_prefix("DENY_VERSION=\""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("scripts/install-deny.sh sets DENY_VERSION=\"x.y.z\"");
    assert_eq!(
        version.split('.').count(),
        3,
        "DENY_VERSION={version} is not exact"
    );
    assert!(
        deny.contains(
            r#"cargo install --locked --force --root "$ROOT" "cargo-deny@$DENY_VERSION""#
        ),
        "scripts/install-deny.sh must build cargo-deny@$DENY_VERSION with its own lock file"
    );
}

#[test]
fn make_test_checks_the_dependency_policy() {
    let test = read("scripts/test.sh");
    assert!(
        test.contains(r#""$(scripts/install-deny.sh)" --locked check bans licenses sources"#),
        "scripts/test.sh must run cargo-deny's offline checks (bans, licenses, sources)"
    );
    let policy = toml_file("deny.toml");
    let sources = policy["sources"].as_table().expect("deny.toml [sources]");
    for key in ["unknown-registry", "unknown-git"] {
        assert_eq!(
            sources.get(key).and_then(|v| v.as_str()),
            Some("deny"),
            "deny.toml: sources.{key} must be \"deny\" (crates.io only)"
        );
    }
    let bans = policy["bans"].as_table().expect("deny.toml [bans]");
    assert_eq!(
        bans["wildcards"].as_str(),
        Some("deny"),
        "deny.toml: bans.wildcards"
    );
    let single: Vec<&str> = bans["deny"]
        .as_array()
        .expect("deny.toml: bans.deny")
        .iter()
        .filter(|e| e.get("deny-multiple-versions").and_then(|v| v.as_bool()) == Some(true))
        .filter_map(|e| e.get("name").and_then(|v| v.as_str()))
        .collect();
    assert!(
        single.contains(&"sqlx-core"),
        "deny.toml must deny a second sqlx-core (pgvector's Encode impls are per sqlx-core): {single:?}"
    );
}

// --- the PgBouncer image -------------------------------------------------------------------

const CA_BUNDLE_IN_IMAGE: &str = "/etc/pgbouncer/kit/rds-ca-bundle.pem";

fn dockerfile_instructions() -> Vec<String> {
    // Instructions with their `\` continuations joined; comments dropped.
    shell_lines(&read("pgbouncer/Dockerfile"))
        .into_iter()
        .map(|(_, l)| l)
        .filter(|l| !l.trim().is_empty())
        .collect()
}

#[test]
fn the_image_base_is_pinned_by_version_and_digest() {
    let froms: Vec<String> = dockerfile_instructions()
        .into_iter()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert!(!froms.is_empty(), "pgbouncer/Dockerfile has no FROM");
    for from in froms {
        let image = from.split_whitespace().nth(1).unwrap_or_default();
        let (reference, digest) = image
            .split_once("@sha256:")
            .unwrap_or_else(|| panic!("{from}: the base image has no @sha256: digest"));
        assert!(
            digest.len() == 64 && digest.chars().all(|c| c.is_ascii_hexdigit()),
            "{from}: the digest is not 64 hex digits"
        );
        let tag = reference
            .rsplit_once(':')
            .map(|(_, tag)| tag)
            .unwrap_or_else(|| panic!("{from}: the base image has no tag"));
        assert!(
            tag != "latest" && tag.chars().filter(char::is_ascii_digit).count() >= 6,
            "{from}: tag {tag:?} names no dated release (e.g. trixie-20251208-slim): \
             a floating tag moves under the build"
        );
    }
}

#[test]
fn the_image_fetches_the_rds_ca_bundle_only_with_a_matching_sha256() {
    let lines = dockerfile_instructions();
    let add = lines
        .iter()
        .position(|l| l.starts_with("ADD ") && l.ends_with(CA_BUNDLE_IN_IMAGE))
        .unwrap_or_else(|| {
            panic!("pgbouncer/Dockerfile does not ADD the RDS CA bundle to {CA_BUNDLE_IN_IMAGE}")
        });
    assert!(
        lines.iter().any(|l| l
            == "ARG RDS_CA_BUNDLE_URL=https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"),
        "the bundle's URL must be the RDS global bundle"
    );
    let arg = lines
        .iter()
        .position(|l| l.starts_with("ARG RDS_CA_BUNDLE_SHA256"))
        .expect("pgbouncer/Dockerfile declares ARG RDS_CA_BUNDLE_SHA256");
    assert_eq!(
        lines[arg], "ARG RDS_CA_BUNDLE_SHA256",
        "RDS_CA_BUNDLE_SHA256 must have no default: the builder supplies the reviewed checksum"
    );
    let check = lines
        .get(add + 1)
        .filter(|l| l.starts_with("RUN "))
        .expect("a RUN right after the ADD checks the bundle");
    for fragment in [
        r#""") echo "RDS_CA_BUNDLE_SHA256 is not set"#,
        r#"[ "${#RDS_CA_BUNDLE_SHA256}" -eq 64 ]"#,
        &format!(
            r#"echo "${{RDS_CA_BUNDLE_SHA256}}  {CA_BUNDLE_IN_IMAGE}" | sha256sum --check --strict -"#
        ),
        "exit 1; }",
    ] {
        assert!(
            check.contains(fragment),
            "the bundle check lacks {fragment:?}: {check}"
        );
    }
    assert!(
        arg < add,
        "ARG RDS_CA_BUNDLE_SHA256 must come before the ADD"
    );
}

/// Runs pgbouncer/entrypoint.sh with `cat` standing in for PgBouncer: its output is the
/// config PgBouncer would start with.
fn entrypoint(dir: &Path, env: &[(&str, &str)]) -> std::process::Output {
    std::fs::create_dir_all(dir.join("run")).unwrap();
    std::fs::write(dir.join("base.ini"), "pool_mode = transaction\n").unwrap();
    let issued = dir.join("issued");
    if !issued.join(kit::deploy::tls::SERVER_CERT).exists() {
        kit::deploy::tls::issue("pgbouncer.kit.internal", &issued, 1).expect("kit tls issue");
    }
    let mut cmd = Command::new("bash");
    cmd.arg(repo_root().join("pgbouncer/entrypoint.sh"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DB_HOST", "kit.cluster-abc.eu-west-1.rds.amazonaws.com")
        .env("DB_NAME", "kit")
        .env("PGBOUNCER_USERS", "kit_search")
        .env("PGBOUNCER_PASSWORD_KIT_SEARCH", "pw")
        // Clients always get TLS: the certificate `kit tls issue` makes for PgBouncer.
        .env(
            "CLIENT_TLS_CERT_FILE",
            issued.join(kit::deploy::tls::SERVER_CERT),
        )
        .env(
            "CLIENT_TLS_KEY_FILE",
            issued.join(kit::deploy::tls::SERVER_KEY),
        )
        .env("PGBOUNCER_BASE_INI", dir.join("base.ini"))
        .env("PGBOUNCER_RUN_DIR", dir.join("run"))
        .env("PGBOUNCER_BIN", "cat");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("bash runs the entrypoint")
}

#[test]
fn the_image_verifies_the_database_certificate_by_default() {
    // The defaults themselves: verify-full against the bundle the Dockerfile puts in place.
    let script = read("pgbouncer/entrypoint.sh");
    assert!(
        script.contains(r#"SERVER_TLS_SSLMODE="${SERVER_TLS_SSLMODE:-verify-full}""#),
        "entrypoint.sh's default server_tls_sslmode must be verify-full"
    );
    assert!(
        script.contains(&format!(
            r#"SERVER_TLS_CA_FILE="${{SERVER_TLS_CA_FILE:-{CA_BUNDLE_IN_IMAGE}}}""#
        )),
        "entrypoint.sh's default server_tls_ca_file must be the bundle the Dockerfile installs"
    );
    // The template passes kit.toml's mode (verify-full) and the image's bundle: it never
    // loosens what the image does by default.
    let template = read("infra/template.yaml");
    let task_env = |name: &str| {
        template
            .split(&format!("- Name: {name}"))
            .nth(1)
            .and_then(|rest| rest.lines().find_map(|l| l.trim().strip_prefix("Value: ")))
            .map(|v| v.trim_matches('"').to_owned())
            .unwrap_or_else(|| panic!("the PgBouncer task sets {name}"))
    };
    assert_eq!(task_env("SERVER_TLS_SSLMODE"), "verify-full");
    assert_eq!(task_env("SERVER_TLS_CA_FILE"), CA_BUNDLE_IN_IMAGE);

    let dir = std::env::temp_dir().join(format!("kit-entrypoint-{}", std::process::id()));
    let bundle = dir.join("bundle.pem");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(&bundle, "-----BEGIN CERTIFICATE-----\n").unwrap();

    // Run: with the bundle in place (here a stand-in path), the config verifies the server.
    let out = entrypoint(&dir, &[("SERVER_TLS_CA_FILE", bundle.to_str().unwrap())]);
    let config = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        config.contains("server_tls_sslmode = verify-full\n"),
        "{config}"
    );
    assert!(
        config.contains(&format!("server_tls_ca_file = {}\n", bundle.display())),
        "{config}"
    );

    // A verifying mode without its bundle stops the task, naming the file and the fix.
    let missing = dir.join("absent.pem");
    let out = entrypoint(&dir, &[("SERVER_TLS_CA_FILE", missing.to_str().unwrap())]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started without a CA bundle: {err}");
    for fragment in [
        "verify-full",
        &missing.display().to_string(),
        "RDS_CA_BUNDLE_SHA256",
    ] {
        assert!(err.contains(fragment), "expected {fragment:?} in: {err}");
    }
    let out = entrypoint(&dir, &[("SERVER_TLS_SSLMODE", "verify-everything")]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("verify-everything"));

    // An explicit opt-out still works, and writes no CA file line.
    let out = entrypoint(&dir, &[("SERVER_TLS_SSLMODE", "require")]);
    let config = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        config.contains("server_tls_sslmode = require\n"),
        "{config}"
    );
    assert!(!config.contains("server_tls_ca_file"), "{config}");
    std::fs::remove_dir_all(&dir).ok();
}
