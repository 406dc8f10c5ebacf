# Top-level build for the Quay registry in C.
#
#   make          module (.so), lib, quayctl, workers
#   make run      the whole registry on this machine (tools/run)
#   make test     every test: unit (plain, ASan+UBSan) and integration
#
# The module is built inside a copy of Debian's nginx-dev tree configured
# with Debian's own flags, so the stock /usr/sbin/nginx loads it.

SHELL := /bin/bash
.SUFFIXES:

BUILD    ?= build
NGX_SRC  ?= /usr/share/nginx/src
PG_INC   := $(shell pg_config --includedir 2>/dev/null)

CC       ?= cc
WARN     := -Wall -Wextra -Werror -Wno-unused-parameter
CFLAGS   ?= -O2 -g
PROJ_CFLAGS := -std=gnu11 -D_GNU_SOURCE -fPIC $(WARN) -Ilib -Iworkers \
               -I$(PG_INC) $(CFLAGS)
LIBS     := -lpq -lhiredis -ljansson -lcurl -lyaml -lcrypto -lpthread

LIB_SRCS    := $(sort $(wildcard lib/*.c))
LIB_HDRS    := $(wildcard lib/*.h lib/*.def)
MOD_SRCS    := $(sort $(wildcard ngx_http_quay_module/*.c))
MOD_HDRS    := $(wildcard ngx_http_quay_module/*.h)
WK_MAINS    := $(sort $(wildcard workers/quay_*.c))
WK_CTL      := $(sort $(wildcard workers/quayctl*.c))
WK_COMMON   := $(filter-out $(WK_MAINS) $(WK_CTL), \
                 $(sort $(wildcard workers/*.c)))
WK_HDRS     := $(wildcard workers/*.h)

LIB_OBJS    := $(LIB_SRCS:%.c=$(BUILD)/%.o)
WKC_OBJS    := $(WK_COMMON:%.c=$(BUILD)/%.o)
CTL_OBJS    := $(WK_CTL:%.c=$(BUILD)/%.o)
WORKER_BINS := $(patsubst workers/quay_%.c,$(BUILD)/bin/quay-%, \
                 $(WK_MAINS))
WORKER_BINS := $(subst _,-,$(WORKER_BINS))

MODULE   := $(BUILD)/ngx_http_quay_module.so

UNIT_SRCS := $(sort $(wildcard t/unit/test_*.c))
UNIT_BINS := $(UNIT_SRCS:t/unit/%.c=$(BUILD)/t/%)
SAN_BINS  := $(UNIT_SRCS:t/unit/%.c=$(BUILD)/t-san/%)
SAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer \
             -fno-sanitize-recover=undefined

.PHONY: all module lib workers quayctl unit run test clean setup bench \
        check-style \
        check-blocking

all: module lib quayctl workers

lib: $(BUILD)/libquay.a
module: $(MODULE)
quayctl: $(BUILD)/bin/quayctl
workers: $(WORKER_BINS)

$(BUILD)/%.o: %.c $(LIB_HDRS) $(WK_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(PROJ_CFLAGS) -c -o $@ $<

$(BUILD)/libquay.a: $(LIB_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/bin/quayctl: $(CTL_OBJS) $(WKC_OBJS) $(BUILD)/libquay.a
	@mkdir -p $(dir $@)
	$(CC) -o $@ $(CTL_OBJS) $(WKC_OBJS) $(BUILD)/libquay.a $(LIBS)

# workers/quay_upload_cleanup.c -> build/bin/quay-upload-cleanup
.SECONDEXPANSION:
$(BUILD)/bin/quay-%: $$(subst -,_,workers/quay_$$*.c) $(WKC_OBJS) \
                     $(BUILD)/libquay.a $(WK_HDRS) $(LIB_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(PROJ_CFLAGS) -o $@ $< $(WKC_OBJS) $(BUILD)/libquay.a $(LIBS)

# The nginx tree is configured again when the list of module sources or the
# addon script changes, because configure writes the source list into
# objs/Makefile.
$(BUILD)/module-srcs: FORCE
	@mkdir -p $(BUILD)
	@echo $(MOD_SRCS) $(LIB_SRCS) | cmp -s - $@ \
	    || echo $(MOD_SRCS) $(LIB_SRCS) > $@

$(BUILD)/nginx/objs/Makefile: config $(BUILD)/module-srcs
	rm -rf $(BUILD)/nginx
	mkdir -p $(BUILD)
	cp -r $(NGX_SRC) $(BUILD)/nginx
	cd $(BUILD)/nginx && . ./conf_flags && \
	    ./configure "$${NGX_CONF_FLAGS[@]}" \
	        --with-cc-opt='-g -O2 -fPIC -fstack-protector-strong -Wformat -Werror=format-security -D_FORTIFY_SOURCE=2 -Wextra -Wno-unused-parameter -Wno-sign-compare -Wno-missing-field-initializers' \
	        --with-ld-opt='-Wl,-z,relro -Wl,-z,now -fPIC' \
	        --add-dynamic-module=$(CURDIR) > ../nginx-configure.log 2>&1 \
	    || { tail -30 ../nginx-configure.log; exit 1; }

$(MODULE): $(BUILD)/nginx/objs/Makefile $(MOD_SRCS) $(MOD_HDRS) $(LIB_SRCS) \
           $(LIB_HDRS)
	$(MAKE) -s -C $(BUILD)/nginx -f objs/Makefile modules
	cp $(BUILD)/nginx/objs/ngx_http_quay_module.so $@.tmp
	mv -f $@.tmp $@

FORCE:

# Unit tests: TAP programs, built plain and with ASan+UBSan, run by prove.
$(BUILD)/t/test_%: t/unit/test_%.c t/unit/tap.h $(LIB_SRCS) $(LIB_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(PROJ_CFLAGS) -It/unit -o $@ $< $(LIB_SRCS) $(LIBS)

$(BUILD)/t-san/test_%: t/unit/test_%.c t/unit/tap.h $(LIB_SRCS) $(LIB_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(PROJ_CFLAGS) $(SAN_FLAGS) -It/unit -o $@ $< $(LIB_SRCS) $(LIBS)

unit: $(UNIT_BINS) $(SAN_BINS)

setup:
	tools/setup

run: setup all
	tools/run

test: setup
	tools/test

bench: all
	tools/bench

check-style:
	tools/check-style

check-blocking: $(MODULE)
	tools/check-blocking $(MODULE)

clean:
	rm -rf $(BUILD)
