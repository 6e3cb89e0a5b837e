#!/usr/bin/env bash
# Starts PgBouncer for the kit's AWS tier (the ECS task in infra/template.yaml).
#
# Every size comes from the rendered pgbouncer.ini (kit.toml → `kit render`),
# baked into the image. This script adds only what depends on the environment,
# from variables the task definition sets, into a tmpfs-like volume:
#   - listen address and port, TLS;
#   - auth: one line per role in an auth_file, never written anywhere but
#     $RUN_DIR. With PGBOUNCER_SECRET_ARNS (the template's way), the lines come
#     from the roles' Secrets Manager secrets, read with the task role, and a
#     background loop keeps them current through rotations: every
#     AUTH_REFRESH_S it reads each secret's AWSCURRENT, AWSPENDING and
#     AWSPREVIOUS versions, rewrites the file (atomically, mode 600) only when
#     it changed, and then sends PgBouncer SIGHUP (a reload, no dropped
#     connection). Without it, passwords come from PGBOUNCER_PASSWORD_<ROLE>. With
#     PGBOUNCER_AUTH_USER set, only that role's line: PgBouncer looks every
#     other role's current SCRAM secret up in PostgreSQL (auth_query), so a
#     rotated password works at once, without a restart
#     (docs/security-rotation.md);
#   - [databases]: the one database, on DB_HOST:DB_PORT, logging in as the
#     client's own role with the client's password.
#
# Variables (the template sets all of them):
#   DB_HOST, DB_PORT, DB_NAME        where PostgreSQL is
#   PGBOUNCER_SECRET_ARNS            the roles' secret ARNs, space-separated (RDS-shaped JSON with
#                                    username and password); then PGBOUNCER_USERS and the
#                                    passwords are not needed
#   AUTH_REFRESH_S                   default 15: seconds between two reads of the secrets
#   PGBOUNCER_USERS                  roles, space-separated (kit_ingest kit_search kit_purge)
#   PGBOUNCER_PASSWORD_<ROLE>        each role's password (upper-cased role name)
#   PGBOUNCER_AUTH_USER              optional: the auth_query role (e.g. kit_pgbouncer); then
#                                    PGBOUNCER_USERS may be empty and only
#                                    PGBOUNCER_PASSWORD_<AUTH_USER> is needed
#   PGBOUNCER_AUTH_QUERY             default SELECT uname, phash FROM kit_pgbouncer.user_lookup($1)
#   PGBOUNCER_PORT                   default 6432 (PGBOUNCER_LISTEN_ADDR default 0.0.0.0)
#   SERVER_TLS_SSLMODE               require, verify-ca or verify-full (default); SERVER_TLS_CA_FILE
#                                    the CA bundle (default: the RDS bundle baked into the image)
#   CLIENT_TLS_SSLMODE               require (default; TLS is never optional for clients)
#   CLIENT_TLS_CERT_PEM, CLIENT_TLS_KEY_PEM
#                                    PgBouncer's certificate and key (ECS Secrets, from the secret
#                                    `kit tls issue` fills); or CLIENT_TLS_CERT_FILE/KEY_FILE paths
set -euo pipefail

fail() { echo "entrypoint: $*" >&2; exit 1; }

DB_HOST="${DB_HOST:-}"
DB_PORT="${DB_PORT:-5432}"
DB_NAME="${DB_NAME:-}"
PGBOUNCER_USERS="${PGBOUNCER_USERS:-}"
PGBOUNCER_SECRET_ARNS="${PGBOUNCER_SECRET_ARNS:-}"
AUTH_REFRESH_S="${AUTH_REFRESH_S:-15}"
PGBOUNCER_AUTH_USER="${PGBOUNCER_AUTH_USER:-}"
PGBOUNCER_AUTH_QUERY="${PGBOUNCER_AUTH_QUERY:-SELECT uname, phash FROM kit_pgbouncer.user_lookup(\$1)}"
PGBOUNCER_PORT="${PGBOUNCER_PORT:-6432}"
PGBOUNCER_LISTEN_ADDR="${PGBOUNCER_LISTEN_ADDR:-0.0.0.0}"
SERVER_TLS_SSLMODE="${SERVER_TLS_SSLMODE:-verify-full}"
SERVER_TLS_CA_FILE="${SERVER_TLS_CA_FILE:-/etc/pgbouncer/kit/rds-ca-bundle.pem}"
CLIENT_TLS_SSLMODE="${CLIENT_TLS_SSLMODE:-require}"
BASE_INI="${PGBOUNCER_BASE_INI:-/etc/pgbouncer/kit/pgbouncer.ini}"
RUN_DIR="${PGBOUNCER_RUN_DIR:-/run/pgbouncer}"
PGBOUNCER_BIN="${PGBOUNCER_BIN:-pgbouncer}"

[[ -n $DB_HOST ]] || fail "DB_HOST is not set: the PostgreSQL endpoint (template parameter DatabaseHost)"
[[ -n $DB_NAME ]] || fail "DB_NAME is not set: the database name (template parameter DatabaseName)"
if [[ -n $PGBOUNCER_AUTH_USER ]]; then
  # auth_query: only the lookup role is in the auth_file; the functions' roles (and their
  # alternating-users clones) are looked up in PostgreSQL at each login.
  [[ $PGBOUNCER_AUTH_QUERY == *'$1'* ]] || fail "PGBOUNCER_AUTH_QUERY must take the role name as \$1"
  PGBOUNCER_USERS="$PGBOUNCER_AUTH_USER"
fi
if [[ -n $PGBOUNCER_SECRET_ARNS ]]; then
  [[ -z $PGBOUNCER_AUTH_USER ]] || fail "set PGBOUNCER_SECRET_ARNS (auth_file from the secrets) or PGBOUNCER_AUTH_USER (auth_query), not both"
  [[ $AUTH_REFRESH_S =~ ^[0-9]+([.][0-9]+)?$ && ! $AUTH_REFRESH_S =~ ^0+([.]0+)?$ ]] \
    || fail "AUTH_REFRESH_S='$AUTH_REFRESH_S' is not a positive number of seconds (default 15)"
  PGBOUNCER_USERS="from-secrets"
fi
[[ -n $PGBOUNCER_USERS ]] || fail "PGBOUNCER_USERS is not set: the roles to accept, e.g. 'kit_ingest kit_search kit_purge' (or set PGBOUNCER_AUTH_USER for auth_query)"
[[ $DB_NAME =~ ^[A-Za-z0-9_]+$ ]] || fail "DB_NAME='$DB_NAME' is not a plain identifier ([A-Za-z0-9_]+)"
[[ $DB_HOST =~ ^[A-Za-z0-9_.:-]+$ ]] || fail "DB_HOST='$DB_HOST' is not a host name or address"
[[ $DB_PORT =~ ^[0-9]+$ ]] || fail "DB_PORT='$DB_PORT' is not a port number"
[[ $PGBOUNCER_PORT =~ ^[0-9]+$ ]] || fail "PGBOUNCER_PORT='$PGBOUNCER_PORT' is not a port number"
[[ -r $BASE_INI ]] || fail "$BASE_INI is missing: the image must contain the rendered pgbouncer/pgbouncer.ini"
# TLS towards PostgreSQL, never optional: a mode that can fall back to plaintext is refused.
case $SERVER_TLS_SSLMODE in
  require) ;;
  verify-ca | verify-full)
    [[ -s $SERVER_TLS_CA_FILE && -r $SERVER_TLS_CA_FILE ]] \
      || fail "SERVER_TLS_SSLMODE=$SERVER_TLS_SSLMODE needs a CA bundle, and SERVER_TLS_CA_FILE=$SERVER_TLS_CA_FILE is missing or empty: build the image with RDS_CA_BUNDLE_SHA256 (docs/deploy.md, step 2) or point SERVER_TLS_CA_FILE at your database's CA" ;;
  disable | allow | prefer)
    fail "SERVER_TLS_SSLMODE='$SERVER_TLS_SSLMODE' would let PgBouncer reach PostgreSQL in plaintext: set verify-full (kit.toml tls.server_sslmode)" ;;
  *) fail "SERVER_TLS_SSLMODE='$SERVER_TLS_SSLMODE' is not one of require, verify-ca, verify-full (kit.toml tls.server_sslmode)" ;;
esac
[[ -d $RUN_DIR && -w $RUN_DIR ]] || fail "$RUN_DIR is not a writable directory (the task definition mounts a volume there)"

umask 077

# auth_file: "role" "password", one line each; PgBouncer speaks SCRAM to both
# sides with plain-text passwords. The variables are dropped from the
# environment before PgBouncer starts.
auth_file="$RUN_DIR/userlist.txt"

# Prints the auth_file's lines from the secrets: for each secret its AWSCURRENT
# user, then AWSPENDING's (the other user of the pair while a rotation is in
# flight: the rotation sets its password in PostgreSQL before it becomes
# current), then AWSPREVIOUS's (the user warm functions still log in as until
# the next rotation). A user already printed keeps its first password. A secret
# without AWSPENDING or AWSPREVIOUS is normal; any other failure returns 1, and
# the caller keeps the file it has.
secret_auth_lines() {
  local arn stage json line user seen=" " err="$RUN_DIR/aws-error.txt"
  for arn in $PGBOUNCER_SECRET_ARNS; do
    for stage in AWSCURRENT AWSPENDING AWSPREVIOUS; do
      # The secret's own region (the 4th field of its ARN), whatever the task's.
      if ! json="$(aws secretsmanager get-secret-value --secret-id "$arn" --version-stage "$stage" \
        --region "$(printf '%s' "$arn" | cut -d: -f4)" --query SecretString --output text 2>"$err")"; then
        if [[ $stage != AWSCURRENT ]] && grep -q ResourceNotFoundException "$err"; then
          continue
        fi
        echo "entrypoint: auth refresh: cannot read $stage of $arn: $(head -c 500 "$err" | tr '\n' ' ')" >&2
        return 1
      fi
      # `user "password"`, the password quoted the auth_file's way ("" for "). jq's
      # errors name the key, never the value.
      if ! line="$(printf '%s' "$json" | jq -r '
          if (.username | type) != "string" or (.username | test("^[a-z_][a-z0-9_]*$") | not)
          then error("username is missing or not a plain lower-case identifier")
          elif (.password | type) != "string" or (.password | length) == 0 or (.password | test("[\n\r]"))
          then error("password is missing, empty or holds a line break")
          else .username + " \"" + (.password | gsub("\""; "\"\"")) + "\""
          end' 2>"$err")"; then
        echo "entrypoint: auth refresh: $stage of $arn: $(head -c 500 "$err" | tr '\n' ' ')" >&2
        return 1
      fi
      user="${line%% *}"
      [[ $seen == *" $user "* ]] && continue
      seen+="$user "
      printf '"%s" %s\n' "$user" "${line#* }"
    done
  done
  rm -f "$err"
}

# Rewrites the auth_file from the secrets when its content changed: 0 when it
# did, 1 when nothing changed, 2 when the secrets could not be read (the file
# is left as it was).
refresh_auth_file() {
  local next="$auth_file.next"
  if ! secret_auth_lines >"$next"; then
    rm -f "$next"
    return 2
  fi
  if [[ -f $auth_file ]] && cmp -s "$next" "$auth_file"; then
    rm -f "$next"
    return 1
  fi
  chmod 600 "$next"
  mv -f "$next" "$auth_file" # rename: PgBouncer never reads a half-written file
}

# Runs in the background, with PgBouncer's PID (the exec below keeps this
# shell's); ends with PgBouncer.
auth_refresh_loop() {
  local pid=$1 status
  while sleep "$AUTH_REFRESH_S"; do
    kill -0 "$pid" 2>/dev/null || return 0
    status=0
    refresh_auth_file || status=$?
    if ((status == 0)); then
      echo "entrypoint: auth refresh: the secrets changed (rotation): auth_file rewritten, reloading PgBouncer" >&2
      kill -HUP "$pid"
    fi
  done
}

if [[ -n $PGBOUNCER_SECRET_ARNS ]]; then
  command -v aws >/dev/null || fail "PGBOUNCER_SECRET_ARNS is set but the aws CLI is not installed (the image's awscli package)"
  command -v jq >/dev/null || fail "PGBOUNCER_SECRET_ARNS is set but jq is not installed (the image's jq package)"
  for arn in $PGBOUNCER_SECRET_ARNS; do
    [[ $arn =~ ^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:[A-Za-z0-9/_+=.@-]+$ ]] \
      || fail "'$arn' in PGBOUNCER_SECRET_ARNS is not a Secrets Manager secret ARN (arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME)"
  done
  export AWS_PAGER=""
  status=0
  refresh_auth_file || status=$?
  ((status != 2)) || fail "cannot read the database secrets in PGBOUNCER_SECRET_ARNS (above): check the task role's secretsmanager:GetSecretValue and the route to Secrets Manager"
  PGBOUNCER_USERS="$(cut -d'"' -f2 "$auth_file" | tr '\n' ' ')"
else
  : >"$auth_file"
  for user in $PGBOUNCER_USERS; do
    [[ $user =~ ^[a-z_][a-z0-9_]*$ ]] || fail "role '$user' in PGBOUNCER_USERS is not a plain lower-case identifier"
    var="PGBOUNCER_PASSWORD_${user^^}"
    password="${!var:-}"
    [[ -n $password ]] || fail "$var is not set: the task definition maps it from the $user secret's password"
    printf '"%s" "%s"\n' "$user" "${password//\"/\"\"}" >>"$auth_file"
    unset "$var"
  done
  unset password
fi

# TLS towards clients, never optional either, and never without the certificate the
# functions verify (no self-signed fallback: a client verifying against the deployment's
# CA could not use it anyway).
[[ $CLIENT_TLS_SSLMODE == require ]] \
  || fail "CLIENT_TLS_SSLMODE='$CLIENT_TLS_SSLMODE': clients must use TLS; set require (they verify PgBouncer with the deployment's CA)"
client_key="${CLIENT_TLS_KEY_FILE:-$RUN_DIR/client-tls.key}"
client_cert="${CLIENT_TLS_CERT_FILE:-$RUN_DIR/client-tls.crt}"
if [[ -n ${CLIENT_TLS_CERT_PEM:-} || -n ${CLIENT_TLS_KEY_PEM:-} ]]; then
  [[ -n ${CLIENT_TLS_CERT_PEM:-} && -n ${CLIENT_TLS_KEY_PEM:-} ]] \
    || fail "CLIENT_TLS_CERT_PEM and CLIENT_TLS_KEY_PEM come together: the PgBouncer TLS secret's certificate and private_key (kit tls issue)"
  client_key="$RUN_DIR/client-tls.key"
  client_cert="$RUN_DIR/client-tls.crt"
  printf '%s\n' "$CLIENT_TLS_KEY_PEM" >"$client_key"
  printf '%s\n' "$CLIENT_TLS_CERT_PEM" >"$client_cert"
  chmod 600 "$client_key" "$client_cert"
  unset CLIENT_TLS_KEY_PEM CLIENT_TLS_CERT_PEM
fi
[[ -s $client_key && -s $client_cert ]] \
  || fail "no TLS certificate for clients: set CLIENT_TLS_CERT_PEM and CLIENT_TLS_KEY_PEM (the task maps them from the secret PgBouncerTlsSecretArn; make it with kit tls issue, docs/deploy.md)"
openssl x509 -in "$client_cert" -noout -checkend 0 >/dev/null 2>&1 \
  || fail "the client TLS certificate is not a valid PEM certificate or has expired: issue a new one (kit tls issue) and update the PgBouncer TLS secret"
[[ "$(openssl x509 -in "$client_cert" -noout -pubkey 2>/dev/null)" == "$(openssl pkey -in "$client_key" -pubout 2>/dev/null)" ]] \
  || fail "the client TLS key does not belong to its certificate: store the certificate and private_key from the same kit tls issue run in the PgBouncer TLS secret"

tls_lines="server_tls_sslmode = $SERVER_TLS_SSLMODE"
if [[ $SERVER_TLS_SSLMODE == verify-* ]]; then
  tls_lines+=$'\n'"server_tls_ca_file = $SERVER_TLS_CA_FILE"
fi
tls_lines+=$'\n'"client_tls_sslmode = $CLIENT_TLS_SSLMODE"
tls_lines+=$'\n'"client_tls_key_file = $client_key"
tls_lines+=$'\n'"client_tls_cert_file = $client_cert"

auth_query_lines=""
if [[ -n $PGBOUNCER_AUTH_USER ]]; then
  auth_query_lines="auth_user = $PGBOUNCER_AUTH_USER"$'\n'"auth_query = $PGBOUNCER_AUTH_QUERY"
fi

config="$RUN_DIR/pgbouncer.ini"
cat >"$config" <<INI
;; Written by entrypoint.sh at start. Sizes: the %included file, rendered from kit.toml.
;; The %include sits inside [pgbouncer]: PgBouncer silently ignores one above the first section.
[pgbouncer]
%include $BASE_INI

;; This environment: where to listen, how to authenticate, TLS.
listen_addr = $PGBOUNCER_LISTEN_ADDR
listen_port = $PGBOUNCER_PORT
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $auth_file
$auth_query_lines
$tls_lines

[databases]
$DB_NAME = host=$DB_HOST port=$DB_PORT dbname=$DB_NAME
INI

if [[ -n $PGBOUNCER_AUTH_USER ]]; then
  echo "entrypoint: PgBouncer on :$PGBOUNCER_PORT for $DB_NAME at $DB_HOST:$DB_PORT, roles looked up by $PGBOUNCER_AUTH_USER (auth_query)" >&2
else
  echo "entrypoint: PgBouncer on :$PGBOUNCER_PORT for $DB_NAME at $DB_HOST:$DB_PORT, roles: $PGBOUNCER_USERS" >&2
fi
if [[ -n $PGBOUNCER_SECRET_ARNS ]]; then
  echo "entrypoint: re-reading the secrets every ${AUTH_REFRESH_S}s (AWSCURRENT, AWSPENDING, AWSPREVIOUS)" >&2
  auth_refresh_loop "$$" &
fi
exec "$PGBOUNCER_BIN" "$config"
