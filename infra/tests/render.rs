//! The rendered files: their numbers come from kit.toml, they are deterministic,
//! and the committed copies are up to date (drift).

mod support;

use kit::deploy::model::KitConfig;
use kit::deploy::render::{self, GENERATED_MARKER, PGBOUNCER_INI_PATH, TEMPLATE_PATH};
use serde_norway::Value;
use support::{committed_config, repo_root};

fn template(config: &KitConfig) -> Value {
    let text = render::render_template(config).expect("the template renders");
    serde_norway::from_str(&text)
        .unwrap_or_else(|err| panic!("rendered template is not YAML: {err}\n{text}"))
}

fn resource<'a>(template: &'a Value, id: &str) -> &'a Value {
    let r = &template["Resources"][id];
    assert!(!r.is_null(), "no resource {id}");
    r
}

fn int(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("not an integer: {v:?}"))
}

fn ini_value<'a>(ini: &'a str, key: &str) -> &'a str {
    ini.lines()
        .filter_map(|line| line.split_once('='))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim())
        .unwrap_or_else(|| panic!("no {key} in pgbouncer.ini:\n{ini}"))
}

#[test]
fn committed_rendered_files_match_a_fresh_render() {
    let drift =
        render::drift(&committed_config(), &repo_root()).expect("rendered files are readable");
    assert!(
        drift.is_empty(),
        "run `cargo run -p kit -- render` and commit the result: {}",
        drift
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    );
}

#[test]
fn drift_names_the_stale_file() {
    let dir = std::env::temp_dir().join(format!("kit-drift-{}", std::process::id()));
    let config = committed_config();
    render::write_all(&config, &dir).unwrap();
    assert!(render::drift(&config, &dir).unwrap().is_empty());

    let mut changed = config.clone();
    changed.queue.max_receive_count = 7;
    let drift = render::drift(&changed, &dir).unwrap();
    assert_eq!(drift.len(), 1, "{drift:?}");
    assert_eq!(drift[0].path, TEMPLATE_PATH);
    assert!(drift[0]
        .to_string()
        .starts_with("infra/template.yaml differs from kit.toml (first difference at line "));
    assert!(drift[0]
        .to_string()
        .ends_with("fix: run `kit render` and commit the result"));

    std::fs::remove_file(dir.join(PGBOUNCER_INI_PATH)).unwrap();
    let drift = render::drift(&config, &dir).unwrap();
    assert_eq!(drift.len(), 1, "{drift:?}");
    assert_eq!(
        drift[0].to_string(),
        "pgbouncer/pgbouncer.ini is missing; fix: run `kit render` and commit the result"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn rendering_is_deterministic_and_marked_generated() {
    let config = committed_config();
    let first = render::render_all(&config).unwrap();
    let second = render::render_all(&config).unwrap();
    assert_eq!(first, second);
    for file in &first {
        let head = file.contents.lines().next().unwrap_or_default();
        assert!(
            head.contains(GENERATED_MARKER),
            "{}: first line is {head:?}",
            file.path
        );
        assert!(
            !file.contents.contains("{{"),
            "{}: unfilled placeholder",
            file.path
        );
    }
}

#[test]
fn template_numbers_equal_kit_toml() {
    let config = committed_config();
    let t = template(&config);
    for (name, f) in config.functions() {
        let id = format!("{}Function", name.logical_id());
        let props = &resource(&t, &id)["Properties"];
        assert_eq!(
            int(&props["ReservedConcurrentExecutions"]),
            u64::from(f.reserved_concurrency),
            "{id}"
        );
        assert_eq!(int(&props["MemorySize"]), u64::from(f.memory_mb), "{id}");
        assert_eq!(int(&props["Timeout"]), u64::from(f.timeout_s), "{id}");
        let env = &props["Environment"]["Variables"];
        assert_eq!(
            env["DB_MAX_CONNECTIONS"].as_str(),
            Some(f.connections_per_environment.to_string().as_str())
        );
        assert_eq!(
            env["DB_ACQUIRE_TIMEOUT_MS"].as_str(),
            Some(f.acquire_timeout_ms.to_string().as_str())
        );
        assert_eq!(
            env["DB_STATEMENT_TIMEOUT_MS"].as_str(),
            Some(f.statement_timeout_ms.to_string().as_str())
        );
        assert_eq!(
            env["DATABASE_SECRET_ARN"]["Ref"].as_str(),
            Some(format!("{}DatabaseSecret", name.logical_id()).as_str())
        );
        let metadata = &resource(&t, &id)["Metadata"];
        assert_eq!(metadata["BuildMethod"].as_str(), Some("rust-cargolambda"));
        assert_eq!(
            metadata["BuildProperties"]["Binary"].as_str(),
            Some(name.as_str())
        );
    }

    let queue_event =
        &resource(&t, "IngestFunction")["Properties"]["Events"]["Queue"]["Properties"];
    assert_eq!(
        int(&queue_event["ScalingConfig"]["MaximumConcurrency"]),
        u64::from(config.queue.maximum_concurrency)
    );
    assert_eq!(
        int(&queue_event["BatchSize"]),
        u64::from(config.queue.batch_size)
    );
    assert_eq!(
        int(&queue_event["MaximumBatchingWindowInSeconds"]),
        u64::from(config.queue.batching_window_s)
    );
    assert_eq!(
        queue_event["FunctionResponseTypes"][0].as_str(),
        Some("ReportBatchItemFailures")
    );

    let queue = &resource(&t, "IngestQueue")["Properties"];
    assert_eq!(
        int(&queue["VisibilityTimeout"]),
        u64::from(config.queue.visibility_timeout_s)
    );
    assert_eq!(
        int(&queue["MessageRetentionPeriod"]),
        u64::from(config.queue.message_retention_s)
    );
    assert_eq!(
        int(&queue["RedrivePolicy"]["maxReceiveCount"]),
        u64::from(config.queue.max_receive_count)
    );
    assert_eq!(
        queue["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0].as_str(),
        Some("IngestDeadLetterQueue")
    );
    let dlq = &resource(&t, "IngestDeadLetterQueue")["Properties"];
    assert_eq!(
        int(&dlq["MessageRetentionPeriod"]),
        u64::from(config.queue.dlq_message_retention_s)
    );

    let purge = &resource(&t, "PurgeFunction")["Properties"];
    assert_eq!(
        purge["Events"]["Nightly"]["Properties"]["Schedule"].as_str(),
        Some(config.schedule.expression.as_str())
    );
    assert_eq!(
        purge["Environment"]["Variables"]["RETENTION_DAYS"].as_str(),
        Some(config.schedule.retention_days.to_string().as_str())
    );

    let service = &resource(&t, "PgBouncerService")["Properties"];
    assert_eq!(
        int(&service["DesiredCount"]),
        u64::from(config.pgbouncer.instances)
    );
    assert_eq!(
        int(&service["DeploymentConfiguration"]["MaximumPercent"]),
        100,
        "never more tasks than budgeted"
    );

    let api = &resource(&t, "SearchApi")["Properties"];
    assert_eq!(
        int(&api["DefaultRouteSettings"]["ThrottlingRateLimit"]),
        u64::from(config.api.throttling_rate_limit)
    );
    assert_eq!(
        int(&resource(&t, "SearchP99DurationAlarm")["Properties"]["Threshold"]),
        u64::from(config.api.p99_alarm_ms)
    );
}

#[test]
fn template_deploys_what_the_design_promises() {
    let t = template(&committed_config());
    let globals = &t["Globals"]["Function"];
    assert_eq!(globals["Runtime"].as_str(), Some("provided.al2023"));
    assert_eq!(globals["Architectures"][0].as_str(), Some("arm64"));

    let routes: Vec<(String, String)> = resource(&t, "SearchFunction")["Properties"]["Events"]
        .as_mapping()
        .unwrap()
        .values()
        .map(|e| {
            let p = &e["Properties"];
            (
                p["Method"].as_str().unwrap().to_owned(),
                p["Path"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for route in [
        ("POST", "/search"),
        ("GET", "/items/{id}"),
        ("GET", "/health"),
    ] {
        assert!(
            routes.contains(&(route.0.to_owned(), route.1.to_owned())),
            "{route:?} missing from {routes:?}"
        );
    }
    let auth = &resource(&t, "SearchApi")["Properties"]["Auth"];
    assert_eq!(auth["DefaultAuthorizer"].as_str(), Some("JwtAuthorizer"));
    assert!(!auth["Authorizers"]["JwtAuthorizer"]["JwtConfiguration"].is_null());

    for id in [
        "IngestQueuePolicy",
        "IngestDeadLetterQueueAlarm",
        "IngestErrorsAlarm",
        "SearchErrorsAlarm",
        "PurgeErrorsAlarm",
        "IngestThrottlesAlarm",
        "SearchThrottlesAlarm",
        "PurgeThrottlesAlarm",
        "SearchP99DurationAlarm",
        "PgBouncerLoadBalancer",
        "PgBouncerTaskDefinition",
    ] {
        resource(&t, id);
    }
    assert_eq!(
        resource(&t, "PgBouncerLoadBalancer")["Properties"]["Scheme"].as_str(),
        Some("internal")
    );
    let container =
        &resource(&t, "PgBouncerTaskDefinition")["Properties"]["ContainerDefinitions"][0];
    let secrets = container["Secrets"].as_sequence().unwrap();
    assert!(
        secrets.iter().all(|s| !s["Name"]
            .as_str()
            .unwrap()
            .starts_with("PGBOUNCER_PASSWORD_")),
        "PgBouncer reads the role secrets itself (PGBOUNCER_SECRET_ARNS), not through ECS Secrets"
    );
    assert_eq!(
        secrets.len(),
        2,
        "ECS Secrets carry only PgBouncer's TLS certificate and key"
    );
    let env_names: Vec<&str> = container["Environment"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|e| e["Name"].as_str())
        .collect();
    assert!(
        !env_names.iter().any(|n| n.contains("PASSWORD")),
        "passwords come only through Secrets"
    );
}

#[test]
fn optional_blocks_follow_kit_toml() {
    let mut config = committed_config();
    config.functions.search.provisioned_concurrency = 25;
    config.queue.fifo = true;
    config.queue.batch_size = 10;
    config.queue.batching_window_s = 0;
    let t = template(&config);
    let search = &resource(&t, "SearchFunction")["Properties"];
    assert_eq!(
        int(&search["ProvisionedConcurrencyConfig"]["ProvisionedConcurrentExecutions"]),
        25
    );
    assert!(resource(&t, "IngestFunction")["Properties"]["ProvisionedConcurrencyConfig"].is_null());
    assert_eq!(
        resource(&t, "IngestQueue")["Properties"]["FifoQueue"].as_bool(),
        Some(true)
    );
    assert_eq!(
        resource(&t, "IngestDeadLetterQueue")["Properties"]["FifoQueue"].as_bool(),
        Some(true)
    );
    let event = &resource(&t, "IngestFunction")["Properties"]["Events"]["Queue"]["Properties"];
    assert!(event["MaximumBatchingWindowInSeconds"].is_null());

    let plain = template(&committed_config());
    assert!(
        resource(&plain, "SearchFunction")["Properties"]["ProvisionedConcurrencyConfig"].is_null()
    );
    assert!(resource(&plain, "IngestQueue")["Properties"]["FifoQueue"].is_null());
}

#[test]
fn pgbouncer_ini_numbers_equal_kit_toml() {
    let config = committed_config();
    let ini = render::render_pgbouncer_ini(&config);
    let p = &config.pgbouncer;
    assert_eq!(ini_value(&ini, "pool_mode"), "transaction");
    assert_eq!(
        ini_value(&ini, "ignore_startup_parameters"),
        "extra_float_digits"
    );
    assert_eq!(
        ini_value(&ini, "max_prepared_statements"),
        p.max_prepared_statements.to_string()
    );
    assert_eq!(ini_value(&ini, "pkt_buf"), p.pkt_buf.to_string());
    assert_eq!(
        ini_value(&ini, "max_client_conn"),
        p.max_client_conn.to_string()
    );
    assert_eq!(
        ini_value(&ini, "default_pool_size"),
        p.default_pool_size.to_string()
    );
    assert_eq!(
        ini_value(&ini, "reserve_pool_size"),
        p.reserve_pool_size.to_string()
    );
    assert_eq!(
        ini_value(&ini, "query_wait_timeout"),
        p.query_wait_timeout_s.to_string()
    );
    assert_eq!(
        ini_value(&ini, "server_idle_timeout"),
        p.server_idle_timeout_s.to_string()
    );
}

#[test]
fn pgbouncer_ini_holds_nothing_environment_specific() {
    let ini = render::render_pgbouncer_ini(&committed_config());
    let sections: Vec<&str> = ini.lines().filter(|l| l.starts_with('[')).collect();
    assert_eq!(sections, ["[pgbouncer]"]);
    for key in [
        "listen_addr",
        "listen_port",
        "auth_type",
        "auth_file",
        "unix_socket_dir",
        "logfile",
        "pidfile",
    ] {
        assert!(
            !ini.lines()
                .any(|l| l.split('=').next().map(str::trim) == Some(key)),
            "{key} is environment-specific: the wrappers set it"
        );
    }
}

#[test]
fn the_container_includes_the_base_config_inside_a_section() {
    // PgBouncer silently ignores an %include above the first section header
    // (seen with 1.24.1): the sizes would fall back to PgBouncer's defaults.
    let script = std::fs::read_to_string(repo_root().join("pgbouncer/entrypoint.sh")).unwrap();
    let lines: Vec<&str> = script.lines().collect();
    let include = lines
        .iter()
        .position(|l| l.starts_with("%include "))
        .expect("entrypoint includes the base config");
    let section = lines
        .iter()
        .position(|l| *l == "[pgbouncer]")
        .expect("entrypoint opens [pgbouncer]");
    assert!(section < include, "[pgbouncer] must come before %include");
    let dockerfile = std::fs::read_to_string(repo_root().join("pgbouncer/Dockerfile")).unwrap();
    assert!(dockerfile.contains("COPY pgbouncer.ini /etc/pgbouncer/kit/pgbouncer.ini"));
    assert!(script.contains("BASE_INI=\"${PGBOUNCER_BASE_INI:-/etc/pgbouncer/kit/pgbouncer.ini}\""));
}

/// The search function's environment variable `name` in `t`.
fn search_env<'a>(t: &'a Value, name: &str) -> &'a Value {
    &resource(t, "SearchFunction")["Properties"]["Environment"]["Variables"][name]
}

#[test]
fn the_search_function_gets_auth_mode_and_namespace_claim_from_kit_toml() {
    use kit::deploy::model::AuthMode;
    let config = committed_config();
    let t = template(&config);
    assert_eq!(search_env(&t, "AUTH_MODE").as_str(), Some("jwt"));
    assert_eq!(
        search_env(&t, "NAMESPACE_CLAIM").as_str(),
        Some(config.api.namespace_claim.as_str())
    );
    for mode in [
        AuthMode::Jwt,
        AuthMode::Lambda,
        AuthMode::Iam,
        AuthMode::None,
    ] {
        let mut config = committed_config();
        config.api.auth = mode;
        config.api.namespace_claim = "custom:tenant".into();
        let t = template(&config);
        assert_eq!(search_env(&t, "AUTH_MODE").as_str(), Some(mode.as_str()));
        assert_eq!(
            search_env(&t, "NAMESPACE_CLAIM").as_str(),
            Some("custom:tenant")
        );
    }
}

#[test]
fn each_auth_mode_renders_its_authorizer_on_every_route() {
    use kit::deploy::model::AuthMode;
    // jwt (the committed config): issuer and audience from kit.toml, scopes when set.
    let mut config = committed_config();
    config.api.jwt_issuer = Some("https://issuer.example.com/pool".into());
    config.api.jwt_audience = vec!["client-a".into(), "client-b".into()];
    config.api.authorization_scopes = vec!["search/read".into()];
    let t = template(&config);
    assert!(
        t["Parameters"]["JwtIssuer"].is_null(),
        "kit.toml, not a parameter"
    );
    let auth = &resource(&t, "SearchApi")["Properties"]["Auth"];
    assert_eq!(auth["DefaultAuthorizer"].as_str(), Some("JwtAuthorizer"));
    let jwt = &auth["Authorizers"]["JwtAuthorizer"];
    assert_eq!(
        jwt["JwtConfiguration"]["issuer"].as_str(),
        Some("https://issuer.example.com/pool")
    );
    let audience: Vec<&str> = jwt["JwtConfiguration"]["audience"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(audience, ["client-a", "client-b"]);
    assert_eq!(jwt["AuthorizationScopes"][0].as_str(), Some("search/read"));
    let plain = template(&committed_config());
    assert!(
        resource(&plain, "SearchApi")["Properties"]["Auth"]["Authorizers"]["JwtAuthorizer"]
            ["AuthorizationScopes"]
            .is_null()
    );

    // lambda: the authorizer function's ARN, payload 2.0 (context under authorizer.lambda).
    let mut config = committed_config();
    config.api.auth = AuthMode::Lambda;
    config.api.lambda_authorizer_arn =
        Some("arn:aws:lambda:us-east-1:123456789012:function:tenant-authorizer".into());
    let t = template(&config);
    let auth = &resource(&t, "SearchApi")["Properties"]["Auth"];
    assert_eq!(auth["DefaultAuthorizer"].as_str(), Some("LambdaAuthorizer"));
    let lambda = &auth["Authorizers"]["LambdaAuthorizer"];
    assert_eq!(
        lambda["FunctionArn"].as_str(),
        config.api.lambda_authorizer_arn.as_deref()
    );
    assert_eq!(
        lambda["AuthorizerPayloadFormatVersion"].as_str(),
        Some("2.0")
    );
    assert!(auth["Authorizers"]["JwtAuthorizer"].is_null());

    // iam: AWS_IAM on every route.
    let mut config = committed_config();
    config.api.auth = AuthMode::Iam;
    let t = template(&config);
    let auth = &resource(&t, "SearchApi")["Properties"]["Auth"];
    assert_eq!(auth["DefaultAuthorizer"].as_str(), Some("AWS_IAM"));
    assert_eq!(auth["EnableIamAuthorizer"].as_bool(), Some(true));

    // none: no authorizer at all.
    let mut config = committed_config();
    config.api.auth = AuthMode::None;
    config.api.allow_unauthenticated = true;
    let t = template(&config);
    assert!(resource(&t, "SearchApi")["Properties"]["Auth"].is_null());
}

#[test]
fn the_queue_policy_lets_only_the_listed_producers_send() {
    let mut config = committed_config();
    config.queue.producers = vec![
        "arn:aws:iam::111122223333:role/writer".into(),
        "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/kit-ingest-producer".into(),
    ];
    let t = template(&config);
    let policy = &resource(&t, "IngestQueuePolicy")["Properties"];
    assert_eq!(policy["Queues"][0]["Ref"].as_str(), Some("IngestQueue"));
    let statements = policy["PolicyDocument"]["Statement"].as_sequence().unwrap();
    let (allow, deny) = (&statements[0], &statements[1]);
    let arns = |list: &Value| -> Vec<String> {
        list.as_sequence()
            .unwrap()
            .iter()
            .map(|v| {
                v.as_str()
                    .or_else(|| v["Fn::Sub"].as_str())
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    assert_eq!(allow["Effect"].as_str(), Some("Allow"));
    assert_eq!(allow["Action"].as_str(), Some("sqs:SendMessage"));
    assert_eq!(arns(&allow["Principal"]["AWS"]), config.queue.producers);
    // An account's own identities may hold sqs:SendMessage through their IAM policies:
    // the Deny is what keeps them out.
    assert_eq!(deny["Effect"].as_str(), Some("Deny"));
    assert_eq!(deny["Principal"].as_str(), Some("*"));
    assert_eq!(deny["Action"].as_str(), Some("sqs:SendMessage"));
    assert_eq!(
        arns(&deny["Condition"]["ArnNotEquals"]["aws:PrincipalArn"]),
        config.queue.producers
    );
    // Literal ARNs stay literal; ${AWS::…} goes through Fn::Sub.
    let listed = &allow["Principal"]["AWS"];
    assert_eq!(
        listed[0].as_str(),
        Some("arn:aws:iam::111122223333:role/writer")
    );
    assert!(listed[1]["Fn::Sub"].is_string());
}

#[test]
fn the_queue_namespace_allow_list_is_an_ingest_variable() {
    let ingest_env = |t: &Value| {
        resource(t, "IngestFunction")["Properties"]["Environment"]["Variables"]
            ["ALLOWED_NAMESPACES"]
            .clone()
    };
    assert!(ingest_env(&template(&committed_config())).is_null());
    let mut config = committed_config();
    config.queue.namespaces = vec!["acme".into(), "globex".into()];
    assert_eq!(ingest_env(&template(&config)).as_str(), Some("acme,globex"));
}

/// A template's value as a string for substring checks.
fn yaml_text(v: &Value) -> String {
    serde_norway::to_string(v).unwrap()
}

#[test]
fn each_role_secret_is_rotated_with_alternating_users_on_the_kit_toml_schedule() {
    let mut config = committed_config();
    assert!(config.rotation.enabled, "the committed kit.toml rotates");
    config.rotation.schedule = "rate(7 days)".into();
    let t = template(&config);
    let transforms: Vec<&str> = t["Transform"]
        .as_sequence()
        .expect("a list of transforms")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        transforms,
        [
            "AWS::Serverless-2016-10-31",
            "AWS::SecretsManager-2024-09-16"
        ]
    );
    assert_eq!(
        t["Parameters"]["DatabaseMasterSecretArn"]["Type"].as_str(),
        Some("String")
    );
    for (name, f) in config.functions() {
        let secret_id = format!("{}DatabaseSecret", name.logical_id());
        let schedule = resource(&t, &format!("{secret_id}Rotation"));
        assert_eq!(
            schedule["Type"].as_str(),
            Some("AWS::SecretsManager::RotationSchedule")
        );
        let props = &schedule["Properties"];
        assert_eq!(props["SecretId"]["Ref"].as_str(), Some(secret_id.as_str()));
        let hosted = &props["HostedRotationLambda"];
        assert_eq!(hosted["RotationType"].as_str(), Some("PostgreSQLMultiUser"));
        assert_eq!(
            hosted["MasterSecretArn"]["Ref"].as_str(),
            Some("DatabaseMasterSecretArn")
        );
        assert_eq!(
            hosted["VpcSubnetIds"]["Fn::Join"][1]["Ref"].as_str(),
            Some("SubnetIds")
        );
        assert_eq!(
            hosted["VpcSecurityGroupIds"]["Fn::GetAtt"][0].as_str(),
            Some("RotationSecurityGroup")
        );
        assert_eq!(
            props["RotationRules"]["ScheduleExpression"].as_str(),
            Some("rate(7 days)")
        );
        assert_eq!(props["RotateImmediatelyOnUpdate"].as_bool(), Some(false));
        // The secret is in the RDS shape the rotation function needs: the database's own
        // host and port, and the master secret's ARN.
        let body = resource(&t, &secret_id)["Properties"]["GenerateSecretString"]
            ["SecretStringTemplate"]["Fn::Sub"]
            .as_str()
            .unwrap()
            .to_owned();
        for part in [
            "\"engine\":\"postgres\"".to_owned(),
            format!("\"username\":\"{}\"", f.db_role),
            "\"host\":\"${DatabaseHost}\"".to_owned(),
            "\"port\":${DatabasePort}".to_owned(),
            "\"dbname\":\"${DatabaseName}\"".to_owned(),
            "\"masterarn\":\"${DatabaseMasterSecretArn}\"".to_owned(),
        ] {
            assert!(body.contains(&part), "{part} missing from {body}");
        }
    }
    // The rotation function reaches PostgreSQL through its own security group.
    let ingress = &resource(&t, "DatabaseFromRotationIngress")["Properties"];
    assert_eq!(
        ingress["GroupId"]["Ref"].as_str(),
        Some("DatabaseSecurityGroupId")
    );

    config.rotation.enabled = false;
    let t = template(&config);
    assert_eq!(t["Transform"].as_str(), Some("AWS::Serverless-2016-10-31"));
    assert!(t["Parameters"]["DatabaseMasterSecretArn"].is_null());
    let text = yaml_text(&t);
    assert!(!text.contains("RotationSchedule"), "{text}");
    assert!(!text.contains("masterarn"), "{text}");
}

#[test]
fn every_function_reaches_the_database_through_the_pgbouncer_override() {
    let config = committed_config();
    let t = template(&config);
    for (name, _) in config.functions() {
        let id = format!("{}Function", name.logical_id());
        let env = &resource(&t, &id)["Properties"]["Environment"]["Variables"];
        // The name PgBouncer's certificate is issued for (verify-full), which the
        // private hosted zone points at the NLB.
        assert_eq!(
            env["DATABASE_PROXY_HOST"].as_str(),
            Some(config.tls.pgbouncer_hostname.as_str()),
            "{id}"
        );
        assert_eq!(
            env["DATABASE_PROXY_PORT"].as_str(),
            Some(config.pgbouncer.port.to_string().as_str()),
            "{id}"
        );
    }
}

#[test]
fn the_template_holds_secret_arns_never_secret_values() {
    let config = committed_config();
    let text = render::render_template(&config).unwrap();
    let t = template(&config);
    // No literal secret value anywhere: secrets are generated, and nothing passes a
    // password by value (no SecretString, no PASSWORD variable, no ECS Secrets).
    for forbidden in ["\"password\"", "PASSWORD", "MasterUserPassword"] {
        assert!(!text.contains(forbidden), "{forbidden} in the template");
    }
    assert!(
        !text
            .lines()
            .any(|line| line.trim_start().starts_with("SecretString:")),
        "a secret value is written into the template"
    );
    for (name, _) in config.functions() {
        let secret = &resource(&t, &format!("{}DatabaseSecret", name.logical_id()))["Properties"];
        assert_eq!(
            secret["GenerateSecretString"]["GenerateStringKey"].as_str(),
            Some("password")
        );
    }
    // PgBouncer gets the ARNs and reads them with its task role, limited to the three
    // secrets; the execution role reads none.
    let container =
        &resource(&t, "PgBouncerTaskDefinition")["Properties"]["ContainerDefinitions"][0];
    let arns = container["Environment"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|e| e["Name"].as_str() == Some("PGBOUNCER_SECRET_ARNS"))
        .expect("PGBOUNCER_SECRET_ARNS");
    let refs: Vec<&str> = arns["Value"]["Fn::Join"][1]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|r| r["Ref"].as_str())
        .collect();
    assert_eq!(
        refs,
        [
            "IngestDatabaseSecret",
            "SearchDatabaseSecret",
            "PurgeDatabaseSecret"
        ]
    );
    let task_role = &resource(&t, "PgBouncerTaskRole")["Properties"];
    let statement = &task_role["Policies"][0]["PolicyDocument"]["Statement"];
    assert_eq!(statement.as_sequence().unwrap().len(), 1);
    assert_eq!(
        statement[0]["Action"].as_str(),
        Some("secretsmanager:GetSecretValue")
    );
    let resources: Vec<&str> = statement[0]["Resource"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|r| r["Ref"].as_str())
        .collect();
    assert_eq!(resources, refs);
    // The execution role reads only PgBouncer's TLS secret (ECS injects its certificate
    // and key); never a role's password.
    let execution_role = &resource(&t, "PgBouncerExecutionRole")["Properties"];
    let statement = &execution_role["Policies"][0]["PolicyDocument"]["Statement"];
    let resources: Vec<&str> = statement[0]["Resource"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|r| r["Ref"].as_str())
        .collect();
    assert_eq!(resources, ["PgBouncerTlsSecretArn"]);
}
