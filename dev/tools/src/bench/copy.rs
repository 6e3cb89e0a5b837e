//! The baseline `kit-dev bench ingest` measures the handler path against: rows streamed
//! with `COPY … FROM STDIN (FORMAT BINARY)`, the fastest way PostgreSQL takes them
//! (pgvector-rust keeps its binary loader in an example, not in the library, too).
//!
//! No versions are honoured and no duplicates resolved here: COPY inserts, and a key
//! that already exists fails the whole COPY. It loads an empty table for the benchmark;
//! the product writes only through `Database::write_batch`.

use anyhow::bail;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use storage::Upsert;

/// Rows are sent in chunks of about this many bytes.
const CHUNK_BYTES: usize = 1 << 20;

/// Streams `rows` into `embeddings` with one binary COPY on `conn` (a direct connection
/// is fastest; PgBouncer in transaction pooling passes COPY through too). `updated_at` is
/// the time of the call for every row. Returns the number of rows copied.
pub async fn copy_binary(conn: &mut PgConnection, rows: &[Upsert]) -> anyhow::Result<u64> {
    let updated_at = Utc::now();
    let mut copy = conn.copy_in_raw(sql::COPY).await?;
    let mut buf = Vec::with_capacity(CHUNK_BYTES + 64 * 1024);
    encode_header(&mut buf);
    for row in rows {
        if let Err(error) = encode_row(&mut buf, row, updated_at) {
            copy.abort(error.to_string()).await.ok();
            return Err(error);
        }
        if buf.len() >= CHUNK_BYTES {
            copy.send(buf.as_slice()).await?;
            buf.clear();
        }
    }
    encode_trailer(&mut buf);
    copy.send(buf.as_slice()).await?;
    Ok(copy.finish().await?)
}

/// The binary COPY signature, flags (no OIDs) and an empty header extension.
fn encode_header(buf: &mut Vec<u8>) {
    buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    buf.extend_from_slice(&0i32.to_be_bytes());
    buf.extend_from_slice(&0i32.to_be_bytes());
}

fn encode_trailer(buf: &mut Vec<u8>) {
    buf.extend_from_slice(&(-1i16).to_be_bytes());
}

/// One tuple, in the column order of [`sql::COPY`].
fn encode_row(buf: &mut Vec<u8>, row: &Upsert, updated_at: DateTime<Utc>) -> anyhow::Result<()> {
    buf.extend_from_slice(&8i16.to_be_bytes());
    field(buf, row.namespace.as_str().as_bytes())?;
    field(buf, row.id.as_bytes())?;
    vector_field(buf, row.embedding.as_slice())?;
    match &row.content {
        Some(text) => field(buf, text.as_bytes())?,
        None => buf.extend_from_slice(&(-1i32).to_be_bytes()),
    }
    jsonb_field(buf, &row.metadata)?;
    field(buf, &row.version.to_be_bytes())?;
    field(buf, &pg_timestamp(row.created_at).to_be_bytes())?;
    field(buf, &pg_timestamp(updated_at).to_be_bytes())?;
    Ok(())
}

fn field(buf: &mut Vec<u8>, bytes: &[u8]) -> anyhow::Result<()> {
    buf.extend_from_slice(&field_len(bytes.len())?.to_be_bytes());
    buf.extend_from_slice(bytes);
    Ok(())
}

fn field_len(len: usize) -> anyhow::Result<i32> {
    match i32::try_from(len) {
        Ok(len) => Ok(len),
        Err(_) => bail!("a COPY field of {len} bytes exceeds PostgreSQL's 1 GB field limit"),
    }
}

/// pgvector's binary `vector`: int16 dimensions, int16 unused (0), then each value as a
/// big-endian float4.
fn vector_field(buf: &mut Vec<u8>, values: &[f32]) -> anyhow::Result<()> {
    let Ok(dims) = u16::try_from(values.len()) else {
        bail!(
            "a vector of {} dimensions exceeds pgvector's limit",
            values.len()
        );
    };
    buf.extend_from_slice(&field_len(4 + 4 * values.len())?.to_be_bytes());
    buf.extend_from_slice(&dims.to_be_bytes());
    buf.extend_from_slice(&0u16.to_be_bytes());
    for value in values {
        buf.extend_from_slice(&value.to_be_bytes());
    }
    Ok(())
}

/// Binary `jsonb`: a version byte (1), then the JSON text.
fn jsonb_field(
    buf: &mut Vec<u8>,
    value: &serde_json::Map<String, serde_json::Value>,
) -> anyhow::Result<()> {
    let length_at = buf.len();
    buf.extend_from_slice(&0i32.to_be_bytes());
    buf.push(1);
    serde_json::to_writer(&mut *buf, value)?;
    let len = field_len(buf.len() - length_at - 4)?;
    buf[length_at..length_at + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// Binary `timestamptz`: microseconds since 2000-01-01 00:00:00 UTC.
fn pg_timestamp(at: DateTime<Utc>) -> i64 {
    const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;
    at.timestamp_micros() - POSTGRES_EPOCH_MICROS
}

mod sql {
    pub const COPY: &str = "COPY embeddings \
        (namespace, id, embedding, content, metadata, version, created_at, updated_at) \
        FROM STDIN (FORMAT BINARY)";
}

#[cfg(test)]
mod tests {
    use super::*;
    use storage::{Namespace, Vector};
    use uuid::Uuid;

    #[test]
    fn the_header_is_the_binary_copy_signature() {
        let mut buf = Vec::new();
        encode_header(&mut buf);
        assert_eq!(&buf[..11], b"PGCOPY\n\xff\r\n\0");
        assert_eq!(buf.len(), 19);
    }

    #[test]
    fn timestamps_count_from_the_postgres_epoch() {
        let epoch = DateTime::parse_from_rfc3339("2000-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(pg_timestamp(epoch), 0);
        assert_eq!(pg_timestamp(epoch + chrono::Duration::microseconds(-1)), -1);
    }

    #[test]
    fn a_row_has_eight_fields_with_pgvector_and_jsonb_layouts() {
        let row = Upsert {
            namespace: Namespace::parse("acme").unwrap(),
            id: Uuid::nil(),
            embedding: Vector::from(vec![1.0, -2.0]),
            content: None,
            metadata: serde_json::json!({"a": 1}).as_object().unwrap().clone(),
            version: 7,
            created_at: Utc::now(),
        };
        let mut buf = Vec::new();
        encode_row(&mut buf, &row, Utc::now()).unwrap();
        let mut expected = Vec::new();
        expected.extend_from_slice(&8i16.to_be_bytes());
        expected.extend_from_slice(&4i32.to_be_bytes());
        expected.extend_from_slice(b"acme");
        expected.extend_from_slice(&16i32.to_be_bytes());
        expected.extend_from_slice(&[0; 16]);
        expected.extend_from_slice(&12i32.to_be_bytes());
        expected.extend_from_slice(&2u16.to_be_bytes());
        expected.extend_from_slice(&0u16.to_be_bytes());
        expected.extend_from_slice(&1f32.to_be_bytes());
        expected.extend_from_slice(&(-2f32).to_be_bytes());
        expected.extend_from_slice(&(-1i32).to_be_bytes());
        expected.extend_from_slice(&8i32.to_be_bytes());
        expected.push(1);
        expected.extend_from_slice(br#"{"a":1}"#);
        expected.extend_from_slice(&8i32.to_be_bytes());
        expected.extend_from_slice(&7i64.to_be_bytes());
        assert_eq!(&buf[..expected.len()], expected.as_slice());
        // created_at and updated_at: two 8-byte fields.
        assert_eq!(buf.len(), expected.len() + 2 * (4 + 8));
    }
}
