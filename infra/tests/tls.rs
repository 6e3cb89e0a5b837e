//! `[tls]`: `kit check` refuses a hop that may fall back to plaintext, and the template
//! carries kit.toml's modes, the RDS CA bundle and the deployment's CA to both hops.

mod support;

use kit::deploy::budget::Rule;
use kit::deploy::model::{KitConfig, SslMode, RDS_CA_BUNDLE_PATH};
use kit::deploy::render;
use serde_norway::Value;
use support::{assert_mentions, committed_config, only_violation, repo_root, violations_after};

const PLAINTEXT: [(SslMode, &str); 3] = [
    (SslMode::Disable, "disable"),
    (SslMode::Allow, "allow"),
    (SslMode::Prefer, "prefer"),
];

#[test]
fn the_committed_kit_toml_verifies_both_hops() {
    let config = committed_config();
    assert_eq!(config.tls.client_sslmode, SslMode::VerifyFull);
    assert_eq!(config.tls.server_sslmode, SslMode::VerifyFull);
    let violations = violations_after(|_| {});
    assert!(
        !violations.iter().any(|v| v.rule == Rule::Tls),
        "{violations:#?}"
    );
}

#[test]
fn a_client_hop_that_may_run_in_plaintext_is_refused() {
    for (mode, name) in PLAINTEXT {
        let v = only_violation(Rule::Tls, |c| c.tls.client_sslmode = mode);
        assert_mentions(
            &v.problem,
            &[
                &format!("tls.client_sslmode is \"{name}\""),
                "functions' connections to PgBouncer",
                "plaintext",
            ],
        );
        assert_mentions(
            &v.fix,
            &["set tls.client_sslmode = \"verify-full\"", "kit tls issue"],
        );
        assert!(v.to_string().starts_with("[tls] "), "{v}");
    }
}

#[test]
fn a_server_hop_that_may_run_in_plaintext_is_refused() {
    for (mode, name) in PLAINTEXT {
        let v = only_violation(Rule::Tls, |c| c.tls.server_sslmode = mode);
        assert_mentions(
            &v.problem,
            &[
                &format!("tls.server_sslmode is \"{name}\""),
                "PgBouncer's connections to PostgreSQL",
            ],
        );
        assert_mentions(
            &v.fix,
            &["set tls.server_sslmode = \"verify-full\"", "RDS CA bundle"],
        );
    }
}

#[test]
fn both_hops_are_reported_at_once() {
    let violations = violations_after(|c| {
        c.tls.client_sslmode = SslMode::Prefer;
        c.tls.server_sslmode = SslMode::Disable;
    });
    let tls: Vec<_> = violations.iter().filter(|v| v.rule == Rule::Tls).collect();
    assert_eq!(tls.len(), 2, "{violations:#?}");
}

#[test]
fn encrypted_modes_are_accepted() {
    for mode in [SslMode::Require, SslMode::VerifyCa, SslMode::VerifyFull] {
        let violations = violations_after(|c| {
            c.tls.client_sslmode = mode;
            c.tls.server_sslmode = mode;
        });
        assert!(violations.is_empty(), "{mode}: {violations:#?}");
    }
}

fn committed_text() -> String {
    std::fs::read_to_string(repo_root().join("kit.toml")).unwrap()
}

#[test]
fn without_a_tls_section_both_hops_verify_full() {
    let text = committed_text();
    let (before, _) = text
        .split_once("\n[tls]")
        .expect("kit.toml has a [tls] section");
    let config = KitConfig::parse(before, "kit.toml".as_ref()).unwrap();
    assert_eq!(config.tls.client_sslmode, SslMode::VerifyFull);
    assert_eq!(config.tls.server_sslmode, SslMode::VerifyFull);
    assert_eq!(config.tls.pgbouncer_hostname, "pgbouncer.kit.internal");
}

#[test]
fn a_misspelt_mode_is_a_parse_error_naming_the_choices() {
    let text = committed_text().replace(
        "client_sslmode = \"verify-full\"",
        "client_sslmode = \"verify_full\"",
    );
    let error = KitConfig::parse(&text, "kit.toml".as_ref())
        .unwrap_err()
        .to_string();
    assert_mentions(&error, &["verify_full", "verify-full", "client_sslmode"]);
}

#[test]
fn the_pgbouncer_hostname_must_be_a_dns_name_in_a_zone() {
    for bad in [
        "pgbouncer",
        "kit.internal",
        "PgBouncer.kit.internal",
        "pg_bouncer.kit.internal",
        "-a.kit.internal",
    ] {
        let v = only_violation(Rule::Tls, |c| c.tls.pgbouncer_hostname = bad.into());
        assert_mentions(&v.problem, &[&format!("tls.pgbouncer_hostname is {bad:?}")]);
    }
}

fn template(config: &KitConfig) -> Value {
    serde_norway::from_str(&render::render_template(config).unwrap()).unwrap()
}

fn env<'a>(vars: &'a Value, name: &str) -> &'a Value {
    vars.as_sequence()
        .unwrap()
        .iter()
        .find(|e| e["Name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no {name} in {vars:?}"))
}

#[test]
fn pgbouncer_verifies_postgresql_as_kit_toml_says_with_the_rds_bundle() {
    let t = template(&committed_config());
    assert!(
        t["Parameters"]["DatabaseTlsMode"].is_null(),
        "the server hop's mode comes from kit.toml, not a free parameter"
    );
    let container =
        &t["Resources"]["PgBouncerTaskDefinition"]["Properties"]["ContainerDefinitions"][0];
    let vars = &container["Environment"];
    assert_eq!(
        env(vars, "SERVER_TLS_SSLMODE")["Value"].as_str(),
        Some("verify-full")
    );
    assert_eq!(
        env(vars, "SERVER_TLS_CA_FILE")["Value"].as_str(),
        Some(RDS_CA_BUNDLE_PATH)
    );
    assert_eq!(
        env(vars, "CLIENT_TLS_SSLMODE")["Value"].as_str(),
        Some("require")
    );

    let mut config = committed_config();
    config.tls.server_sslmode = SslMode::VerifyCa;
    let t = template(&config);
    let vars = &t["Resources"]["PgBouncerTaskDefinition"]["Properties"]["ContainerDefinitions"][0]
        ["Environment"];
    assert_eq!(
        env(vars, "SERVER_TLS_SSLMODE")["Value"].as_str(),
        Some("verify-ca")
    );
}

#[test]
fn pgbouncer_gets_its_certificate_and_key_from_the_tls_secret() {
    let t = template(&committed_config());
    let container =
        &t["Resources"]["PgBouncerTaskDefinition"]["Properties"]["ContainerDefinitions"][0];
    for (name, key) in [
        ("CLIENT_TLS_CERT_PEM", "certificate"),
        ("CLIENT_TLS_KEY_PEM", "private_key"),
    ] {
        let from = env(&container["Secrets"], name)["ValueFrom"]["Fn::Sub"]
            .as_str()
            .unwrap();
        assert_eq!(from, format!("${{PgBouncerTlsSecretArn}}:{key}::"));
        let plain = container["Environment"].as_sequence().unwrap();
        assert!(
            !plain.iter().any(|e| e["Name"].as_str() == Some(name)),
            "{name} is never a plain environment variable"
        );
    }
    let readable = serde_norway::to_string(
        &t["Resources"]["PgBouncerExecutionRole"]["Properties"]["Policies"],
    )
    .unwrap();
    assert!(readable.contains("PgBouncerTlsSecretArn"), "{readable}");
}

#[test]
fn functions_verify_pgbouncer_against_the_ca_secret_by_its_stable_name() {
    let mut config = committed_config();
    config.tls.client_sslmode = SslMode::VerifyCa;
    config.tls.pgbouncer_hostname = "pool.db.example.internal".into();
    let t = template(&config);
    for id in ["Ingest", "Search", "Purge"] {
        let function = &t["Resources"][format!("{id}Function")]["Properties"];
        let vars = &function["Environment"]["Variables"];
        assert_eq!(vars["DATABASE_SSLMODE"].as_str(), Some("verify-ca"), "{id}");
        assert_eq!(
            vars["DATABASE_CA_SECRET_ARN"]["Ref"].as_str(),
            Some("PgBouncerCaSecretArn"),
            "{id}"
        );
        let policies = serde_norway::to_string(&function["Policies"]).unwrap();
        assert!(
            policies.contains("PgBouncerCaSecretArn"),
            "{id}: {policies}"
        );
        // The functions reach PgBouncer by the name its certificate is issued for (the
        // login secret names the database itself, for rotation).
        assert_eq!(
            vars["DATABASE_PROXY_HOST"].as_str(),
            Some("pool.db.example.internal"),
            "{id}"
        );
    }
    let record = &t["Resources"]["PgBouncerDnsRecord"]["Properties"];
    assert_eq!(record["Name"].as_str(), Some("pool.db.example.internal"));
    assert_eq!(
        t["Resources"]["PgBouncerHostedZone"]["Properties"]["Name"].as_str(),
        Some("db.example.internal")
    );
    assert_eq!(
        t["Outputs"]["PgBouncerEndpoint"]["Value"].as_str(),
        Some("pool.db.example.internal")
    );
}
