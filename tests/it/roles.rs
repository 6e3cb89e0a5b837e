//! The database's walls, through the real PgBouncer: each function's login role may run
//! exactly its function's statements (everything else fails with 42501,
//! insufficient_privilege), and row-level security shows a search only the namespace
//! its own statement sets as the tenant, in every plan a search can take.

use kit_support::corpus::{clustered, DIMS};
use kit_support::database_url::login;
use kit_support::search_corpus::{nearest_query, write_rows};
use kit_support::TestDb;
use serde_json::{json, Map, Value};
use sqlx::{Connection, Executor, PgConnection};
use storage::roles::{self, LoginRole, Password, RolesPlan};
use storage::{search_statement, Filter, Function, Namespace, SearchQuery};
use uuid::Uuid;

const INSUFFICIENT_PRIVILEGE: &str = "42501";

/// One statement in a transaction that is rolled back: `Ok` or the SQLSTATE.
async fn outcome(conn: &mut PgConnection, statement: &str) -> Result<(), String> {
    let mut tx = conn.begin().await.unwrap();
    let result = tx.execute(statement).await;
    tx.rollback().await.ok();
    match result {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(e)) => Err(e.code().unwrap_or_default().into_owned()),
        Err(e) => panic!("{statement}: {e}"),
    }
}

const SELECT_EMBEDDINGS: &str = "SELECT count(*) FROM embeddings";
const INSERT_EMBEDDINGS: &str = "INSERT INTO embeddings (namespace, id, embedding)
    VALUES ('acme', gen_random_uuid(), array_fill(0.1, ARRAY[1536])::vector)";
const UPDATE_EMBEDDINGS: &str = "UPDATE embeddings SET version = version + 1";
const DELETE_EMBEDDINGS: &str = "DELETE FROM embeddings";
const TRUNCATE_EMBEDDINGS: &str = "TRUNCATE embeddings";
const SELECT_RETENTION: &str = "SELECT count(*) FROM retention_policies";
const INSERT_RETENTION: &str =
    "INSERT INTO retention_policies (namespace, retention_days) VALUES ('other', 7)";
const UPDATE_RETENTION: &str = "UPDATE retention_policies SET retention_days = 8";
const DELETE_RETENTION: &str = "DELETE FROM retention_policies";
const SELECT_LEASE: &str = "SELECT count(*) FROM purge_lease";
const INSERT_LEASE: &str = "INSERT INTO purge_lease (singleton, holder, expires_at)
    VALUES (TRUE, gen_random_uuid(), now()) ON CONFLICT (singleton) DO UPDATE SET expires_at = now()";
const UPDATE_LEASE: &str = "UPDATE purge_lease SET expires_at = now()";
const DELETE_LEASE: &str = "DELETE FROM purge_lease";

/// Every statement the matrix tries, and whether `allowed` lists it.
const ALL: [&str; 13] = [
    SELECT_EMBEDDINGS,
    INSERT_EMBEDDINGS,
    UPDATE_EMBEDDINGS,
    DELETE_EMBEDDINGS,
    TRUNCATE_EMBEDDINGS,
    SELECT_RETENTION,
    INSERT_RETENTION,
    UPDATE_RETENTION,
    DELETE_RETENTION,
    SELECT_LEASE,
    INSERT_LEASE,
    UPDATE_LEASE,
    DELETE_LEASE,
];

async fn seed_one(t: &TestDb) {
    let admin = t.admin_pool().await.unwrap();
    for statement in [
        INSERT_EMBEDDINGS,
        "INSERT INTO retention_policies (namespace, retention_days) VALUES ('acme', 7)",
        "INSERT INTO purge_lease (singleton, holder, expires_at) VALUES (TRUE, gen_random_uuid(), now())",
    ] {
        sqlx::query(statement).execute(&admin).await.unwrap();
    }
    admin.close().await;
}

/// Runs every statement of [`ALL`] on `conn`; those in `allowed` must work, every other
/// must fail with 42501.
async fn assert_exactly(conn: &mut PgConnection, who: &str, allowed: &[&str]) {
    let mut wrong = Vec::new();
    for statement in ALL {
        let got = outcome(conn, statement).await;
        let ok = allowed.contains(&statement);
        let right = if ok {
            got.is_ok()
        } else {
            matches!(&got, Err(code) if code == INSUFFICIENT_PRIVILEGE)
        };
        if !right {
            wrong.push(format!(
                "{who}: {} expected {}, got {got:?}",
                statement.split_whitespace().collect::<Vec<_>>().join(" "),
                if ok { "to work" } else { "42501" }
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

async fn connect_as(t: &TestDb, function: Function) -> PgConnection {
    PgConnection::connect(&t.config_as(function).database_url)
        .await
        .unwrap()
}

#[tokio::test]
async fn each_function_role_runs_exactly_its_own_statements_through_pgbouncer() {
    let t = TestDb::new().await.unwrap();
    seed_one(&t).await;

    let mut search = connect_as(&t, Function::Search).await;
    let role: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&mut search)
        .await
        .unwrap();
    assert_eq!(
        role, "kit_search",
        "SEARCH_DATABASE_URL logs in as the search role"
    );
    assert_exactly(&mut search, "search", &[SELECT_EMBEDDINGS]).await;

    let mut ingest = connect_as(&t, Function::Ingest).await;
    assert_exactly(
        &mut ingest,
        "ingest",
        &[
            SELECT_EMBEDDINGS,
            INSERT_EMBEDDINGS,
            UPDATE_EMBEDDINGS,
            DELETE_EMBEDDINGS,
        ],
    )
    .await;

    let mut purge = connect_as(&t, Function::Purge).await;
    assert_exactly(
        &mut purge,
        "purge",
        &[
            SELECT_EMBEDDINGS,
            DELETE_EMBEDDINGS,
            SELECT_RETENTION,
            SELECT_LEASE,
            INSERT_LEASE,
            UPDATE_LEASE,
        ],
    )
    .await;

    // Retention policies are written by the admin group only (`kit retention` uses
    // DATABASE_ADMIN_URL): an operator's role granted kit_retention_admin, nothing more.
    let mut admin = PgConnection::connect(&t.admin_url).await.unwrap();
    admin.execute("SET ROLE kit_retention_admin").await.unwrap();
    assert_exactly(
        &mut admin,
        "kit_retention_admin",
        &[
            SELECT_RETENTION,
            INSERT_RETENTION,
            UPDATE_RETENTION,
            DELETE_RETENTION,
        ],
    )
    .await;
}

#[tokio::test]
async fn the_function_roles_hold_their_group_only_and_cannot_bypass_rls() {
    let t = TestDb::new().await.unwrap();
    let admin = t.admin_pool().await.unwrap();
    let rows: Vec<(String, bool, bool, Vec<String>)> = sqlx::query_as(
        "SELECT r.rolname::text, r.rolsuper OR r.rolcreaterole OR r.rolcreatedb, r.rolbypassrls,
                ARRAY(SELECT g.rolname::text FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
                      WHERE m.member = r.oid ORDER BY 1)
         FROM pg_roles r WHERE r.rolname IN ('kit_ingest', 'kit_search', 'kit_purge') ORDER BY 1",
    )
    .fetch_all(&admin)
    .await
    .unwrap();
    let expected = [
        ("kit_ingest", "kit_ingest_group"),
        ("kit_purge", "kit_purge_group"),
        ("kit_search", "kit_search_group"),
    ];
    assert_eq!(rows.len(), 3, "{rows:?}");
    for ((role, powerful, bypass, groups), (want_role, want_group)) in rows.iter().zip(expected) {
        assert_eq!(role, want_role);
        assert!(!powerful && !bypass, "{role} has attributes it must not");
        assert_eq!(groups, &vec![want_group.to_owned()], "{role}'s groups");
    }
}

// --- row-level security -------------------------------------------------------------

/// `n` rows in `namespace` with `{"tag": i % 50}`, written as the ingest role.
async fn seed(t: &TestDb, namespace: &str, n: usize, seed: u64) -> Vec<(Uuid, Vec<f32>)> {
    let vectors = clustered(n, 8, DIMS, 0.4, seed);
    let metadata: Vec<Map<String, Value>> = (0..n)
        .map(|i| json!({"tag": i % 50}).as_object().unwrap().clone())
        .collect();
    let ingest = t.db_as(Function::Ingest);
    let ids = write_rows(&ingest, namespace, &vectors, &metadata)
        .await
        .unwrap();
    ingest.close().await;
    ids.into_iter().zip(vectors).collect()
}

/// The node types and index names of a plan, depth first.
fn plan_nodes(plan: &Value) -> Vec<String> {
    fn walk(node: &Value, out: &mut Vec<String>) {
        if let Some(kind) = node.get("Node Type").and_then(Value::as_str) {
            match node.get("Index Name").and_then(Value::as_str) {
                Some(index) => out.push(format!("{kind} {index}")),
                None => out.push(kind.to_owned()),
            }
        }
        for child in node
            .get("Plans")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            walk(child, out);
        }
    }
    let mut out = Vec::new();
    walk(&plan[0]["Plan"], &mut out);
    out
}

/// The search statement as production runs it, minus the clause that sets the tenant.
async fn rows_without_the_tenant(conn: &mut PgConnection, query: &SearchQuery) -> usize {
    let mut statement = search_statement(query.filter.as_ref()).unwrap();
    let tenant = "AND (SELECT set_config('kit.tenant', $2, true)) = $2";
    assert!(statement.sql.contains(tenant), "{}", statement.sql);
    statement.sql = statement.sql.replace(tenant, "");
    let mut tx = conn.begin().await.unwrap();
    tx.execute("SET LOCAL plan_cache_mode = force_custom_plan")
        .await
        .unwrap();
    let rows = statement.bind(query).fetch_all(&mut *tx).await.unwrap();
    tx.rollback().await.ok();
    rows.len()
}

#[tokio::test]
async fn a_search_sees_its_own_namespace_in_every_plan_and_nothing_without_the_tenant() {
    let t = TestDb::new().await.unwrap();
    let big = seed(&t, "big", 2000, 1).await;
    let small = seed(&t, "small", 30, 2).await;
    seed(&t, "other", 500, 3).await;
    t.analyze().await.unwrap();

    let search = t.db_as(Function::Search);
    // The table owner bypasses row-level security: the reference answer.
    let owner = t.admin_db();
    let mut raw = connect_as(&t, Function::Search).await;
    let tag = |value: u64| Filter::Field {
        key: "tag".into(),
        op: storage::Comparison::Eq(json!(value)),
    };
    let base = |namespace: &str, vector: &[f32]| SearchQuery {
        namespace: Namespace::parse(namespace).unwrap(),
        ..nearest_query(vector, 10)
    };
    let cases: Vec<(&str, SearchQuery, &str)> = vec![
        (
            "HNSW index scan",
            base("big", &big[0].1),
            "Index Scan embeddings_embedding_hnsw",
        ),
        (
            "exact scan of a small namespace",
            base("small", &small[0].1),
            "embeddings_pkey",
        ),
        (
            "filtered, iterative HNSW scan",
            SearchQuery {
                filter: Some(tag(7)),
                iterative_scan: true,
                ..base("big", &big[7].1)
            },
            "",
        ),
        (
            "filtered without iterative scan",
            SearchQuery {
                filter: Some(tag(3)),
                ..base("big", &big[3].1)
            },
            "",
        ),
        (
            "k larger than the namespace",
            SearchQuery {
                k: 100,
                ..base("small", &small[1].1)
            },
            "",
        ),
    ];
    for (name, query, expected_node) in cases {
        let plan = plan_nodes(&search.explain_search(&query).await.unwrap());
        if !expected_node.is_empty() {
            assert!(
                plan.iter().any(|n| n.contains(expected_node)),
                "{name}: expected {expected_node} in {plan:?}"
            );
        }
        let hits = search.search_nearest(&query).await.unwrap();
        let reference = owner.search_nearest(&query).await.unwrap();
        assert!(!hits.is_empty(), "{name}: no rows ({plan:?})");
        let ids = |h: &[storage::Hit]| h.iter().map(|h| h.id).collect::<Vec<_>>();
        assert_eq!(
            ids(&hits),
            ids(&reference),
            "{name}: the search role's rows differ from the owner's ({plan:?})"
        );
        assert_eq!(
            rows_without_the_tenant(&mut raw, &query).await,
            0,
            "{name}: a statement without the tenant saw rows ({plan:?})"
        );
    }

    // Item reads set the tenant the same way.
    let item = search
        .get_item(&Namespace::parse("small").unwrap(), small[0].0, false)
        .await
        .unwrap();
    assert_eq!(item.map(|i| i.id), Some(small[0].0));
    let count: i64 =
        sqlx::query_scalar("SELECT count(*) FROM embeddings WHERE namespace = 'small'")
            .fetch_one(&mut raw)
            .await
            .unwrap();
    assert_eq!(count, 0, "a plain SELECT without the tenant sees no rows");
    let count: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM embeddings
         WHERE namespace = 'big' AND (SELECT set_config('kit.tenant', 'small', true)) = 'small'",
    )
    .fetch_one(&mut raw)
    .await
    .unwrap();
    assert_eq!(count, 0, "a tenant sees no other namespace's rows");
}

/// The login roles exactly as the stack made them (passwords from the URLs it wrote).
fn stack_roles() -> Vec<LoginRole> {
    Function::ALL
        .into_iter()
        .map(|function| {
            let url = std::env::var(function.url_variable()).expect("the stack's .kit/env");
            let options: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
            let (user, password) = login(&url).unwrap();
            assert_eq!(options.get_username(), user);
            LoginRole {
                function,
                name: user,
                password: Password::new(password),
                settings: match function {
                    Function::Search => LoginRole::search_settings(3000),
                    _ => Vec::new(),
                },
            }
        })
        .collect()
}

#[tokio::test]
async fn roles_apply_switches_row_level_security_and_a_second_run_changes_nothing() {
    let t = TestDb::new().await.unwrap();
    seed(&t, "acme", 20, 4).await;
    let admin: sqlx::postgres::PgConnectOptions = t.admin_url.parse().unwrap();
    let plan = |row_level_security| RolesPlan {
        roles: stack_roles(),
        row_level_security,
    };
    let mut search = connect_as(&t, Function::Search).await;

    // As the stack applied it: nothing to do.
    assert_eq!(roles::apply(&admin, &plan(true)).await.unwrap(), vec![]);
    assert_eq!(
        outcome_count(&mut search).await,
        0,
        "RLS on: no tenant, no rows"
    );

    let changes = roles::apply(&admin, &plan(false)).await.unwrap();
    assert_eq!(
        changes,
        vec![roles::Change::RowLevelSecurity { enabled: false }]
    );
    assert_eq!(roles::apply(&admin, &plan(false)).await.unwrap(), vec![]);
    assert_eq!(outcome_count(&mut search).await, 20, "RLS off: every row");

    let changes = roles::apply(&admin, &plan(true)).await.unwrap();
    assert_eq!(
        changes,
        vec![roles::Change::RowLevelSecurity { enabled: true }]
    );
    assert_eq!(outcome_count(&mut search).await, 0);
}

async fn outcome_count(conn: &mut PgConnection) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM embeddings")
        .fetch_one(conn)
        .await
        .unwrap()
}

/// `TestStack` runs each function as its own login role, as the functions run locally
/// (`INGEST_DATABASE_URL`, …): the walls above hold for the handler tests too.
#[tokio::test]
async fn the_test_stack_runs_each_function_as_its_own_role() {
    let t = kit_support::TestStack::new().await.unwrap();
    let user = |db: storage::Database| async move {
        let user: String = sqlx::query_scalar("SELECT current_user::text")
            .fetch_one(&db.pool())
            .await
            .unwrap();
        db.close().await;
        user
    };
    assert_eq!(user(t.ingest().state.db).await, "kit_ingest");
    assert_eq!(user(t.search().state.db).await, "kit_search");
    assert_eq!(
        user(t.purge(purge::Settings::default()).state.db).await,
        "kit_purge"
    );
}
