//! The secret read, parsed and turned into URLs, against hand-written secrets.

use super::*;
use percent_encoding::percent_decode_str;
use url::Url;

const ARN: &str = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:kit/ingest-AbCdEf";
const PASSWORD: &str = "p@ss:w/o?r#d%20[]!$&'()*+,;= \"\\é🔑";

fn rds_json(password: &str) -> String {
    serde_json::json!({
        "engine": "postgres",
        "username": "kit_ingest",
        "password": password,
        "host": "pgbouncer-nlb-0123.elb.eu-west-1.amazonaws.com",
        "port": 6432,
        "dbname": "kit",
    })
    .to_string()
}

/// Decodes a URL the way sqlx's `PgConnectOptions` does: `url::Url`, then percent-decoding
/// of the user, password and path.
fn decode_like_sqlx(database_url: &str) -> (String, String, String, u16, String) {
    let url = Url::parse(database_url).expect("the URL parses");
    let decode = |text: &str| percent_decode_str(text).decode_utf8().unwrap().into_owned();
    (
        decode(url.username()),
        decode(url.password().expect("a password")),
        url.host_str().expect("a host").to_owned(),
        url.port().expect("a port"),
        decode(url.path().trim_start_matches('/')),
    )
}

#[test]
fn parses_the_rds_secret_and_builds_the_url() {
    let secret = DatabaseSecret::parse(ARN, &rds_json("s3cret")).unwrap();
    assert_eq!(
        secret,
        DatabaseSecret {
            username: "kit_ingest".into(),
            password: "s3cret".into(),
            host: "pgbouncer-nlb-0123.elb.eu-west-1.amazonaws.com".into(),
            port: 6432,
            dbname: "kit".into(),
        }
    );
    assert_eq!(
        secret.database_url(),
        "postgres://kit_ingest:s3cret@pgbouncer-nlb-0123.elb.eu-west-1.amazonaws.com:6432/kit"
    );
}

#[test]
fn special_characters_round_trip_through_url_parsing() {
    let passwords = [
        PASSWORD,
        "@",
        ":",
        "/",
        "?",
        "#",
        "%",
        "%41",
        "a@b:c/d?e#f%g",
        "+plus space",
        "@@::",
    ];
    for password in passwords {
        let secret = DatabaseSecret {
            username: "user:with@odd/chars".into(),
            password: password.into(),
            host: "db.internal".into(),
            port: 6432,
            dbname: "kit db/1".into(),
        };
        let url = secret.database_url();
        // One '@' and no query or fragment: nothing in the user or password leaked into
        // the URL's structure (storage's redaction splits on the last '@', too).
        assert_eq!(url.matches('@').count(), 1, "{url}");
        let parsed = Url::parse(&url).unwrap();
        assert_eq!((parsed.query(), parsed.fragment()), (None, None), "{url}");
        let (user, pass, host, port, dbname) = decode_like_sqlx(&url);
        assert_eq!(user, secret.username, "{url}");
        assert_eq!(pass, password, "{url}");
        assert_eq!(host, "db.internal", "{url}");
        assert_eq!(port, 6432, "{url}");
        assert_eq!(dbname, "kit db/1", "{url}");
    }
}

#[test]
fn the_proxy_override_wins_over_the_secrets_host_and_port() {
    let mut rds = DatabaseSecret::parse(ARN, &rds_json("s3cret")).unwrap();
    rds.host = "kit.cluster-abc.eu-west-1.rds.amazonaws.com".into();
    rds.port = 5432;
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        }
    };
    let proxy = ProxyEndpoint::from_lookup(
        &env(&[
            (DATABASE_PROXY_HOST, " pgbouncer-nlb.elb.amazonaws.com "),
            (DATABASE_PROXY_PORT, "6432"),
        ]),
        ARN,
    )
    .unwrap();
    assert_eq!(
        rds.database_url_via(proxy.as_ref()),
        "postgres://kit_ingest:s3cret@pgbouncer-nlb.elb.amazonaws.com:6432/kit"
    );
    // Without it (blank counts as unset), the secret's own host and port.
    let none = ProxyEndpoint::from_lookup(&env(&[(DATABASE_PROXY_HOST, " ")]), ARN).unwrap();
    assert_eq!(none, None);
    assert_eq!(
        rds.database_url_via(none.as_ref()),
        "postgres://kit_ingest:s3cret@kit.cluster-abc.eu-west-1.rds.amazonaws.com:5432/kit"
    );
    assert_eq!(rds.database_url(), rds.database_url_via(None));
    // One without the other, or a port that is not one, is an error naming the variable.
    for (pairs, name) in [
        (&[(DATABASE_PROXY_HOST, "h")][..], DATABASE_PROXY_PORT),
        (&[(DATABASE_PROXY_PORT, "6432")][..], DATABASE_PROXY_HOST),
        (
            &[(DATABASE_PROXY_HOST, "h"), (DATABASE_PROXY_PORT, "0")][..],
            DATABASE_PROXY_PORT,
        ),
    ] {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let lookup = move |name: &str| {
            pairs
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        };
        let error = ProxyEndpoint::from_lookup(&lookup, ARN).unwrap_err();
        assert!(
            matches!(&error, CredentialsError::Setting { name: named, .. } if *named == name),
            "{error:?}"
        );
    }
}

#[test]
fn ipv6_hosts_get_brackets() {
    let secret = DatabaseSecret {
        username: "u".into(),
        password: "p".into(),
        host: "fd00::1".into(),
        port: 6432,
        dbname: "kit".into(),
    };
    let url = secret.database_url();
    assert_eq!(url, "postgres://u:p@[fd00::1]:6432/kit");
    assert_eq!(decode_like_sqlx(&url).2, "[fd00::1]");
}

#[test]
fn port_may_be_a_string_and_engine_may_be_absent() {
    let json = r#"{"username":"u","password":"p","host":"h","port":"6432","dbname":"d"}"#;
    assert_eq!(DatabaseSecret::parse(ARN, json).unwrap().port, 6432);
    let aurora = r#"{"engine":"aurora-postgresql","username":"u","password":"p","host":"h","port":5432,"dbname":"d"}"#;
    assert!(DatabaseSecret::parse(ARN, aurora).is_ok());
}

#[test]
fn each_missing_key_is_named() {
    for key in ["username", "password", "host", "port", "dbname"] {
        let mut object: Map<String, Value> = serde_json::from_str(&rds_json("pw")).unwrap();
        object.remove(key);
        let error = DatabaseSecret::parse(ARN, &Value::Object(object).to_string()).unwrap_err();
        match &error {
            CredentialsError::MissingKey { key: named, arn } => {
                assert_eq!(*named, key);
                assert_eq!(arn, ARN);
            }
            other => panic!("expected MissingKey for {key}, got {other:?}"),
        }
        let message = error.to_string();
        assert!(
            message.contains(&format!("\"{key}\"")) && message.contains(ARN),
            "{message}"
        );
    }
}

#[test]
fn invalid_values_are_named_without_echoing_them() {
    let cases = [
        (
            r#"{"username":"u","password":17,"host":"h","port":1,"dbname":"d"}"#,
            "password",
        ),
        (
            r#"{"username":"u","password":"","host":"h","port":1,"dbname":"d"}"#,
            "password",
        ),
        (
            r#"{"username":"u","password":"p","host":"  ","port":1,"dbname":"d"}"#,
            "host",
        ),
        (
            r#"{"username":"u","password":"p","host":"h","port":70000,"dbname":"d"}"#,
            "port",
        ),
        (
            r#"{"username":"u","password":"p","host":"h","port":"SECRETVALUE","dbname":"d"}"#,
            "port",
        ),
        (
            r#"{"username":"u","password":"p","host":"h","port":0,"dbname":"d"}"#,
            "port",
        ),
        (
            r#"{"username":["u"],"password":"p","host":"h","port":1,"dbname":"d"}"#,
            "username",
        ),
    ];
    for (json, key) in cases {
        let error = DatabaseSecret::parse(ARN, json).unwrap_err();
        assert!(
            matches!(&error, CredentialsError::InvalidKey { key: named, .. } if *named == key),
            "{json}: {error:?}"
        );
        assert!(!error.to_string().contains("SECRETVALUE"), "{error}");
    }
}

#[test]
fn not_json_and_wrong_engine() {
    for text in [
        "postgres://u:SECRETVALUE@h/d",
        "",
        "[1,2]",
        "\"SECRETVALUE\"",
        "{\"password\": \"SECRETVALUE",
    ] {
        let error = DatabaseSecret::parse(ARN, text).unwrap_err();
        assert!(
            matches!(error, CredentialsError::NotJson { .. }),
            "{text}: {error:?}"
        );
        let message = error.to_string();
        assert!(
            message.contains(ARN) && !message.contains("SECRETVALUE"),
            "{message}"
        );
    }
    let mysql =
        r#"{"engine":"mysql","username":"u","password":"p","host":"h","port":3306,"dbname":"d"}"#;
    let error = DatabaseSecret::parse(ARN, mysql).unwrap_err();
    assert!(
        matches!(error, CredentialsError::WrongEngine { .. }),
        "{error:?}"
    );
}

#[test]
fn debug_never_shows_the_password() {
    let secret = DatabaseSecret::parse(ARN, &rds_json("SECRETVALUE")).unwrap();
    let debug = format!("{secret:?} {secret:#?}");
    assert!(!debug.contains("SECRETVALUE"), "{debug}");
    assert!(
        debug.contains("<redacted>") && debug.contains("kit_ingest"),
        "{debug}"
    );
}
