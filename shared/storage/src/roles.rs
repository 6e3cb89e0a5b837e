//! The functions' login roles (`kit roles apply`): each logs in as its own role and
//! inherits only its function's group (created with its grants by migration 0003), and
//! `embeddings`' row-level security is switched on or off.
//!
//! Applying is idempotent: every step reads the current state first and changes only
//! what differs, and the report lists what changed (nothing, on a second run).
//! Passwords never appear in a statement: a role's password is sent as a SCRAM-SHA-256
//! verifier computed here (what `psql`'s `\password` does), so neither the server log
//! (`log_statement = ddl`) nor `pg_stat_statements` can show it. Whether a role's
//! password is already current is checked by logging in with it.

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};

use crate::config::Function;
use crate::StorageError;

/// Every group role the kit's migrations create; a login role is a member of exactly one.
pub const GROUPS: [&str; 4] = [
    SEARCH_GROUP,
    INGEST_GROUP,
    PURGE_GROUP,
    RETENTION_ADMIN_GROUP,
];
/// `SELECT` on `embeddings`, rows of the statement's own tenant only (RLS).
pub const SEARCH_GROUP: &str = "kit_search_group";
/// `SELECT, INSERT, UPDATE, DELETE` on `embeddings`.
pub const INGEST_GROUP: &str = "kit_ingest_group";
/// `SELECT, DELETE` on `embeddings`, `SELECT` on `retention_policies`, the purge lease.
pub const PURGE_GROUP: &str = "kit_purge_group";
/// Writes `retention_policies` (`kit retention set|unset`); grant it to an operator role.
pub const RETENTION_ADMIN_GROUP: &str = "kit_retention_admin";
/// The groups of releases before migration 0003, left out of every login role.
const LEGACY_GROUPS: [&str; 2] = ["kit_read", "kit_write"];

/// The group a function's login role inherits.
pub fn group_of(function: Function) -> &'static str {
    match function {
        Function::Ingest => INGEST_GROUP,
        Function::Search => SEARCH_GROUP,
        Function::Purge => PURGE_GROUP,
    }
}

/// A password that never shows in `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub fn new(password: impl Into<String>) -> Self {
        Self(password.into())
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// One function's login role as it should be.
#[derive(Clone, Debug)]
pub struct LoginRole {
    pub function: Function,
    /// `kit.toml`'s `[functions.<name>] db_role`: `[a-z_][a-z0-9_]{0,62}`.
    pub name: String,
    pub password: Password,
    /// Role-level defaults (`ALTER ROLE … SET name = value`); the search role's
    /// `statement_timeout` and `plan_cache_mode` let a search run as one statement.
    /// Every other setting of the role is reset.
    pub settings: Vec<(&'static str, String)>,
}

impl LoginRole {
    /// The search role's defaults: a search then runs alone, in one round trip, when its
    /// `DB_STATEMENT_TIMEOUT_MS` is no shorter than `statement_timeout_ms` (docs/search.md).
    pub fn search_settings(statement_timeout_ms: u32) -> Vec<(&'static str, String)> {
        vec![
            ("statement_timeout", format!("{statement_timeout_ms}ms")),
            ("plan_cache_mode", "force_custom_plan".to_owned()),
        ]
    }
}

/// What `kit roles apply` makes true.
#[derive(Clone, Debug)]
pub struct RolesPlan {
    pub roles: Vec<LoginRole>,
    /// `[database] row_level_security`: `ALTER TABLE embeddings ENABLE|DISABLE ROW LEVEL SECURITY`.
    pub row_level_security: bool,
}

/// One change `apply` made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Created { role: String },
    Attributes { role: String },
    Password { role: String },
    Granted { role: String, group: String },
    Revoked { role: String, group: String },
    Set { role: String, setting: String },
    Reset { role: String, setting: String },
    RowLevelSecurity { enabled: bool },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Created { role } => write!(f, "created login role {role}"),
            Change::Attributes { role } => write!(
                f,
                "{role}: LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
            ),
            Change::Password { role } => write!(f, "{role}: password set"),
            Change::Granted { role, group } => write!(f, "{role}: granted {group}"),
            Change::Revoked { role, group } => write!(f, "{role}: revoked {group}"),
            Change::Set { role, setting } => write!(f, "{role}: SET {setting}"),
            Change::Reset { role, setting } => write!(f, "{role}: RESET {setting}"),
            Change::RowLevelSecurity { enabled } => write!(
                f,
                "embeddings: row-level security {}",
                if *enabled { "enabled" } else { "disabled" }
            ),
        }
    }
}

/// A role name `apply` accepts: what `kit check` accepts for `db_role`.
fn valid_role_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    (1..=63).contains(&bytes.len())
        && (bytes[0].is_ascii_lowercase() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_')
}

/// Makes the cluster's login roles and the database's row-level security match `plan`,
/// connected as `admin` (a role with `CREATEROLE` that owns `embeddings`, or a
/// superuser), in one transaction. Returns what changed, empty when nothing did.
pub async fn apply(
    admin: &PgConnectOptions,
    plan: &RolesPlan,
) -> Result<Vec<Change>, StorageError> {
    for role in &plan.roles {
        if !valid_role_name(&role.name) {
            return Err(StorageError::Schema(format!(
                "role name {:?} is not valid: use 1 to 63 characters of a-z, 0-9 and _, not starting with a digit",
                role.name
            )));
        }
        if let Some((name, value)) = role.settings.iter().find(|(name, value)| {
            !name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                || !value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        }) {
            return Err(StorageError::Schema(format!(
                "{}: setting {name} = {value:?} is not a plain name and value",
                role.name
            )));
        }
    }
    // Which passwords are current, checked before any change: a login that works needs
    // no new password (and no new SCRAM secret for PgBouncer to pick up).
    let mut current_password = Vec::with_capacity(plan.roles.len());
    for role in &plan.roles {
        current_password.push(logs_in(admin, role).await);
    }

    let mut conn = admin.clone().disable_statement_logging().connect().await?;
    let mut tx = conn.begin().await?;
    let mut changes = Vec::new();
    for (role, password_current) in plan.roles.iter().zip(current_password) {
        let name = &role.name;
        let quoted = quote_ident(name);
        let state: Option<RoleState> = sqlx::query_as(sql::ROLE_STATE)
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
        let verifier = || scram_verifier(&role.password.0);
        match state {
            None => {
                sqlx::query(&format!(
                    "CREATE ROLE {quoted} {} PASSWORD '{}'",
                    sql::ATTRIBUTES,
                    verifier()
                ))
                .execute(&mut *tx)
                .await?;
                changes.push(Change::Created { role: name.clone() });
            }
            Some(state) => {
                if !state.as_wanted() {
                    sqlx::query(&format!("ALTER ROLE {quoted} {}", sql::ATTRIBUTES))
                        .execute(&mut *tx)
                        .await?;
                    changes.push(Change::Attributes { role: name.clone() });
                }
                if !password_current {
                    sqlx::query(&format!("ALTER ROLE {quoted} PASSWORD '{}'", verifier()))
                        .execute(&mut *tx)
                        .await?;
                    changes.push(Change::Password { role: name.clone() });
                }
            }
        }

        let wanted = group_of(role.function);
        let member_of: Vec<String> = sqlx::query_scalar(sql::MEMBER_OF)
            .bind(name)
            .fetch_all(&mut *tx)
            .await?;
        for group in GROUPS.iter().chain(LEGACY_GROUPS.iter()) {
            let is_member = member_of.iter().any(|g| g == group);
            if *group == wanted && !is_member {
                sqlx::query(&format!("GRANT {} TO {quoted}", quote_ident(group)))
                    .execute(&mut *tx)
                    .await?;
                changes.push(Change::Granted {
                    role: name.clone(),
                    group: group.to_string(),
                });
            } else if *group != wanted && is_member {
                sqlx::query(&format!("REVOKE {} FROM {quoted}", quote_ident(group)))
                    .execute(&mut *tx)
                    .await?;
                changes.push(Change::Revoked {
                    role: name.clone(),
                    group: group.to_string(),
                });
            }
        }

        let current: Vec<String> = sqlx::query_scalar(sql::ROLE_SETTINGS)
            .bind(name)
            .fetch_all(&mut *tx)
            .await?;
        for (setting, value) in &role.settings {
            let entry = format!("{setting}={value}");
            if !current.contains(&entry) {
                sqlx::query(&format!("ALTER ROLE {quoted} SET {setting} = '{value}'"))
                    .execute(&mut *tx)
                    .await?;
                changes.push(Change::Set {
                    role: name.clone(),
                    setting: entry,
                });
            }
        }
        for entry in &current {
            let setting = entry.split('=').next().unwrap_or_default();
            if !role.settings.iter().any(|(s, _)| *s == setting) {
                sqlx::query(&format!(
                    "ALTER ROLE {quoted} RESET {}",
                    quote_ident(setting)
                ))
                .execute(&mut *tx)
                .await?;
                changes.push(Change::Reset {
                    role: name.clone(),
                    setting: setting.to_owned(),
                });
            }
        }
    }

    let enabled: Option<bool> = sqlx::query_scalar(sql::ROW_LEVEL_SECURITY)
        .fetch_optional(&mut *tx)
        .await?;
    match enabled {
        None => {
            return Err(StorageError::Schema(
                "the embeddings table is missing: run `kit migrate up` first".into(),
            ))
        }
        Some(enabled) if enabled != plan.row_level_security => {
            set_row_level_security(&mut tx, plan.row_level_security).await?;
            changes.push(Change::RowLevelSecurity {
                enabled: plan.row_level_security,
            });
        }
        Some(_) => {}
    }
    tx.commit().await?;
    conn.close().await.ok();
    Ok(changes)
}

/// Enables or disables row-level security on `embeddings` in `conn`'s database (what
/// `apply` does per `RolesPlan::row_level_security`; benchmarks compare both).
pub async fn set_row_level_security(
    conn: &mut sqlx::PgConnection,
    enabled: bool,
) -> Result<(), StorageError> {
    sqlx::query(if enabled {
        sql::ENABLE_RLS
    } else {
        sql::DISABLE_RLS
    })
    .execute(conn)
    .await?;
    Ok(())
}

/// Whether `role` can log in with its password where `admin` connects (straight to
/// PostgreSQL). Any failure (no such role, wrong password, refused by `pg_hba.conf`)
/// counts as no: the password is then set, which is harmless when it was right.
async fn logs_in(admin: &PgConnectOptions, role: &LoginRole) -> bool {
    let options = admin
        .clone()
        .username(&role.name)
        .password(&role.password.0)
        .disable_statement_logging();
    match options.connect().await {
        Ok(conn) => {
            conn.close().await.ok();
            true
        }
        Err(_) => false,
    }
}

#[derive(sqlx::FromRow)]
struct RoleState {
    rolcanlogin: bool,
    rolinherit: bool,
    rolsuper: bool,
    rolcreatedb: bool,
    rolcreaterole: bool,
    rolreplication: bool,
    rolbypassrls: bool,
}

impl RoleState {
    fn as_wanted(&self) -> bool {
        self.rolcanlogin
            && self.rolinherit
            && !(self.rolsuper
                || self.rolcreatedb
                || self.rolcreaterole
                || self.rolreplication
                || self.rolbypassrls)
    }
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The SCRAM-SHA-256 verifier PostgreSQL stores for `password` (RFC 5802/7677, as
/// `pg_authid.rolpassword` holds it): `SCRAM-SHA-256$4096:salt$StoredKey:ServerKey`.
/// A password given this way is stored as is, never seen by the server in clear.
/// Passwords are used as bytes (SASLprep leaves ASCII ones unchanged; the stack's and
/// Secrets Manager's generated passwords are ASCII).
pub fn scram_verifier(password: &str) -> String {
    const ITERATIONS: u32 = 4096;
    let mut salt = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut salt);
    scram_verifier_with(password.as_bytes(), &salt, ITERATIONS)
}

fn scram_verifier_with(password: &[u8], salt: &[u8], iterations: u32) -> String {
    type HmacSha256 = Hmac<Sha256>;
    let hmac = |key: &[u8], data: &[u8]| -> [u8; 32] {
        let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
        mac.update(data);
        mac.finalize().into_bytes().into()
    };
    // Hi(): PBKDF2-HMAC-SHA-256 with one 32-byte block.
    let mut first = salt.to_vec();
    first.extend_from_slice(&1u32.to_be_bytes());
    let mut u = hmac(password, &first);
    let mut salted = u;
    for _ in 1..iterations {
        u = hmac(password, &u);
        for (s, b) in salted.iter_mut().zip(u) {
            *s ^= b;
        }
    }
    let client_key = hmac(&salted, b"Client Key");
    let stored_key = Sha256::digest(client_key);
    let server_key = hmac(&salted, b"Server Key");
    format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        BASE64.encode(salt),
        BASE64.encode(stored_key),
        BASE64.encode(server_key)
    )
}

mod sql {
    pub const ATTRIBUTES: &str =
        "LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS";

    pub const ROLE_STATE: &str = "
        SELECT rolcanlogin, rolinherit, rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls
        FROM pg_roles WHERE rolname = $1";

    /// The groups `$1` is a direct member of.
    pub const MEMBER_OF: &str = "
        SELECT g.rolname::text FROM pg_auth_members m
        JOIN pg_roles g ON g.oid = m.roleid
        JOIN pg_roles r ON r.oid = m.member
        WHERE r.rolname = $1";

    /// `$1`'s own defaults for every database (`ALTER ROLE … SET`), as `name=value`.
    pub const ROLE_SETTINGS: &str = "
        SELECT unnest(s.setconfig) FROM pg_db_role_setting s
        JOIN pg_roles r ON r.oid = s.setrole
        WHERE r.rolname = $1 AND s.setdatabase = 0";

    pub const ROW_LEVEL_SECURITY: &str =
        "SELECT relrowsecurity FROM pg_class WHERE oid = to_regclass('embeddings')";
    pub const ENABLE_RLS: &str = "ALTER TABLE embeddings ENABLE ROW LEVEL SECURITY";
    pub const DISABLE_RLS: &str = "ALTER TABLE embeddings DISABLE ROW LEVEL SECURITY";
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677's test vector: user "user", password "pencil", its salt and 4096
    /// iterations give this StoredKey and ServerKey.
    #[test]
    fn the_verifier_matches_rfc_7677() {
        let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let verifier = scram_verifier_with(b"pencil", &salt, 4096);
        assert_eq!(
            verifier,
            "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
        );
    }

    #[test]
    fn role_names_are_plain_identifiers() {
        for ok in ["kit_search", "_x", "a1"] {
            assert!(valid_role_name(ok), "{ok}");
        }
        for bad in ["", "Kit", "1kit", "kit-search", "kit\"x", &"x".repeat(64)] {
            assert!(!valid_role_name(bad), "{bad}");
        }
    }

    #[test]
    fn passwords_stay_out_of_debug_output() {
        let shown = format!("{:?}", Password::new("s3cret"));
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
