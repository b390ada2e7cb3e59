/*
 * tests/c/harness.c: cmocka harness of the push_redirect C ABI.
 *
 * Links the cdylib target/release/libpush_redirect.so through the generated
 * header include/push_redirect.h, as the Kamailio module does, and drives
 * every exported function: NULL for every pointer parameter, non-UTF-8 text,
 * (NULL, len > 0) byte strings, out-of-range indexes and numbers, bad mode
 * text, too-small buffers, every _free(NULL), real scenarios (SPEC flows F1,
 * F2, F5, F6, F7, 6xx, policy refusals, 301/302 learning, stored and
 * provisioned forwardings, the SQLite forwarding store and its RPC
 * functions, end to end) with C lookup and is_self callbacks serving a fake
 * location table keyed like usrloc, the logger callback, and hostile input
 * (10,000 Contacts, a 60 KB Contact header, random bytes as reply and memo,
 * bad branch statuses, too many branches).
 *
 * Every exported function (nm -D --defined-only libpush_redirect.so | grep
 * ' pr_'; `make check-exports` verifies that each one appears here):
 *
 *   pr_status_text              pr_stat_name            pr_version
 *   pr_set_logger               pr_config_new           pr_config_set
 *   pr_config_last_error        pr_config_check_store   pr_config_free
 *   pr_engine_new               pr_engine_set_branch_limit
 *   pr_engine_branch_timeout_ms pr_engine_open_store    pr_engine_last_error
 *   pr_engine_store_count       pr_engine_free          pr_contacts_add
 *   pr_push_lookup              pr_push_redirect        pr_decision_free
 *   pr_rpc_list                 pr_entries_count        pr_entries_get
 *   pr_entries_free             pr_rpc_set              pr_rpc_remove
 *   pr_engine_take_counters     pr_engine_store_state
 *   pr_config_store_subscriber  pr_config_run_subscriber
 *
 * A decision is read through the pr_decision_view its call wrote (dec_t
 * below keeps the two together). The engine reads its forwardings from its
 * own store only, so every test of a stored, learned or provisioned
 * forwarding has a store: a fresh mkdtemp folder under $TMPDIR (default
 * /tmp) per test (cmocka setup), removed with everything in it by the
 * teardown, even after a failure. What a decision asks of the store (learn,
 * forget, nothing) is checked by its effect there (pr_rpc_list,
 * pr_engine_store_count, a dump of every entry before and after).
 *
 * Rule followed throughout: no cmocka assertion runs inside a callback
 * called by the library (lookup, is_self, logger). cmocka fails a test with
 * longjmp, and a longjmp across Rust frames is undefined behaviour; the
 * callbacks only record what they saw and the test checks it afterwards.
 *
 * Every test frees everything it gets (the valgrind and asan targets fail
 * on any leak).
 */

/* mkdtemp, nftw, nanosleep, sleep (POSIX.1-2008 / XSI) under -std=c11. */
#define _XOPEN_SOURCE 700

#include <errno.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "push_redirect.h"

/* ------------------------------------------------------------------ */
/* Byte strings and small helpers                                      */
/* ------------------------------------------------------------------ */

static const pr_bytes NONE = {NULL, 0};

static pr_bytes B(const char *s) {
    pr_bytes b = {(const uint8_t *)s, s ? strlen(s) : 0};
    return b;
}

static pr_bytes BN(const void *p, size_t n) {
    pr_bytes b = {(const uint8_t *)p, n};
    return b;
}

static bool bytes_eq(pr_bytes b, const char *s) {
    size_t n = strlen(s);
    return b.len == n && (n == 0 || (b.ptr != NULL && memcmp(b.ptr, s, n) == 0));
}

#define assert_bytes(b, s) assert_bytes_fn((b), (s), __FILE__, __LINE__)
static void assert_bytes_fn(pr_bytes b, const char *want, const char *file, int line) {
    if (!bytes_eq(b, want)) {
        print_error("got \"%.*s\" (%zu bytes), want \"%s\"\n",
                    (int)(b.len > 300 ? 300 : b.len), b.ptr ? (const char *)b.ptr : "",
                    b.len, want);
        _fail(file, line);
    }
}

/* An empty byte string ("none"): length 0. */
#define assert_empty(b) assert_int_equal((b).len, 0)

/* A growable buffer for replies and headers. */
typedef struct {
    char *data;
    size_t len;
    size_t cap;
} buf_t;

static void buf_add(buf_t *b, const void *p, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) {
            cap *= 2;
        }
        char *d = realloc(b->data, cap);
        assert_non_null(d);
        b->data = d;
        b->cap = cap;
    }
    if (n) {
        memcpy(b->data + b->len, p, n);
    }
    b->len += n;
    b->data[b->len] = '\0';
}

static void buf_adds(buf_t *b, const char *s) { buf_add(b, s, strlen(s)); }

static void buf_addf(buf_t *b, const char *fmt, ...) {
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    assert_true(n >= 0 && (size_t)n < sizeof tmp);
    buf_add(b, tmp, (size_t)n);
}

static void buf_free(buf_t *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* A SIP reply with `status_line` and the given header lines (NULL-ended). */
static buf_t reply_v(const char *status_line, const char *const *headers) {
    buf_t r = {0};
    buf_addf(&r, "SIP/2.0 %s\r\n", status_line);
    buf_adds(&r, "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\n"
                 "Call-ID: c1\r\nCSeq: 1 MESSAGE\r\n");
    for (size_t i = 0; headers && headers[i]; i++) {
        buf_adds(&r, headers[i]);
        buf_adds(&r, "\r\n");
    }
    buf_adds(&r, "Content-Length: 0\r\n\r\n");
    return r;
}

/* reply_v with one optional header line. */
static buf_t reply1(const char *status_line, const char *header) {
    const char *h[2] = {header, NULL};
    return reply_v(status_line, h);
}

static pr_branch branch(const char *uri, uint32_t status, const buf_t *reply, bool current) {
    pr_branch b;
    memset(&b, 0, sizeof b);
    b.uri = B(uri);
    b.status = status;
    b.reply = reply ? BN(reply->data, reply->len) : NONE;
    b.current_round = current;
    return b;
}

/* Kamailio's METHOD_NOTIFY and METHOD_MESSAGE bits. */
#define KM_METHOD_NOTIFY 128u
#define KM_METHOD_MESSAGE 256u

static pr_request message_req(const char *ruri, const char *call_id) {
    pr_request r;
    memset(&r, 0, sizeof r);
    r.method = B("MESSAGE");
    r.ruri = B(ruri);
    r.content_type = B("text/plain; charset=utf-8");
    r.call_id = B(call_id);
    r.method_bit = KM_METHOD_MESSAGE;
    return r;
}

/* Deterministic PRNG (xorshift64*) for the garbage tests. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rng(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

/* ------------------------------------------------------------------ */
/* The fake location service (lookup / is_self callbacks)              */
/* ------------------------------------------------------------------ */

#define U1 "sip:u1@example.com"
#define U2 "sip:u2@example.com"
#define T1 "sip:t1@127.0.0.1:5071"
#define T2 "sip:t2@127.0.0.1:5072"
#define T3 "sip:t3@127.0.0.1:5073"
#define U2T "sip:u2t@127.0.0.1:5082"
#define AOR_BROKEN "sip:broken@example.com" /* lookup returns -1 */
#define AOR_MANY "sip:many@example.com"     /* 1030 contacts */
#define AOR_PROBE "sip:probe@example.com"   /* pr_contacts_add misuse probes */
#define AOR_REENTER "sip:reenter@example.com" /* calls back into the engine */
#define N_MANY 1030

/* Their addresses are the socket cookies handed to the library. */
static int g_sockets[8];

/* A registration, filed under its usrloc key (registrar's extract_aor()
 * with its defaults: the user unescaped, "@", the host, lower case). */
typedef struct {
    const char *key, *uri, *received, *path, *instance;
    const void *socket;
    int32_t q;
    int64_t last_modified;
    /* usrloc's cflags, methods (0: every method, as pr_contact reads it),
       reg_id, ruid, user agent and tcpconn_id */
    uint32_t flags, methods, reg_id;
    const char *ruid, *ua;
    int32_t conn_id;
} fake_reg;

/* u1 has t1 (q=1.0, newest), t2 (q=1.0, older) and t3 (q=0.5); u2 has u2t. */
static const fake_reg LOCATION[] = {
    {"u1@example.com", T1, "sip:127.0.0.1:5071;received", "<sip:edge5071@127.0.0.1;lr>",
     "<urn:uuid:00000000-0000-0000-0000-000000000001>", &g_sockets[1], 1000, 300,
     1u << 6, 0, 1, "uloc-t1", "Phone/1.0", 17},
    {"u1@example.com", T2, "sip:127.0.0.1:5072;received", "<sip:edge5072@127.0.0.1;lr>", NULL,
     &g_sockets[2], 1000, 200, 0, 0, 0, NULL, NULL, 0},
    {"u1@example.com", T3, "sip:127.0.0.1:5073;received", "<sip:edge5073@127.0.0.1;lr>", NULL,
     &g_sockets[3], 500, 400, 0, 0, 0, NULL, NULL, 0},
    {"u2@example.com", U2T, "sip:127.0.0.1:5082;received", NULL, NULL, &g_sockets[5], -1, 1, 0, 0, 0, NULL, NULL, 0},
    /* A registration whose URI is not even UTF-8: skipped with a warning. */
    {"junk@example.com", "\xff\xfe not a uri", NULL, NULL, NULL, &g_sockets[6], -1, 1, 0, 0, 0, NULL, NULL, 0},
    /* The same contact registered twice (usrloc keeps both when it matches
       contacts by Call-ID as well, registrar's matching_mode 1). */
    {"dup@example.com", "sip:dup@127.0.0.1:5091", NULL, NULL, NULL, &g_sockets[6], -1, 2, 0, 0, 0, NULL, NULL, 0},
    {"dup@example.com", "sip:dup@127.0.0.1:5091", NULL, NULL, NULL, &g_sockets[6], -1, 1, 0, 0, 0, NULL, NULL, 0},
    /* nomsg takes NOTIFY only (;methods="NOTIFY"); mixed has one of those
       (first by q) and one that takes everything. */
    {"nomsg@example.com", "sip:nomsg@127.0.0.1:5093", NULL, NULL, NULL, &g_sockets[6], -1, 1,
     0, KM_METHOD_NOTIFY, 0, NULL, NULL, 0},
    {"mixed@example.com", "sip:mixed1@127.0.0.1:5094", NULL, NULL, NULL, &g_sockets[6], 1000, 1,
     0, KM_METHOD_NOTIFY, 0, NULL, NULL, 0},
    {"mixed@example.com", "sip:mixed2@127.0.0.1:5095", "sip:192.0.2.9:4000", NULL, NULL,
     &g_sockets[6], 500, 1, 0, 0, 7, "uloc-m2", NULL, 0},
};

#define N_PROBES 13

typedef struct {
    int lookups;
    int self_checks;
    int add_failures;  /* pr_contacts_add != OK for a valid contact */
    /* The last pr_aor the lookup callback got: its uri, key and user_len. */
    char last_aor[256];
    char last_key[256];
    size_t last_user_len;
    /* Lookups whose pr_aor broke its contract: a NULL or empty key, a
       user_len that is 0 or not followed by the '@' of the key. */
    int bad_aors;
    pr_status probe[N_PROBES];
    int n_probe;
    /* For AOR_REENTER: the engine to call pr_push_lookup on from inside
       the lookup callback, and what that nested call gave. */
    const pr_engine *engine;
    pr_status nested_status;
    int nested_rc;
    uint32_t nested_reason;
    size_t nested_branches;
    char nested_uri[64];
} fake_env;

static bool is(const uint8_t *p, size_t n, const char *s) {
    return n == strlen(s) && (n == 0 || memcmp(p, s, n) == 0);
}

static bool ieq(const uint8_t *p, size_t n, const char *s) {
    if (n != strlen(s)) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char a = (char)p[i], b = s[i];
        if (a >= 'A' && a <= 'Z') {
            a = (char)(a - 'A' + 'a');
        }
        if (a != b) {
            return false;
        }
    }
    return true;
}

/* A NUL-terminated copy of a byte string, cut to fit `out`. */
static void copy_text(char *out, size_t cap, pr_bytes b) {
    size_t n = b.len < cap - 1 ? b.len : cap - 1;
    if (n) {
        memcpy(out, b.ptr, n);
    }
    out[n] = '\0';
}

static pr_contact contact_of(const fake_reg *r) {
    pr_contact c;
    memset(&c, 0, sizeof c);
    c.uri = B(r->uri);
    c.received = r->received ? B(r->received) : NONE;
    c.path = r->path ? B(r->path) : NONE;
    c.instance = r->instance ? B(r->instance) : NONE;
    c.socket = r->socket;
    c.q = r->q;
    c.last_modified = r->last_modified;
    c.flags = r->flags;
    c.methods = r->methods;
    c.reg_id = r->reg_id;
    c.ruid = r->ruid ? B(r->ruid) : NONE;
    c.user_agent = r->ua ? B(r->ua) : NONE;
    c.conn_id = r->conn_id;
    return c;
}

/* Misuses of pr_contacts_add, legal only inside a lookup callback. */
static void run_contacts_probes(fake_env *env, pr_contacts *out) {
    static const uint8_t not_utf8[] = {'s', 'i', 'p', ':', 0xff, 0xfe, '@', 'x'};
    pr_contact good = contact_of(&LOCATION[3]);
    pr_contact c;
    int k = 0;

    env->probe[k++] = pr_contacts_add(NULL, &good);                   /* 0: NULL list */
    env->probe[k++] = pr_contacts_add(out, NULL);                     /* 1: NULL contact */
    c = good; c.uri = BN(NULL, 5);
    env->probe[k++] = pr_contacts_add(out, &c);                       /* 2: (NULL,5) uri */
    c = good; c.uri = NONE;
    env->probe[k++] = pr_contacts_add(out, &c);                       /* 3: empty uri */
    c = good; c.q = 1001;
    env->probe[k++] = pr_contacts_add(out, &c);                       /* 4: q > 1000 */
    c = good; c.q = -2;
    env->probe[k++] = pr_contacts_add(out, &c);                       /* 5: q < -1 */
    c = good; c.received = BN(NULL, 3);
    env->probe[k++] = pr_contacts_add(out, &c);                       /* 6: (NULL,3) received */
    c = good; c.path = BN(NULL, 3);
    env->probe[k++] = pr_contacts_add(out, &c);                       /* 7: (NULL,3) path */
    c = good; c.instance = BN(NULL, 3);
    env->probe[k++] = pr_contacts_add(out, &c);                       /* 8: (NULL,3) instance */
    c = good; c.uri = BN(not_utf8, sizeof not_utf8);
    env->probe[k++] = pr_contacts_add(out, &c);                       /* 9: bytes, not text: OK */
    c = good; c.uri = B("sip:probe-ok@127.0.0.1:5090"); c.q = INT32_MIN;
    env->probe[k++] = pr_contacts_add(out, &c);                       /* 10: q INT32_MIN */
    c = good; c.uri = B("sip:probe-ok@127.0.0.1:5090"); c.q = INT32_MAX;
    env->probe[k++] = pr_contacts_add(out, &c);                       /* 11: q INT32_MAX */
    c = good; c.uri = B("sip:probe-ok@127.0.0.1:5090"); c.q = -1; c.socket = &g_sockets[7];
    c.received = NONE; c.path = NONE; c.instance = NONE;
    c.last_modified = INT64_MIN;
    env->probe[k++] = pr_contacts_add(out, &c);                       /* 12: the good one */
    env->n_probe = k;
}

static int32_t fake_lookup(void *userdata, const pr_aor *aor, pr_contacts *out) {
    fake_env *env = userdata;
    env->lookups++;
    if (aor == NULL) {
        env->bad_aors++;
        return -1;
    }
    copy_text(env->last_aor, sizeof env->last_aor, aor->uri);
    copy_text(env->last_key, sizeof env->last_key, aor->key);
    env->last_user_len = aor->user_len;
    const uint8_t *k = aor->key.ptr;
    size_t kn = aor->key.len;
    if (k == NULL || kn == 0 || aor->user_len == 0 || aor->user_len >= kn ||
        k[aor->user_len] != '@') {
        env->bad_aors++;
        return 0;
    }

    if (is(k, kn, "broken@example.com")) {
        return -1;
    }
    if (is(k, kn, "probe@example.com")) {
        run_contacts_probes(env, out);
        return 0;
    }
    if (is(k, kn, "reenter@example.com") && env->engine) {
        /* A nested decision on the same engine, from inside its callback. */
        pr_request r;
        memset(&r, 0, sizeof r);
        r.method = B("MESSAGE");
        r.ruri = B(U1);
        pr_decision *d = NULL;
        pr_decision_view v;
        memset(&v, 0, sizeof v);
        env->nested_status = pr_push_lookup(env->engine, &r, &d, &v);
        env->nested_rc = v.script_rc;
        env->nested_reason = v.reason;
        env->nested_branches = v.n_branches;
        if (v.n_branches > 0) {
            copy_text(env->nested_uri, sizeof env->nested_uri, v.branches[0].uri);
        }
        pr_decision_free(d);
        pr_contact c = contact_of(&LOCATION[3]);
        return pr_contacts_add(out, &c) == PR_STATUS_OK ? 0 : -1;
    }
    if (is(k, kn, "many@example.com")) {
        for (int i = 0; i < N_MANY; i++) {
            char uri[64];
            snprintf(uri, sizeof uri, "sip:m%d@127.0.0.1:%d", i, 7000 + i);
            pr_contact c;
            memset(&c, 0, sizeof c);
            c.uri = B(uri); /* copied by the library */
            c.q = i % 1001;
            c.last_modified = i;
            c.socket = &g_sockets[0];
            if (pr_contacts_add(out, &c) != PR_STATUS_OK) {
                env->add_failures++;
            }
        }
        return 0;
    }
    for (size_t i = 0; i < sizeof LOCATION / sizeof LOCATION[0]; i++) {
        if (is(k, kn, LOCATION[i].key)) {
            pr_contact c = contact_of(&LOCATION[i]);
            if (pr_contacts_add(out, &c) != PR_STATUS_OK) {
                env->add_failures++;
            }
        }
    }
    return 0;
}

/* example.com (any port) and 127.0.0.1:5060 are the proxy. */
static bool fake_is_self(void *userdata, const uint8_t *host, size_t host_len, uint16_t port) {
    fake_env *env = userdata;
    env->self_checks++;
    if (ieq(host, host_len, "example.com")) {
        return true;
    }
    if (ieq(host, host_len, "127.0.0.1")) {
        return port == 0 || port == 5060;
    }
    return false;
}

/* ------------------------------------------------------------------ */
/* The logger callback                                                 */
/* ------------------------------------------------------------------ */

#define LOG_RING 64
#define LOG_TEXT 1024

typedef struct {
    int count[5];   /* by level 1..4 */
    int bad_level;  /* a level outside 1..4 */
    int total;
    struct {
        pr_log_level level;
        size_t len;
        char text[LOG_TEXT];
    } msgs[LOG_RING];
} log_capture;

/* Static: the library keeps the pointer process-wide. */
static log_capture g_log;

static void capture_log(void *userdata, pr_log_level level, const uint8_t *msg, size_t len) {
    log_capture *lc = userdata;
    if (level >= 1 && level <= 4) {
        lc->count[level]++;
    } else {
        lc->bad_level++;
    }
    int slot = lc->total % LOG_RING;
    lc->total++;
    lc->msgs[slot].level = level;
    lc->msgs[slot].len = len;
    size_t n = len < LOG_TEXT - 1 ? len : LOG_TEXT - 1;
    if (n) {
        memcpy(lc->msgs[slot].text, msg, n);
    }
    lc->msgs[slot].text[n] = '\0';
}

static void log_reset(void) { memset(&g_log, 0, sizeof g_log); }

/* Whether a message at `level` containing both needles was logged. */
static bool log_has(pr_log_level level, const char *needle1, const char *needle2) {
    int n = g_log.total < LOG_RING ? g_log.total : LOG_RING;
    for (int i = 0; i < n; i++) {
        if (g_log.msgs[i].level == level && strstr(g_log.msgs[i].text, needle1) &&
            (!needle2 || strstr(g_log.msgs[i].text, needle2))) {
            return true;
        }
    }
    return false;
}

/* ------------------------------------------------------------------ */
/* Engine and decision helpers                                         */
/* ------------------------------------------------------------------ */

static void cfg_set(pr_config *cfg, const char *name, const char *value) {
    pr_status s = pr_config_set(cfg, (const uint8_t *)name, strlen(name),
                                (const uint8_t *)value, strlen(value));
    if (s != PR_STATUS_OK) {
        uint8_t buf[256];
        size_t n = 0;
        pr_config_last_error(cfg, buf, sizeof buf, &n);
        print_error("pr_config_set(%s, %s) = %u: %.*s\n", name, value, s, (int)n, buf);
    }
    assert_int_equal(s, PR_STATUS_OK);
}

/* An engine with the fake callbacks and (name, value) settings (NULL-ended). */
static pr_engine *make_engine(fake_env *env, const char *const *settings) {
    pr_config *cfg = NULL;
    assert_int_equal(pr_config_new(&cfg), PR_STATUS_OK);
    assert_non_null(cfg);
    for (size_t i = 0; settings && settings[i]; i += 2) {
        cfg_set(cfg, settings[i], settings[i + 1]);
    }
    pr_engine *e = NULL;
    assert_int_equal(pr_engine_new(cfg, fake_lookup, fake_is_self, env, &e), PR_STATUS_OK);
    assert_non_null(e);
    pr_config_free(cfg); /* copied by the engine */
    return e;
}

/* Limits of the Rust side that the header does not export. */
#define SERVICE_KEY_MAX 128          /* engine/service.rs MAX_SERVICE_LEN */
#define REPLY_MAX ((size_t)1 << 20)  /* parser.rs MAX_MESSAGE_LEN */

/* Reason numbers (engine/decision.rs `Reason`, what pr_decision_view.reason
   holds; part of the C ABI, not in the header). */
enum {
    R_NOT_PUSH_METHOD = 1,
    R_IN_DIALOG = 2,
    R_NOT_REDIRECT = 3,
    R_GLOBAL_FAILURE = 4,
    R_AUTH_CHALLENGE = 5,
    R_NEVER_FOLLOWED = 6,
    R_REGISTERED = 10,
    R_STORED_FORWARDING = 11,
    R_REDIRECT = 12,
    R_PENDING_REDIRECT = 13,
    R_PROVISIONED = 14,
    R_FAILOVER = 15,
    R_NO_TARGET = 20,
    R_EXHAUSTED = 21,
    R_BRANCH_LIMIT = 22,
    R_METHOD_NOT_ACCEPTED = 23,
    R_ALL_TARGETS_REFUSED = 30,
    R_BAD_REQUEST_URI = 40,
    R_LOOKUP_FAILED = 41,
};

/* The name of a reason number, for messages; NULL for an unknown number. */
static const char *reason_name(uint32_t r) {
    switch (r) {
    case R_NOT_PUSH_METHOD: return "NotPushMethod";
    case R_IN_DIALOG: return "InDialog";
    case R_NOT_REDIRECT: return "NotRedirect";
    case R_GLOBAL_FAILURE: return "GlobalFailure";
    case R_AUTH_CHALLENGE: return "AuthChallenge";
    case R_NEVER_FOLLOWED: return "NeverFollowed";
    case R_REGISTERED: return "Registered";
    case R_STORED_FORWARDING: return "StoredForwarding";
    case R_REDIRECT: return "Redirect";
    case R_PENDING_REDIRECT: return "PendingRedirect";
    case R_PROVISIONED: return "Provisioned";
    case R_FAILOVER: return "Failover";
    case R_NO_TARGET: return "NoTarget";
    case R_EXHAUSTED: return "Exhausted";
    case R_BRANCH_LIMIT: return "BranchLimit";
    case R_METHOD_NOT_ACCEPTED: return "MethodNotAccepted";
    case R_ALL_TARGETS_REFUSED: return "AllTargetsRefused";
    case R_BAD_REQUEST_URI: return "BadRequestUri";
    case R_LOOKUP_FAILED: return "LookupFailed";
    default: return NULL;
    }
}

/* A decision and the view its call wrote; the view borrows from the
   decision, so the two are freed together (dec_free). */
typedef struct {
    pr_decision *h;
    pr_decision_view v;
} dec_t;

/* One statistic of a decision, e.g. STAT(d, FAILOVERS). */
#define STAT(d, name) ((d).v.counters[PR_STAT_##name])

/* A byte string of a view: NULL only when empty. */
static bool bytes_ok(pr_bytes b) { return b.len == 0 || b.ptr != NULL; }

/* What every view must hold, whatever the input: a script_rc the module
   knows, branches exactly when rc is 1, each with a URI and a q in range,
   byte strings that are readable, a known reason, and the fork mode asked
   for (`mode`: NULL or empty when the configured one applies). */
static void check_view(const pr_decision_view *v, const char *mode) {
    assert_true(v->script_rc == 1 || v->script_rc == -1 || v->script_rc == -2
                || v->script_rc == -3);
    assert_true((v->script_rc == 1) == (v->n_branches > 0));
    if (reason_name(v->reason) == NULL) {
        print_error("unknown reason %u\n", v->reason);
        fail();
    }
    assert_true(bytes_ok(v->memo));
    if (v->n_branches > 0) {
        assert_non_null(v->branches);
    }
    for (size_t i = 0; i < v->n_branches; i++) {
        const pr_branch_out *o = &v->branches[i];
        assert_true(o->uri.len > 0 && o->uri.ptr != NULL);
        assert_true(bytes_ok(o->dst_uri) && bytes_ok(o->path) && bytes_ok(o->instance));
        assert_true(o->q >= -1 && o->q <= 1000);
    }
    if (mode && *mode) {
        assert_int_equal(v->parallel, ieq((const uint8_t *)mode, strlen(mode), "parallel"));
    }
}

/* pr_push_lookup of `req` with `mode` (NULL: req->mode as it is). */
static dec_t lookup_ok(const pr_engine *e, const pr_request *req, const char *mode) {
    pr_request r = *req;
    if (mode) {
        r.mode = B(mode);
    }
    dec_t d;
    memset(&d.v, 0x5A, sizeof d.v); /* every field must be written */
    d.h = NULL;
    assert_int_equal(pr_push_lookup(e, &r, &d.h, &d.v), PR_STATUS_OK);
    assert_non_null(d.h);
    check_view(&d.v, mode);
    return d;
}

/* pr_push_redirect with a memo (the previous round's view.memo). */
static dec_t redirect_memo_ok(const pr_engine *e, const pr_request *req, const pr_branch *br,
                              size_t n, pr_bytes memo, const char *mode) {
    pr_request r = *req;
    if (mode) {
        r.mode = B(mode);
    }
    pr_failure f;
    memset(&f, 0, sizeof f);
    f.branches = br;
    f.n_branches = n;
    f.memo = memo;
    dec_t d;
    memset(&d.v, 0x5A, sizeof d.v);
    d.h = NULL;
    assert_int_equal(pr_push_redirect(e, &r, &f, &d.h, &d.v), PR_STATUS_OK);
    assert_non_null(d.h);
    check_view(&d.v, mode);
    return d;
}

/* pr_push_redirect in the first failure round (empty memo). */
static dec_t redirect_ok(const pr_engine *e, const pr_request *req, const pr_branch *br,
                         size_t n, const char *mode) {
    return redirect_memo_ok(e, req, br, n, NONE, mode);
}

static void dec_free(dec_t *d) {
    pr_decision_free(d->h);
    d->h = NULL;
    memset(&d->v, 0, sizeof d->v);
}

/* A copy of a decision's memo (it borrows from the decision). */
static buf_t memo_of(const dec_t *d) {
    buf_t b = {0};
    buf_add(&b, d->v.memo.ptr, d->v.memo.len);
    return b;
}

static pr_bytes buf_bytes(const buf_t *b) { return BN(b->data, b->len); }

#define branch_at(d, i) branch_at_fn((d), (i), __FILE__, __LINE__)
static pr_branch_out branch_at_fn(const dec_t *d, size_t i, const char *file, int line) {
    if (i >= d->v.n_branches) {
        print_error("branch %zu of a decision with %zu\n", i, d->v.n_branches);
        _fail(file, line);
    }
    return d->v.branches[i];
}

/* rc, reason and number of branches of a decision. */
#define assert_decision(d, rc, reason, n) \
    assert_decision_fn((d), (rc), (reason), (n), __FILE__, __LINE__)
static void assert_decision_fn(const dec_t *d, int rc, uint32_t reason, size_t n,
                               const char *file, int line) {
    const pr_decision_view *v = &d->v;
    if (v->script_rc != rc || v->reason != reason || v->n_branches != n) {
        const char *got = reason_name(v->reason), *want = reason_name(reason);
        print_error("decision: rc=%d reason=%u (%s) branches=%zu; want rc=%d reason=%u (%s) "
                    "branches=%zu\n",
                    v->script_rc, v->reason, got ? got : "?", v->n_branches, rc, reason,
                    want ? want : "?", n);
        _fail(file, line);
    }
}

/* ------------------------------------------------------------------ */
/* The forwarding store: a temp folder per test, RPC helpers           */
/* ------------------------------------------------------------------ */

/* Each store test gets a fresh mkdtemp folder (cmocka setup) that its
 * teardown removes with everything in it, even when the test failed. The
 * store file is <folder>/db/fwd.sqlite: the library creates "db". */
typedef struct {
    char dir[512];
    char path[600];
} store_fixture;

static int store_setup(void **state) {
    store_fixture *fx = calloc(1, sizeof *fx);
    if (fx == NULL) {
        return -1;
    }
    const char *tmp = getenv("TMPDIR");
    if (tmp == NULL || *tmp == '\0' || strlen(tmp) > 400) {
        tmp = "/tmp";
    }
    snprintf(fx->dir, sizeof fx->dir, "%s/pr-harness-XXXXXX", tmp);
    if (mkdtemp(fx->dir) == NULL) {
        free(fx);
        return -1;
    }
    snprintf(fx->path, sizeof fx->path, "%s/db/fwd.sqlite", fx->dir);
    *state = fx;
    return 0;
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static int store_teardown(void **state) {
    store_fixture *fx = *state;
    int rc = nftw(fx->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    struct stat st;
    bool gone = stat(fx->dir, &st) != 0 && errno == ENOENT;
    if (rc != 0 || !gone) {
        print_error("could not remove the temp folder %s\n", fx->dir);
    }
    free(fx);
    return rc == 0 && gone ? 0 : -1;
}

/* A file under the fixture's folder, e.g. fx_file(fx, "plain", buf). */
static const char *fx_file(const store_fixture *fx, const char *name, char *out, size_t n) {
    int k = snprintf(out, n, "%s/%s", fx->dir, name);
    assert_true(k > 0 && (size_t)k < n);
    return out;
}

static void write_file(const char *path, const char *content) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(content, 1, strlen(content), f), strlen(content));
    assert_int_equal(fclose(f), 0);
}

static bool is_regular_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* A config whose `store` is `path`, plus (name, value) settings. */
static pr_config *store_config(const char *path, const char *const *settings) {
    pr_config *cfg = NULL;
    assert_int_equal(pr_config_new(&cfg), PR_STATUS_OK);
    cfg_set(cfg, "store", path);
    cfg_set(cfg, "allowed_domains", "partner.example");
    for (size_t i = 0; settings && settings[i]; i += 2) {
        cfg_set(cfg, settings[i], settings[i + 1]);
    }
    return cfg;
}

/* An engine with the fake callbacks, (name, value) settings (NULL-ended)
   and its store opened at `path`. */
static pr_engine *store_engine_with(fake_env *env, const char *path,
                                    const char *const *settings) {
    pr_config *cfg = store_config(path, settings);
    pr_engine *e = NULL;
    assert_int_equal(pr_engine_new(cfg, fake_lookup, fake_is_self, env, &e), PR_STATUS_OK);
    pr_config_free(cfg);
    assert_int_equal(pr_engine_open_store(e), PR_STATUS_OK);
    return e;
}

/* The same with no more settings. */
static pr_engine *store_engine(fake_env *env, const char *path) {
    return store_engine_with(env, path, NULL);
}

/* The text of pr_engine_last_error (NUL-terminated copy). */
static const char *engine_error(const pr_engine *e) {
    static char text[16384];
    size_t n = 0;
    assert_int_equal(pr_engine_last_error(e, (uint8_t *)text, sizeof text - 1, &n),
                     PR_STATUS_OK);
    assert_true(n < sizeof text);
    text[n] = '\0';
    return text;
}

#define assert_error_has(e, needle) assert_error_has_fn((e), (needle), __FILE__, __LINE__)
static void assert_error_has_fn(const pr_engine *e, const char *needle, const char *file,
                                int line) {
    const char *t = engine_error(e);
    if (strstr(t, needle) == NULL) {
        print_error("pr_engine_last_error: \"%s\" does not contain \"%s\"\n", t, needle);
        _fail(file, line);
    }
}

/* Byte string of an optional C string: NULL is (NULL, 0). */
#define OPT(s) (const uint8_t *)(s), ((s) ? strlen(s) : 0)

static pr_status rpc_set(const pr_engine *e, const char *aor, const char *target,
                         const char *service, const char *ttl) {
    return pr_rpc_set(e, OPT(aor), OPT(target), OPT(service), OPT(ttl));
}

static void rpc_set_ok(const pr_engine *e, const char *aor, const char *target,
                       const char *service, const char *ttl) {
    pr_status s = rpc_set(e, aor, target, service, ttl);
    if (s != PR_STATUS_OK) {
        print_error("pr_rpc_set(%s, %s, %s, %s) = %u: %s\n", aor, target,
                    service ? service : "(none)", ttl ? ttl : "(none)", s, engine_error(e));
    }
    assert_int_equal(s, PR_STATUS_OK);
}

static size_t rpc_remove_ok(const pr_engine *e, const char *aor, const char *service) {
    size_t n = 4242;
    assert_int_equal(pr_rpc_remove(e, OPT(aor), OPT(service), &n), PR_STATUS_OK);
    assert_int_not_equal(n, 4242);
    return n;
}

static pr_entries *list_ok(const pr_engine *e, const char *aor) {
    pr_entries *l = NULL;
    pr_status s = pr_rpc_list(e, OPT(aor), &l);
    if (s != PR_STATUS_OK) {
        print_error("pr_rpc_list(%s) = %u: %s\n", aor ? aor : "(all)", s, engine_error(e));
    }
    assert_int_equal(s, PR_STATUS_OK);
    assert_non_null(l);
    return l;
}

static size_t list_count(const pr_engine *e, const char *aor) {
    pr_entries *l = list_ok(e, aor);
    size_t n = pr_entries_count(l);
    pr_entries_free(l);
    return n;
}

static size_t store_count(const pr_engine *e) {
    size_t n = 4242;
    assert_int_equal(pr_engine_store_count(e, &n), PR_STATUS_OK);
    assert_int_not_equal(n, 4242);
    return n;
}

static pr_entry entry_at(const pr_entries *l, size_t i) {
    pr_entry en;
    memset(&en, 0x5A, sizeof en);
    assert_int_equal(pr_entries_get(l, i, &en), PR_STATUS_OK);
    return en;
}

/* Every field of a stored entry. */
static void assert_entry(const pr_entry *en, const char *aor, const char *service,
                         const char *kind, const char *targets, const char *learned_from,
                         uint32_t learned_status) {
    assert_bytes(en->aor, aor);
    assert_bytes(en->service, service);
    assert_bytes(en->kind, kind);
    assert_bytes(en->targets, targets);
    assert_bytes(en->learned_from, learned_from);
    assert_int_equal(en->learned_status, learned_status);
}

/* Every entry of the store, as one text (to check that nothing changed). */
static buf_t store_dump(const pr_engine *e) {
    pr_entries *l = list_ok(e, NULL);
    buf_t b = {0};
    buf_addf(&b, "%zu entries\n", pr_entries_count(l));
    for (size_t i = 0; i < pr_entries_count(l); i++) {
        pr_entry en = entry_at(l, i);
        pr_bytes f[5] = {en.aor, en.service, en.kind, en.targets, en.learned_from};
        for (int k = 0; k < 5; k++) {
            buf_add(&b, f[k].ptr, f[k].len);
            buf_adds(&b, "|");
        }
        buf_addf(&b, "%lld|%lld|%u\n", (long long)en.expires_at, (long long)en.created_at,
                 en.learned_status);
    }
    pr_entries_free(l);
    return b;
}

/* pr_push_redirect of `req` after t1 answered `status_line` with `header`
   (a 301 or 302 with an expiry): followed and learned, and so, with a
   store, in the store when it returns. */
static void learn_ok(const pr_engine *e, const pr_request *req, const char *status_line,
                     const char *header) {
    buf_t r = reply1(status_line, header);
    pr_branch br = branch(T1, (uint32_t)atoi(status_line), &r, true);
    dec_t d = redirect_ok(e, req, &br, 1, NULL);
    assert_decision(&d, 1, R_REDIRECT, 1);
    assert_int_equal(STAT(d, FORWARDINGS_LEARNED), 1);
    dec_free(&d);
    buf_free(&r);
}

/* Unix seconds of CLOCK_REALTIME, the clock the core reads
 * (SystemTime::now). Not time(NULL): newer glibc (Debian 13's) answers it
 * from the vDSO's coarse clock, which can still say the previous second for
 * a few ms after the core's clock has moved on. */
static int64_t wall_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec;
}

/* Sleeps until the wall clock enters a new second: what follows has (nearly)
 * a whole second before `wall_seconds()` changes again. The store's clock
 * is the same (Unix seconds), so an entry with a TTL of 1 stays live for it. */
static void wait_for_a_new_second(void) {
    int64_t t0 = wall_seconds();
    while (wall_seconds() == t0) {
        struct timespec ts = {0, 2 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

/* ------------------------------------------------------------------ */
/* Group setup: route the library's log to g_log (DEBUG and up)        */
/* ------------------------------------------------------------------ */

static int group_setup(void **state) {
    (void)state;
    log_reset();
    pr_set_logger(capture_log, &g_log, PR_LOG_LEVEL_DEBUG);
    return 0;
}

static int group_teardown(void **state) {
    (void)state;
    pr_set_logger(NULL, NULL, PR_LOG_LEVEL_DEBUG);
    return 0;
}

/* ================================================================== */
/* Tests: plain functions                                              */
/* ================================================================== */

static void test_version(void **state) {
    (void)state;
    const char *v = pr_version();
    assert_non_null(v);
    assert_string_equal(v, "push_redirect/0.1.0");
    assert_ptr_equal(pr_version(), v); /* static */
}

static void test_free_null(void **state) {
    (void)state;
    pr_config_free(NULL);
    pr_engine_free(NULL);
    pr_decision_free(NULL);
    pr_decision_free(NULL);
    pr_entries_free(NULL);
}

static void test_status_text(void **state) {
    (void)state;
    static const char *const want[] = {
        "ok",
        "a required pointer argument was NULL",
        "text argument is not UTF-8",
        "invalid configuration value",
        "invalid argument",
        "internal error (panic caught)",
        "index out of range",
        "buffer too small",
        "host callback failed",
        "forwarding store error",
    };
    uint8_t buf[128];
    size_t n;
    for (uint32_t s = 0; s <= PR_STATUS_STORE_ERROR; s++) {
        n = 12345;
        assert_int_equal(pr_status_text(s, buf, sizeof buf, &n), PR_STATUS_OK);
        assert_bytes(BN(buf, n), want[s]);
        assert_int_equal(buf[n], 0); /* NUL added when room allows */
    }
    /* Bad enum values: unknown numbers. */
    static const uint32_t unknown[] = {10, 99, 0x7fffffffu, UINT32_MAX};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        n = 0;
        assert_int_equal(pr_status_text(unknown[i], buf, sizeof buf, &n), PR_STATUS_OK);
        char want_unknown[64];
        snprintf(want_unknown, sizeof want_unknown, "unknown status %u", unknown[i]);
        assert_bytes(BN(buf, n), want_unknown);
    }
    /* Exact fit: no NUL written past the text. */
    memset(buf, 'Z', sizeof buf);
    n = 0;
    assert_int_equal(pr_status_text(PR_STATUS_OK, buf, 2, &n), PR_STATUS_OK);
    assert_int_equal(n, 2);
    assert_memory_equal(buf, "ok", 2);
    assert_int_equal(buf[2], 'Z');
    /* Too small: nothing written, *out_n untouched. */
    memset(buf, 'Z', sizeof buf);
    n = 777;
    assert_int_equal(pr_status_text(PR_STATUS_OK, buf, 1, &n), PR_STATUS_BUFFER_TOO_SMALL);
    assert_int_equal(pr_status_text(PR_STATUS_NULL_PARAMETER, buf, 10, &n),
                     PR_STATUS_BUFFER_TOO_SMALL);
    assert_int_equal(pr_status_text(PR_STATUS_OK, buf, 0, &n), PR_STATUS_BUFFER_TOO_SMALL);
    assert_int_equal(n, 777);
    assert_int_equal(buf[0], 'Z');
    /* NULL buffer / NULL out_n. */
    assert_int_equal(pr_status_text(PR_STATUS_OK, NULL, 10, &n), PR_STATUS_NULL_PARAMETER);
    assert_int_equal(pr_status_text(PR_STATUS_OK, NULL, 0, &n), PR_STATUS_NULL_PARAMETER);
    assert_int_equal(pr_status_text(PR_STATUS_OK, buf, sizeof buf, NULL),
                     PR_STATUS_NULL_PARAMETER);
    assert_int_equal(n, 777);
}

/* Which header the module parses for the service key: the Event package
 * of a NOTIFY (any case), the Content-Type of anything else; NULL, empty,
 * non-UTF-8 and huge methods are "not NOTIFY". */
static void test_service_by_event(void **state) {
    (void)state;
    static const struct {
        const char *method;
        bool event;
    } rows[] = {
        {"NOTIFY", true}, {"notify", true}, {"NoTiFy", true},
        {"MESSAGE", false}, {"NOTIFYX", false}, {"NOTIF", false},
        {"OPTIONS", false}, {"", false},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        assert_int_equal(pr_service_by_event((const uint8_t *)rows[i].method,
                                             strlen(rows[i].method)),
                         rows[i].event);
    assert_false(pr_service_by_event(NULL, 0));
    assert_false(pr_service_by_event(NULL, 6));
    assert_false(pr_service_by_event((const uint8_t *)"\xffOTIFY", 6));
    size_t n = 1 << 20;
    uint8_t *big = malloc(n);
    assert_non_null(big);
    memset(big, 'N', n);
    assert_false(pr_service_by_event(big, n));
    free(big);
}

static void test_stat_names(void **state) {
    (void)state;
    /* The SPEC names, in the order of the pr_stat numbers (dense, from 0). */
    static const struct {
        uint32_t stat;
        const char *name;
    } want[] = {
        {PR_STAT_REDIRECTS_FOLLOWED, "redirects_followed"},
        {PR_STAT_FAILOVERS, "failovers"},
        {PR_STAT_FORWARDINGS_LEARNED, "forwardings_learned"},
        {PR_STAT_FORWARDINGS_APPLIED, "forwardings_applied"},
        {PR_STAT_TARGETS_REFUSED, "targets_refused"},
        {PR_STAT_LOOPS_PREVENTED, "loops_prevented"},
        {PR_STAT_CONTACTS_DROPPED, "contacts_dropped"},
        {PR_STAT_STORE_ERRORS, "store_errors"},
        {PR_STAT_STORE_WRITES_DROPPED, "store_writes_dropped"},
    };
    assert_int_equal(sizeof want / sizeof want[0], PR_STAT_COUNT);
    for (uint32_t i = 0; i < PR_STAT_COUNT; i++) {
        assert_int_equal(want[i].stat, i);
        const char *n = pr_stat_name(i);
        assert_non_null(n);
        assert_string_equal(n, want[i].name); /* NUL-terminated */
        assert_ptr_equal(pr_stat_name(i), n); /* static */
        /* Each name once. */
        for (uint32_t k = 0; k < i; k++) {
            assert_string_not_equal(pr_stat_name(k), n);
        }
    }
    /* NULL past the last one, for every out-of-range number tried. */
    static const uint32_t past[] = {PR_STAT_COUNT, PR_STAT_COUNT + 1, 100, 0x80000000u,
                                    UINT32_MAX};
    for (size_t i = 0; i < sizeof past / sizeof past[0]; i++) {
        assert_null(pr_stat_name(past[i]));
    }
    /* The view's counters hold exactly PR_STAT_COUNT numbers. */
    pr_decision_view v;
    assert_int_equal(sizeof v.counters / sizeof v.counters[0], PR_STAT_COUNT);
}

/* ================================================================== */
/* Tests: configuration                                                */
/* ================================================================== */

static void test_config_null_and_utf8(void **state) {
    (void)state;
    static const uint8_t not_utf8[] = {'f', 'o', 'r', 'k', 0xc3, 0x28};
    uint8_t buf[256];
    size_t n = 99;

    assert_int_equal(pr_config_new(NULL), PR_STATUS_NULL_PARAMETER);
    pr_config *cfg = NULL;
    assert_int_equal(pr_config_new(&cfg), PR_STATUS_OK);

    assert_int_equal(pr_config_set(NULL, (const uint8_t *)"max_depth", 9,
                                   (const uint8_t *)"2", 1),
                     PR_STATUS_NULL_PARAMETER);
    assert_int_equal(pr_config_set(cfg, NULL, 9, (const uint8_t *)"2", 1),
                     PR_STATUS_NULL_PARAMETER);
    assert_int_equal(pr_config_set(cfg, (const uint8_t *)"max_depth", 9, NULL, 1),
                     PR_STATUS_NULL_PARAMETER);
    assert_int_equal(pr_config_set(cfg, not_utf8, sizeof not_utf8, (const uint8_t *)"2", 1),
                     PR_STATUS_INVALID_UTF8);
    assert_int_equal(pr_config_set(cfg, (const uint8_t *)"fork_mode", 9, not_utf8,
                                   sizeof not_utf8),
                     PR_STATUS_INVALID_UTF8);
    /* None of these is a refused value: last_error stays empty. */
    assert_int_equal(pr_config_last_error(cfg, buf, sizeof buf, &n), PR_STATUS_OK);
    assert_int_equal(n, 0);
    assert_int_equal(buf[0], 0);

    /* (NULL, 0) name and value are the empty strings: a refused value. */
    assert_int_equal(pr_config_set(cfg, NULL, 0, NULL, 0), PR_STATUS_INVALID_CONFIG);
    assert_int_equal(pr_config_last_error(cfg, buf, sizeof buf, &n), PR_STATUS_OK);
    assert_bytes(BN(buf, n), "modparam \"\": unknown parameter");

    n = 99;
    assert_int_equal(pr_config_last_error(NULL, buf, sizeof buf, &n), PR_STATUS_NULL_PARAMETER);
    assert_int_equal(pr_config_last_error(cfg, NULL, sizeof buf, &n), PR_STATUS_NULL_PARAMETER);
    assert_int_equal(pr_config_last_error(cfg, buf, sizeof buf, NULL), PR_STATUS_NULL_PARAMETER);
    assert_int_equal(n, 99);
    /* Too small. */
    assert_int_equal(pr_config_last_error(cfg, buf, 4, &n), PR_STATUS_BUFFER_TOO_SMALL);
    assert_int_equal(n, 99);

    /* pr_engine_new: NULL config, NULL out; NULL callbacks are allowed. */
    pr_engine *e = (pr_engine *)&g_sockets[0]; /* sentinel: must stay untouched */
    assert_int_equal(pr_engine_new(NULL, fake_lookup, fake_is_self, NULL, &e),
                     PR_STATUS_NULL_PARAMETER);
    assert_ptr_equal(e, (pr_engine *)&g_sockets[0]);
    assert_int_equal(pr_engine_new(cfg, fake_lookup, fake_is_self, NULL, NULL),
                     PR_STATUS_NULL_PARAMETER);
    e = NULL;
    assert_int_equal(pr_engine_new(cfg, NULL, NULL, NULL, &e), PR_STATUS_OK);
    assert_non_null(e);
    pr_engine_free(e);
    pr_config_free(cfg);
}

static void test_config_good_values(void **state) {
    (void)state;
    static const char *const good[] = {
        "store", "/tmp/x.sqlite",
        "methods", "MESSAGE, notify ,PUBLISH",
        "failover_codes", "503,480,480",
        "fork_mode", "Parallel",
        "max_branches", "12",
        "max_depth", "2",
        "allowed_domains", "partner.example, *.trusted.example",
        "location_table", "location_push",
        "branch_timeout", "2000",
        "history_info", "0",
        NULL,
    };
    fake_env env = {0};
    pr_config *cfg = NULL;
    assert_int_equal(pr_config_new(&cfg), PR_STATUS_OK);
    for (size_t i = 0; good[i]; i += 2) {
        cfg_set(cfg, good[i], good[i + 1]);
        uint8_t buf[64];
        size_t n = 99;
        assert_int_equal(pr_config_last_error(cfg, buf, sizeof buf, &n), PR_STATUS_OK);
        assert_int_equal(n, 0);
    }
    /* A refused value after good ones changes nothing. */
    assert_int_equal(pr_config_set(cfg, (const uint8_t *)"branch_timeout", 14,
                                   (const uint8_t *)"10", 2),
                     PR_STATUS_INVALID_CONFIG);
    /* A success clears last_error. */
    uint8_t buf[128];
    size_t n = 0;
    assert_int_equal(pr_config_last_error(cfg, buf, sizeof buf, &n), PR_STATUS_OK);
    assert_true(n > 0);
    cfg_set(cfg, "max_depth", "3");
    assert_int_equal(pr_config_last_error(cfg, buf, sizeof buf, &n), PR_STATUS_OK);
    assert_int_equal(n, 0);

    pr_engine *e = NULL;
    assert_int_equal(pr_engine_new(cfg, fake_lookup, fake_is_self, &env, &e), PR_STATUS_OK);
    pr_config_free(cfg); /* the engine holds a copy */

    assert_int_equal(pr_engine_branch_timeout_ms(e), 2000);
    assert_int_equal(pr_engine_branch_timeout_ms(NULL), 0);

    /* fork_mode=parallel: every terminal at once. */
    pr_request req = message_req(U1, "cid-config-1");
    dec_t d = lookup_ok(e, &req, NULL);
    assert_decision(&d, 1, R_REGISTERED, 3);
    assert_true(d.v.parallel);
    dec_free(&d);

    /* methods: PUBLISH is a PUSH method now. */
    req.method = B("PUBLISH");
    d = lookup_ok(e, &req, "serial");
    assert_decision(&d, 1, R_REGISTERED, 1);
    assert_false(d.v.parallel);
    dec_free(&d);

    /* failover_codes=480,503: 486 is not a failover code any more. */
    req.method = B("MESSAGE");
    pr_branch br = branch(T1, 486, NULL, true);
    d = redirect_ok(e, &req, &br, 1, NULL);
    assert_decision(&d, -1, R_NOT_REDIRECT, 0);
    dec_free(&d);
    br.status = 503;
    d = redirect_ok(e, &req, &br, 1, NULL);
    assert_decision(&d, 1, R_FAILOVER, 2);
    dec_free(&d);

    /* allowed_domains: a subdomain of *.trusted.example is followed. */
    buf_t r = reply1("302 Moved", "Contact: <sip:x@a.b.trusted.example>");
    br = branch(T1, 302, &r, true);
    d = redirect_ok(e, &req, &br, 1, NULL);
    assert_decision(&d, 1, R_REDIRECT, 1);
    assert_bytes(branch_at(&d, 0).uri, "sip:x@a.b.trusted.example");
    dec_free(&d);
    buf_free(&r);

    pr_engine_free(e);
}

static void test_config_bad_values_name_the_parameter(void **state) {
    (void)state;
    static const char *const rows[][2] = {
        {"methods", ""},
        {"methods", "MESSAGE,INVITE"},
        {"methods", "MES SAGE"},
        {"failover_codes", "480,401"},
        {"failover_codes", "603"},
        {"failover_codes", "302"},
        {"failover_codes", "abc"},
        {"fork_mode", "random"},
        {"max_branches", "0"},
        {"max_branches", "65"},
        {"max_branches", "-1"},
        {"max_branches", "99999999999999999999"},
        {"max_depth", "99"},
        {"allowed_domains", "ex ample.com"},
        {"location_table", "loc;drop"},
        {"branch_timeout", "10"},
        {"history_info", "yes"},
        {"store", ""},
        {"no_such_param", "1"},
    };
    pr_config *cfg = NULL;
    assert_int_equal(pr_config_new(&cfg), PR_STATUS_OK);
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        const char *name = rows[i][0], *value = rows[i][1];
        assert_int_equal(pr_config_set(cfg, (const uint8_t *)name, strlen(name),
                                       (const uint8_t *)value, strlen(value)),
                         PR_STATUS_INVALID_CONFIG);
        char buf[512];
        size_t n = 0;
        assert_int_equal(pr_config_last_error(cfg, (uint8_t *)buf, sizeof buf, &n), PR_STATUS_OK);
        assert_true(n > 0 && n < sizeof buf);
        assert_int_equal(buf[n], '\0');
        char want[128];
        snprintf(want, sizeof want, "modparam \"%s\"", name);
        if (!strstr(buf, want)) {
            print_error("last_error \"%s\" does not name %s\n", buf, name);
            fail();
        }
        /* Exact fit and one byte short. */
        size_t full = n;
        memset(buf, 'Z', sizeof buf);
        assert_int_equal(pr_config_last_error(cfg, (uint8_t *)buf, full, &n), PR_STATUS_OK);
        assert_int_equal(n, full);
        assert_int_equal(buf[full], 'Z');
        n = 4242;
        assert_int_equal(pr_config_last_error(cfg, (uint8_t *)buf, full - 1, &n),
                         PR_STATUS_BUFFER_TOO_SMALL);
        assert_int_equal(n, 4242);
    }
    /* Nothing changed: the defaults are still in force. */
    fake_env env = {0};
    pr_engine *e = NULL;
    assert_int_equal(pr_engine_new(cfg, fake_lookup, fake_is_self, &env, &e), PR_STATUS_OK);
    assert_int_equal(pr_engine_branch_timeout_ms(e), 5000);
    pr_request req = message_req(U1, "cid-config-2");
    dec_t d = lookup_ok(e, &req, NULL);
    assert_decision(&d, 1, R_REGISTERED, 1); /* serial */
    dec_free(&d);
    pr_engine_free(e);
    pr_config_free(cfg);
}

/* ================================================================== */
/* Tests: engine handle and forwardings of many targets                */
/* ================================================================== */

static void test_engine_branch_limit(void **state) {
    (void)state;
    fake_env env = {0};
    pr_engine *e = make_engine(&env, NULL);
    assert_int_equal(pr_engine_set_branch_limit(NULL, 5), PR_STATUS_NULL_PARAMETER);
    assert_int_equal(pr_engine_set_branch_limit(e, 0), PR_STATUS_INVALID_ARGUMENT);
    assert_int_equal(pr_engine_branch_timeout_ms(e), 5000);

    /* Limit 1: the failed branch used it, nothing more may be added. */
    assert_int_equal(pr_engine_set_branch_limit(e, 1), PR_STATUS_OK);
    pr_request req = message_req(U1, "cid-limit");
    pr_branch br = branch(T1, 480, NULL, true);
    dec_t d = redirect_ok(e, &req, &br, 1, NULL);
    assert_decision(&d, -1, R_BRANCH_LIMIT, 0);
    dec_free(&d);

    assert_int_equal(pr_engine_set_branch_limit(e, UINT32_MAX), PR_STATUS_OK);
    d = redirect_ok(e, &req, &br, 1, "parallel");
    assert_decision(&d, 1, R_FAILOVER, 2);
    dec_free(&d);
    pr_engine_free(e);
}

/* A forwarding reaches the engine through its store only (the handle that
 * carried one in is gone): its limits are the store's and the policy's. An
 * engine that follows up to 64 Contacts learns the best 64 of a 301 with
 * 65; another engine on the same file (another Kamailio process, a lower
 * max_branches) applies the best of them, within Kamailio's branch limit. */
static void test_forwarding_of_64_targets(void **state) {
    store_fixture *fx = *state;
    fake_env env = {0};
    static const char *const s64[] = {"max_branches", "64", NULL};
    pr_engine *e64 = store_engine_with(&env, fx->path, s64);
    pr_request req = message_req(U1, "cid-fwd-64");

    /* 65 Contacts, q = k/1000 for fk (f0 has q 0, the worst). */
    buf_t h = {0};
    buf_adds(&h, "Contact: ");
    for (int k = 0; k <= 64; k++) {
        buf_addf(&h, "%s<sip:f%d@partner.example>;q=0.%03d", k ? ", " : "", k, k);
    }
    buf_t r = reply1("301 Moved Permanently", h.data);
    pr_branch br = branch(T1, 301, &r, true);
    dec_t d = redirect_ok(e64, &req, &br, 1, "serial");
    assert_decision(&d, 1, R_REDIRECT, 1);
    assert_bytes(branch_at(&d, 0).uri, "sip:f64@partner.example");
    assert_int_equal(STAT(d, CONTACTS_DROPPED), 1);
    assert_int_equal(STAT(d, FORWARDINGS_LEARNED), 1);
    dec_free(&d);
    buf_free(&r);
    buf_free(&h);

    /* Stored: the 64 best, best first, f0 left out. */
    pr_entries *l = list_ok(e64, U1);
    assert_int_equal(pr_entries_count(l), 1);
    pr_entry en = entry_at(l, 0);
    assert_bytes(en.kind, "permanent");
    buf_t want = {0};
    for (int k = 64; k >= 1; k--) {
        buf_addf(&want, "%ssip:f%d@partner.example;q=0.%03d", k < 64 ? ", " : "", k, k);
    }
    assert_bytes(en.targets, want.data);
    buf_free(&want);
    pr_entries_free(l);

    /* Applied by the engine that learned it: Kamailio's branch limit (12
       by default) caps the round, then max_branches (64). */
    d = lookup_ok(e64, &req, "parallel");
    assert_decision(&d, 1, R_STORED_FORWARDING, 12);
    dec_free(&d);
    assert_int_equal(pr_engine_set_branch_limit(e64, 100), PR_STATUS_OK);
    d = lookup_ok(e64, &req, "parallel");
    assert_decision(&d, 1, R_STORED_FORWARDING, 64);
    for (size_t i = 0; i < 64; i++) {
        assert_int_equal(branch_at(&d, i).q, 64 - (int)i);
    }
    assert_int_equal(STAT(d, FORWARDINGS_APPLIED), 1);
    dec_free(&d);

    /* Applied by an engine with the default max_branches (8): the best 8. */
    pr_engine *e8 = store_engine(&env, fx->path);
    d = lookup_ok(e8, &req, "parallel");
    assert_decision(&d, 1, R_STORED_FORWARDING, 8);
    assert_bytes(branch_at(&d, 0).uri, "sip:f64@partner.example");
    assert_int_equal(branch_at(&d, 0).q, 64);
    assert_bytes(branch_at(&d, 7).uri, "sip:f57@partner.example");
    assert_int_equal(STAT(d, FORWARDINGS_APPLIED), 1);
    assert_int_equal(STAT(d, CONTACTS_DROPPED), 0);
    dec_free(&d);
    d = lookup_ok(e8, &req, "serial");
    assert_decision(&d, 1, R_STORED_FORWARDING, 1);
    assert_bytes(branch_at(&d, 0).uri, "sip:f64@partner.example");
    dec_free(&d);
    pr_engine_free(e8);
    pr_engine_free(e64);
}

/* ================================================================== */
/* Tests: NULL / malformed arguments of lookup and redirect            */
/* ================================================================== */

/* What a failed call may not touch: its decision and view out-parameters. */
static pr_decision *const D_SENTINEL = (pr_decision *)&g_sockets[4];

#define lookup_fails(e, req, want) lookup_fails_fn((e), (req), (want), __FILE__, __LINE__)
static void lookup_fails_fn(const pr_engine *e, const pr_request *req, pr_status want,
                            const char *file, int line) {
    pr_decision *d = D_SENTINEL;
    pr_decision_view v, before;
    memset(&v, 0x5A, sizeof v);
    memcpy(&before, &v, sizeof v); /* padding included */
    pr_status s = pr_push_lookup(e, req, &d, &v);
    if (s != want || d != D_SENTINEL || memcmp(&v, &before, sizeof v) != 0) {
        print_error("pr_push_lookup = %u (want %u); out %s, view %s\n", s, want,
                    d == D_SENTINEL ? "untouched" : "WRITTEN",
                    memcmp(&v, &before, sizeof v) == 0 ? "untouched" : "WRITTEN");
        if (s == PR_STATUS_OK) {
            pr_decision_free(d);
        }
        _fail(file, line);
    }
}

#define redirect_fails(e, req, f, want) \
    redirect_fails_fn((e), (req), (f), (want), __FILE__, __LINE__)
static void redirect_fails_fn(const pr_engine *e, const pr_request *req, const pr_failure *f,
                              pr_status want, const char *file, int line) {
    pr_decision *d = D_SENTINEL;
    pr_decision_view v, before;
    memset(&v, 0x5A, sizeof v);
    memcpy(&before, &v, sizeof v);
    pr_status s = pr_push_redirect(e, req, f, &d, &v);
    if (s != want || d != D_SENTINEL || memcmp(&v, &before, sizeof v) != 0) {
        print_error("pr_push_redirect = %u (want %u); out %s, view %s\n", s, want,
                    d == D_SENTINEL ? "untouched" : "WRITTEN",
                    memcmp(&v, &before, sizeof v) == 0 ? "untouched" : "WRITTEN");
        if (s == PR_STATUS_OK) {
            pr_decision_free(d);
        }
        _fail(file, line);
    }
}

static pr_failure failure_of(const pr_branch *br, size_t n, pr_bytes memo) {
    pr_failure f;
    memset(&f, 0, sizeof f);
    f.branches = br;
    f.n_branches = n;
    f.memo = memo;
    return f;
}

static void test_lookup_bad_arguments(void **state) {
    (void)state;
    static const uint8_t not_utf8[] = {'M', 'E', 'S', 0xff};
    static const uint8_t mode_not_utf8[] = {'s', 'e', 'r', 'i', 'a', 'l', 0xc3, 0x28};
    fake_env env = {0};
    pr_engine *e = make_engine(&env, NULL);
    pr_request req = message_req(U1, "cid-args");
    pr_decision *d = D_SENTINEL;
    pr_decision_view v;
    memset(&v, 0x5A, sizeof v);

    /* NULL engine, request, out or view. */
    lookup_fails(NULL, &req, PR_STATUS_NULL_PARAMETER);
    lookup_fails(e, NULL, PR_STATUS_NULL_PARAMETER);
    assert_int_equal(pr_push_lookup(e, &req, NULL, &v), PR_STATUS_NULL_PARAMETER);
    assert_int_equal(pr_push_lookup(e, &req, &d, NULL), PR_STATUS_NULL_PARAMETER);
    assert_int_equal(pr_push_lookup(e, &req, NULL, NULL), PR_STATUS_NULL_PARAMETER);
    assert_ptr_equal(d, D_SENTINEL);

    /* The mode: (NULL, len > 0), not UTF-8, not a mode, almost a mode. */
    static const char *const bad_modes[] = {"random", "both", "serial ", " parallel",
                                            "paralle", "parallel2", "1"};
    pr_request r = req;
    r.mode = BN(NULL, 6);
    lookup_fails(e, &r, PR_STATUS_NULL_PARAMETER);
    r.mode = BN(mode_not_utf8, sizeof mode_not_utf8);
    lookup_fails(e, &r, PR_STATUS_INVALID_UTF8);
    r.mode = BN("serial\0", 7);
    lookup_fails(e, &r, PR_STATUS_INVALID_ARGUMENT);
    for (size_t i = 0; i < sizeof bad_modes / sizeof bad_modes[0]; i++) {
        r.mode = B(bad_modes[i]);
        lookup_fails(e, &r, PR_STATUS_INVALID_ARGUMENT);
    }
    /* A huge mode: refused, not read past its end. */
    size_t huge_n = 1 << 20;
    char *huge = malloc(huge_n);
    assert_non_null(huge);
    memset(huge, 'p', huge_n);
    r.mode = BN(huge, huge_n);
    lookup_fails(e, &r, PR_STATUS_INVALID_ARGUMENT);

    /* (NULL, len > 0) in each field of the request. */
    for (int field = 0; field < 7; field++) {
        pr_request rr = req;
        pr_bytes *fields[7] = {&rr.method, &rr.ruri, &rr.to_tag, &rr.event, &rr.content_type,
                               &rr.call_id, &rr.mode};
        *fields[field] = BN(NULL, 4);
        lookup_fails(e, &rr, PR_STATUS_NULL_PARAMETER);
    }
    /* A method that is not UTF-8. */
    r = req;
    r.method = BN(not_utf8, sizeof not_utf8);
    lookup_fails(e, &r, PR_STATUS_INVALID_UTF8);
    assert_int_equal(env.lookups, 0);

    /* The same for pr_push_redirect, and its failure argument: NULL; NULL
       branches with n > 0 (any n: the NULL is seen first); a memo (NULL,
       len > 0). */
    pr_branch br = branch(T1, 480, NULL, true);
    pr_failure f = failure_of(&br, 1, NONE);
    redirect_fails(NULL, &req, &f, PR_STATUS_NULL_PARAMETER);
    redirect_fails(e, NULL, &f, PR_STATUS_NULL_PARAMETER);
    redirect_fails(e, &req, NULL, PR_STATUS_NULL_PARAMETER);
    assert_int_equal(pr_push_redirect(e, &req, &f, NULL, &v), PR_STATUS_NULL_PARAMETER);
    assert_int_equal(pr_push_redirect(e, &req, &f, &d, NULL), PR_STATUS_NULL_PARAMETER);
    assert_int_equal(pr_push_redirect(e, &req, NULL, NULL, NULL), PR_STATUS_NULL_PARAMETER);
    assert_ptr_equal(d, D_SENTINEL);
    static const size_t null_ns[] = {1, 2, PR_MAX_BRANCHES_IN, PR_MAX_BRANCHES_IN + 1, SIZE_MAX};
    for (size_t i = 0; i < sizeof null_ns / sizeof null_ns[0]; i++) {
        pr_failure nf = failure_of(NULL, null_ns[i], NONE);
        redirect_fails(e, &req, &nf, PR_STATUS_NULL_PARAMETER);
    }
    pr_failure mf = failure_of(&br, 1, BN(NULL, 16));
    redirect_fails(e, &req, &mf, PR_STATUS_NULL_PARAMETER);
    /* The mode, as for pr_push_lookup. */
    r = req;
    r.mode = BN(NULL, 3);
    redirect_fails(e, &r, &f, PR_STATUS_NULL_PARAMETER);
    r.mode = BN(mode_not_utf8, sizeof mode_not_utf8);
    redirect_fails(e, &r, &f, PR_STATUS_INVALID_UTF8);
    r.mode = BN(huge, huge_n);
    redirect_fails(e, &r, &f, PR_STATUS_INVALID_ARGUMENT);
    for (size_t i = 0; i < sizeof bad_modes / sizeof bad_modes[0]; i++) {
        r.mode = B(bad_modes[i]);
        redirect_fails(e, &r, &f, PR_STATUS_INVALID_ARGUMENT);
    }
    free(huge);
    for (int field = 0; field < 7; field++) {
        pr_request rr = req;
        pr_bytes *fields[7] = {&rr.method, &rr.ruri, &rr.to_tag, &rr.event, &rr.content_type,
                               &rr.call_id, &rr.mode};
        *fields[field] = BN(NULL, 1);
        redirect_fails(e, &rr, &f, PR_STATUS_NULL_PARAMETER);
    }
    r = req;
    r.method = BN(not_utf8, sizeof not_utf8);
    redirect_fails(e, &r, &f, PR_STATUS_INVALID_UTF8);
    /* (NULL, len > 0) in a branch's uri and reply, first or last. */
    pr_branch bad[2] = {br, br};
    bad[0].uri = BN(NULL, 10);
    pr_failure bf = failure_of(bad, 2, NONE);
    redirect_fails(e, &req, &bf, PR_STATUS_NULL_PARAMETER);
    bad[0] = br;
    bad[1].reply = BN(NULL, 10);
    redirect_fails(e, &req, &bf, PR_STATUS_NULL_PARAMETER);
    assert_int_equal(env.lookups, 0);

    /* No branch at all, (NULL, 0) or (array, 0): nothing left. */
    dec_t dd = redirect_ok(e, &req, NULL, 0, NULL);
    assert_decision(&dd, -1, R_EXHAUSTED, 0);
    dec_free(&dd);
    dd = redirect_ok(e, &req, &br, 0, NULL);
    assert_decision(&dd, -1, R_EXHAUSTED, 0);
    dec_free(&dd);
    /* An empty mode, (NULL, 0) or (ptr, 0): the configured one (serial). */
    r = req;
    r.mode = BN("parallel", 0);
    dd = lookup_ok(e, &r, NULL);
    assert_decision(&dd, 1, R_REGISTERED, 1);
    assert_false(dd.v.parallel);
    dec_free(&dd);
    pr_engine_free(e);
}

static void test_decision_view(void **state) {
    (void)state;
    fake_env env = {0};
    /* the core's own memo (History-Info's: test_view_history_info) */
    static const char *const s[] = {"allowed_domains", "partner.example", "history_info", "0",
                                    NULL};
    pr_engine *e = make_engine(&env, s);
    pr_request req = message_req(U1, "cid-view");

    /* A lookup: rc, reason, mode, branches, an empty memo, no statistic. */
    dec_t d = lookup_ok(e, &req, "parallel");
    assert_decision(&d, 1, R_REGISTERED, 3);
    assert_true(d.v.parallel);
    assert_int_equal(d.v.memo.len, 0);
    for (int i = 0; i < PR_STAT_COUNT; i++) {
        assert_int_equal(d.v.counters[i], 0);
    }
    /* Two decisions alive at once: each view reads its own decision, and
       stays valid while another call runs on the engine. */
    buf_t r300 = reply1("300 Multiple Choices",
                        "Contact: <sip:a@partner.example>;q=0.2, <sip:b@partner.example>");
    pr_branch br = branch(T1, 300, &r300, true);
    dec_t d2 = redirect_ok(e, &req, &br, 1, "serial");
    assert_decision(&d2, 1, R_REDIRECT, 1);
    assert_false(d2.v.parallel);
    assert_true(d2.v.memo.len > 0); /* sip:a is pending */
    assert_int_equal(STAT(d2, REDIRECTS_FOLLOWED), 1);
    static const char *const want[] = {T1, T2, T3};
    for (size_t i = 0; i < 3; i++) {
        assert_bytes(branch_at(&d, i).uri, want[i]);
    }
    assert_bytes(branch_at(&d2, 0).uri, "sip:b@partner.example");
    /* Freed one first: the other is untouched. */
    buf_t m2 = memo_of(&d2);
    dec_free(&d);
    for (int k = 0; k < 3; k++) {
        dec_t tmp = lookup_ok(e, &req, "parallel");
        dec_free(&tmp);
    }
    assert_bytes(branch_at(&d2, 0).uri, "sip:b@partner.example");
    assert_bytes(d2.v.memo, m2.data);

    /* pr_decision_free keeps the freed decision of this thread for the next
       call: that call's view says its own answer, nothing of the last one
       (no branch, memo or statistic left over). */
    dec_free(&d2);
    req.ruri = B("sip:nobody@example.com");
    d = lookup_ok(e, &req, "parallel");
    assert_decision(&d, -1, R_NO_TARGET, 0);
    assert_int_equal(d.v.memo.len, 0);
    for (int i = 0; i < PR_STAT_COUNT; i++) {
        assert_int_equal(d.v.counters[i], 0);
    }
    dec_free(&d);
    req.ruri = B(U1);
    d = redirect_ok(e, &req, &br, 1, "parallel");
    assert_decision(&d, 1, R_REDIRECT, 2);
    assert_int_equal(d.v.memo.len, 0); /* nothing pending: no memo */
    dec_free(&d);
    pr_request opts = req;
    opts.method = B("OPTIONS");
    d = redirect_ok(e, &opts, &br, 1, "parallel");
    assert_decision(&d, -1, R_NOT_PUSH_METHOD, 0);
    assert_true(d.v.parallel);
    assert_int_equal(d.v.memo.len, 0);
    assert_int_equal(STAT(d, REDIRECTS_FOLLOWED), 0);
    dec_free(&d);

    buf_free(&m2);
    buf_free(&r300);
    pr_engine_free(e);
}

/* ================================================================== */
/* Tests: push_lookup                                                  */
/* ================================================================== */

static void test_lookup_serial_and_parallel(void **state) {
    (void)state;
    fake_env env = {0};
    pr_engine *e = make_engine(&env, NULL);
    pr_request req = message_req(U1, "cid-lookup");

    /* Serial: the first terminal by q, then the most recent. */
    dec_t d = lookup_ok(e, &req, NULL);
    assert_decision(&d, 1, R_REGISTERED, 1);
    assert_false(d.v.parallel);
    pr_branch_out b = branch_at(&d, 0);
    assert_bytes(b.uri, T1);
    assert_bytes(b.dst_uri, "sip:edge5071@127.0.0.1;lr"); /* the first Path hop */
    assert_bytes(b.path, "<sip:edge5071@127.0.0.1;lr>");
    assert_bytes(b.instance, "<urn:uuid:00000000-0000-0000-0000-000000000001>");
    assert_ptr_equal(b.socket, &g_sockets[1]);
    assert_int_equal(b.q, 1000);
    /* as registrar's lookup(): the contact's flags, reg-id (it has an
       instance), ruid, user agent and connection */
    assert_int_equal(b.flags, 1u << 6);
    assert_int_equal(b.reg_id, 1);
    assert_bytes(b.ruid, "uloc-t1");
    assert_bytes(b.user_agent, "Phone/1.0");
    assert_int_equal(b.conn_id, 17);
    for (int i = 0; i < PR_STAT_COUNT; i++) {
        assert_int_equal(d.v.counters[i], 0);
    }
    /* The callback got the AOR and its usrloc key (the AOR and service
       the decision keys forwardings by are checked through the store, in
       test_store_keys_of_learned_forwardings). */
    assert_string_equal(env.last_aor, U1);
    assert_string_equal(env.last_key, "u1@example.com");
    assert_int_equal(env.last_user_len, 2);
    assert_int_equal(env.add_failures, 0);
    assert_int_equal(env.bad_aors, 0);
    dec_free(&d);

    /* Parallel (mode given, case-insensitive): every terminal, in order. */
    static const char *const modes[] = {"parallel", "PARALLEL", "Parallel"};
    for (size_t m = 0; m < 3; m++) {
        d = lookup_ok(e, &req, modes[m]);
        assert_decision(&d, 1, R_REGISTERED, 3);
        assert_true(d.v.parallel);
        static const char *const want[] = {T1, T2, T3};
        const void *sock[] = {&g_sockets[1], &g_sockets[2], &g_sockets[3]};
        const int32_t q[] = {1000, 1000, 500};
        for (size_t i = 0; i < 3; i++) {
            b = branch_at(&d, i);
            assert_bytes(b.uri, want[i]);
            assert_ptr_equal(b.socket, sock[i]);
            assert_int_equal(b.q, q[i]);
        }
        assert_empty(branch_at(&d, 1).instance);
        dec_free(&d);
    }
    /* "serial" explicitly. */
    d = lookup_ok(e, &req, "SERIAL");
    assert_decision(&d, 1, R_REGISTERED, 1);
    dec_free(&d);

    /* A local AOR without contacts; a foreign one; a bad Request-URI. */
    req.ruri = B("sip:nobody@example.com");
    d = lookup_ok(e, &req, NULL);
    assert_decision(&d, -1, R_NO_TARGET, 0);
    dec_free(&d);
    int lookups = env.lookups;
    req.ruri = B("sip:u1@elsewhere.example");
    d = lookup_ok(e, &req, NULL);
    assert_decision(&d, -1, R_NO_TARGET, 0);
    dec_free(&d);
    log_reset();
    req.ruri = B("tel:+34600000000");
    d = lookup_ok(e, &req, NULL);
    assert_decision(&d, -2, R_BAD_REQUEST_URI, 0);
    assert_true(log_has(PR_LOG_LEVEL_WARN, "cid-lookup", "tel:+34600000000"));
    dec_free(&d);
    /* An AOR of the proxy without a user has no usrloc key: not asked. */
    req.ruri = B("sip:example.com");
    d = lookup_ok(e, &req, NULL);
    assert_decision(&d, -1, R_NO_TARGET, 0);
    dec_free(&d);
    assert_int_equal(env.lookups, lookups); /* none of the three was looked up */

    /* A registration whose URI is garbage is skipped, with a warning. */
    log_reset();
    req.ruri = B("sip:junk@example.com");
    d = lookup_ok(e, &req, NULL);
    assert_decision(&d, -1, R_NO_TARGET, 0);
    dec_free(&d);
    pr_engine_free(e);
}

static void test_lookup_callback_failure(void **state) {
    (void)state;
    fake_env env = {0};
    pr_engine *e = make_engine(&env, NULL);

    /* The lookup callback returns -1: rc -2, lookup failed. */
    pr_request req = message_req(AOR_BROKEN, "cid-lookup-fails");
    dec_t d = lookup_ok(e, &req, NULL);
    assert_decision(&d, -2, R_LOOKUP_FAILED, 0);
    assert_int_equal(env.lookups, 1);
    dec_free(&d);

    pr_branch br = branch("sip:x@127.0.0.1:5099", 480, NULL, true);
    d = redirect_ok(e, &req, &br, 1, NULL);
    assert_decision(&d, -2, R_LOOKUP_FAILED, 0);
    dec_free(&d);

    /* A 302 to the broken AOR: its contacts cannot be read. */
    req = message_req(U1, "cid-lookup-fails-2");
    buf_t r = reply1("302 Moved", "Contact: <" AOR_BROKEN ">");
    br = branch(T1, 302, &r, true);
    log_reset();
    d = redirect_ok(e, &req, &br, 1, NULL);
    assert_decision(&d, -2, R_LOOKUP_FAILED, 0);
    assert_true(log_has(PR_LOG_LEVEL_WARN, "cid-lookup-fails-2", "location lookup of"));
    dec_free(&d);
    buf_free(&r);
    pr_engine_free(e);

    /* An engine without callbacks: no contacts, no host is the proxy. */
    pr_config *cfg = NULL;
    assert_int_equal(pr_config_new(&cfg), PR_STATUS_OK);
    assert_int_equal(pr_engine_new(cfg, NULL, NULL, NULL, &e), PR_STATUS_OK);
    pr_config_free(cfg);
    d = lookup_ok(e, &req, NULL);
    assert_decision(&d, -1, R_NO_TARGET, 0);
    dec_free(&d);
    r = reply1("302 Moved", "Contact: <" T3 ">");
    br = branch(T1, 302, &r, true);
    d = redirect_ok(e, &req, &br, 1, NULL);
    assert_decision(&d, -2, R_ALL_TARGETS_REFUSED, 0);
    dec_free(&d);
    buf_free(&r);
    pr_engine_free(e);
}

static void test_lookup_callback_reenters_the_engine(void **state) {
    (void)state;
    fake_env env = {0};
    pr_engine *e = make_engine(&env, NULL);
    env.engine = e;
    env.nested_status = PR_STATUS_PANIC;
    pr_request req = message_req(AOR_REENTER, "cid-reenter");
    dec_t d = lookup_ok(e, &req, NULL);
    assert_int_equal(env.nested_status, PR_STATUS_OK);
    assert_int_equal(env.nested_rc, 1);
    assert_int_equal(env.nested_reason, R_REGISTERED);
    assert_int_equal(env.nested_branches, 1);
    assert_string_equal(env.nested_uri, T1);
    assert_decision(&d, 1, R_REGISTERED, 1);
    assert_bytes(branch_at(&d, 0).uri, U2T);
    dec_free(&d);
    pr_engine_free(e);
}

static void test_contacts_add_probes(void **state) {
    (void)state;
    fake_env env = {0};
    pr_engine *e = make_engine(&env, NULL);
    pr_request req = message_req(AOR_PROBE, "cid-probe");
    log_reset();
    dec_t d = lookup_ok(e, &req, "parallel");
    assert_int_equal(env.n_probe, N_PROBES);
    static const pr_status want[N_PROBES] = {
        PR_STATUS_NULL_PARAMETER,   PR_STATUS_NULL_PARAMETER,   PR_STATUS_NULL_PARAMETER,
        PR_STATUS_INVALID_ARGUMENT, PR_STATUS_INVALID_ARGUMENT, PR_STATUS_INVALID_ARGUMENT,
        PR_STATUS_NULL_PARAMETER,   PR_STATUS_NULL_PARAMETER,   PR_STATUS_NULL_PARAMETER,
        PR_STATUS_OK,               PR_STATUS_INVALID_ARGUMENT, PR_STATUS_INVALID_ARGUMENT,
        PR_STATUS_OK,
    };
    for (int i = 0; i < N_PROBES; i++) {
        if (env.probe[i] != want[i]) {
            print_error("pr_contacts_add probe %d: got %u, want %u\n", i, env.probe[i],
                        want[i]);
        }
        assert_int_equal(env.probe[i], want[i]);
    }
    /* Only the good contact survives (the non-UTF-8 one is not a SIP URI). */
    assert_decision(&d, 1, R_REGISTERED, 1);
    pr_branch_out b = branch_at(&d, 0);
    assert_bytes(b.uri, "sip:probe-ok@127.0.0.1:5090");
    assert_empty(b.dst_uri);
    assert_empty(b.path);
    assert_empty(b.instance);
    assert_ptr_equal(b.socket, &g_sockets[7]);
    assert_int_equal(b.q, -1);
    dec_free(&d);
    pr_engine_free(e);
}

/* SPEC §3: a contact whose registered methods exclude the request's is not
 * a target (a failover); when none of the AOR's accepts it, push_lookup
 * returns -3 (registrar's lookup() -2: the cfg answers 405). The fields of
 * the branch that is built come from its contact. */
static void test_lookup_contact_methods(void **state) {
    (void)state;
    fake_env env = {0};
    pr_engine *e = make_engine(&env, NULL);

    pr_request req = message_req("sip:nomsg@example.com", "cid-nomsg");
    dec_t d = lookup_ok(e, &req, NULL);
    assert_decision(&d, -3, R_METHOD_NOT_ACCEPTED, 0);
    assert_int_equal(STAT(d, FAILOVERS), 1);
    dec_free(&d);
    /* NOTIFY is accepted. */
    req.method = B("NOTIFY");
    req.method_bit = KM_METHOD_NOTIFY;
    req.event = B("ua-profile");
    d = lookup_ok(e, &req, NULL);
    assert_decision(&d, 1, R_REGISTERED, 1);
    assert_int_equal(STAT(d, FAILOVERS), 0);
    dec_free(&d);
    /* An unknown method bit filters nothing. */
    req = message_req("sip:nomsg@example.com", "cid-nomsg0");
    req.method_bit = 0;
    d = lookup_ok(e, &req, NULL);
    assert_decision(&d, 1, R_REGISTERED, 1);
    dec_free(&d);

    /* mixed: the first by q takes NOTIFY only; MESSAGE goes to the other,
       with its received address, ruid and no reg-id (no instance). */
    req = message_req("sip:mixed@example.com", "cid-mixed");
    d = lookup_ok(e, &req, NULL);
    assert_decision(&d, 1, R_REGISTERED, 1);
    pr_branch_out b = branch_at(&d, 0);
    assert_bytes(b.uri, "sip:mixed2@127.0.0.1:5095");
    assert_bytes(b.dst_uri, "sip:192.0.2.9:4000");
    assert_empty(b.path);
    assert_bytes(b.ruid, "uloc-m2");
    assert_empty(b.user_agent);
    assert_int_equal(b.reg_id, 0);
    assert_int_equal(b.flags, 0);
    assert_int_equal(STAT(d, FAILOVERS), 1);
    dec_free(&d);
    pr_engine_free(e);
}

/* Never a target twice in one round: one contact registered twice is one
 * branch, in parallel mode too. */
static void test_lookup_duplicate_registration(void **state) {
    (void)state;
    fake_env env = {0};
    pr_engine *e = make_engine(&env, NULL);
    pr_request req = message_req("sip:dup@example.com", "cid-dup");
    dec_t d = lookup_ok(e, &req, "parallel");
    assert_int_equal(env.add_failures, 0);
    assert_decision(&d, 1, R_REGISTERED, 1);
    assert_bytes(branch_at(&d, 0).uri, "sip:dup@127.0.0.1:5091");
    dec_free(&d);
    pr_engine_free(e);
}

/* The lookup callback gets the AOR in usrloc's key form, so that C parses
 * nothing: the user unescaped, the whole key in lower case (registrar's
 * extract_aor() with its defaults), and the user's length. Spellings of the
 * same AOR reach the same record of a table keyed that way. */
static void test_lookup_usrloc_key(void **state) {
    (void)state;
    fake_env env = {0};
    pr_engine *e = make_engine(&env, NULL);
    static const struct {
        const char *ruri, *uri, *key;
        size_t user_len;
    } rows[] = {
        {U1, U1, "u1@example.com", 2},
        {"sip:U1@Example.COM", "sip:U1@example.com", "u1@example.com", 2},
        {"sip:%75%31@example.com", "sip:%75%31@example.com", "u1@example.com", 2},
        {"sip:%55%31@EXAMPLE.com:5060;transport=tcp?X=1", "sip:%55%31@example.com",
         "u1@example.com", 2},
        {"sips:u1@example.com", "sips:u1@example.com", "u1@example.com", 2},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        pr_request req = message_req(rows[i].ruri, "cid-key");
        int before = env.lookups;
        dec_t d = lookup_ok(e, &req, "parallel");
        assert_int_equal(env.lookups, before + 1);
        if (strcmp(env.last_aor, rows[i].uri) != 0 || strcmp(env.last_key, rows[i].key) != 0 ||
            env.last_user_len != rows[i].user_len) {
            print_error("%s: uri \"%s\", key \"%s\", user_len %zu\n", rows[i].ruri,
                        env.last_aor, env.last_key, env.last_user_len);
            fail();
        }
        /* u1's record: its three terminals (a sips: request refuses them:
           RFC 3261 16.7). */
        if (strncmp(rows[i].ruri, "sips:", 5) == 0) {
            assert_decision(&d, -1, R_NO_TARGET, 0);
        } else {
            assert_decision(&d, 1, R_REGISTERED, 3);
            assert_bytes(branch_at(&d, 0).uri, T1);
        }
        dec_free(&d);
    }
    /* key[..user_len] is the user, even when the unescaped user holds an
       '@' (a usrloc without use_domain keys the record by it alone). */
    pr_request req = message_req("sip:a%40b@Example.com", "cid-key-at");
    dec_t d = lookup_ok(e, &req, NULL);
    assert_decision(&d, -1, R_NO_TARGET, 0);
    dec_free(&d);
    assert_string_equal(env.last_key, "a@b@example.com");
    assert_int_equal(env.last_user_len, 3);
    assert_int_equal(env.bad_aors, 0);
    pr_engine_free(e);
}

static void test_lookup_more_than_1024_contacts(void **state) {
    (void)state;
    fake_env env = {0};
    pr_engine *e = make_engine(&env, NULL);
    pr_request req = message_req(AOR_MANY, "cid-many");
    log_reset();
    dec_t d = lookup_ok(e, &req, "parallel");
    assert_int_equal(env.add_failures, 0); /* extra contacts are ignored, not refused */
    assert_decision(&d, 1, R_REGISTERED, 8);
    assert_true(log_has(PR_LOG_LEVEL_WARN, AOR_MANY, "more than 1024 contacts"));
    /* Best q first: q 1000 is k = 1000 (k % 1001), kept among the first 1024. */
    assert_bytes(branch_at(&d, 0).uri, "sip:m1000@127.0.0.1:8000");
    assert_int_equal(branch_at(&d, 0).q, 1000);
    dec_free(&d);
    pr_engine_free(e);
}

static void test_lookup_applies_stored_forwarding(void **state) {
    store_fixture *fx = *state;
    fake_env env = {0};
    pr_engine *e = store_engine(&env, fx->path);
    pr_request req = message_req(U1, "cid-stored");

    /* Permanent (a 301), to another terminal of u1: applied with its
       registration's next hop, path and socket, and the q of the 301. */
    learn_ok(e, &req, "301 Moved Permanently", "Contact: <" T3 ">;q=0.7");
    dec_t d = lookup_ok(e, &req, NULL);
    assert_decision(&d, 1, R_STORED_FORWARDING, 1);
    pr_branch_out b = branch_at(&d, 0);
    assert_bytes(b.uri, T3);
    assert_bytes(b.dst_uri, "sip:edge5073@127.0.0.1;lr"); /* the first Path hop */
    assert_bytes(b.path, "<sip:edge5073@127.0.0.1;lr>");
    assert_ptr_equal(b.socket, &g_sockets[3]);
    assert_int_equal(b.q, 700);
    assert_int_equal(STAT(d, FORWARDINGS_APPLIED), 1);
    dec_free(&d);

    /* Temporary (a 302 with an expiry), to a local AOR (u2): it replaces
       the permanent one, and is resolved to u2's contacts. */
    learn_ok(e, &req, "302 Moved Temporarily", "Contact: <" U2 ">;expires=3600");
    pr_entries *l = list_ok(e, NULL);
    assert_int_equal(pr_entries_count(l), 1);
    assert_bytes(entry_at(l, 0).kind, "temporary");
    pr_entries_free(l);
    d = lookup_ok(e, &req, NULL);
    assert_decision(&d, 1, R_STORED_FORWARDING, 1);
    b = branch_at(&d, 0);
    assert_bytes(b.uri, U2T);
    assert_ptr_equal(b.socket, &g_sockets[5]);
    assert_int_equal(STAT(d, FORWARDINGS_APPLIED), 1);
    dec_free(&d);
    assert_int_equal(rpc_remove_ok(e, U1, NULL), 1);
    /* An expired temporary entry is not applied: see
       test_store_e2e_302_temporary_expires; a provisioned one is not
       applied at lookup while the AOR has terminals: see
       test_store_e2e_provisioned. An entry without any target cannot be
       stored (the store refuses it), so it can no longer reach the engine. */

    /* A stored target that today's policy refuses: learned by an engine
       (another process) that allowed its domain, read by one that does
       not. The terminals, the refusal counted, nothing applied; the entry
       stays. */
    static const char *const evil_ok[] = {"allowed_domains", "attacker.example", NULL};
    pr_engine *ea = store_engine_with(&env, fx->path, evil_ok);
    learn_ok(ea, &req, "301 Moved Permanently", "Contact: <sip:evil@attacker.example>");
    pr_engine_free(ea);
    d = lookup_ok(e, &req, NULL);
    assert_decision(&d, 1, R_REGISTERED, 1);
    assert_bytes(branch_at(&d, 0).uri, T1);
    assert_int_equal(STAT(d, TARGETS_REFUSED), 1);
    assert_int_equal(STAT(d, FORWARDINGS_APPLIED), 0);
    dec_free(&d);
    assert_int_equal(list_count(e, U1), 1);
    pr_engine_free(e);
}

static void test_untouched_requests_and_keys(void **state) {
    store_fixture *fx = *state;
    fake_env env = {0};
    pr_engine *e = store_engine(&env, fx->path);
    buf_t r301 = reply1("301 Moved Permanently", "Contact: <" T3 ">");
    pr_branch br301 = branch(T1, 301, &r301, true);

    /* Not a PUSH method: untouched, and a 301 teaches nothing. */
    pr_request req = message_req(U1, "cid-untouched");
    req.method = B("OPTIONS");
    dec_t d = lookup_ok(e, &req, NULL);
    assert_decision(&d, -1, R_NOT_PUSH_METHOD, 0);
    dec_free(&d);
    d = redirect_ok(e, &req, &br301, 1, NULL);
    assert_decision(&d, -1, R_NOT_PUSH_METHOD, 0);
    assert_int_equal(STAT(d, FORWARDINGS_LEARNED), 0);
    dec_free(&d);

    /* In-dialog (To-tag). */
    req = message_req(U1, "cid-untouched");
    req.to_tag = B("abc123");
    d = lookup_ok(e, &req, NULL);
    assert_decision(&d, -1, R_IN_DIALOG, 0);
    dec_free(&d);
    pr_branch br = branch(T1, 480, NULL, true);
    d = redirect_ok(e, &req, &br, 1, NULL);
    assert_decision(&d, -1, R_IN_DIALOG, 0);
    dec_free(&d);
    d = redirect_ok(e, &req, &br301, 1, NULL);
    assert_decision(&d, -1, R_IN_DIALOG, 0);
    dec_free(&d);

    /* A Request-URI that is not a SIP URI: no key, nothing learned. */
    req = message_req("tel:+34600000000", "cid-untouched-tel");
    d = redirect_ok(e, &req, &br301, 1, NULL);
    assert_decision(&d, -2, R_BAD_REQUEST_URI, 0);
    dec_free(&d);
    assert_int_equal(store_count(e), 0);

    /* The key of a forwarding, as a learned entry shows it: the AOR
       (sip:user@host, host lower-cased, no port or parameters) and the
       service (MESSAGE:type, parameters dropped). */
    req = message_req(U1, "cid-key");
    d = redirect_ok(e, &req, &br301, 1, NULL);
    assert_decision(&d, 1, R_REDIRECT, 1);
    dec_free(&d);
    pr_entries *l = list_ok(e, NULL);
    assert_int_equal(pr_entries_count(l), 1);
    assert_bytes(entry_at(l, 0).aor, U1);
    assert_bytes(entry_at(l, 0).service, "MESSAGE:text/plain");
    pr_entries_free(l);
    assert_int_equal(rpc_remove_ok(e, U1, NULL), 1);

    /* NOTIFY: the service is the event package; the host is lower-cased. */
    memset(&req, 0, sizeof req);
    req.method = B("notify");
    req.ruri = B("sip:u1@EXAMPLE.com:5060;transport=tcp");
    req.event = B("ua-profile;id=3");
    req.content_type = B("text/plain");
    d = lookup_ok(e, &req, NULL);
    assert_decision(&d, 1, R_REGISTERED, 1);
    dec_free(&d);
    d = redirect_ok(e, &req, &br301, 1, NULL);
    assert_decision(&d, 1, R_REDIRECT, 1);
    dec_free(&d);
    l = list_ok(e, NULL);
    assert_int_equal(pr_entries_count(l), 1);
    assert_bytes(entry_at(l, 0).aor, U1);
    assert_bytes(entry_at(l, 0).service, "NOTIFY:ua-profile");
    pr_entries_free(l);
    assert_int_equal(rpc_remove_ok(e, U1, NULL), 1);

    /* A very long Content-Type: the service key is capped (128 bytes). */
    char ct[600];
    memset(ct, 'a', sizeof ct - 1);
    ct[sizeof ct - 1] = '\0';
    memcpy(ct, "text/", 5);
    req = message_req(U1, "cid-key");
    req.content_type = B(ct);
    d = redirect_ok(e, &req, &br301, 1, NULL);
    assert_decision(&d, 1, R_REDIRECT, 1);
    dec_free(&d);
    l = list_ok(e, NULL);
    assert_int_equal(pr_entries_count(l), 1);
    pr_entry en = entry_at(l, 0);
    assert_int_equal(en.service.len, SERVICE_KEY_MAX);
    assert_memory_equal(en.service.ptr, "MESSAGE:text/aaa", 16);
    pr_entries_free(l);
    /* ... and the same request finds it again. */
    d = lookup_ok(e, &req, NULL);
    assert_decision(&d, 1, R_STORED_FORWARDING, 1);
    dec_free(&d);
    assert_int_equal(rpc_remove_ok(e, U1, NULL), 1);
    buf_free(&r301);
    pr_engine_free(e);
}

/* ================================================================== */
/* Tests: push_redirect flows                                          */
/* ================================================================== */

static void test_f1_redirect_to_another_registered_terminal(void **state) {
    store_fixture *fx = *state;
    fake_env env = {0};
    pr_engine *e = store_engine(&env, fx->path);
    pr_request req = message_req(U1, "cid-f1");
    buf_t r = reply1("302 Moved Temporarily", "Contact: <" T3 ">");
    pr_branch br = branch(T1, 302, &r, true);

    dec_t d = redirect_ok(e, &req, &br, 1, NULL);
    assert_decision(&d, 1, R_REDIRECT, 1);
    pr_branch_out b = branch_at(&d, 0);
    /* uri, dst_uri, path, socket come back from t3's registration. */
    assert_bytes(b.uri, T3);
    assert_bytes(b.dst_uri, "sip:edge5073@127.0.0.1;lr"); /* the first Path hop */
    assert_bytes(b.path, "<sip:edge5073@127.0.0.1;lr>");
    assert_empty(b.instance);
    assert_ptr_equal(b.socket, &g_sockets[3]);
    assert_int_equal(b.q, 500);
    assert_int_equal(STAT(d, REDIRECTS_FOLLOWED), 1);
    assert_int_equal(STAT(d, TARGETS_REFUSED), 0);
    /* A 302 without expiry is for this request only: nothing learned,
       nothing in the store. */
    assert_int_equal(STAT(d, FORWARDINGS_LEARNED), 0);
    assert_int_equal(store_count(e), 0);
    /* The borrowed strings stay valid until the decision is freed: copy-free
       re-read after another call on the engine. */
    dec_t d2 = redirect_ok(e, &req, &br, 1, NULL);
    assert_bytes(b.uri, T3);
    assert_bytes(branch_at(&d, 0).uri, T3);
    dec_free(&d2);
    dec_free(&d);

    /* A 302 to another registered AOR of the proxy (u2). */
    buf_free(&r);
    r = reply1("302 Moved", "Contact: \"U Two\" <sip:u2@EXAMPLE.com>;q=0.3");
    br = branch(T1, 302, &r, true);
    d = redirect_ok(e, &req, &br, 1, NULL);
    assert_decision(&d, 1, R_REDIRECT, 1);
    b = branch_at(&d, 0);
    assert_bytes(b.uri, U2T);
    assert_bytes(b.dst_uri, "sip:127.0.0.1:5082;received");
    assert_empty(b.path);
    assert_ptr_equal(b.socket, &g_sockets[5]);
    assert_string_equal(env.last_aor, U2);
    assert_string_equal(env.last_key, "u2@example.com");
    dec_free(&d);
    assert_int_equal(store_count(e), 0);
    buf_free(&r);
    pr_engine_free(e);
}

static void test_f2_failover_to_the_next_terminal(void **state) {
    (void)state;
    fake_env env = {0};
    pr_engine *e = make_engine(&env, NULL);
    pr_request req = message_req(U1, "cid-f2");
    buf_t r = reply1("480 Temporarily Unavailable", NULL);
    pr_branch br = branch(T1, 480, &r, true);

    dec_t d = redirect_ok(e, &req, &br, 1, NULL);
    assert_decision(&d, 1, R_FAILOVER, 1);
    pr_branch_out b = branch_at(&d, 0);
    assert_bytes(b.uri, T2);
    assert_bytes(b.dst_uri, "sip:edge5072@127.0.0.1;lr"); /* the first Path hop */
    assert_bytes(b.path, "<sip:edge5072@127.0.0.1;lr>");
    assert_ptr_equal(b.socket, &g_sockets[2]);
    assert_int_equal(STAT(d, FAILOVERS), 1);
    assert_int_equal(STAT(d, REDIRECTS_FOLLOWED), 0);
    dec_free(&d);

    /* Parallel (F3): every remaining terminal. */
    d = redirect_ok(e, &req, &br, 1, "parallel");
    assert_decision(&d, 1, R_FAILOVER, 2);
    assert_bytes(branch_at(&d, 0).uri, T2);
    assert_bytes(branch_at(&d, 1).uri, T3);
    dec_free(&d);

    /* A timeout (local 408, no reply bytes). */
    br = branch(T1, 408, NULL, true);
    d = redirect_ok(e, &req, &br, 1, NULL);
    assert_decision(&d, 1, R_FAILOVER, 1);
    assert_bytes(branch_at(&d, 0).uri, T2);
    dec_free(&d);

    /* Serial walk: t1 failed earlier, t2 now: t3; then nothing left. */
    pr_branch two[3] = {branch(T1, 486, NULL, false), branch(T2, 503, NULL, true),
                        branch(T3, 480, NULL, false)};
    d = redirect_ok(e, &req, two, 2, NULL);
    assert_decision(&d, 1, R_FAILOVER, 1);
    assert_bytes(branch_at(&d, 0).uri, T3);
    dec_free(&d);
    two[1].current_round = false;
    two[2].current_round = true;
    d = redirect_ok(e, &req, two, 3, NULL);
    assert_decision(&d, -1, R_EXHAUSTED, 0);
    dec_free(&d);

    /* 401/407: no failover; 305/380: never followed; 200: not a redirect. */
    br = branch(T1, 401, NULL, true);
    d = redirect_ok(e, &req, &br, 1, NULL);
    assert_decision(&d, -1, R_AUTH_CHALLENGE, 0);
    dec_free(&d);
    buf_t r305 = reply1("305 Use Proxy", "Contact: <" T3 ">");
    br = branch(T1, 305, &r305, true);
    d = redirect_ok(e, &req, &br, 1, NULL);
    assert_decision(&d, -1, R_NEVER_FOLLOWED, 0);
    dec_free(&d);
    buf_free(&r305);
    br = branch(T1, 200, NULL, true);
    d = redirect_ok(e, &req, &br, 1, NULL);
    assert_decision(&d, -1, R_NOT_REDIRECT, 0);
    dec_free(&d);
    /* Status 0 (no final reply yet) is accepted. */
    br = branch(T1, 0, NULL, true);
    d = redirect_ok(e, &req, &br, 1, NULL);
    assert_decision(&d, -1, R_NOT_REDIRECT, 0);
    dec_free(&d);

    buf_free(&r);
    pr_engine_free(e);
}

static void test_6xx_stops_everything(void **state) {
    store_fixture *fx = *state;
    fake_env env = {0};
    pr_engine *e = store_engine(&env, fx->path);
    pr_request req = message_req(U1, "cid-6xx");
    static const char *const lines[] = {"600 Busy Everywhere", "603 Decline",
                                        "604 Does Not Exist Anywhere", "606 Not Acceptable"};
    static const uint32_t codes[] = {600, 603, 604, 606};
    for (size_t i = 0; i < 4; i++) {
        buf_t r = reply1(lines[i], "Contact: <" T3 ">");
        pr_branch br = branch(T1, codes[i], &r, true);
        dec_t d = redirect_ok(e, &req, &br, 1, NULL);
        assert_decision(&d, -1, R_GLOBAL_FAILURE, 0);
        for (int k = 0; k < PR_STAT_COUNT; k++) {
            assert_int_equal(d.v.counters[k], 0);
        }
        dec_free(&d);
        /* Also when a 3xx of the same round would have been followed, and
           learned (a 301): nothing is, and nothing is stored. */
        buf_t r3 = reply1("301 Moved Permanently", "Contact: <" T3 ">");
        pr_branch both[2] = {branch(T2, 301, &r3, true), branch(T1, codes[i], &r, true)};
        d = redirect_ok(e, &req, both, 2, "parallel");
        assert_decision(&d, -1, R_GLOBAL_FAILURE, 0);
        assert_int_equal(STAT(d, FORWARDINGS_LEARNED), 0);
        dec_free(&d);
        assert_int_equal(store_count(e), 0);
        buf_free(&r3);
        buf_free(&r);
    }
    pr_engine_free(e);
}

static void test_foreign_domain_refused(void **state) {
    store_fixture *fx = *state;
    fake_env env = {0};
    pr_engine *e = store_engine(&env, fx->path); /* allowed_domains: partner.example */
    pr_request req = message_req(U1, "cid-foreign");
    buf_t r = reply1("302 Moved", "Contact: <sip:evil@attacker.example>");
    pr_branch br = branch(T1, 302, &r, true);

    log_reset();
    dec_t d = redirect_ok(e, &req, &br, 1, NULL);
    assert_decision(&d, -2, R_ALL_TARGETS_REFUSED, 0);
    assert_int_equal(STAT(d, TARGETS_REFUSED), 1);
    assert_int_equal(STAT(d, REDIRECTS_FOLLOWED), 0);
    assert_true(log_has(PR_LOG_LEVEL_WARN, "cid-foreign", "sip:evil@attacker.example"));
    dec_free(&d);

    /* The same as a 301: never stored. */
    buf_t r301 = reply1("301 Moved Permanently", "Contact: <sip:evil@attacker.example>");
    br = branch(T1, 301, &r301, true);
    d = redirect_ok(e, &req, &br, 1, NULL);
    assert_decision(&d, -2, R_ALL_TARGETS_REFUSED, 0);
    assert_int_equal(STAT(d, FORWARDINGS_LEARNED), 0);
    dec_free(&d);
    assert_int_equal(store_count(e), 0);
    buf_free(&r301);

    /* Non-SIP schemes and the proxy itself are refused too. */
    buf_t r2 = reply1("300 Multiple",
                      "Contact: <tel:+34600000000>, <http://evil.example/>, <sip:example.com>");
    br = branch(T1, 300, &r2, true);
    d = redirect_ok(e, &req, &br, 1, NULL);
    assert_decision(&d, -2, R_ALL_TARGETS_REFUSED, 0);
    assert_int_equal(STAT(d, TARGETS_REFUSED), 3);
    dec_free(&d);
    buf_free(&r2);
    pr_engine_free(e);

    /* A sips: request is never redirected to a sip: target (RFC 3261 16.7). */
    static const char *const s2[] = {"allowed_domains", "partner.example", NULL};
    pr_engine *e2 = make_engine(&env, s2);
    pr_request sreq = message_req("sips:u1@example.com", "cid-sips");
    buf_t rs = reply1("302 Moved", "Contact: <sip:x@partner.example>, <sips:y@partner.example>");
    br = branch("sips:t1@127.0.0.1:5071", 302, &rs, true);
    d = redirect_ok(e2, &sreq, &br, 1, "parallel");
    assert_decision(&d, 1, R_REDIRECT, 1);
    assert_bytes(branch_at(&d, 0).uri, "sips:y@partner.example");
    assert_int_equal(STAT(d, TARGETS_REFUSED), 1);
    dec_free(&d);
    buf_free(&rs);
    pr_engine_free(e2);

    /* allowed_domains admits it: sent as is, no next hop, no socket. */
    static const char *const s[] = {"allowed_domains", "attacker.example", NULL};
    e = make_engine(&env, s);
    br = branch(T1, 302, &r, true);
    d = redirect_ok(e, &req, &br, 1, NULL);
    assert_decision(&d, 1, R_REDIRECT, 1);
    pr_branch_out b = branch_at(&d, 0);
    assert_bytes(b.uri, "sip:evil@attacker.example");
    assert_empty(b.dst_uri);
    assert_empty(b.path);
    assert_null(b.socket);
    assert_int_equal(b.q, -1);
    dec_free(&d);
    buf_free(&r);
    pr_engine_free(e);
}

static void test_301_learns_a_forwarding(void **state) {
    store_fixture *fx = *state;
    fake_env env = {0};
    pr_engine *e = store_engine(&env, fx->path);
    pr_request req = message_req(U1, "cid-301");
    buf_t r = reply1("301 Moved Permanently", "Contact: <" T3 ">;q=0.8");
    pr_branch br = branch(T1, 301, &r, true);
    int64_t t0 = wall_seconds();

    dec_t d = redirect_ok(e, &req, &br, 1, NULL);
    assert_decision(&d, 1, R_REDIRECT, 1);
    assert_int_equal(STAT(d, FORWARDINGS_LEARNED), 1);
    assert_int_equal(STAT(d, REDIRECTS_FOLLOWED), 1);
    assert_int_equal(branch_at(&d, 0).q, 800);
    /* In the store when the call returns, before the decision is freed:
       permanent, no expiry (a 301 without one), for the request's AOR and
       service, with its target, q, and where it was learned. */
    pr_entries *l = list_ok(e, NULL);
    assert_int_equal(pr_entries_count(l), 1);
    pr_entry en = entry_at(l, 0);
    assert_entry(&en, U1, "MESSAGE:text/plain", "permanent", T3 ";q=0.800", T1, 301);
    assert_int_equal(en.expires_at, -1);
    assert_int_equal(en.expires_in, -1);
    assert_true(en.created_at >= t0 && en.created_at <= wall_seconds());
    pr_entries_free(l);
    dec_free(&d);

    /* Applied at lookup (a provisioned entry would not be), with its target
       and q; it outlives the decision that learned it. */
    d = lookup_ok(e, &req, NULL);
    assert_decision(&d, 1, R_STORED_FORWARDING, 1);
    pr_branch_out b = branch_at(&d, 0);
    assert_bytes(b.uri, T3);
    assert_int_equal(b.q, 800);
    assert_ptr_equal(b.socket, &g_sockets[3]);
    assert_int_equal(STAT(d, FORWARDINGS_APPLIED), 1);
    assert_int_equal(STAT(d, FORWARDINGS_LEARNED), 0);
    dec_free(&d);

    /* 301 with an expiry: permanent until then (3600 s); it replaces the
       entry. */
    buf_free(&r);
    r = reply1("301 Moved Permanently", "Contact: <" T3 ">;expires=3600");
    br = branch(T1, 301, &r, true);
    int64_t ta = wall_seconds();
    d = redirect_ok(e, &req, &br, 1, NULL);
    assert_int_equal(STAT(d, FORWARDINGS_LEARNED), 1);
    dec_free(&d);
    l = list_ok(e, NULL);
    int64_t tb = wall_seconds();
    assert_int_equal(pr_entries_count(l), 1);
    en = entry_at(l, 0);
    assert_entry(&en, U1, "MESSAGE:text/plain", "permanent", T3, T1, 301);
    assert_int_equal(en.expires_at, en.created_at + 3600);
    assert_true(en.expires_in >= 3600 - (tb - ta) && en.expires_in <= 3600);
    pr_entries_free(l);

    /* An expiry beyond 32 bits saturates at 2^32-1 (RFC 3261 §20.19). */
    buf_free(&r);
    r = reply1("301 Moved Permanently", "Contact: <" T3 ">;expires=99999999999999");
    br = branch(T1, 301, &r, true);
    d = redirect_ok(e, &req, &br, 1, NULL);
    assert_int_equal(STAT(d, FORWARDINGS_LEARNED), 1);
    dec_free(&d);
    l = list_ok(e, NULL);
    en = entry_at(l, 0);
    assert_int_equal(en.expires_at, en.created_at + 4294967295LL);
    assert_true(en.expires_in > 4294967295LL - 60 && en.expires_in <= 4294967295LL);
    pr_entries_free(l);

    /* 302 with an Expires header: temporary (60 s), applied at lookup. */
    buf_free(&r);
    const char *h[] = {"Contact: <" T3 ">", "Expires: 60", NULL};
    r = reply_v("302 Moved Temporarily", h);
    br = branch(T1, 302, &r, true);
    d = redirect_ok(e, &req, &br, 1, NULL);
    assert_int_equal(STAT(d, FORWARDINGS_LEARNED), 1);
    dec_free(&d);
    l = list_ok(e, NULL);
    en = entry_at(l, 0);
    assert_entry(&en, U1, "MESSAGE:text/plain", "temporary", T3, T1, 302);
    assert_int_equal(en.expires_at, en.created_at + 60);
    assert_true(en.expires_in > 0 && en.expires_in <= 60);
    pr_entries_free(l);
    d = lookup_ok(e, &req, NULL);
    assert_decision(&d, 1, R_STORED_FORWARDING, 1);
    dec_free(&d);

    /* 302 with expires=0: nothing learned, the entry in place unchanged. */
    buf_t before = store_dump(e);
    buf_free(&r);
    r = reply1("302 Moved", "Contact: <" T3 ">;expires=0");
    br = branch(T1, 302, &r, true);
    d = redirect_ok(e, &req, &br, 1, NULL);
    assert_decision(&d, 1, R_REDIRECT, 1);
    assert_int_equal(STAT(d, FORWARDINGS_LEARNED), 0);
    dec_free(&d);
    buf_t after = store_dump(e);
    assert_string_equal(after.data, before.data);
    buf_free(&after);
    buf_free(&before);
    /* ... and nothing at all once the entry is gone. */
    assert_int_equal(rpc_remove_ok(e, U1, NULL), 1);
    d = redirect_ok(e, &req, &br, 1, NULL);
    assert_int_equal(STAT(d, FORWARDINGS_LEARNED), 0);
    dec_free(&d);
    assert_int_equal(store_count(e), 0);
    buf_free(&r);
    pr_engine_free(e);
}

static void test_stored_forwardings_in_redirect(void **state) {
    store_fixture *fx = *state;
    fake_env env = {0};
    pr_engine *e = store_engine(&env, fx->path);
    pr_request req = message_req(U1, "cid-stored-redirect");

    /* F5: a 3xx without Contact + a provisioned forwarding (to u2). */
    rpc_set_ok(e, U1, U2, NULL, NULL);
    buf_t before = store_dump(e);
    buf_t r = reply1("302 Moved", NULL);
    pr_branch br = branch(T1, 302, &r, true);
    dec_t d = redirect_ok(e, &req, &br, 1, NULL);
    assert_decision(&d, 1, R_PROVISIONED, 1);
    assert_bytes(branch_at(&d, 0).uri, U2T);
    assert_int_equal(STAT(d, FORWARDINGS_APPLIED), 1);
    dec_free(&d);
    /* Not for a plain failure. */
    pr_branch br480 = branch(T1, 480, NULL, true);
    d = redirect_ok(e, &req, &br480, 1, NULL);
    assert_decision(&d, 1, R_FAILOVER, 1);
    assert_int_equal(STAT(d, FORWARDINGS_APPLIED), 0);
    dec_free(&d);
    /* Applying it leaves it as it was. */
    buf_t after = store_dump(e);
    assert_string_equal(after.data, before.data);
    buf_free(&after);
    buf_free(&before);
    assert_int_equal(rpc_remove_ok(e, U1, NULL), 1);

    /* F7: the target of a temporary entry failed: the entry is forgotten,
       nothing learned instead, and the next terminal tried. */
    learn_ok(e, &req, "302 Moved Temporarily", "Contact: <" T3 ">;expires=3600");
    assert_int_equal(store_count(e), 1);
    pr_branch br3 = branch(T3, 480, NULL, true);
    d = redirect_ok(e, &req, &br3, 1, NULL);
    assert_decision(&d, 1, R_FAILOVER, 1);
    assert_int_equal(STAT(d, FORWARDINGS_LEARNED), 0);
    dec_free(&d);
    assert_int_equal(store_count(e), 0);
    buf_free(&r);
    pr_engine_free(e);
}

static void test_logger(void **state) {
    (void)state;
    fake_env env = {0};
    pr_engine *e = make_engine(&env, NULL);
    pr_request req = message_req(U1, "cid-malformed-42");
    const char *h[] = {"Contact: <sip:broken@, <:>", "Contact: <" T3 ">", NULL};
    buf_t r = reply_v("302 Moved", h);
    pr_branch br = branch(T1, 302, &r, true);

    /* WARN for the malformed Contact, naming the Call-ID; DEBUG summary. */
    log_reset();
    dec_t d = redirect_ok(e, &req, &br, 1, NULL);
    assert_decision(&d, 1, R_REDIRECT, 1);
    assert_bytes(branch_at(&d, 0).uri, T3);
    assert_true(STAT(d, TARGETS_REFUSED) >= 1);
    dec_free(&d);
    assert_true(g_log.count[PR_LOG_LEVEL_WARN] >= 1);
    assert_true(log_has(PR_LOG_LEVEL_WARN, "Call-ID cid-malformed-42", "malformed Contact"));
    assert_true(log_has(PR_LOG_LEVEL_DEBUG, "Call-ID cid-malformed-42", "rc=1"));
    assert_int_equal(g_log.bad_level, 0);
    assert_int_equal(g_log.count[PR_LOG_LEVEL_ERROR], 0);

    /* max_level ERROR: no WARN, no DEBUG delivered. */
    pr_set_logger(capture_log, &g_log, PR_LOG_LEVEL_ERROR);
    log_reset();
    d = redirect_ok(e, &req, &br, 1, NULL);
    dec_free(&d);
    assert_int_equal(g_log.total, 0);

    /* max_level WARN: the WARN, no DEBUG. */
    pr_set_logger(capture_log, &g_log, PR_LOG_LEVEL_WARN);
    d = redirect_ok(e, &req, &br, 1, NULL);
    dec_free(&d);
    assert_true(g_log.count[PR_LOG_LEVEL_WARN] >= 1);
    assert_int_equal(g_log.count[PR_LOG_LEVEL_DEBUG], 0);

    /* NULL callback: messages dropped, no crash. */
    pr_set_logger(NULL, &g_log, PR_LOG_LEVEL_DEBUG);
    log_reset();
    d = redirect_ok(e, &req, &br, 1, NULL);
    dec_free(&d);
    assert_int_equal(g_log.total, 0);

    /* A long Call-ID is cut at 128 bytes; a non-UTF-8 one is logged lossily. */
    pr_set_logger(capture_log, &g_log, PR_LOG_LEVEL_DEBUG);
    char cid[300];
    memset(cid, 'x', sizeof cid - 1);
    cid[sizeof cid - 1] = '\0';
    req.call_id = B(cid);
    log_reset();
    d = redirect_ok(e, &req, &br, 1, NULL);
    dec_free(&d);
    char want128[140], want129[140];
    snprintf(want128, sizeof want128, "Call-ID %.128s:", cid);
    snprintf(want129, sizeof want129, "Call-ID %.129s", cid);
    assert_true(log_has(PR_LOG_LEVEL_WARN, want128, "malformed"));
    assert_false(log_has(PR_LOG_LEVEL_WARN, want129, NULL));
    static const uint8_t bad_cid[] = {'c', 'i', 'd', 0xff, 0xfe, '!'};
    req.call_id = BN(bad_cid, sizeof bad_cid);
    log_reset();
    d = redirect_ok(e, &req, &br, 1, NULL);
    dec_free(&d);
    assert_true(log_has(PR_LOG_LEVEL_WARN, "Call-ID cid\xef\xbf\xbd\xef\xbf\xbd!", "malformed"));
    /* No Call-ID at all. */
    req.call_id = NONE;
    d = redirect_ok(e, &req, &br, 1, NULL);
    dec_free(&d);

    buf_free(&r);
    pr_engine_free(e);
}

/* ================================================================== */
/* Tests: the forwarding store (SQLite) and the RPC functions          */
/* ================================================================== */

/* ------------------------------------------------------------------ */

static void test_store_check_config(void **state) {
    store_fixture *fx = *state;
    char p1[700], p2[700];

    assert_int_equal(pr_config_check_store(NULL), PR_STATUS_NULL_PARAMETER);

    /* A good path whose parent folder does not exist yet: the library
       creates it, creates and migrates the file, and closes it. */
    pr_config *cfg = store_config(fx->path, NULL);
    log_reset();
    assert_int_equal(pr_config_check_store(cfg), PR_STATUS_OK);
    assert_int_equal(g_log.count[PR_LOG_LEVEL_ERROR], 0);
    assert_true(is_regular_file(fx->path));
    /* Again, on the existing file (already migrated). */
    assert_int_equal(pr_config_check_store(cfg), PR_STATUS_OK);
    pr_config_free(cfg);

    /* Unusable paths: PR_STATUS_STORE_ERROR, an error naming "store" and
       the path in the log. */
    write_file(fx_file(fx, "plain", p1, sizeof p1), "a regular file\n");
    fx_file(fx, "plain/fwd.sqlite", p2, sizeof p2);
    static const char garbage[] = "this is not an SQLite database, only text ......"
                                  "...............................................\n";
    char p3[700];
    write_file(fx_file(fx, "garbage.sqlite", p3, sizeof p3), garbage);
    const struct {
        const char *path, *why;
    } bad[] = {
        {p2, "cannot create the folder"},  /* a folder under a regular file */
        {fx->dir, "is a folder"},          /* a folder, not a file */
        {p3, "file is not a database"},    /* not an SQLite file */
        {"redis+sentinel://127.0.0.1:26379/", "master"}, /* no master name */
        {"redis://127.0.0.1/0?prefix=a*b", "prefix"}, /* a bad Redis URL */
        {"mysql://127.0.0.1/0", "URL"},    /* no such store */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cfg = store_config(bad[i].path, NULL);
        log_reset();
        assert_int_equal(pr_config_check_store(cfg), PR_STATUS_STORE_ERROR);
        if (!log_has(PR_LOG_LEVEL_ERROR, "modparam \"store\"", bad[i].path) ||
            !log_has(PR_LOG_LEVEL_ERROR, "store", bad[i].why)) {
            print_error("bad store %s: log %s\n", bad[i].path,
                        g_log.total ? g_log.msgs[0].text : "(empty)");
            fail();
        }
        assert_int_equal(g_log.count[PR_LOG_LEVEL_ERROR], 1);
        pr_config_free(cfg);
    }
    /* A file store needs no subscriber process; a Redis one does (its
       run, forever, is the e2e's); NULL is refused. */
    assert_false(pr_config_store_subscriber(NULL));
    assert_int_equal(pr_config_run_subscriber(NULL), PR_STATUS_NULL_PARAMETER);
    cfg = store_config(fx->path, NULL);
    assert_false(pr_config_store_subscriber(cfg));
    assert_int_equal(pr_config_run_subscriber(cfg), PR_STATUS_INVALID_ARGUMENT);
    pr_config_free(cfg);
    cfg = store_config("redis://127.0.0.1:1/0", NULL);
    assert_true(pr_config_store_subscriber(cfg));
    pr_config_free(cfg);
    /* A file written by a newer push_redirect (schema version 99 in the
       SQLite header's user_version, offset 60): refused, left untouched. */
    cfg = store_config(fx->path, NULL);
    FILE *f = fopen(fx->path, "r+b");
    assert_non_null(f);
    static const unsigned char v99[4] = {0, 0, 0, 99};
    assert_int_equal(fseek(f, 60, SEEK_SET), 0);
    assert_int_equal(fwrite(v99, 1, 4, f), 4);
    assert_int_equal(fclose(f), 0);
    log_reset();
    assert_int_equal(pr_config_check_store(cfg), PR_STATUS_STORE_ERROR);
    assert_true(log_has(PR_LOG_LEVEL_ERROR, "modparam \"store\"", "newer version"));
    pr_engine *e = NULL;
    fake_env env = {0};
    assert_int_equal(pr_engine_new(cfg, fake_lookup, fake_is_self, &env, &e), PR_STATUS_OK);
    assert_int_equal(pr_engine_open_store(e), PR_STATUS_STORE_ERROR);
    assert_error_has(e, "schema version 99");
    pr_engine_free(e);
    pr_config_free(cfg);
    unsigned char got[4] = {0};
    f = fopen(fx->path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 60, SEEK_SET), 0);
    assert_int_equal(fread(got, 1, 4, f), 4);
    assert_int_equal(fclose(f), 0);
    assert_memory_equal(got, v99, 4);

    /* Nothing was created under the regular file; the text file is intact. */
    assert_true(is_regular_file(p1));
    struct stat st;
    assert_int_equal(stat(p3, &st), 0);
    assert_int_equal((size_t)st.st_size, strlen(garbage));
    log_reset();
}

static void test_store_open_and_last_error(void **state) {
    store_fixture *fx = *state;
    fake_env env = {0};
    uint8_t buf[512];
    size_t n = 99;

    assert_int_equal(pr_engine_open_store(NULL), PR_STATUS_NULL_PARAMETER);

    /* An engine whose store is a path under a regular file. */
    char plain[700], bad_path[700];
    write_file(fx_file(fx, "plain", plain, sizeof plain), "x");
    fx_file(fx, "plain/fwd.sqlite", bad_path, sizeof bad_path);
    pr_config *cfg = store_config(bad_path, NULL);
    pr_engine *e = NULL;
    assert_int_equal(pr_engine_new(cfg, fake_lookup, fake_is_self, &env, &e), PR_STATUS_OK);
    pr_config_free(cfg);

    /* pr_engine_last_error: NULLs; empty before any failure. */
    assert_int_equal(pr_engine_last_error(NULL, buf, sizeof buf, &n), PR_STATUS_NULL_PARAMETER);
    assert_int_equal(pr_engine_last_error(e, NULL, sizeof buf, &n), PR_STATUS_NULL_PARAMETER);
    assert_int_equal(pr_engine_last_error(e, NULL, 0, &n), PR_STATUS_NULL_PARAMETER);
    assert_int_equal(pr_engine_last_error(e, buf, sizeof buf, NULL), PR_STATUS_NULL_PARAMETER);
    assert_int_equal(n, 99);
    memset(buf, 'Z', sizeof buf);
    assert_int_equal(pr_engine_last_error(e, buf, sizeof buf, &n), PR_STATUS_OK);
    assert_int_equal(n, 0);
    assert_int_equal(buf[0], 0);
    /* An empty text fits a zero-length buffer. */
    n = 99;
    assert_int_equal(pr_engine_last_error(e, buf, 0, &n), PR_STATUS_OK);
    assert_int_equal(n, 0);

    log_reset();
    assert_int_equal(pr_engine_open_store(e), PR_STATUS_STORE_ERROR);
    assert_true(log_has(PR_LOG_LEVEL_ERROR, "forwarding store (open)", bad_path));
    assert_error_has(e, "forwarding store (open)");
    assert_error_has(e, "cannot create the folder");
    assert_error_has(e, bad_path);
    /* Too small: nothing written; exact fit: no NUL after the text. */
    size_t full = strlen(engine_error(e));
    n = 4242;
    memset(buf, 'Z', sizeof buf);
    assert_int_equal(pr_engine_last_error(e, buf, full - 1, &n), PR_STATUS_BUFFER_TOO_SMALL);
    assert_int_equal(pr_engine_last_error(e, buf, 0, &n), PR_STATUS_BUFFER_TOO_SMALL);
    assert_int_equal(n, 4242);
    assert_int_equal(buf[0], 'Z');
    assert_true(full < sizeof buf);
    assert_int_equal(pr_engine_last_error(e, buf, full, &n), PR_STATUS_OK);
    assert_int_equal(n, full);
    assert_int_equal(buf[full], 'Z');
    assert_memory_equal(buf, "forwarding store (open)", 23);

    /* Without a store: every RPC function says PR_STATUS_STORE_ERROR, with
       the reason; out-parameters untouched. */
    pr_entries *const LSENT = (pr_entries *)&g_sockets[4];
    pr_entries *l = LSENT;
    assert_int_equal(pr_rpc_list(e, NULL, 0, &l), PR_STATUS_STORE_ERROR);
    assert_int_equal(pr_rpc_list(e, OPT(U1), &l), PR_STATUS_STORE_ERROR);
    assert_ptr_equal(l, LSENT);
    assert_error_has(e, "no forwarding store is open");
    assert_int_equal(rpc_set(e, U1, U2, NULL, NULL), PR_STATUS_STORE_ERROR);
    assert_error_has(e, "no forwarding store is open");
    size_t removed = 4242;
    assert_int_equal(pr_rpc_remove(e, OPT(U1), NULL, 0, &removed), PR_STATUS_STORE_ERROR);
    assert_int_equal(removed, 4242);
    size_t count = 4242;
    assert_int_equal(pr_engine_store_count(e, &count), PR_STATUS_STORE_ERROR);
    assert_int_equal(count, 4242);
    assert_error_has(e, "no forwarding store is open");
    pr_store_state none;
    assert_int_equal(pr_engine_store_state(e, &none), PR_STATUS_OK);
    assert_bytes(none.backend, "none");
    assert_bytes(none.state, "closed");
    assert_int_equal(none.queued, 0);
    /* Bad arguments are still reported as such. */
    assert_int_equal(rpc_set(e, U1, "tel:+34600000000", NULL, NULL), PR_STATUS_INVALID_ARGUMENT);
    assert_error_has(e, "target");

    /* Routing goes on without a store: nothing learned, nothing applied. */
    pr_request req = message_req(U1, "cid-no-store");
    dec_t d = lookup_ok(e, &req, NULL);
    assert_decision(&d, 1, R_REGISTERED, 1);
    dec_free(&d);
    buf_t r = reply1("301 Moved Permanently", "Contact: <" T3 ">");
    pr_branch br = branch(T1, 301, &r, true);
    d = redirect_ok(e, &req, &br, 1, NULL);
    assert_decision(&d, 1, R_REDIRECT, 1);
    /* The decision learns it, the store is not there to keep it: not
       counted (forwardings_learned counts what was stored), and the next
       request goes to the terminals. */
    assert_int_equal(STAT(d, FORWARDINGS_LEARNED), 0);
    assert_int_equal(STAT(d, STORE_ERRORS), 0);
    dec_free(&d);
    d = lookup_ok(e, &req, NULL);
    assert_decision(&d, 1, R_REGISTERED, 1);
    assert_int_equal(STAT(d, FORWARDINGS_APPLIED), 0);
    dec_free(&d);
    buf_free(&r);
    pr_engine_free(e);

    /* A good store: opened (folder created), twice (the second replaces the
       first connection), empty. */
    cfg = store_config(fx->path, NULL);
    e = NULL;
    assert_int_equal(pr_engine_new(cfg, fake_lookup, fake_is_self, &env, &e), PR_STATUS_OK);
    pr_config_free(cfg);
    log_reset();
    assert_int_equal(pr_engine_open_store(e), PR_STATUS_OK);
    assert_int_equal(pr_engine_open_store(e), PR_STATUS_OK);
    assert_int_equal(g_log.count[PR_LOG_LEVEL_ERROR], 0);
    assert_true(is_regular_file(fx->path));
    assert_int_equal(store_count(e), 0);
    assert_int_equal(list_count(e, NULL), 0);
    assert_int_equal(strlen(engine_error(e)), 0);
    /* The last error is the last *failure*'s: a success leaves it. */
    assert_int_equal(rpc_set(e, U1, U2, NULL, "0"), PR_STATUS_INVALID_ARGUMENT);
    assert_error_has(e, "ttl");
    assert_int_equal(store_count(e), 0);
    rpc_set_ok(e, U1, U2, NULL, "1");
    assert_error_has(e, "ttl");
    pr_engine_free(e);
    log_reset();
}

static void test_rpc_null_and_bad_arguments(void **state) {
    store_fixture *fx = *state;
    static const uint8_t not_utf8[] = {'s', 'i', 'p', ':', 0xff, '@', 'e', 'x', 'a', 'm',
                                       'p', 'l', 'e', '.', 'c', 'o', 'm'};
    fake_env env = {0};
    pr_engine *e = store_engine(&env, fx->path);

    /* One entry, for (u1, *): a bad call that wrote anything would replace
       it or add one. */
    rpc_set_ok(e, U1, U2, NULL, NULL);
    buf_t before = store_dump(e);
    assert_int_equal(store_count(e), 1);

    /* --- pr_rpc_set: NULLs. */
    assert_int_equal(pr_rpc_set(NULL, OPT(U1), OPT(U2), NULL, 0, NULL, 0),
                     PR_STATUS_NULL_PARAMETER);
    const struct {
        const uint8_t *p[4];
        size_t n[4];
    } nulls[] = {
        {{NULL, (const uint8_t *)U2, NULL, NULL}, {5, strlen(U2), 0, 0}},
        {{(const uint8_t *)U1, NULL, NULL, NULL}, {strlen(U1), 5, 0, 0}},
        {{(const uint8_t *)U1, (const uint8_t *)U2, NULL, NULL}, {strlen(U1), strlen(U2), 3, 0}},
        {{(const uint8_t *)U1, (const uint8_t *)U2, NULL, NULL}, {strlen(U1), strlen(U2), 0, 2}},
    };
    for (size_t i = 0; i < sizeof nulls / sizeof nulls[0]; i++) {
        assert_int_equal(pr_rpc_set(e, nulls[i].p[0], nulls[i].n[0], nulls[i].p[1], nulls[i].n[1],
                                    nulls[i].p[2], nulls[i].n[2], nulls[i].p[3], nulls[i].n[3]),
                         PR_STATUS_NULL_PARAMETER);
        assert_error_has(e, "a required pointer argument was NULL");
    }
    /* (NULL, 0) target: the empty string, not a URI. */
    assert_int_equal(pr_rpc_set(e, OPT(U1), NULL, 0, NULL, 0, NULL, 0),
                     PR_STATUS_INVALID_ARGUMENT);
    assert_error_has(e, "target");
    /* (NULL, 0) AOR: not an AOR. */
    assert_int_equal(pr_rpc_set(e, NULL, 0, OPT(U2), NULL, 0, NULL, 0),
                     PR_STATUS_INVALID_ARGUMENT);
    assert_error_has(e, "AOR");

    /* --- Not UTF-8: text arguments (target, service, ttl) say so; the AOR
       is bytes, refused as a bad AOR. */
    assert_int_equal(pr_rpc_set(e, OPT(U1), not_utf8, sizeof not_utf8, NULL, 0, NULL, 0),
                     PR_STATUS_INVALID_UTF8);
    assert_error_has(e, "not UTF-8");
    assert_int_equal(pr_rpc_set(e, OPT(U1), OPT(U2), not_utf8, sizeof not_utf8, NULL, 0),
                     PR_STATUS_INVALID_UTF8);
    assert_int_equal(pr_rpc_set(e, OPT(U1), OPT(U2), NULL, 0, not_utf8, sizeof not_utf8),
                     PR_STATUS_INVALID_UTF8);
    assert_int_equal(pr_rpc_set(e, not_utf8, sizeof not_utf8, OPT(U2), NULL, 0, NULL, 0),
                     PR_STATUS_INVALID_ARGUMENT);
    assert_error_has(e, "AOR");

    /* --- Each bad argument, the others good: INVALID_ARGUMENT, the reason
       names the argument. */
    const struct {
        const char *aor, *target, *service, *ttl, *why;
    } bad[] = {
        /* AOR */
        {"", U2, NULL, NULL, "AOR"},
        {"u1@example.com", U2, NULL, NULL, "AOR"},
        {"tel:+34600000000", U2, NULL, NULL, "AOR"},
        {"sip:u1@", U2, NULL, NULL, "AOR"},
        {"sip:u1@attacker.example", U2, NULL, NULL, "not a user of this proxy's domains"},
        {"sip:u1@127.0.0.1:5071", U2, NULL, NULL, "not a user of this proxy's domains"},
        {"sip:example.com", U2, NULL, NULL, "not a user of this proxy's domains"},
        /* target */
        {U1, "tel:+34600000000", NULL, NULL, "target"},
        {U1, "http://partner.example/x", NULL, NULL, "target"},
        {U1, "sip:", NULL, NULL, "target"},
        {U1, "  ", NULL, NULL, "target"},
        {U1, "sip:evil@attacker.example", NULL, NULL, "domain not in allowed_domains"},
        {U1, "sip:x@sub.partner.example", NULL, NULL, "domain not in allowed_domains"},
        {U1, "sip:example.com", NULL, NULL, "the proxy itself"},
        {U1, "sip:127.0.0.1:5060", NULL, NULL, "the proxy itself"},
        {U1, "sip:u1@EXAMPLE.com", NULL, NULL, "the AOR itself"},
        {"sips:u1@example.com", "sip:x@partner.example", NULL, NULL, "sip: target for a sips:"},
        /* service */
        {U1, U2, "MESS AGE", NULL, "service"},
        {U1, U2, "MESSAGE:", NULL, "service"},
        {U1, U2, ":text/plain", NULL, "service"},
        {U1, U2, "MESSAGE:text plain", NULL, "service"},
        {U1, U2, "MESSAGE2", NULL, "service"},
        {U1, U2, "MESSAGE:text/plain;charset=utf-8", NULL, "service"},
        {U1, U2, "**", NULL, "service"},
        /* ttl */
        {U1, U2, NULL, "0", "ttl"},
        {U1, U2, NULL, "abc", "ttl"},
        {U1, U2, NULL, "99999999999", "ttl"},
        {U1, U2, NULL, "-1", "ttl"},
        {U1, U2, NULL, "1.5", "ttl"},
        {U1, U2, NULL, "60s", "ttl"},
        {U1, U2, NULL, "315360001", "ttl"}, /* PR_MAX_TTL + 1 */
        {U1, U2, NULL, "4294967296", "ttl"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        pr_status s = rpc_set(e, bad[i].aor, bad[i].target, bad[i].service, bad[i].ttl);
        if (s != PR_STATUS_INVALID_ARGUMENT) {
            print_error("bad[%zu] (%s, %s, %s, %s): status %u\n", i, bad[i].aor, bad[i].target,
                        bad[i].service ? bad[i].service : "-", bad[i].ttl ? bad[i].ttl : "-", s);
        }
        assert_int_equal(s, PR_STATUS_INVALID_ARGUMENT);
        assert_error_has(e, bad[i].why);
    }
    /* A service longer than the service key cap (128 bytes). */
    char longsvc[300];
    memset(longsvc, 'a', sizeof longsvc - 1);
    longsvc[sizeof longsvc - 1] = '\0';
    memcpy(longsvc, "MESSAGE:text/", 13);
    assert_int_equal(rpc_set(e, U1, U2, longsvc, NULL), PR_STATUS_INVALID_ARGUMENT);
    assert_error_has(e, "service");
    /* A target longer than the URI cap. */
    buf_t lt = {0};
    buf_adds(&lt, "sip:");
    for (int k = 0; k < 5000; k++) {
        buf_add(&lt, "x", 1);
    }
    buf_adds(&lt, "@partner.example");
    assert_int_equal(rpc_set(e, U1, lt.data, NULL, NULL), PR_STATUS_INVALID_ARGUMENT);
    assert_error_has(e, "target");
    buf_free(&lt);

    /* Nothing was written. */
    buf_t after = store_dump(e);
    assert_string_equal(after.data, before.data);
    buf_free(&after);
    assert_int_equal(store_count(e), 1);

    /* --- pr_rpc_list: NULLs, bad AORs; *out untouched. */
    pr_entries *const LSENT = (pr_entries *)&g_sockets[4];
    pr_entries *l = LSENT;
    assert_int_equal(pr_rpc_list(NULL, NULL, 0, &l), PR_STATUS_NULL_PARAMETER);
    assert_int_equal(pr_rpc_list(e, NULL, 0, NULL), PR_STATUS_NULL_PARAMETER);
    assert_int_equal(pr_rpc_list(e, NULL, 5, &l), PR_STATUS_NULL_PARAMETER);
    assert_int_equal(pr_rpc_list(e, not_utf8, sizeof not_utf8, &l), PR_STATUS_INVALID_ARGUMENT);
    assert_error_has(e, "AOR");
    static const char *const bad_aors[] = {"garbage", "tel:+1", "sip:u1@attacker.example",
                                           "sip:example.com", " "};
    for (size_t i = 0; i < sizeof bad_aors / sizeof bad_aors[0]; i++) {
        assert_int_equal(pr_rpc_list(e, OPT(bad_aors[i]), &l), PR_STATUS_INVALID_ARGUMENT);
        assert_error_has(e, "AOR");
    }
    assert_ptr_equal(l, LSENT);

    /* --- pr_entries_*: NULLs, out of range. */
    assert_int_equal(pr_entries_count(NULL), 0);
    pr_entries_free(NULL);
    l = list_ok(e, NULL);
    assert_int_equal(pr_entries_count(l), 1);
    pr_entry en;
    memset(&en, 0x5A, sizeof en);
    pr_entry en_before;
    memcpy(&en_before, &en, sizeof en);
    assert_int_equal(pr_entries_get(NULL, 0, &en), PR_STATUS_NULL_PARAMETER);
    assert_int_equal(pr_entries_get(l, 0, NULL), PR_STATUS_NULL_PARAMETER);
    assert_int_equal(pr_entries_get(l, 1, &en), PR_STATUS_OUT_OF_RANGE);
    assert_int_equal(pr_entries_get(l, 1000, &en), PR_STATUS_OUT_OF_RANGE);
    assert_int_equal(pr_entries_get(l, SIZE_MAX, &en), PR_STATUS_OUT_OF_RANGE);
    assert_memory_equal(&en, &en_before, sizeof en);
    pr_entries_free(l);

    /* --- pr_rpc_remove: NULLs, bad arguments; *out_removed untouched. */
    size_t removed = 4242;
    assert_int_equal(pr_rpc_remove(NULL, OPT(U1), NULL, 0, &removed), PR_STATUS_NULL_PARAMETER);
    assert_int_equal(pr_rpc_remove(e, OPT(U1), NULL, 0, NULL), PR_STATUS_NULL_PARAMETER);
    assert_int_equal(pr_rpc_remove(e, NULL, 4, NULL, 0, &removed), PR_STATUS_NULL_PARAMETER);
    assert_error_has(e, "NULL");
    assert_int_equal(pr_rpc_remove(e, OPT(U1), NULL, 4, &removed), PR_STATUS_NULL_PARAMETER);
    assert_int_equal(pr_rpc_remove(e, OPT(U1), not_utf8, sizeof not_utf8, &removed),
                     PR_STATUS_INVALID_UTF8);
    assert_error_has(e, "not UTF-8");
    assert_int_equal(pr_rpc_remove(e, not_utf8, sizeof not_utf8, NULL, 0, &removed),
                     PR_STATUS_INVALID_ARGUMENT);
    assert_int_equal(pr_rpc_remove(e, NULL, 0, NULL, 0, &removed), PR_STATUS_INVALID_ARGUMENT);
    assert_error_has(e, "AOR");
    assert_int_equal(pr_rpc_remove(e, OPT("sip:u1@attacker.example"), NULL, 0, &removed),
                     PR_STATUS_INVALID_ARGUMENT);
    assert_error_has(e, "not a user of this proxy's domains");
    assert_int_equal(pr_rpc_remove(e, OPT(U1), OPT("MESSAGE:"), &removed),
                     PR_STATUS_INVALID_ARGUMENT);
    assert_error_has(e, "service");
    assert_int_equal(removed, 4242);

    /* --- pr_engine_store_count: NULLs. */
    size_t count = 4242;
    assert_int_equal(pr_engine_store_count(NULL, &count), PR_STATUS_NULL_PARAMETER);
    assert_int_equal(pr_engine_store_count(e, NULL), PR_STATUS_NULL_PARAMETER);
    assert_int_equal(count, 4242);

    /* --- pr_engine_take_counters: NULLs, a wrong length; it adds (the
       store failed nothing here), it does not overwrite. */
    uint32_t counters[PR_STAT_COUNT];
    for (int i = 0; i < PR_STAT_COUNT; i++)
        counters[i] = 7;
    assert_int_equal(pr_engine_take_counters(NULL, counters, PR_STAT_COUNT),
                     PR_STATUS_NULL_PARAMETER);
    assert_int_equal(pr_engine_take_counters(e, NULL, PR_STAT_COUNT), PR_STATUS_NULL_PARAMETER);
    assert_int_equal(pr_engine_take_counters(e, counters, PR_STAT_COUNT - 1),
                     PR_STATUS_INVALID_ARGUMENT);
    assert_int_equal(pr_engine_take_counters(e, counters, PR_STAT_COUNT), PR_STATUS_OK);
    for (int i = 0; i < PR_STAT_COUNT; i++)
        assert_int_equal(counters[i], 7);

    /* --- pr_engine_store_state: NULLs; this engine's store works. */
    pr_store_state ss;
    assert_int_equal(pr_engine_store_state(NULL, &ss), PR_STATUS_NULL_PARAMETER);
    assert_int_equal(pr_engine_store_state(e, NULL), PR_STATUS_NULL_PARAMETER);
    assert_int_equal(pr_engine_store_state(e, &ss), PR_STATUS_OK);
    assert_bytes(ss.backend, "sqlite");
    assert_bytes(ss.state, "ok");
    assert_int_equal(ss.failing_since, 0);
    assert_int_equal(ss.queued, 0);

    /* Still nothing changed. */
    after = store_dump(e);
    assert_string_equal(after.data, before.data);
    buf_free(&after);
    buf_free(&before);
    pr_engine_free(e);
}

static void test_rpc_set_list_remove(void **state) {
    store_fixture *fx = *state;
    fake_env env = {0};
    pr_engine *e = store_engine(&env, fx->path);
    int64_t t0 = wall_seconds();

    /* Good arguments: a local AOR or an allowed domain as target; service
       none / METHOD / METHOD:type / "*"; TTL none or seconds. Arguments are
       trimmed; the AOR and service are normalised. */
    rpc_set_ok(e, U1, U2, NULL, NULL);
    rpc_set_ok(e, U1, "sip:x@partner.example", "MESSAGE", "60");
    rpc_set_ok(e, "sip:u1@EXAMPLE.com:5060;transport=tcp", " sips:y@PARTNER.example ",
               " message:TEXT/Plain ", " 3600 ");
    rpc_set_ok(e, U2, "sip:u1@example.com", "*", "315360000"); /* PR_MAX_TTL */
    rpc_set_ok(e, "sips:u1@example.com", "sips:z@partner.example", "NOTIFY:ua-profile", "7200");
    rpc_set_ok(e, "sip:nobody@example.com", "sip:someone@example.com", "", "");
    int64_t t1 = wall_seconds();
    assert_int_equal(store_count(e), 6);

    /* The list: ordered by AOR, then service. */
    pr_entries *l = list_ok(e, NULL);
    assert_int_equal(pr_entries_count(l), 6);
    pr_entry en[6];
    for (size_t i = 0; i < 6; i++) {
        en[i] = entry_at(l, i);
        assert_true(en[i].created_at >= t0 && en[i].created_at <= t1);
    }
    assert_entry(&en[0], "sip:nobody@example.com", "*", "provisioned",
                 "sip:someone@example.com", "", 0);
    assert_int_equal(en[0].expires_at, -1);
    assert_entry(&en[1], U1, "*", "provisioned", U2, "", 0);
    assert_int_equal(en[1].expires_at, -1);
    assert_entry(&en[2], U1, "MESSAGE", "provisioned", "sip:x@partner.example", "", 0);
    assert_int_equal(en[2].expires_at, en[2].created_at + 60);
    assert_entry(&en[3], U1, "MESSAGE:text/plain", "provisioned", "sips:y@PARTNER.example", "",
                 0);
    assert_int_equal(en[3].expires_at, en[3].created_at + 3600);
    assert_entry(&en[4], U2, "*", "provisioned", "sip:u1@example.com", "", 0);
    assert_int_equal(en[4].expires_at, en[4].created_at + PR_MAX_TTL);
    assert_entry(&en[5], "sips:u1@example.com", "NOTIFY:ua-profile", "provisioned",
                 "sips:z@partner.example", "", 0);
    assert_int_equal(en[5].expires_at, en[5].created_at + 7200);
    /* Out of range. */
    pr_entry x;
    memset(&x, 0, sizeof x);
    assert_int_equal(pr_entries_get(l, 6, &x), PR_STATUS_OUT_OF_RANGE);
    assert_null(x.aor.ptr);

    /* One AOR (in any spelling of it), an AOR without entries, a bad AOR. */
    assert_int_equal(list_count(e, U1), 3);
    pr_entries *l1 = list_ok(e, "sip:u1@Example.COM;transport=udp");
    assert_int_equal(pr_entries_count(l1), 3);
    for (size_t i = 0; i < 3; i++) {
        assert_bytes(entry_at(l1, i).aor, U1);
    }
    assert_bytes(entry_at(l1, 2).service, "MESSAGE:text/plain");
    assert_int_equal(list_count(e, U2), 1);
    assert_int_equal(list_count(e, "sip:someone@example.com"), 0);
    pr_entries *lb = (pr_entries *)&g_sockets[4];
    assert_int_equal(pr_rpc_list(e, OPT("sip:u1@partner.example"), &lb),
                     PR_STATUS_INVALID_ARGUMENT);
    assert_ptr_equal(lb, (pr_entries *)&g_sockets[4]);
    assert_error_has(e, "sip:u1@partner.example");

    /* Setting the same (AOR, service) again replaces the entry. */
    rpc_set_ok(e, U1, "sip:w@partner.example", "*", "120");
    assert_int_equal(store_count(e), 6);
    pr_entries *l2 = list_ok(e, U1);
    pr_entry star = entry_at(l2, 0);
    assert_entry(&star, U1, "*", "provisioned", "sip:w@partner.example", "", 0);
    assert_int_equal(star.expires_at, star.created_at + 120);
    pr_entries_free(l2);

    /* pr_rpc_remove: one service (in any spelling), then every service. */
    assert_int_equal(rpc_remove_ok(e, U1, "MESSAGE"), 1);
    assert_int_equal(rpc_remove_ok(e, U1, "MESSAGE"), 0);
    assert_int_equal(rpc_remove_ok(e, U1, " Message:Text/Plain "), 1);
    assert_int_equal(store_count(e), 4);
    assert_int_equal(rpc_set(e, U1, "sip:v@partner.example", "NOTIFY", NULL), PR_STATUS_OK);
    assert_int_equal(rpc_remove_ok(e, "sip:u1@example.com:5060", NULL), 2); /* "*" and NOTIFY */
    assert_int_equal(rpc_remove_ok(e, U1, NULL), 0);
    assert_int_equal(rpc_remove_ok(e, U2, "*"), 1);
    assert_int_equal(rpc_remove_ok(e, "sip:someone@example.com", ""), 0);
    assert_int_equal(store_count(e), 2);
    assert_int_equal(list_count(e, U1), 0);

    /* The lists taken earlier are snapshots: still valid, unchanged. */
    assert_int_equal(pr_entries_count(l), 6);
    assert_bytes(entry_at(l, 2).service, "MESSAGE");
    assert_bytes(en[3].targets, "sips:y@PARTNER.example");
    assert_int_equal(pr_entries_count(l1), 3);
    pr_entries_free(l1);
    pr_entries_free(l);

    /* Another engine (another Kamailio process) on the same file sees them. */
    fake_env env2 = {0};
    pr_engine *e2 = store_engine(&env2, fx->path);
    assert_int_equal(store_count(e2), 2);
    assert_int_equal(rpc_remove_ok(e2, "sip:nobody@example.com", NULL), 1);
    assert_int_equal(store_count(e), 1);
    pr_engine_free(e2);
    pr_engine_free(e);
}

static void test_store_e2e_301_learned_then_applied(void **state) {
    store_fixture *fx = *state;
    fake_env env = {0};
    pr_engine *e = store_engine(&env, fx->path);
    pr_request req = message_req(U1, "cid-store-301");
    int64_t t0 = wall_seconds();

    /* Before: the terminals. */
    dec_t d = lookup_ok(e, &req, NULL);
    assert_decision(&d, 1, R_REGISTERED, 1);
    assert_bytes(branch_at(&d, 0).uri, T1);
    dec_free(&d);

    /* t1 answers 301 to t3: followed, learned, and committed to the store
       before pr_push_redirect returns. */
    buf_t r = reply1("301 Moved Permanently", "Contact: <" T3 ">;q=0.8");
    pr_branch br = branch(T1, 301, &r, true);
    d = redirect_ok(e, &req, &br, 1, NULL);
    assert_decision(&d, 1, R_REDIRECT, 1);
    assert_int_equal(STAT(d, FORWARDINGS_LEARNED), 1);
    dec_free(&d);
    int64_t t1 = wall_seconds();
    assert_int_equal(store_count(e), 1);
    pr_entries *l = list_ok(e, U1);
    assert_int_equal(pr_entries_count(l), 1);
    pr_entry en = entry_at(l, 0);
    assert_entry(&en, U1, "MESSAGE:text/plain", "permanent", T3 ";q=0.800", T1, 301);
    assert_int_equal(en.expires_at, -1);
    assert_int_equal(en.expires_in, -1);
    assert_true(en.created_at >= t0 && en.created_at <= t1);
    pr_entries_free(l);
    buf_t before = store_dump(e);

    /* The next request goes straight to t3 (StoredForwarding = 11). */
    d = lookup_ok(e, &req, NULL);
    assert_decision(&d, 1, R_STORED_FORWARDING, 1);
    assert_int_equal(R_STORED_FORWARDING, 11);
    pr_branch_out b = branch_at(&d, 0);
    assert_bytes(b.uri, T3);
    assert_bytes(b.dst_uri, "sip:edge5073@127.0.0.1;lr"); /* the first Path hop */
    assert_ptr_equal(b.socket, &g_sockets[3]);
    assert_int_equal(b.q, 800);
    assert_int_equal(STAT(d, FORWARDINGS_APPLIED), 1);
    assert_int_equal(STAT(d, FORWARDINGS_LEARNED), 0);
    dec_free(&d);

    /* In parallel mode too; not for another service; not for another AOR;
       not for untouched requests. */
    d = lookup_ok(e, &req, "parallel");
    assert_decision(&d, 1, R_STORED_FORWARDING, 1);
    dec_free(&d);
    pr_request notify = req;
    notify.method = B("NOTIFY");
    notify.event = B("ua-profile");
    d = lookup_ok(e, &notify, NULL);
    assert_decision(&d, 1, R_REGISTERED, 1);
    assert_int_equal(STAT(d, FORWARDINGS_APPLIED), 0);
    dec_free(&d);
    pr_request other = message_req(U2, "cid-store-301-u2");
    d = lookup_ok(e, &other, NULL);
    assert_decision(&d, 1, R_REGISTERED, 1);
    dec_free(&d);
    pr_request opts = req;
    opts.method = B("OPTIONS");
    d = lookup_ok(e, &opts, NULL);
    assert_decision(&d, -1, R_NOT_PUSH_METHOD, 0);
    dec_free(&d);
    /* Applying it, or not, changed nothing in the store. */
    buf_t after = store_dump(e);
    assert_string_equal(after.data, before.data);
    buf_free(&after);
    buf_free(&before);

    /* Kept in the file: a new engine on it (a restart) applies it. */
    pr_engine_free(e);
    fake_env env2 = {0};
    e = store_engine(&env2, fx->path);
    d = lookup_ok(e, &req, NULL);
    assert_decision(&d, 1, R_STORED_FORWARDING, 1);
    assert_bytes(branch_at(&d, 0).uri, T3);
    dec_free(&d);

    /* A second 301 (t3 now moved to t2) replaces it. */
    buf_t r2 = reply1("301 Moved Permanently", "Contact: <" T2 ">");
    pr_branch br2 = branch(T3, 301, &r2, true);
    d = redirect_ok(e, &req, &br2, 1, NULL);
    assert_decision(&d, 1, R_REDIRECT, 1);
    assert_int_equal(STAT(d, FORWARDINGS_LEARNED), 1);
    dec_free(&d);
    l = list_ok(e, NULL);
    assert_int_equal(pr_entries_count(l), 1);
    en = entry_at(l, 0);
    assert_entry(&en, U1, "MESSAGE:text/plain", "permanent", T2, T3, 301);
    pr_entries_free(l);

    /* Removed by the operator: back to the terminals. */
    assert_int_equal(rpc_remove_ok(e, U1, NULL), 1);
    d = lookup_ok(e, &req, NULL);
    assert_decision(&d, 1, R_REGISTERED, 1);
    assert_int_equal(STAT(d, FORWARDINGS_APPLIED), 0);
    dec_free(&d);

    /* A 301 with several Contacts, followed in parallel: every target is
       learned, best first (no q ranks as 1.0), and applied together. */
    buf_t r3 = reply1("301 Moved Permanently",
                      "Contact: <sip:a@partner.example>;q=0.5, <sip:b@partner.example>, <" T3
                      ">;q=0.25");
    pr_branch br3 = branch(T1, 301, &r3, true);
    d = redirect_ok(e, &req, &br3, 1, "parallel");
    assert_decision(&d, 1, R_REDIRECT, 3);
    assert_int_equal(STAT(d, FORWARDINGS_LEARNED), 1);
    dec_free(&d);
    l = list_ok(e, U1);
    assert_int_equal(pr_entries_count(l), 1);
    en = entry_at(l, 0);
    assert_entry(&en, U1, "MESSAGE:text/plain", "permanent",
                 "sip:b@partner.example, sip:a@partner.example;q=0.500, " T3 ";q=0.250", T1, 301);
    pr_entries_free(l);
    d = lookup_ok(e, &req, "parallel");
    assert_decision(&d, 1, R_STORED_FORWARDING, 3);
    assert_bytes(branch_at(&d, 0).uri, "sip:b@partner.example");
    assert_bytes(branch_at(&d, 1).uri, "sip:a@partner.example");
    assert_bytes(branch_at(&d, 2).uri, T3);
    assert_int_equal(branch_at(&d, 2).q, 250);
    dec_free(&d);
    assert_int_equal(rpc_remove_ok(e, U1, "MESSAGE:text/plain"), 1);

    /* An AOR longer than the store's key cap (256 bytes): routing goes on
       as without a store, nothing is stored; the store is not even asked
       (no error logged), a learned forwarding that cannot be kept is a
       warning. */
    buf_t long_aor = {0};
    buf_adds(&long_aor, "sip:");
    for (int k = 0; k < 300; k++) {
        buf_add(&long_aor, "u", 1);
    }
    buf_adds(&long_aor, "@example.com");
    pr_request lreq = message_req(long_aor.data, "cid-store-long-aor");
    log_reset();
    d = lookup_ok(e, &lreq, NULL);
    assert_decision(&d, -1, R_NO_TARGET, 0);
    dec_free(&d);
    buf_t r4 = reply1("301 Moved Permanently", "Contact: <sip:far@partner.example>");
    pr_branch br4 = branch("sip:x@127.0.0.1:5099", 301, &r4, true);
    d = redirect_ok(e, &lreq, &br4, 1, NULL);
    assert_decision(&d, 1, R_REDIRECT, 1);
    /* Not stored, so not counted as learned; no store error either. */
    assert_int_equal(STAT(d, FORWARDINGS_LEARNED), 0);
    assert_int_equal(STAT(d, STORE_ERRORS), 0);
    assert_bytes(branch_at(&d, 0).uri, "sip:far@partner.example");
    dec_free(&d);
    buf_free(&r4);
    assert_int_equal(store_count(e), 0);
    assert_true(log_has(PR_LOG_LEVEL_WARN, "not learned", NULL));
    assert_int_equal(g_log.count[PR_LOG_LEVEL_ERROR], 0);
    assert_int_equal(rpc_set(e, long_aor.data, U2, NULL, NULL), PR_STATUS_INVALID_ARGUMENT);
    assert_error_has(e, "does not fit");
    assert_int_equal(store_count(e), 0);
    buf_free(&long_aor);
    log_reset();

    buf_free(&r);
    buf_free(&r2);
    buf_free(&r3);
    pr_engine_free(e);
}

static void test_store_e2e_302_temporary_expires(void **state) {
    store_fixture *fx = *state;
    fake_env env = {0};
    pr_engine *e = store_engine(&env, fx->path);
    pr_request req = message_req(U1, "cid-store-302");

    /* A 302 without expiry is for this request only: nothing stored. */
    buf_t r0 = reply1("302 Moved Temporarily", "Contact: <" T3 ">");
    pr_branch br = branch(T1, 302, &r0, true);
    dec_t d = redirect_ok(e, &req, &br, 1, NULL);
    assert_decision(&d, 1, R_REDIRECT, 1);
    assert_int_equal(STAT(d, FORWARDINGS_LEARNED), 0);
    dec_free(&d);
    assert_int_equal(store_count(e), 0);

    /* ;expires=1: temporary, for one second. The steps run within the
       second that starts after wait_for_a_new_second(); on a machine so slow
       that they took longer, the entry is removed and they are run again. */
    buf_t r = reply1("302 Moved Temporarily", "Contact: <" T3 ">;expires=1");
    br = branch(T1, 302, &r, true);
    bool in_time = false;
    for (int attempt = 0; attempt < 5 && !in_time; attempt++) {
        wait_for_a_new_second();
        int64_t t0 = wall_seconds();
        d = redirect_ok(e, &req, &br, 1, NULL);
        int rc = d.v.script_rc;
        uint32_t reason = d.v.reason;
        uint32_t learned = STAT(d, FORWARDINGS_LEARNED);
        dec_free(&d);
        pr_entries *l = list_ok(e, U1);
        size_t listed = pr_entries_count(l);
        pr_entry en;
        memset(&en, 0, sizeof en);
        if (listed == 1) {
            en = entry_at(l, 0);
        }
        dec_t dl = lookup_ok(e, &req, NULL);
        in_time = wall_seconds() == t0;
        if (in_time) {
            assert_int_equal(rc, 1);
            assert_int_equal(reason, R_REDIRECT);
            assert_int_equal(learned, 1);
            assert_int_equal(listed, 1);
            assert_entry(&en, U1, "MESSAGE:text/plain", "temporary", T3, T1, 302);
            assert_int_equal(en.created_at, t0);
            assert_int_equal(en.expires_at, t0 + 1);
            assert_int_equal(en.expires_in, 1);
            assert_decision(&dl, 1, R_STORED_FORWARDING, 1);
            assert_bytes(branch_at(&dl, 0).uri, T3);
            assert_int_equal(STAT(dl, FORWARDINGS_APPLIED), 1);
        } else {
            print_error("attempt %d took more than a second; again\n", attempt);
            rpc_remove_ok(e, U1, NULL);
        }
        dec_free(&dl);
        pr_entries_free(l);
    }
    assert_true(in_time);

    /* Two seconds later it is dead: not applied, not listed, not counted. */
    sleep(2);
    d = lookup_ok(e, &req, NULL);
    assert_decision(&d, 1, R_REGISTERED, 1);
    assert_bytes(branch_at(&d, 0).uri, T1);
    assert_int_equal(STAT(d, FORWARDINGS_APPLIED), 0);
    dec_free(&d);
    assert_int_equal(list_count(e, NULL), 0);
    assert_int_equal(store_count(e), 0);

    /* An Expires header: temporary for 3600 s. */
    const char *h[] = {"Contact: <" T3 ">", "Expires: 3600", NULL};
    buf_t r2 = reply_v("302 Moved Temporarily", h);
    br = branch(T1, 302, &r2, true);
    d = redirect_ok(e, &req, &br, 1, NULL);
    assert_int_equal(STAT(d, FORWARDINGS_LEARNED), 1);
    dec_free(&d);
    pr_entries *l = list_ok(e, NULL);
    assert_int_equal(pr_entries_count(l), 1);
    pr_entry en = entry_at(l, 0);
    assert_entry(&en, U1, "MESSAGE:text/plain", "temporary", T3, T1, 302);
    assert_int_equal(en.expires_at, en.created_at + 3600);
    assert_true(en.expires_in > 3600 - 60 && en.expires_in <= 3600);
    pr_entries_free(l);
    assert_int_equal(rpc_remove_ok(e, U1, "MESSAGE:text/plain"), 1);
    buf_free(&r0);
    buf_free(&r);
    buf_free(&r2);
    pr_engine_free(e);
}

static void test_store_e2e_provisioned(void **state) {
    store_fixture *fx = *state;
    fake_env env = {0};
    pr_engine *e = store_engine(&env, fx->path);
    pr_request req = message_req(U1, "cid-store-prov");

    /* u1 (registered) is provisioned to u2 for MESSAGE (any type). */
    rpc_set_ok(e, U1, U2, "MESSAGE", NULL);
    buf_t before = store_dump(e);

    /* Not at lookup while u1 has terminals. */
    dec_t d = lookup_ok(e, &req, NULL);
    assert_decision(&d, 1, R_REGISTERED, 1);
    assert_bytes(branch_at(&d, 0).uri, T1);
    assert_int_equal(STAT(d, FORWARDINGS_APPLIED), 0);
    dec_free(&d);

    /* F5: a 302 without Contact: the provisioned target (Provisioned = 14). */
    buf_t r = reply1("302 Moved Temporarily", NULL);
    pr_branch br = branch(T1, 302, &r, true);
    d = redirect_ok(e, &req, &br, 1, NULL);
    assert_decision(&d, 1, R_PROVISIONED, 1);
    assert_int_equal(R_PROVISIONED, 14);
    pr_branch_out b = branch_at(&d, 0);
    assert_bytes(b.uri, U2T);
    assert_bytes(b.dst_uri, "sip:127.0.0.1:5082;received");
    assert_ptr_equal(b.socket, &g_sockets[5]);
    assert_int_equal(STAT(d, FORWARDINGS_APPLIED), 1);
    assert_int_equal(STAT(d, FORWARDINGS_LEARNED), 0);
    dec_free(&d);
    assert_int_equal(store_count(e), 1); /* still there, unchanged */
    buf_t after = store_dump(e);
    assert_string_equal(after.data, before.data);
    buf_free(&after);
    buf_free(&before);

    /* Not after a plain failure: the next terminal. */
    pr_branch br480 = branch(T1, 480, NULL, true);
    d = redirect_ok(e, &req, &br480, 1, NULL);
    assert_decision(&d, 1, R_FAILOVER, 1);
    assert_bytes(branch_at(&d, 0).uri, T2);
    dec_free(&d);

    /* Not for another service (NOTIFY): the 302 counts as failed. */
    pr_request notify = req;
    notify.method = B("NOTIFY");
    notify.event = B("ua-profile");
    d = redirect_ok(e, &notify, &br, 1, NULL);
    assert_decision(&d, 1, R_FAILOVER, 1);
    dec_free(&d);

    /* An AOR with no registered terminal: pr_push_lookup uses it at once,
       to a local AOR (resolved to its contacts) or an allowed domain. */
    pr_request nob = message_req("sip:nobody@example.com", "cid-store-prov-nobody");
    d = lookup_ok(e, &nob, NULL);
    assert_decision(&d, -1, R_NO_TARGET, 0);
    dec_free(&d);
    rpc_set_ok(e, "sip:nobody@example.com", U2, NULL, "3600");
    d = lookup_ok(e, &nob, NULL);
    assert_decision(&d, 1, R_PROVISIONED, 1);
    assert_bytes(branch_at(&d, 0).uri, U2T);
    assert_int_equal(STAT(d, FORWARDINGS_APPLIED), 1);
    dec_free(&d);
    rpc_set_ok(e, "sip:nobody@example.com", "sip:x@partner.example", "MESSAGE:text/plain", NULL);
    d = lookup_ok(e, &nob, NULL); /* the exact service wins over "*" */
    assert_decision(&d, 1, R_PROVISIONED, 1);
    b = branch_at(&d, 0);
    assert_bytes(b.uri, "sip:x@partner.example");
    assert_empty(b.dst_uri);
    assert_null(b.socket);
    dec_free(&d);
    /* Removed: nothing again. */
    assert_int_equal(rpc_remove_ok(e, "sip:nobody@example.com", NULL), 2);
    d = lookup_ok(e, &nob, NULL);
    assert_decision(&d, -1, R_NO_TARGET, 0);
    dec_free(&d);
    buf_free(&r);
    pr_engine_free(e);
}

static void test_store_e2e_forget_failed_temporary(void **state) {
    store_fixture *fx = *state;
    fake_env env = {0};
    pr_engine *e = store_engine(&env, fx->path);
    pr_request req = message_req(U1, "cid-store-forget");

    /* F7: learn a temporary forwarding to t3. */
    buf_t r = reply1("302 Moved Temporarily", "Contact: <" T3 ">;expires=3600");
    pr_branch br = branch(T1, 302, &r, true);
    dec_t d = redirect_ok(e, &req, &br, 1, NULL);
    assert_int_equal(STAT(d, FORWARDINGS_LEARNED), 1);
    dec_free(&d);
    assert_int_equal(list_count(e, U1), 1);

    /* The next request goes to t3; t3 answers 480 in this round: the entry
       is forgotten (committed before return), and the next terminal tried. */
    d = lookup_ok(e, &req, NULL);
    assert_decision(&d, 1, R_STORED_FORWARDING, 1);
    assert_bytes(branch_at(&d, 0).uri, T3);
    dec_free(&d);
    pr_branch failed = branch(T3, 480, NULL, true);
    d = redirect_ok(e, &req, &failed, 1, NULL);
    assert_decision(&d, 1, R_FAILOVER, 1);
    assert_int_equal(STAT(d, FORWARDINGS_LEARNED), 0);
    dec_free(&d);
    assert_int_equal(list_count(e, U1), 0);
    assert_int_equal(store_count(e), 0);
    d = lookup_ok(e, &req, NULL);
    assert_decision(&d, 1, R_REGISTERED, 1);
    dec_free(&d);

    /* A temporary forwarding to a local AOR (u2): forgotten when the
       terminal of u2 it was resolved to fails. */
    buf_t ru2 = reply1("302 Moved Temporarily", "Contact: <" U2 ">;expires=3600");
    pr_branch bru2 = branch(T1, 302, &ru2, true);
    d = redirect_ok(e, &req, &bru2, 1, NULL);
    assert_decision(&d, 1, R_REDIRECT, 1);
    assert_int_equal(STAT(d, FORWARDINGS_LEARNED), 1);
    dec_free(&d);
    d = lookup_ok(e, &req, NULL);
    assert_decision(&d, 1, R_STORED_FORWARDING, 1);
    assert_bytes(branch_at(&d, 0).uri, U2T);
    dec_free(&d);
    pr_branch failed_u2t = branch(U2T, 480, NULL, true);
    d = redirect_ok(e, &req, &failed_u2t, 1, NULL);
    assert_int_equal(STAT(d, FORWARDINGS_LEARNED), 0);
    dec_free(&d);
    assert_int_equal(list_count(e, U1), 0);
    buf_free(&ru2);

    /* A failure in an earlier round does not forget it. */
    d = redirect_ok(e, &req, &br, 1, NULL);
    assert_int_equal(STAT(d, FORWARDINGS_LEARNED), 1);
    dec_free(&d);
    buf_t before = store_dump(e);
    pr_branch two[2] = {branch(T3, 480, NULL, false), branch(T2, 486, NULL, true)};
    d = redirect_ok(e, &req, two, 2, NULL);
    assert_decision(&d, 1, R_FAILOVER, 1);
    dec_free(&d);
    buf_t after = store_dump(e);
    assert_string_equal(after.data, before.data);
    buf_free(&after);
    buf_free(&before);
    assert_int_equal(list_count(e, U1), 1);
    assert_int_equal(rpc_remove_ok(e, U1, NULL), 1);

    /* A permanent entry whose target failed is kept. */
    buf_t r301 = reply1("301 Moved Permanently", "Contact: <" T3 ">");
    br = branch(T1, 301, &r301, true);
    d = redirect_ok(e, &req, &br, 1, NULL);
    assert_int_equal(STAT(d, FORWARDINGS_LEARNED), 1);
    dec_free(&d);
    before = store_dump(e);
    d = redirect_ok(e, &req, &failed, 1, NULL);
    assert_decision(&d, 1, R_FAILOVER, 1);
    dec_free(&d);
    after = store_dump(e);
    assert_string_equal(after.data, before.data);
    buf_free(&after);
    buf_free(&before);
    assert_int_equal(list_count(e, U1), 1);
    assert_int_equal(rpc_remove_ok(e, U1, NULL), 1);

    /* The entry forgotten is the one applied: learned for "MESSAGE" (a
       request without Content-Type), applied to a MESSAGE:text/plain (the
       request's own key, for which nothing is stored). */
    pr_request bare = req;
    bare.content_type = NONE;
    buf_t r2 = reply1("302 Moved Temporarily", "Contact: <" T2 ">;expires=600");
    br = branch(T1, 302, &r2, true);
    d = redirect_ok(e, &bare, &br, 1, NULL);
    assert_int_equal(STAT(d, FORWARDINGS_LEARNED), 1);
    dec_free(&d);
    rpc_set_ok(e, U1, U2, "NOTIFY", NULL); /* an unrelated entry, kept */
    pr_entries *l = list_ok(e, U1);
    assert_int_equal(pr_entries_count(l), 2);
    pr_entry en = entry_at(l, 0);
    assert_entry(&en, U1, "MESSAGE", "temporary", T2, T1, 302);
    pr_entries_free(l);
    d = lookup_ok(e, &req, NULL);
    assert_decision(&d, 1, R_STORED_FORWARDING, 1);
    assert_bytes(branch_at(&d, 0).uri, T2);
    dec_free(&d);
    pr_branch failed2 = branch(T2, 408, NULL, true);
    d = redirect_ok(e, &req, &failed2, 1, NULL);
    assert_decision(&d, 1, R_FAILOVER, 1);
    dec_free(&d);
    l = list_ok(e, U1);
    assert_int_equal(pr_entries_count(l), 1);
    assert_bytes(entry_at(l, 0).service, "NOTIFY");
    pr_entries_free(l);

    buf_free(&r);
    buf_free(&r2);
    buf_free(&r301);
    pr_engine_free(e);
}

/* ================================================================== */
/* Tests: hostile input                                                */
/* ================================================================== */

static void test_hostile_10000_contacts(void **state) {
    (void)state;
    fake_env env = {0};
    static const char *const s[] = {"allowed_domains", "partner.example", NULL};
    pr_engine *e = make_engine(&env, s);
    pr_request req = message_req(U1, "cid-10000");

    /* One Contact header with 10,000 values. */
    buf_t h = {0};
    buf_adds(&h, "Contact: ");
    for (int k = 0; k < 10000; k++) {
        buf_addf(&h, "%s<sip:c%d@partner.example>;q=0.%03d", k ? ", " : "", k, k % 1000);
    }
    buf_t r = reply1("300 Multiple Choices", h.data);
    pr_branch br = branch(T1, 300, &r, true);
    dec_t d = redirect_ok(e, &req, &br, 1, "parallel");
    assert_decision(&d, 1, R_REDIRECT, 8); /* max_branches */
    assert_int_equal(STAT(d, CONTACTS_DROPPED), 10000 - 8);
    assert_int_equal(STAT(d, REDIRECTS_FOLLOWED), 1);
    /* Best q first, stable for equal q: c999, c1999, ... */
    assert_bytes(branch_at(&d, 0).uri, "sip:c999@partner.example");
    assert_bytes(branch_at(&d, 1).uri, "sip:c1999@partner.example");
    assert_int_equal(branch_at(&d, 0).q, 999);
    dec_free(&d);
    buf_free(&r);
    buf_free(&h);

    /* 10,000 Contact header lines. */
    buf_t r2 = {0};
    buf_adds(&r2, "SIP/2.0 300 Multiple Choices\r\nCall-ID: c1\r\n");
    for (int k = 0; k < 10000; k++) {
        buf_addf(&r2, "Contact: <sip:h%d@partner.example>\r\n", k);
    }
    buf_adds(&r2, "Content-Length: 0\r\n\r\n");
    br = branch(T1, 300, &r2, true);
    d = redirect_ok(e, &req, &br, 1, NULL);
    assert_decision(&d, 1, R_REDIRECT, 1);
    assert_bytes(branch_at(&d, 0).uri, "sip:h0@partner.example");
    assert_int_equal(STAT(d, CONTACTS_DROPPED), 10000 - 8);
    dec_free(&d);
    buf_free(&r2);

    /* 10,000 Contacts none of which is acceptable. */
    buf_t r3 = {0};
    buf_adds(&r3, "SIP/2.0 300 Multiple Choices\r\nContact: ");
    for (int k = 0; k < 10000; k++) {
        buf_addf(&r3, "%s<sip:x%d@attacker.example>", k ? "," : "", k);
    }
    buf_adds(&r3, "\r\n\r\n");
    br = branch(T1, 300, &r3, true);
    d = redirect_ok(e, &req, &br, 1, NULL);
    assert_decision(&d, -2, R_ALL_TARGETS_REFUSED, 0);
    assert_int_equal(STAT(d, TARGETS_REFUSED), 10000);
    dec_free(&d);
    buf_free(&r3);
    pr_engine_free(e);
}

static void test_hostile_60kb_contact_header(void **state) {
    (void)state;
    fake_env env = {0};
    static const char *const s[] = {"allowed_domains", "partner.example", NULL};
    pr_engine *e = make_engine(&env, s);
    pr_request req = message_req(U1, "cid-60k");
    enum { BIG = 60 * 1024 };

    /* (a) One 60 KB URI: longer than MAX_URI_LEN, so no URI at all: skipped
     * (counted refused), and the 302 counts as failed: the next terminal. */
    buf_t h = {0};
    buf_adds(&h, "Contact: <sip:");
    for (int k = 0; k < BIG; k++) {
        buf_add(&h, "a", 1);
    }
    buf_adds(&h, "@partner.example>");
    assert_true(h.len > BIG);
    buf_t r = reply1("302 Moved", h.data);
    pr_branch br = branch(T1, 302, &r, true);
    log_reset();
    dec_t d = redirect_ok(e, &req, &br, 1, NULL);
    assert_decision(&d, 1, R_FAILOVER, 1);
    assert_int_equal(STAT(d, TARGETS_REFUSED), 1);
    /* The warning quotes the URI cut short, not 60 KB of it. */
    for (int i = 0; i < g_log.total && i < LOG_RING; i++) {
        assert_true(g_log.msgs[i].len < 4096);
    }
    dec_free(&d);
    buf_free(&r);
    buf_free(&h);

    /* (b) A 60 KB display name before a good Contact. */
    buf_adds(&h, "Contact: \"");
    for (int k = 0; k < BIG; k++) {
        buf_add(&h, "N", 1);
    }
    buf_adds(&h, "\" <" T3 ">;q=0.4");
    r = reply1("302 Moved", h.data);
    br = branch(T1, 302, &r, true);
    d = redirect_ok(e, &req, &br, 1, NULL);
    assert_decision(&d, 1, R_REDIRECT, 1);
    assert_bytes(branch_at(&d, 0).uri, T3);
    assert_int_equal(branch_at(&d, 0).q, 400);
    dec_free(&d);
    buf_free(&r);
    buf_free(&h);

    /* (c) 60 KB of one unterminated quoted string: one malformed Contact,
       skipped with a warning (counted refused); the 302 had nothing usable,
       so it counts as failed: the next terminal. */
    buf_adds(&h, "Contact: \"");
    for (int k = 0; k < BIG; k++) {
        buf_add(&h, (k % 7) ? "q" : "\\", 1);
    }
    r = reply1("302 Moved", h.data);
    br = branch(T1, 302, &r, true);
    log_reset();
    d = redirect_ok(e, &req, &br, 1, NULL);
    assert_decision(&d, 1, R_FAILOVER, 1);
    assert_int_equal(STAT(d, TARGETS_REFUSED), 1);
    assert_true(log_has(PR_LOG_LEVEL_WARN, "cid-60k", "malformed Contact"));
    dec_free(&d);
    buf_free(&r);
    buf_free(&h);

    /* (d) 60 KB of commas and semicolons. */
    buf_adds(&h, "Contact: ");
    for (int k = 0; k < BIG; k++) {
        buf_add(&h, (k % 2) ? "," : ";", 1);
    }
    r = reply1("302 Moved", h.data);
    br = branch(T1, 302, &r, true);
    d = redirect_ok(e, &req, &br, 1, NULL);
    assert_true(d.v.script_rc >= -2 && d.v.script_rc <= 1);
    dec_free(&d);
    buf_free(&r);
    buf_free(&h);

    /* (e) A Request-URI of 60 KB. */
    buf_adds(&h, "sip:");
    for (int k = 0; k < BIG; k++) {
        buf_add(&h, "u", 1);
    }
    buf_adds(&h, "@example.com");
    req.ruri = BN(h.data, h.len);
    d = lookup_ok(e, &req, NULL);
    assert_decision(&d, -2, R_BAD_REQUEST_URI, 0);
    dec_free(&d);
    buf_free(&h);
    pr_engine_free(e);
}

static void test_hostile_garbage_replies(void **state) {
    (void)state;
    fake_env env = {0};
    pr_engine *e = make_engine(&env, NULL);
    pr_request req = message_req(U1, "cid-garbage");

    /* The simple case: not a SIP reply at all, so a 3xx without Contact. */
    static const uint8_t junk[] = {0x00, 0xff, 'g', 'a', 'r', 'b', 'a', 'g', 'e'};
    pr_branch br = branch(T1, 302, NULL, true);
    br.reply = BN(junk, sizeof junk);
    dec_t d = redirect_ok(e, &req, &br, 1, NULL);
    assert_decision(&d, 1, R_FAILOVER, 1);
    assert_bytes(branch_at(&d, 0).uri, T2);
    dec_free(&d);

    /* Random bytes, of random lengths, for each kind of status; and random
       bytes after a valid status line and a "Contact: " prefix. */
    static const uint32_t statuses[] = {300, 301, 302, 480, 503, 0};
    uint8_t *buf = malloc(8192);
    assert_non_null(buf);
    for (int it = 0; it < 300; it++) {
        size_t len = (size_t)(rng() % 8192);
        size_t off = 0;
        if (it % 3 == 1) {
            static const char pre[] = "SIP/2.0 302 Moved\r\nContact: ";
            off = sizeof pre - 1;
            memcpy(buf, pre, off);
            if (len < off) {
                len = off;
            }
        }
        for (size_t i = off; i < len; i++) {
            uint64_t x = rng();
            /* Bias toward the parser's special bytes. */
            static const char special[] = "<>\",;=:@\\\r\n \t*?q";
            buf[i] = (x & 0x300) ? (uint8_t)(x >> 16) : (uint8_t)special[(x >> 16) % 16];
        }
        pr_branch b2[2] = {branch(T2, 486, NULL, false), branch(T1, 302, NULL, true)};
        b2[1].status = statuses[it % 6];
        b2[1].reply = BN(buf, len);
        /* check_view (in redirect_ok) holds the invariants: rc in {1, -1,
           -2}, branches exactly when rc is 1, each with a URI, q in range,
           a known reason. */
        d = redirect_ok(e, &req, b2, 2, (it & 1) ? "parallel" : "");
        dec_free(&d);
    }

    /* Random bytes as the Request-URI: a bad Request-URI, never a crash. */
    for (int it = 0; it < 100; it++) {
        size_t len = 1 + (size_t)(rng() % 300);
        for (size_t i = 0; i < len; i++) {
            buf[i] = (uint8_t)rng();
        }
        pr_request r = req;
        r.ruri = BN(buf, len);
        d = lookup_ok(e, &r, NULL);
        assert_true(d.v.script_rc == -2 || d.v.script_rc == -1);
        dec_free(&d);
    }
    free(buf);

    /* A reply larger than the parser's cap (1 MiB): refused, counts as failed. */
    size_t big_len = REPLY_MAX + 1;
    char *big = malloc(big_len);
    assert_non_null(big);
    static const char head[] = "SIP/2.0 302 Moved\r\nContact: <" T3 ">\r\nX-Pad: ";
    memcpy(big, head, sizeof head - 1);
    memset(big + sizeof head - 1, 'p', big_len - (sizeof head - 1));
    br = branch(T1, 302, NULL, true);
    br.reply = BN(big, big_len);
    d = redirect_ok(e, &req, &br, 1, NULL);
    assert_decision(&d, 1, R_FAILOVER, 1);
    assert_bytes(branch_at(&d, 0).uri, T2);
    dec_free(&d);
    free(big);
    pr_engine_free(e);
}

static void test_hostile_branch_status_and_count(void **state) {
    (void)state;
    fake_env env = {0};
    pr_engine *e = make_engine(&env, NULL);
    pr_request req = message_req(U1, "cid-hostile-branches");

    /* Statuses outside 0 and 100..699: refused, out-parameters untouched. */
    static const uint32_t bad[] = {999, 1, 99, 700, 65535, 65536 + 302, UINT32_MAX};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        pr_branch br[2] = {branch(T2, 480, NULL, false), branch(T1, bad[i], NULL, true)};
        pr_failure f = failure_of(br, 2, NONE);
        redirect_fails(e, &req, &f, PR_STATUS_INVALID_ARGUMENT);
        /* In an earlier round too. */
        br[0].status = bad[i];
        br[1].status = 480;
        redirect_fails(e, &req, &f, PR_STATUS_INVALID_ARGUMENT);
    }
    /* 100 and 699 are in range. */
    pr_branch ok = branch(T1, 100, NULL, true);
    dec_t d = redirect_ok(e, &req, &ok, 1, NULL);
    dec_free(&d);
    ok.status = 699;
    d = redirect_ok(e, &req, &ok, 1, NULL);
    assert_decision(&d, -1, R_GLOBAL_FAILURE, 0);
    dec_free(&d);

    /* n_branches > 1024: refused before reading the array. */
    enum { N = PR_MAX_BRANCHES_IN + 1 };
    pr_branch *many = calloc(N, sizeof *many);
    assert_non_null(many);
    char (*uris)[48] = calloc(N, sizeof *uris);
    assert_non_null(uris);
    for (int i = 0; i < N; i++) {
        snprintf(uris[i], sizeof uris[i], "sip:b%d@10.0.%d.%d:5060", i, i / 256, i % 256);
        many[i] = branch(uris[i], 480, NULL, i == N - 2);
    }
    static const size_t too_many[] = {N, SIZE_MAX, (size_t)1 << 40};
    for (size_t i = 0; i < sizeof too_many / sizeof too_many[0]; i++) {
        pr_failure f = failure_of(many, too_many[i], NONE);
        redirect_fails(e, &req, &f, PR_STATUS_INVALID_ARGUMENT);
    }
    assert_int_equal(env.lookups, 0);
    /* Exactly 1024: accepted; Kamailio's branch limit (12) is long past. */
    d = redirect_ok(e, &req, many, PR_MAX_BRANCHES_IN, NULL);
    assert_decision(&d, -1, R_BRANCH_LIMIT, 0);
    dec_free(&d);
    /* With a large enough branch limit: on to the terminals. */
    assert_int_equal(pr_engine_set_branch_limit(e, 2000), PR_STATUS_OK);
    d = redirect_ok(e, &req, many, PR_MAX_BRANCHES_IN, "parallel");
    assert_decision(&d, 1, R_FAILOVER, 3);
    dec_free(&d);
    free(uris);
    free(many);
    pr_engine_free(e);
}

/* The view's per-branch History-Info and Diversion values, the memo that
 * carries the entries to the next round, and the request's History-Info
 * rows and Privacy as the module passes them. */
static void test_view_history_info(void **state) {
    (void)state;
    fake_env env = {0};
    static const char *const s[] = {"diversion", "1", NULL};
    pr_engine *e = make_engine(&env, s);
    pr_request req = message_req(U1, "cid-hi");

    dec_t d = lookup_ok(e, &req, NULL);
    assert_decision(&d, 1, R_REGISTERED, 1);
    /* push_lookup's first delivery to a registered terminal adds none
       (nothing was forwarded yet); the next round derives its entry from
       the transaction: no memo either. */
    assert_empty(branch_at(&d, 0).history_info);
    assert_empty(branch_at(&d, 0).diversion);
    buf_t m1 = memo_of(&d);
    assert_int_equal(m1.len, 0);
    dec_free(&d);

    /* t1 does not answer: t2, with t1's entry and its answer; the memo
       carries the entries to the next round. */
    pr_branch br[2] = {branch(T1, 408, NULL, true), branch(T2, 0, NULL, false)};
    d = redirect_memo_ok(e, &req, br, 1, buf_bytes(&m1), NULL);
    assert_decision(&d, 1, R_FAILOVER, 1);
    assert_bytes(branch_at(&d, 0).history_info,
                 "<" U1 ">;index=1, <" T1 "?Reason=SIP%3Bcause%3D408>;index=1.1;rc=1, <" T2
                 ";cause=408>;index=1.2;rc=1");
    assert_bytes(branch_at(&d, 0).diversion, "<" U1 ">;reason=no-answer;counter=1");
    assert_true(d.v.memo.len > 0);
    dec_free(&d);

    /* Rows and Privacy from the request: extended, tagged (the failure
       round; the first delivery adds none). */
    pr_bytes rows[2] = {B("<sip:alice@a.example>;index=1"), B("<" U1 ">;index=1.1;mp=1")};
    pr_request r = req;
    r.history_info = rows;
    r.n_history_info = 2;
    r.privacy = B("history");
    d = lookup_ok(e, &r, NULL);
    assert_empty(branch_at(&d, 0).history_info);
    dec_free(&d);
    d = redirect_memo_ok(e, &r, br, 1, buf_bytes(&m1), NULL);
    assert_bytes(branch_at(&d, 0).history_info,
                 "<" T1 "?Reason=SIP%3Bcause%3D408&Privacy=history>;index=1.1.1;rc=1.1, <" T2
                 ";cause=408?Privacy=history>;index=1.1.2;rc=1.1");
    dec_free(&d);
    /* More rows than are read: not trusted, the entries start at 1. */
    pr_bytes nine[PR_MAX_HISTORY_INFO_ROWS + 1];
    for (size_t i = 0; i <= PR_MAX_HISTORY_INFO_ROWS; i++) {
        nine[i] = B("<" U1 ">;index=1.1");
    }
    r.history_info = nine;
    r.n_history_info = 1000;
    r.privacy = B("");
    log_reset();
    d = redirect_memo_ok(e, &r, br, 1, buf_bytes(&m1), NULL);
    assert_bytes(branch_at(&d, 0).history_info,
                 "<" U1 ">;index=1, <" T1 "?Reason=SIP%3Bcause%3D408>;index=1.1;rc=1, <" T2
                 ";cause=408>;index=1.2;rc=1");
    assert_true(log_has(PR_LOG_LEVEL_WARN, "cid-hi", "History-Info"));
    dec_free(&d);
    /* Rows announced but NULL: refused, nothing read. */
    r.history_info = NULL;
    r.n_history_info = 1;
    pr_decision *dp = NULL;
    pr_decision_view v;
    assert_int_equal(pr_push_lookup(e, &r, &dp, &v), PR_STATUS_NULL_PARAMETER);
    assert_null(dp);
    buf_free(&m1);
    pr_engine_free(e);
}

static void test_hostile_max_depth(void **state) {
    (void)state;
    fake_env env = {0};
    static const char *const s[] = {"max_depth", "1", "allowed_domains", "partner.example",
                                    "history_info", "0", NULL};
    pr_engine *e = make_engine(&env, s);
    pr_request req = message_req(U1, "cid-depth");

    /* Round 1: t1 redirects to t2 (followed: depth 1 of 1). */
    buf_t r1 = reply1("302 Moved", "Contact: <" T2 ">");
    pr_branch br[2] = {branch(T1, 302, &r1, true), branch(T2, 0, NULL, false)};
    dec_t d = redirect_ok(e, &req, br, 1, NULL);
    assert_decision(&d, 1, R_REDIRECT, 1);
    assert_bytes(branch_at(&d, 0).uri, T2);
    /* Nothing pending, one 3xx followed: the memo is left out (the next
       round counts the transaction's earlier 3xx). */
    buf_t m1 = memo_of(&d);
    assert_int_equal(m1.len, 0);
    dec_free(&d);

    /* Round 2: t2 redirects back to t1 and to a far target: past max_depth
       (one redirect was followed: t1's 302 in the earlier round), so not
       followed; t1 is never tried twice; on to the next terminal. */
    buf_t r2 = reply1("302 Moved", "Contact: <" T1 ">, <sip:far@partner.example>");
    br[0].current_round = false;
    br[1] = branch(T2, 302, &r2, true);
    log_reset();
    d = redirect_memo_ok(e, &req, br, 2, buf_bytes(&m1), NULL);
    assert_int_equal(STAT(d, LOOPS_PREVENTED), 1);
    assert_true(log_has(PR_LOG_LEVEL_WARN, "cid-depth", "max_depth"));
    assert_decision(&d, 1, R_FAILOVER, 1);
    assert_bytes(branch_at(&d, 0).uri, T3);
    dec_free(&d);

    /* A forged memo claiming 2^32-1 redirects: the same, no overflow. */
    static const char forged[] = "pr1 4294967295\n";
    d = redirect_memo_ok(e, &req, br, 2, B(forged), NULL);
    assert_decision(&d, 1, R_FAILOVER, 1);
    dec_free(&d);
    buf_free(&m1);
    buf_free(&r1);
    buf_free(&r2);
    pr_engine_free(e);
}

static void test_memo_carries_pending_contacts(void **state) {
    (void)state;
    fake_env env = {0};
    static const char *const s[] = {"allowed_domains", "partner.example", "history_info", "0",
                                    NULL};
    pr_engine *e = make_engine(&env, s);
    pr_request req = message_req(U1, "cid-memo");

    /* The view's memo is empty after pr_push_lookup. */
    dec_t d = lookup_ok(e, &req, NULL);
    assert_empty(d.v.memo);
    dec_free(&d);

    /* F4 serial over three rounds: the 300's Contacts by q, then a terminal. */
    buf_t r = reply1("300 Multiple Choices",
                     "Contact: <sip:a@partner.example>;q=0.2, <sip:b@partner.example>;q=0.9");
    pr_branch br[3] = {branch(T1, 300, &r, true), branch("sip:b@partner.example", 480, NULL, true),
                       branch("sip:a@partner.example", 480, NULL, true)};
    d = redirect_ok(e, &req, br, 1, NULL);
    assert_decision(&d, 1, R_REDIRECT, 1);
    assert_bytes(branch_at(&d, 0).uri, "sip:b@partner.example");
    assert_int_equal(branch_at(&d, 0).q, 900);
    buf_t m1 = memo_of(&d);
    dec_free(&d);

    br[0].current_round = false;
    d = redirect_memo_ok(e, &req, br, 2, buf_bytes(&m1), NULL);
    assert_decision(&d, 1, R_PENDING_REDIRECT, 1);
    assert_bytes(branch_at(&d, 0).uri, "sip:a@partner.example");
    assert_int_equal(branch_at(&d, 0).q, 200);
    buf_t m2 = memo_of(&d);
    dec_free(&d);

    /* Without the memo the earlier Contacts are lost: a terminal instead. */
    d = redirect_ok(e, &req, br, 2, NULL);
    assert_decision(&d, 1, R_FAILOVER, 1);
    assert_bytes(branch_at(&d, 0).uri, T2);
    dec_free(&d);

    br[1].current_round = false;
    d = redirect_memo_ok(e, &req, br, 3, buf_bytes(&m2), NULL);
    assert_decision(&d, 1, R_FAILOVER, 1);
    assert_bytes(branch_at(&d, 0).uri, T2);
    dec_free(&d);
    /* A stale memo (round 1's) after everything in it was tried. */
    d = redirect_memo_ok(e, &req, br, 3, buf_bytes(&m1), NULL);
    assert_decision(&d, 1, R_FAILOVER, 1);
    dec_free(&d);
    buf_free(&m1);
    buf_free(&m2);
    buf_free(&r);

    /* Bad memos: (NULL, len > 0) is refused; anything else is read
       leniently; a forged pending target still passes today's policy. */
    pr_branch fail = branch(T1, 480, NULL, true);
    pr_failure nf = failure_of(&fail, 1, BN(NULL, 16));
    redirect_fails(e, &req, &nf, PR_STATUS_NULL_PARAMETER);

    static const uint8_t not_utf8[] = {'p', 'r', '1', ' ', '0', '\n', 0xff, 0xfe, '\n'};
    d = redirect_memo_ok(e, &req, &fail, 1, BN(not_utf8, sizeof not_utf8), NULL);
    assert_decision(&d, 1, R_FAILOVER, 1);
    dec_free(&d);

    static const char evil[] = "pr1 0\n- sip:evil@attacker.example\n1000 sips:x@example.com\n";
    d = redirect_memo_ok(e, &req, &fail, 1, B(evil), NULL);
    assert_decision(&d, 1, R_FAILOVER, 1); /* neither target is admitted */
    assert_bytes(branch_at(&d, 0).uri, T2);
    dec_free(&d);

    static const char good[] = "pr1 0\n- sip:x@partner.example\n";
    d = redirect_memo_ok(e, &req, &fail, 1, B(good), "parallel");
    assert_decision(&d, 1, R_PENDING_REDIRECT, 1);
    assert_bytes(branch_at(&d, 0).uri, "sip:x@partner.example");
    dec_free(&d);

    /* A huge memo: 100,000 pending lines (kept: at most 256). */
    buf_t big = {0};
    buf_adds(&big, "pr1 0\n");
    for (int k = 0; k < 100000; k++) {
        buf_addf(&big, "%d sip:p%d@partner.example\n", k % 1001, k);
    }
    d = redirect_memo_ok(e, &req, &fail, 1, buf_bytes(&big), "parallel");
    assert_decision(&d, 1, R_PENDING_REDIRECT, 8);
    buf_t m3 = memo_of(&d);
    assert_true(m3.len < big.len);
    dec_free(&d);
    buf_free(&m3);
    buf_free(&big);

    /* Random bytes as memo. */
    uint8_t junk[2048];
    for (int it = 0; it < 100; it++) {
        size_t len = (size_t)(rng() % sizeof junk);
        for (size_t i = 0; i < len; i++) {
            junk[i] = (it & 1) ? (uint8_t)rng() : (uint8_t)" \n-0123pr1sip:@x"[rng() % 16];
        }
        d = redirect_memo_ok(e, &req, &fail, 1, BN(junk, len), NULL); /* check_view */
        dec_free(&d);
    }
    pr_engine_free(e);
}

/* ------------------------------------------------------------------ */
/* Structured fuzzing: replies, branch lists, memos and requests built  */
/* from SIP-shaped fragments, checked against invariants.              */
/* ------------------------------------------------------------------ */

static const char *pick(const char *const *list, size_t n) { return list[rng() % n]; }
#define PICK(list) pick((list), sizeof(list) / sizeof((list)[0]))

static const char *const FZ_USERS[] = {"u1", "u2", "t1", "t2", "t3", "x", "evil", "nobody",
                                       "%41b", "a.b", "many", "broken", ""};
static const char *const FZ_HOSTS[] = {"example.com", "EXAMPLE.com", "partner.example",
                                       "a.trusted.example", "attacker.example", "127.0.0.1",
                                       "127.0.0.1:5071", "127.0.0.1:5072", "127.0.0.1:5073",
                                       "127.0.0.1:5060", "[::1]", "[::1]:5070", "h:0",
                                       "h:99999", "", "-", "example.com:"};
static const char *const FZ_SCHEMES[] = {"sip:", "sip:", "sip:", "sips:", "SIP:", "tel:",
                                         "http://", ""};
static const char *const FZ_PARAMS[] = {";q=0.5", ";q=1", ";q=1.000", ";q=0", ";q=2", ";q=-1",
                                        ";q=0.", ";q=", ";expires=60", ";expires=0",
                                        ";expires=99999999999999999999", ";expires=x",
                                        ";lr", ";transport=tcp", ";x=\"a,b\"", ";", "",
                                        "", ""};
static const char *const FZ_JUNK[] = {",", ", ", "\"", "\\", "<", ">", "\r\n ", "\r\n\t",
                                      " ", "*", "\"Disp, Name\" ", "\xff", ";", "=", "@",
                                      ":"};

static void fz_uri(buf_t *b) {
    buf_adds(b, PICK(FZ_SCHEMES));
    const char *u = PICK(FZ_USERS);
    if (*u && rng() % 8) {
        buf_adds(b, u);
        buf_adds(b, "@");
    }
    buf_adds(b, PICK(FZ_HOSTS));
    if (rng() % 4 == 0) {
        buf_adds(b, ";transport=udp");
    }
}

static void fz_contact_values(buf_t *b) {
    int n = 1 + (int)(rng() % 5);
    for (int i = 0; i < n; i++) {
        if (i) {
            buf_adds(b, rng() % 8 ? ", " : PICK(FZ_JUNK));
        }
        if (rng() % 6 == 0) {
            buf_adds(b, "\"Some One\" ");
        }
        bool angle = rng() % 5 != 0;
        if (angle) {
            buf_adds(b, "<");
        }
        fz_uri(b);
        if (angle && rng() % 12) {
            buf_adds(b, ">");
        }
        int np = (int)(rng() % 3);
        for (int k = 0; k < np; k++) {
            buf_adds(b, PICK(FZ_PARAMS));
        }
        if (rng() % 10 == 0) {
            buf_adds(b, PICK(FZ_JUNK));
        }
    }
}

static buf_t fz_reply(uint32_t status) {
    buf_t r = {0};
    if (rng() % 20 == 0) { /* not a status line */
        buf_adds(&r, PICK(FZ_JUNK));
    }
    buf_addf(&r, "SIP/2.0 %u Whatever\r\n", status);
    int nh = (int)(rng() % 5);
    for (int h = 0; h < nh; h++) {
        switch (rng() % 6) {
        case 0:
        case 1:
        case 2:
            buf_adds(&r, rng() % 4 ? "Contact: " : (rng() % 2 ? "m:" : "contact :"));
            fz_contact_values(&r);
            break;
        case 3:
            buf_addf(&r, "Expires: %s", rng() % 2 ? "3600" : "4294967296");
            break;
        case 4:
            buf_adds(&r, "Via: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK1");
            break;
        default:
            buf_adds(&r, "X-Junk: ");
            buf_adds(&r, PICK(FZ_JUNK));
            break;
        }
        buf_adds(&r, rng() % 16 ? "\r\n" : "\n");
    }
    if (rng() % 8) {
        buf_adds(&r, "\r\n");
    }
    return r;
}

static bool fz_has_foreign_branch(const dec_t *d) {
    for (size_t i = 0; i < d->v.n_branches; i++) {
        pr_branch_out o = branch_at(d, i);
        for (size_t k = 0; k + 16 <= o.uri.len; k++) {
            if (memcmp(o.uri.ptr + k, "attacker.example", 16) == 0) {
                return true;
            }
        }
    }
    return false;
}

/* Reasons seen by the fuzzer (printed with HARNESS_FUZZ_STATS=1). */
static unsigned long fz_reasons[64];
static unsigned long fz_learned, fz_applied, fz_store_shrank, fz_store_calls;

/* Checks the invariants every decision must hold (beyond check_view, which
   the call helpers ran); frees it. */
static void fz_check(dec_t *d, const pr_branch *br, size_t n, bool parallel,
                     uint32_t max_branches) {
    fz_reasons[d->v.reason % 64]++;
    fz_learned += STAT(*d, FORWARDINGS_LEARNED);
    fz_applied += STAT(*d, FORWARDINGS_APPLIED);
    size_t nb = d->v.n_branches;
    assert_true(nb <= (parallel ? max_branches : 1));
    assert_int_equal(d->v.parallel, parallel);
    /* At most one forwarding learned or applied per decision. */
    assert_true(STAT(*d, FORWARDINGS_LEARNED) <= 1 && STAT(*d, FORWARDINGS_APPLIED) <= 1);
    for (size_t i = 0; i < nb; i++) {
        pr_branch_out o = branch_at(d, i);
        /* Never a target already tried (byte-identical at least). */
        for (size_t k = 0; k < n; k++) {
            assert_false(br[k].uri.len == o.uri.len &&
                         memcmp(br[k].uri.ptr, o.uri.ptr, o.uri.len) == 0);
        }
    }
    /* attacker.example is never allowed. */
    assert_false(fz_has_foreign_branch(d));
    dec_free(d);
}

/* A provisioning through the RPC function with fuzzed arguments: applied
   or refused as a bad argument, never anything else. */
static void fz_provision(const pr_engine *e, const buf_t *ruri) {
    static const char *const services[] = {"", "*", "MESSAGE", "MESSAGE:text/plain",
                                           "NOTIFY", "NOTIFY:presence", "message:TEXT/plain"};
    static const char *const ttls[] = {"", "", "1", "3600", "0", "x"};
    buf_t target = {0};
    if (rng() % 3) {
        buf_adds(&target, PICK(((const char *const[]){U2, T3, "sip:p@partner.example",
                                                     "sips:q@a.trusted.example"})));
    } else {
        fz_uri(&target);
    }
    const char *aor = rng() % 3 ? U1 : ruri->data;
    pr_status s = pr_rpc_set(e, (const uint8_t *)aor, strlen(aor), (const uint8_t *)target.data,
                             target.len, OPT(PICK(services)), OPT(PICK(ttls)));
    if (s != PR_STATUS_OK && s != PR_STATUS_INVALID_ARGUMENT && s != PR_STATUS_INVALID_UTF8) {
        print_error("pr_rpc_set(%s, %s) = %u: %s\n", aor, target.data, s, engine_error(e));
        fail();
    }
    buf_free(&target);
}

static void test_fuzz_structured(void **state) {
    store_fixture *fx = *state;
    /* HARNESS_FUZZ_ITERS / HARNESS_FUZZ_SEED override the defaults. */
    int iters = 3000;
    const char *env_iters = getenv("HARNESS_FUZZ_ITERS");
    if (env_iters && atoi(env_iters) > 0) {
        iters = atoi(env_iters);
    }
    static const uint32_t codes[] = {300, 301, 302, 302, 303, 305, 380, 399, 401, 407, 408,
                                     480, 486, 500, 503, 603, 200, 0, 100, 699};
    static const char *const methods[] = {"MESSAGE", "MESSAGE", "MESSAGE", "NOTIFY",
                                          "message", "NOTIFY", "MESSAGE", "OPTIONS"};
    const char *env_seed = getenv("HARNESS_FUZZ_SEED");
    if (env_seed && strtoull(env_seed, NULL, 0) != 0) {
        rng_state = strtoull(env_seed, NULL, 0);
    }
    fake_env env = {0};
    pr_set_logger(capture_log, &g_log, PR_LOG_LEVEL_DEBUG);
    log_reset(); /* only this test's errors count below */
    for (int it = 0; it < iters; it++) {
        char mb[4], md[4];
        uint32_t max_branches = 1 + (uint32_t)(rng() % 12);
        snprintf(mb, sizeof mb, "%u", max_branches);
        snprintf(md, sizeof md, "%u", 1 + (unsigned)(rng() % 4));
        const char *s[] = {"allowed_domains", "partner.example, *.trusted.example",
                           "max_branches", mb, "max_depth", md, NULL};
        /* One iteration in four has the store (the same file for all of
           them: what earlier ones learned or provisioned is applied). */
        bool with_store = rng() % 4 == 0;
        pr_engine *e = with_store ? store_engine_with(&env, fx->path, s) : make_engine(&env, s);
        if (rng() % 4 == 0) {
            assert_int_equal(pr_engine_set_branch_limit(e, 1 + (uint32_t)(rng() % 16)),
                             PR_STATUS_OK);
        }
        buf_t ruri = {0};
        if (rng() % 6) {
            buf_adds(&ruri, rng() % 10 ? "sip:u1@example.com" : "sips:u1@example.com");
        } else {
            fz_uri(&ruri);
        }
        pr_request req = message_req("", "cid-fuzz");
        req.ruri = buf_bytes(&ruri);
        req.method = B(PICK(methods));
        if (rng() % 10 == 0) {
            req.to_tag = B("tag");
        }
        req.event = rng() % 2 ? B("presence;id=1") : NONE;
        bool parallel = rng() % 2;
        const char *mode = parallel ? "parallel" : "serial";

        /* A provisioned forwarding, sometimes; the stored ones forgotten,
           sometimes. */
        if (with_store && rng() % 2 == 0) {
            fz_provision(e, &ruri);
        }
        if (with_store && rng() % 16 == 0) {
            rpc_remove_ok(e, U1, NULL);
        }

        /* Lookup. What it sent is, half of the time, what fails next (as
           in a real transaction: what a stored forwarding sent can fail). */
        enum { MAXNEXT = 3 };
        buf_t sent[MAXNEXT];
        memset(sent, 0, sizeof sent);
        size_t n_sent = 0;
        dec_t d = lookup_ok(e, &req, mode);
        for (; n_sent < MAXNEXT && n_sent < d.v.n_branches; n_sent++) {
            buf_add(&sent[n_sent], d.v.branches[n_sent].uri.ptr, d.v.branches[n_sent].uri.len);
        }
        fz_check(&d, NULL, 0, parallel, max_branches);

        /* Up to four failure rounds, each with the previous memo. */
        enum { MAXB = 24 };
        pr_branch br[MAXB];
        buf_t uris[MAXB], replies[MAXB];
        memset(uris, 0, sizeof uris);
        memset(replies, 0, sizeof replies);
        size_t n = 0;
        buf_t memo = {0};
        int rounds = 1 + (int)(rng() % 4);
        for (int round = 0; round < rounds && n < MAXB; round++) {
            for (size_t k = 0; k < n; k++) {
                br[k].current_round = false;
            }
            bool follow = n_sent > 0 && rng() % 2;
            int add = follow ? (int)n_sent : 1 + (int)(rng() % 3);
            for (int k = 0; k < add && n < MAXB; k++, n++) {
                if (follow) {
                    buf_add(&uris[n], sent[k].data, sent[k].len);
                } else if (rng() % 3) {
                    buf_adds(&uris[n], PICK(((const char *const[]){T1, T2, T3, U2T})));
                } else {
                    fz_uri(&uris[n]);
                }
                uint32_t code = codes[rng() % (sizeof codes / sizeof codes[0])];
                replies[n] = fz_reply(code);
                br[n] = branch("", code, rng() % 6 ? &replies[n] : NULL, true);
                br[n].uri = buf_bytes(&uris[n]);
            }
            pr_bytes m = buf_bytes(&memo);
            if (rng() % 10 == 0) { /* a damaged memo */
                m = rng() % 2 ? B("pr1 3\n- sip:evil@attacker.example\n") : BN("\xff", 1);
            }
            /* A decision writes at most one entry (learn) and removes at
               most one (forget); entries that expire meanwhile leave too. */
            size_t before = with_store ? store_count(e) : 0;
            d = redirect_memo_ok(e, &req, br, n, m, mode);
            buf_free(&memo);
            memo = memo_of(&d);
            for (size_t k = 0; k < MAXNEXT; k++) {
                sent[k].len = 0;
            }
            for (n_sent = 0; n_sent < MAXNEXT && n_sent < d.v.n_branches; n_sent++) {
                buf_add(&sent[n_sent], d.v.branches[n_sent].uri.ptr,
                        d.v.branches[n_sent].uri.len);
            }
            fz_check(&d, br, n, parallel, max_branches);
            if (with_store) {
                size_t after = store_count(e);
                assert_true(after <= before + 1);
                fz_store_shrank += after < before;
                fz_store_calls++;
            }
        }
        for (size_t k = 0; k < n; k++) {
            buf_free(&uris[k]);
            buf_free(&replies[k]);
        }
        for (size_t k = 0; k < MAXNEXT; k++) {
            buf_free(&sent[k]);
        }
        buf_free(&memo);
        buf_free(&ruri);
        pr_engine_free(e);
    }
    assert_int_equal(env.bad_aors, 0);
    assert_int_equal(g_log.count[PR_LOG_LEVEL_ERROR], 0); /* no panic, no store failure */
    if (getenv("HARNESS_FUZZ_STATS")) {
        for (int r = 0; r < 64; r++) {
            if (fz_reasons[r]) {
                const char *name = reason_name((uint32_t)r);
                printf("fuzz: reason %2d %-20s %lu\n", r, name ? name : "?", fz_reasons[r]);
            }
        }
        printf("fuzz: learned %lu, applied %lu; store calls %lu, of which it shrank %lu\n",
               fz_learned, fz_applied, fz_store_calls, fz_store_shrank);
    }
}

/* ================================================================== */

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_free_null),
        cmocka_unit_test(test_status_text),
        cmocka_unit_test(test_stat_names),
        cmocka_unit_test(test_service_by_event),
        cmocka_unit_test(test_config_null_and_utf8),
        cmocka_unit_test(test_config_good_values),
        cmocka_unit_test(test_config_bad_values_name_the_parameter),
        cmocka_unit_test(test_engine_branch_limit),
        cmocka_unit_test_setup_teardown(test_forwarding_of_64_targets, store_setup,
                                        store_teardown),
        cmocka_unit_test(test_lookup_bad_arguments),
        cmocka_unit_test(test_decision_view),
        cmocka_unit_test(test_view_history_info),
        cmocka_unit_test(test_lookup_serial_and_parallel),
        cmocka_unit_test(test_lookup_callback_failure),
        cmocka_unit_test(test_lookup_callback_reenters_the_engine),
        cmocka_unit_test(test_contacts_add_probes),
        cmocka_unit_test(test_lookup_duplicate_registration),
        cmocka_unit_test(test_lookup_contact_methods),
        cmocka_unit_test(test_lookup_usrloc_key),
        cmocka_unit_test(test_lookup_more_than_1024_contacts),
        cmocka_unit_test_setup_teardown(test_lookup_applies_stored_forwarding, store_setup,
                                        store_teardown),
        cmocka_unit_test_setup_teardown(test_untouched_requests_and_keys, store_setup,
                                        store_teardown),
        cmocka_unit_test_setup_teardown(test_f1_redirect_to_another_registered_terminal,
                                        store_setup, store_teardown),
        cmocka_unit_test(test_f2_failover_to_the_next_terminal),
        cmocka_unit_test_setup_teardown(test_6xx_stops_everything, store_setup, store_teardown),
        cmocka_unit_test_setup_teardown(test_foreign_domain_refused, store_setup, store_teardown),
        cmocka_unit_test_setup_teardown(test_301_learns_a_forwarding, store_setup,
                                        store_teardown),
        cmocka_unit_test_setup_teardown(test_stored_forwardings_in_redirect, store_setup,
                                        store_teardown),
        cmocka_unit_test(test_logger),
        cmocka_unit_test_setup_teardown(test_store_check_config, store_setup, store_teardown),
        cmocka_unit_test_setup_teardown(test_store_open_and_last_error, store_setup,
                                        store_teardown),
        cmocka_unit_test_setup_teardown(test_rpc_null_and_bad_arguments, store_setup,
                                        store_teardown),
        cmocka_unit_test_setup_teardown(test_rpc_set_list_remove, store_setup, store_teardown),
        cmocka_unit_test_setup_teardown(test_store_e2e_301_learned_then_applied, store_setup,
                                        store_teardown),
        cmocka_unit_test_setup_teardown(test_store_e2e_302_temporary_expires, store_setup,
                                        store_teardown),
        cmocka_unit_test_setup_teardown(test_store_e2e_provisioned, store_setup, store_teardown),
        cmocka_unit_test_setup_teardown(test_store_e2e_forget_failed_temporary, store_setup,
                                        store_teardown),
        cmocka_unit_test(test_hostile_10000_contacts),
        cmocka_unit_test(test_hostile_60kb_contact_header),
        cmocka_unit_test(test_hostile_garbage_replies),
        cmocka_unit_test(test_hostile_branch_status_and_count),
        cmocka_unit_test(test_hostile_max_depth),
        cmocka_unit_test(test_memo_carries_pending_contacts),
        cmocka_unit_test_setup_teardown(test_fuzz_structured, store_setup, store_teardown),
    };
    return cmocka_run_group_tests_name("push_redirect C ABI", tests, group_setup, group_teardown);
}
