# paygw: PGXS build.  `make && make install`, `make test` (whole suite,
# own cluster and emulator), `make demo`.

EXTENSION = paygw
MODULE_big = paygw
DATA = sql/paygw--0.1.sql sql/paygw--0.1--0.2.sql sql/paygw--0.2--0.3.sql \
	sql/paygw--0.3--0.4.sql
PGFILEDESC = "paygw - signed payment-gateway status checks"

OBJS = \
	src/paygw.o \
	src/errors.o \
	src/guc.o \
	src/status.o \
	src/json.o \
	src/credentials.o \
	src/accountcache.o \
	src/call.o \
	src/check.o \
	src/sqlutil.o \
	src/sql_status.o \
	src/sql_credentials.o \
	src/sql_tracking.o \
	src/create.o \
	src/reconcile.o \
	src/probe.o \
	src/webhooks.o \
	src/launcher.o \
	src/worker.o \
	src/http/http.o \
	src/crypto/digest.o \
	src/crypto/encode.o \
	src/crypto/rsa.o \
	src/crypto/aead.o \
	src/secrets.o \
	src/providers/common.o \
	src/providers/okepay.o \
	src/providers/obmenka.o \
	src/providers/alikassa.o \
	src/providers/morune.o \
	src/providers/webhook_json.o \
	src/providers/create_body.o

REGRESS = setup signing status errors credentials tracking privileges secrets \
	webhook_verify webhooks create upgrade

PKG_CONFIG ?= pkg-config
# The server headers are included as system headers, so -Wextra reports
# only paygw's own code (PostgreSQL's inline functions trip
# -Wunused-parameter).
PG_CPPFLAGS = -I$(srcdir)/src -isystem $(shell $(PG_CONFIG) --includedir-server) \
	$(shell $(PKG_CONFIG) --cflags libcurl openssl)
PG_CFLAGS = -Wall -Wextra
SHLIB_LINK = $(shell $(PKG_CONFIG) --libs libcurl openssl)

EXTRA_CLEAN = results regression.diffs regression.out

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

.PHONY: test demo
test:
	bash test/run-tests.sh

demo:
	bash test/demo.sh

# PGXS does not track header dependencies; rebuild everything when a header
# changes (the tree is small).
$(OBJS): $(wildcard $(srcdir)/src/*.h $(srcdir)/src/*/*.h)
