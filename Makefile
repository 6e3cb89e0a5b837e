# The project's entry points; the logic lives in small scripts under scripts/.
# The local stack (PostgreSQL + pgvector, PgBouncer) keeps its data in a cluster directory outside
# the checkout ($KIT_CACHE/clusters/<checkout>-<hash>, `scripts/stack.sh dir`), its settings in
# .kit/, its tools in $KIT_CACHE (default /var/cache/pgvector-lambda-kit). Needs root on Debian 12
# for `deps`.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

# Runs the rest of a recipe line with the stack's connection settings (DATABASE_URL, ...) exported.
WITH_STACK_ENV = set -a && . "$$(scripts/stack.sh env)" && set +a &&

.PHONY: deps up down status wipe fmt lint lint-infra deny test demo package

deps:
	scripts/install-deps.sh

# stack.sh up also applies the migrations and the functions' login roles (kit roles apply).
up: deps
	scripts/stack.sh up

down:
	scripts/stack.sh down

status:
	scripts/stack.sh status || true

wipe:
	scripts/stack.sh wipe

fmt:
	cargo fmt --all

lint:
	cargo fmt --all -- --check
	cargo clippy --locked --workspace --all-targets -- -D warnings

test:
	scripts/lint-infra.sh
	scripts/test.sh

lint-infra:
	scripts/lint-infra.sh

# Dependency policy (deny.toml): bans, licences, sources. Offline; `make test` runs it too.
# Advisories need the RustSec database: `cargo deny --locked check advisories` where the
# network allows it (docs/deploy.md).
deny:
	"$$(scripts/install-deny.sh)" --locked check bans licenses sources

# Cross-compiles the three functions for arm64 through `sam build` (slow: not part of `make test`).
package:
	scripts/package.sh

demo: up
	$(WITH_STACK_ENV) scripts/demo.sh
