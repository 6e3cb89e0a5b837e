//! The migrations are reversible: all the way up, all the way down, and up again gives
//! the same schema as the first time.

use std::process::Command;

use kit_support::TestDb;
use sqlx::postgres::PgPoolOptions;

fn schema_dump(url: &str) -> String {
    let output = Command::new("pg_dump")
        .args([
            "--schema-only",
            "--no-owner",
            "--no-privileges",
            "--exclude-table=_sqlx_migrations",
            url,
        ])
        .output()
        .expect("pg_dump runs (PostgreSQL client tools are installed by scripts/install-deps.sh)");
    assert!(
        output.status.success(),
        "pg_dump failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    // pg_dump ≥ 15.14 brackets the dump with a random `\restrict` key: not schema.
    String::from_utf8(output.stdout)
        .expect("UTF-8 dump")
        .lines()
        .filter(|line| !line.starts_with("\\restrict") && !line.starts_with("\\unrestrict"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn up_down_up_gives_the_same_schema() {
    let t = TestDb::new().await.unwrap();
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&t.admin_url)
        .await
        .unwrap();
    storage::migrate::up(&pool).await.unwrap();
    let first = schema_dump(&t.admin_url);
    assert!(first.contains("CREATE TABLE public.embeddings"), "{first}");
    assert!(
        first.contains("USING hnsw (embedding public.vector_cosine_ops)"),
        "{first}"
    );

    let total = storage::MIGRATOR
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .count();
    assert_eq!(
        storage::migrate::down(&pool, usize::MAX).await.unwrap(),
        total
    );
    let bare = schema_dump(&t.admin_url);
    assert!(
        !bare.contains("embeddings"),
        "tables left after a full downgrade:\n{bare}"
    );
    assert!(storage::migrate::status(&pool)
        .await
        .unwrap()
        .iter()
        .all(|m| !m.applied));

    storage::migrate::up(&pool).await.unwrap();
    assert_eq!(schema_dump(&t.admin_url), first);
    pool.close().await;
}

#[tokio::test]
async fn one_step_down_reverts_only_the_latest_migration() {
    let t = TestDb::new().await.unwrap();
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&t.admin_url)
        .await
        .unwrap();
    assert_eq!(storage::migrate::down(&pool, 1).await.unwrap(), 1);
    let states = storage::migrate::status(&pool).await.unwrap();
    let applied: Vec<bool> = states.iter().map(|m| m.applied).collect();
    let mut expected = vec![true; states.len()];
    *expected.last_mut().unwrap() = false;
    assert_eq!(applied, expected);
    pool.close().await;
}
