//! `DATABASE_READ_URL`: searches, item reads and health go to the read replica; writes
//! stay on the primary.

use std::collections::BTreeSet;

use kit_support::corpus::{clustered, DIMS};
use kit_support::events::http_v2_request;
use kit_support::search_corpus::{seed_rows, write_rows};
use kit_support::{SearchFn, TestStack};
use search::Limits;
use serde_json::{json, Map, Value};
use storage::Namespace;
use uuid::Uuid;

use super::result_ids;

#[tokio::test]
async fn searches_item_reads_and_health_go_to_the_read_replica_when_configured() {
    let primary = TestStack::new().await.unwrap();
    let replica = TestStack::new().await.unwrap();
    let vectors = clustered(30, 3, DIMS, 0.5, 111);
    let tagged = |db: &str, n: usize| -> Vec<Map<String, Value>> {
        (0..n)
            .map(|i| json!({"db": db, "i": i}).as_object().unwrap().clone())
            .collect()
    };
    let primary_ids = seed_rows(&primary, "acme", &vectors[..20], &tagged("primary", 20))
        .await
        .unwrap();
    let replica_ids = seed_rows(&replica, "acme", &vectors[20..], &tagged("replica", 10))
        .await
        .unwrap();

    // As DATABASE_URL's role (ingest locally): the test writes through this handle too.
    let mut config = primary.config();
    config.read_url = Some(replica.app_url.clone());
    let state = SearchFn::new(&config, Limits::default(), search::Auth::none());
    let search = json!({"namespace": "acme", "vector": vectors[0], "k": 100});
    let reply = state.post_search(&search).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let got: BTreeSet<Uuid> = result_ids(&reply.body).into_iter().collect();
    assert_eq!(got, replica_ids.iter().copied().collect());
    assert!(reply.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["metadata"]["db"] == json!("replica")));

    let item =
        |id: Uuid| http_v2_request("GET", &format!("/items/{id}"), "namespace=acme", None, None);
    assert_eq!(state.call(&item(replica_ids[0])).await.status, 200);
    assert_eq!(state.call(&item(primary_ids[0])).await.status, 404);
    assert_eq!(state.health().await.status, 200);
    // Writes still go to the primary: a row written through this handle is not read back.
    let written = write_rows(
        &state.state.db,
        "acme",
        &vectors[..1],
        &tagged("written", 1),
    )
    .await
    .unwrap();
    assert_eq!(state.call(&item(written[0])).await.status, 404);
    let acme = Namespace::parse("acme").unwrap();
    let on_primary = primary.db.get_item(&acme, written[0], false).await;
    assert!(on_primary.unwrap().is_some());

    // Without DATABASE_READ_URL, everything reads the primary.
    let plain = primary.search();
    let reply = plain.post_search(&search).await;
    let got: BTreeSet<Uuid> = result_ids(&reply.body).into_iter().collect();
    let mut want: BTreeSet<Uuid> = primary_ids.iter().copied().collect();
    want.insert(written[0]);
    assert_eq!(got, want);
}

/// A configuration read from the environment-style lookup takes the replica URL too.
#[test]
fn the_read_url_is_read_from_database_read_url() {
    let primary = "postgres://kit_search:pw@127.0.0.1:6432/kit";
    let replica = "postgres://kit_search:pw@127.0.0.1:6433/kit";
    let from_lookup = storage::Config::from_lookup(|k| match k {
        "DATABASE_URL" => Some(primary.to_owned()),
        "DATABASE_READ_URL" => Some(replica.to_owned()),
        _ => None,
    })
    .unwrap();
    assert_eq!(from_lookup.read_url.as_deref(), Some(replica));
}
