//! Credentials rotated under warm functions: search and ingest states built from
//! `DATABASE_SECRET_ARN` (a local Secrets Manager, moto) reach a role of the test's own
//! through the real PgBouncer; the role's password changes in PostgreSQL, in the secret
//! and in PgBouncer's auth_file, and its server connections are cut so the next query
//! needs a new login.
//!
//! Needs the stack (`make test`) and moto (scripts/install-moto.sh).

use std::sync::Arc;

use credentials::{Environment, SecretSource, DATABASE_SECRET_ARN};
use kit_support::corpus::{clustered, DIMS};
use kit_support::events::upsert_body;
use kit_support::lookup::from_pairs;
use kit_support::moto::{rds_secret_json, Moto};
use kit_support::pgbouncer_console;
use kit_support::roles::{sync_pgbouncer_auth_file, TestRole};
use kit_support::{stack_ca, IngestFn, SearchFn, TestDb};
use search::Limits;
use serde_json::{json, Value};
use sqlx::postgres::PgConnectOptions;
use sqlx::Row;
use uuid::Uuid;

/// One function's warm state, built the way its `main` builds it, from the secret.
struct Warm<T> {
    function: T,
    source: Arc<SecretSource>,
}

/// The environment of a deployed function: the secret's ARN and `extra`.
async fn environment(moto: &Moto, arn: &str, extra: &[(&str, &str)]) -> Environment {
    // The secret names PgBouncer without TLS parameters, as on AWS; the CA comes from the
    // environment (on AWS from DATABASE_CA_SECRET_ARN).
    let ca = stack_ca().display().to_string();
    let base = [(DATABASE_SECRET_ARN, arn), ("DATABASE_SSLROOTCERT", &ca)];
    let lookup = from_pairs(&[&base[..], extra].concat());
    Environment::load_with(lookup, moto.loader())
        .await
        .expect("the secret resolves")
}

async fn warm_search(moto: &Moto, arn: &str, extra: &[(&str, &str)]) -> Warm<SearchFn> {
    let env = environment(moto, arn, extra).await;
    let config = storage::Config::from_lookup(|name| env.get(name)).unwrap();
    let mut state = SearchFn::new(&config, Limits::default(), search::Auth::none());
    state
        .state
        .db
        .set_credential_source(env.credential_source());
    let source = env.secret_source().expect("a secret source").clone();
    Warm {
        function: state,
        source,
    }
}

async fn warm_ingest(moto: &Moto, arn: &str, extra: &[(&str, &str)]) -> Warm<IngestFn> {
    let env = environment(moto, arn, extra).await;
    let config = storage::Config::from_lookup(|name| env.get(name)).unwrap();
    let mut state = IngestFn::new(&config, ingest::Limits::default());
    state
        .state
        .db
        .set_credential_source(env.credential_source());
    let source = env.secret_source().expect("a secret source").clone();
    Warm {
        function: state,
        source,
    }
}

/// The secret of `role` for `t`'s database through PgBouncer, with `password`.
fn secret_json(t: &TestDb, role: &TestRole, password: &str) -> String {
    let bouncer: PgConnectOptions = t.app_url.parse().unwrap();
    rds_secret_json(
        &role.name,
        password,
        bouncer.get_host(),
        bouncer.get_port(),
        &t.name,
    )
}

async fn put_secret(moto: &Moto, arn: &str, value: &str) {
    moto.client()
        .await
        .put_secret_value()
        .secret_id(arn)
        .secret_string(value)
        .send()
        .await
        .expect("put the new secret value into moto");
}

async fn search(state: &SearchFn, vector: &[f32]) -> (u16, Option<String>, Value) {
    let reply = state
        .post_search(&json!({"namespace": "rot", "vector": vector, "k": 3}))
        .await;
    let retry_after = reply
        .headers
        .get("retry-after")
        .map(|value| value.to_str().unwrap().to_owned());
    (reply.status, retry_after, reply.body)
}

/// Ingests one record per vector with the given ids; returns the failed message ids.
async fn ingest(state: &IngestFn, ids: &[Uuid], vectors: &[Vec<f32>]) -> Vec<String> {
    let bodies: Vec<String> = ids
        .iter()
        .zip(vectors)
        .map(|(id, v)| upsert_body(*id, "rot", v, json!({}), 1))
        .collect();
    state.deliver(&bodies).await
}

/// How many rows the test database holds for `ids` (read as the admin, directly).
async fn stored(t: &TestDb, ids: &[Uuid]) -> i64 {
    let admin = t.admin_pool().await.unwrap();
    let n = sqlx::query_scalar("SELECT count(*) FROM embeddings WHERE id = ANY($1)")
        .bind(ids)
        .fetch_one(&admin)
        .await
        .unwrap();
    admin.close().await;
    n
}

/// The role's client connections to PgBouncer for `t`'s database, polled for up to 2 s
/// until there are `expected` (closing a replaced pool takes a moment).
async fn settled_clients(t: &TestDb, role: &TestRole, expected: usize) -> usize {
    let mut console = pgbouncer_console().await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let rows = sqlx::raw_sql("SHOW CLIENTS")
            .fetch_all(&mut console)
            .await
            .unwrap();
        let n = rows
            .iter()
            .filter(|row| {
                row.try_get::<String, _>("user").ok().as_deref() == Some(role.name.as_str())
                    && row.try_get::<String, _>("database").ok().as_deref() == Some(t.name.as_str())
            })
            .count();
        if n == expected || std::time::Instant::now() > deadline {
            return n;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

fn password() -> String {
    format!("pw-{}", Uuid::new_v4().simple())
}

/// Changes the role's password in PostgreSQL, in the secret and in PgBouncer's
/// auth_file (RELOAD), then ends the role's server connections: the next statement of a
/// warm function needs a new server login.
async fn rotate(t: &TestDb, role: &mut TestRole, moto: &Moto, arn: &str) {
    let next = password();
    role.set_password(&next).await.unwrap();
    put_secret(moto, arn, &secret_json(t, role, &next)).await;
    sync_pgbouncer_auth_file().await.unwrap();
    assert!(
        role.terminate_sessions().await.unwrap() > 0,
        "PgBouncer held server connections"
    );
}

/// Every request succeeds: the batch is written whole and each search finds its vector.
async fn serve(
    search_fn: &SearchFn,
    ingest_fn: &IngestFn,
    ids: &[Uuid],
    vectors: &[Vec<f32>],
    search_first: bool,
) {
    if search_first {
        let (status, _, body) = search(search_fn, &vectors[0]).await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(ingest(ingest_fn, ids, vectors).await, Vec::<String>::new());
    for (id, vector) in ids.iter().zip(vectors) {
        let (status, _, body) = search(search_fn, vector).await;
        assert_eq!(
            (status, &body["results"][0]["id"]),
            (200, &json!(id)),
            "{body}"
        );
    }
}

/// A test database, a login role of the test's own, and a secret in moto holding its
/// password, named `secret_name`: returns the database, the role, moto and the ARN.
async fn a_role_behind_a_secret(secret_name: &str) -> (TestDb, TestRole, Moto, String) {
    let t = TestDb::new().await.unwrap();
    let first = password();
    let role = TestRole::create(&t, &first).await.unwrap();
    let moto = Moto::start();
    let arn = moto
        .create_string_secret(secret_name, &secret_json(&t, &role, &first))
        .await;
    (t, role, moto, arn)
}

#[tokio::test]
async fn a_rotated_password_is_picked_up_by_warm_functions_without_a_failed_request() {
    let (t, mut role, moto, arn) = a_role_behind_a_secret("kit/rotation").await;
    // Two rotations seconds apart: no minimum interval between re-reads here (the
    // interval is the other test's subject).
    let interval = [("DATABASE_SECRET_REREAD_INTERVAL_MS", "0")];
    let search_fn = warm_search(&moto, &arn, &interval).await;
    let ingest_fn = warm_ingest(&moto, &arn, &interval).await;
    let vectors = clustered(9, 3, DIMS, 0.05, 7);
    let ids: Vec<Uuid> = vectors.iter().map(|_| Uuid::new_v4()).collect();

    // Warm: both functions serve, and keep their connection to PgBouncer.
    serve(
        &search_fn.function,
        &ingest_fn.function,
        &ids[..3],
        &vectors[..3],
        false,
    )
    .await;

    // Rotation 1, warm connections kept. PgBouncer's next server login uses the keys of
    // the last client that authenticated (the old password): PostgreSQL refuses it
    // (28P01), and PgBouncer then refuses every client of the role with its cached error
    // for server_login_retry. Ingest, first, re-reads the secret, logs in to PgBouncer with
    // the new password and waits for PgBouncer's next server login; search's warm
    // connection then works as it is (PgBouncer holds the new keys now).
    rotate(&t, &mut role, &moto, &arn).await;
    serve(
        &search_fn.function,
        &ingest_fn.function,
        &ids[3..6],
        &vectors[3..6],
        false,
    )
    .await;
    assert_eq!(ingest_fn.source.rereads(), 1);
    assert_eq!(search_fn.source.rereads(), 0);
    // Ingest's old pool, and the connection it kept, are closed: PgBouncer sees one client
    // per function.
    assert_eq!(settled_clients(&t, &role, 2).await, 2);

    // Rotation 2, and PgBouncer drops every client connection (KILL, RESUME): each
    // function's next login to PgBouncer, with its old password, is refused by PgBouncer
    // itself; each re-reads the secret and logs in with the new one.
    rotate(&t, &mut role, &moto, &arn).await;
    let mut console = pgbouncer_console().await.unwrap();
    sqlx::raw_sql(&format!("KILL {}", t.name))
        .execute(&mut console)
        .await
        .unwrap();
    sqlx::raw_sql(&format!("RESUME {}", t.name))
        .execute(&mut console)
        .await
        .unwrap();
    serve(
        &search_fn.function,
        &ingest_fn.function,
        &ids[6..],
        &vectors[6..],
        true,
    )
    .await;
    assert_eq!(search_fn.source.rereads(), 1);
    assert_eq!(ingest_fn.source.rereads(), 2);
    assert_eq!(search_fn.function.state.db.credential_renewals(), 1);
    assert_eq!(ingest_fn.function.state.db.credential_renewals(), 2);
    assert_eq!(stored(&t, &ids).await, ids.len() as i64);

    drop((search_fn, ingest_fn));
    drop(t);
    role.drop_role().await.unwrap();
}

#[tokio::test]
async fn a_wrong_password_in_the_secret_is_503_and_loses_no_record() {
    let (t, mut role, moto, arn) = a_role_behind_a_secret("kit/rotation-wrong").await;
    // Re-read at most once a second (the default is 10 s), so the test can fix the secret.
    let interval = [("DATABASE_SECRET_REREAD_INTERVAL_MS", "1000")];
    let search_fn = warm_search(&moto, &arn, &interval).await;
    let ingest_fn = warm_ingest(&moto, &arn, &interval).await;

    let vectors = clustered(6, 2, DIMS, 0.05, 11);
    let ids: Vec<Uuid> = vectors.iter().map(|_| Uuid::new_v4()).collect();
    assert_eq!(
        ingest(&ingest_fn.function, &ids[..1], &vectors[..1]).await,
        Vec::<String>::new()
    );
    let (status, _, body) = search(&search_fn.function, &vectors[0]).await;
    assert_eq!(status, 200, "{body}");

    // The role's password changes, but the secret gets a wrong one.
    let second = password();
    role.set_password(&second).await.unwrap();
    put_secret(&moto, &arn, &secret_json(&t, &role, "not-the-password")).await;
    sync_pgbouncer_auth_file().await.unwrap();
    role.terminate_sessions().await.unwrap();

    // Search: 503 database_unavailable with Retry-After, never 500; the secret is
    // re-read once, not once per request.
    for _ in 0..3 {
        let (status, retry_after, body) = search(&search_fn.function, &vectors[0]).await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"]["code"], "database_unavailable", "{body}");
        assert_eq!(retry_after.as_deref(), Some("1"));
    }
    assert_eq!(search_fn.source.rereads(), 1);

    // Ingest: every record of the batch is reported, none written.
    let batch = &ids[1..];
    let failures = ingest(&ingest_fn.function, batch, &vectors[1..]).await;
    let expected: Vec<String> = (0..batch.len()).map(|i| format!("m{i}")).collect();
    assert_eq!(failures, expected);
    assert_eq!(stored(&t, batch).await, 0);
    assert_eq!(ingest_fn.source.rereads(), 1);

    // The secret is fixed; after the interval the redelivered batch is written, once.
    put_secret(&moto, &arn, &secret_json(&t, &role, &second)).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        ingest(&ingest_fn.function, batch, &vectors[1..]).await,
        Vec::<String>::new()
    );
    assert_eq!(
        ingest(&ingest_fn.function, batch, &vectors[1..]).await,
        Vec::<String>::new()
    );
    assert_eq!(stored(&t, &ids).await, ids.len() as i64);
    let (status, _, body) = search(&search_fn.function, &vectors[3]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["id"], json!(ids[3]));

    drop((search_fn, ingest_fn));
    drop(t);
    role.drop_role().await.unwrap();
}

#[tokio::test]
async fn a_renewed_login_closes_the_connections_of_the_old_one() {
    let (t, mut role, moto, arn) = a_role_behind_a_secret("kit/rotation-pool").await;
    let settings = [("DB_MAX_CONNECTIONS", "2")];
    let search_fn = warm_search(&moto, &arn, &settings).await;
    let vector = clustered(1, 1, DIMS, 0.05, 3).remove(0);

    // Two searches at once: one connection kept (parked), the other idle in the pool.
    // Whether two searches overlap enough to need two connections is up to timing (on a
    // loaded machine one may finish first and hand over its connection): try a few times.
    let mut clients = 0;
    for _ in 0..10 {
        let (a, b) = tokio::join!(
            search(&search_fn.function, &vector),
            search(&search_fn.function, &vector)
        );
        assert_eq!((a.0, b.0), (200, 200), "{} {}", a.2, b.2);
        clients = settled_clients(&t, &role, 2).await;
        if clients == 2 {
            break;
        }
    }
    assert_eq!(
        clients, 2,
        "two concurrent searches never held two connections"
    );

    // The kept connection's next statement needs a server login, which PostgreSQL
    // refuses (PgBouncer's stale keys): the login is renewed, and the old pool's idle
    // connection, still logged in to PgBouncer with the old password, is closed.
    rotate(&t, &mut role, &moto, &arn).await;
    let (status, _, body) = search(&search_fn.function, &vector).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(search_fn.source.rereads(), 1);
    assert_eq!(settled_clients(&t, &role, 1).await, 1);

    drop(search_fn);
    drop(t);
    role.drop_role().await.unwrap();
}
