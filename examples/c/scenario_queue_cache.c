/*
 * The create, queue and cache operations of the C scenario runner (see scenarios.c).
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "scenarios.h"

static int op_create(Run *r, Step *s) {
    FelixClient *c;
    FelixBytes ns, n[2];
    FelixError *e = NULL;
    if (!strcmp(s->op, "create_stream")) {
        const char *policy;
        uint64_t records, bytes, buffer;
        if (sc_names(r, s, &c, &ns, "stream", NULL, NULL, n) || s_str(s, "full_policy", NULL, &policy) ||
            s_uint(s, "max_records", 0, &records, NULL) || s_uint(s, "max_bytes", 0, &bytes, NULL) ||
            s_uint(s, "subscriber_buffer", 0, &buffer, NULL))
            return R_CHECK;
        if (buffer > 0xffffffffu) return fail("subscriber_buffer must fit in 32 bits");
        FelixStreamSettings st = {records, bytes, (uint32_t)buffer, 0};
        static const char *const P[] = {"block", "drop_newest", "drop_oldest", "disconnect"};
        for (uint32_t i = 0; policy && i < 4 && !st.full_policy; i++)
            if (!strcmp(policy, P[i])) st.full_policy = i + 1;
        if (policy && !st.full_policy) return fail("unknown full_policy \"%s\"", policy);
        FelixStatus x = felix_client_create_stream(c, ns, n[0], &st, &e);
        return x ? call_error(x, e) : R_OK;
    }
    if (!strcmp(s->op, "create_cache")) {
        uint64_t bytes, ttl;
        if (sc_names(r, s, &c, &ns, "cache", NULL, NULL, n) || s_uint(s, "max_bytes", 0, &bytes, NULL) ||
            s_uint(s, "default_ttl_ms", 0, &ttl, NULL))
            return R_CHECK;
        FelixStatus x = felix_client_create_cache(c, ns, n[0], bytes, ttl, &e);
        return x ? call_error(x, e) : R_OK;
    }
    const char *from;
    uint64_t ack, deliveries;
    if (sc_names(r, s, &c, &ns, "stream", "group", NULL, n) || s_str(s, "from", "earliest", &from) ||
        s_uint(s, "ack_timeout_ms", 0, &ack, NULL) || s_uint(s, "max_deliveries", 0, &deliveries, NULL))
        return R_CHECK;
    if (strcmp(from, "earliest") && strcmp(from, "latest")) return fail("unknown group start \"%s\"", from);
    if (deliveries > 0xffffffffu) return fail("max_deliveries must fit in 32 bits");
    FelixStatus x = felix_client_create_group(c, ns, n[0], n[1], !strcmp(from, "latest"), ack, (uint32_t)deliveries, &e);
    return x ? call_error(x, e) : R_OK;
}

static int consumer(Run *r, Step *s, FelixConsumer **q) {
    FelixClient *c;
    FelixBytes ns, n[2];
    FelixError *e = NULL;
    *q = NULL;
    if (sc_names(r, s, &c, &ns, "stream", "group", NULL, n)) return R_CHECK;
    FelixStatus x = felix_consumer_new(c, ns, n[0], n[1], q, &e);
    return x ? call_error(x, e) : R_OK;
}

static void list(const FelixResult *res, int dead, char *out, size_t cap) {
    size_t o = (size_t)snprintf(out, cap, "[");
    char p[160];
    for (size_t i = 0; res && i < res->len && o < cap - 300; i++) {
        const FelixItem *it = &res->items[i];
        show(it->payload.ptr, it->payload.len, p, sizeof p);
        if (dead)
            o += (size_t)snprintf(out + o, cap - o, "%s%s@%llu attempts %u %.*s", i ? ", " : "", p,
                                  (unsigned long long)it->offset, it->attempt, (int)it->text.len, (const char *)it->text.ptr);
        else
            o += (size_t)snprintf(out + o, cap - o, "%s%s@%llu attempt %u", i ? ", " : "", p,
                                  (unsigned long long)it->offset, it->attempt);
    }
    snprintf(out + o, cap - o, "]");
}

static int op_pull(Run *r, Step *s) {
    uint64_t max, wait;
    json_t *want;
    if (s_uint(s, "max", 100, &max, NULL) || s_uint(s, "wait_ms", 0, &wait, NULL) || s_array(s, "expect", &want))
        return R_CHECK;
    if (max > 0xffffffffu) return fail("max must fit in 32 bits");
    FelixConsumer *q;
    int rc = consumer(r, s, &q);
    if (rc) return rc;
    FelixError *e = NULL;
    FelixResult *res = NULL;
    uint64_t t = token();
    rc = finish(r, felix_consumer_pull_start(q, (uint32_t)max, wait, r->q, t, &e), e, t, &res);
    felix_consumer_free(q);
    if (rc) return rc;
    char shown[2048];
    list(res, 0, shown, sizeof shown);
    size_t got = res ? res->len : 0;
    static const char *const KEYS[] = {"payload", "attempt", NULL};
    if (want && json_array_size(want) != got)
        rc = fail("pulled %zu messages, expected %zu: %s", got, json_array_size(want), shown);
    for (size_t i = 0; want && rc == R_OK && i < got; i++) {
        char what[32], p[160], gp[160], a[24] = "*";
        uint8_t *wp;
        size_t wl;
        json_t *w = json_array_get(want, i), *attempt;
        snprintf(what, sizeof what, "expect[%zu]", i);
        if ((rc = entry(w, what, KEYS, &wp, &wl))) break;
        uint64_t wa = 0;
        const FelixItem *it = &res->items[i];
        if ((attempt = json_object_get(w, "attempt")) && uint_of(attempt, &wa))
            rc = fail("expect[%zu].attempt must be an integer", i);
        else if (attempt)
            snprintf(a, sizeof a, "%llu", (unsigned long long)wa);
        if (rc == R_OK && (!sc_eq(wp, wl, it->payload) || (attempt && wa != it->attempt))) {
            show(wp, wl, p, sizeof p);
            show(it->payload.ptr, it->payload.len, gp, sizeof gp);
            rc = fail("message %zu is %s attempt %u, expected %s attempt %s; pulled %s", i, gp, it->attempt, p, a, shown);
        }
        free(wp);
    }
    if (rc == R_OK) rc = sc_store_offsets(r, s, res);
    felix_result_free(res);
    return rc;
}

static int op_settle(Run *r, Step *s) {
    json_t *refs = json_object_get(s->m, "offsets");
    uint64_t *offs = NULL, delay, want;
    size_t n = 0;
    int has_want;
    uint32_t op = !strcmp(s->op, "queue_ack") ? FELIX_SETTLE_ACK : !strcmp(s->op, "queue_nack") ? FELIX_SETTLE_NACK : FELIX_SETTLE_REDRIVE;
    if (s_uint(s, "delay_ms", 0, &delay, NULL) || s_uint(s, "expect_count", 0, &want, &has_want)) return R_CHECK;
    if (!refs && op != FELIX_SETTLE_REDRIVE) return fail("%s needs offsets", s->op);
    if (refs && sc_offset_refs(r, refs, &offs, &n)) return R_CHECK;
    FelixConsumer *q;
    int rc = consumer(r, s, &q);
    if (rc == R_OK) {
        FelixError *e = NULL;
        FelixResult *res = NULL;
        uint64_t t = token(), none = 0;
        /* Offsets NULL means "all" (redrive only); an empty list is a non-NULL pointer. */
        const uint64_t *ptr = refs ? (n ? offs : &none) : NULL;
        rc = finish(r, felix_consumer_settle_start(q, op, ptr, n, delay, r->q, t, &e), e, t, &res);
        if (rc == R_OK && has_want && res->value != want)
            rc = fail("count is %llu, expected %llu", (unsigned long long)res->value, (unsigned long long)want);
        felix_result_free(res);
    }
    felix_consumer_free(q);
    free(offs);
    return rc;
}

static int op_dead_letters(Run *r, Step *s) {
    uint64_t max;
    json_t *want;
    if (s_uint(s, "max", 100, &max, NULL) || s_array(s, "expect", &want)) return R_CHECK;
    if (max > 0xffffffffu) return fail("max must fit in 32 bits");
    FelixConsumer *q;
    int rc = consumer(r, s, &q);
    if (rc) return rc;
    FelixError *e = NULL;
    FelixResult *res = NULL;
    uint64_t t = token();
    rc = finish(r, felix_consumer_dead_letters_start(q, (uint32_t)max, r->q, t, &e), e, t, &res);
    felix_consumer_free(q);
    if (rc) return rc;
    if (!want) {
        felix_result_free(res);
        return fail("dead_letters needs expect");
    }
    char shown[2048];
    list(res, 1, shown, sizeof shown);
    size_t got = res ? res->len : 0;
    static const char *const KEYS[] = {"payload", "attempts", "reason", NULL};
    if (json_array_size(want) != got) rc = fail("%zu dead letters, expected %zu: %s", got, json_array_size(want), shown);
    for (size_t i = 0; rc == R_OK && i < got; i++) {
        char what[32];
        uint8_t *wp;
        size_t wl;
        json_t *w = json_array_get(want, i), *a = json_object_get(w, "attempts"), *why_ = json_object_get(w, "reason");
        snprintf(what, sizeof what, "expect[%zu]", i);
        if ((rc = entry(w, what, KEYS, &wp, &wl))) break;
        const FelixItem *it = &res->items[i];
        uint64_t wa = 0;
        int ok = sc_eq(wp, wl, it->payload);
        free(wp);
        if (a && uint_of(a, &wa)) rc = fail("expect[%zu].attempts must be an integer", i);
        else if (why_ && !json_is_string(why_)) rc = fail("expect[%zu].reason must be a string", i);
        else if (!ok || (a && wa != it->attempt) ||
                 (why_ && !sc_eq((const uint8_t *)json_string_value(why_), json_string_length(why_), it->text))) {
            char *d = json_dumps(w, JSON_COMPACT);
            rc = fail("dead letter %zu does not match %s; got %s", i, d, shown);
            free(d);
        }
    }
    if (rc == R_OK) rc = sc_store_offsets(r, s, res);
    felix_result_free(res);
    return rc;
}

static int op_cache_put(Run *r, Step *s) {
    FelixClient *c;
    FelixBytes ns, n[2];
    uint64_t ttl, version = 0;
    int if_absent;
    json_t *v = json_object_get(s->m, "value"), *iv = json_object_get(s->m, "if_version");
    if (sc_names(r, s, &c, &ns, "cache", "key", NULL, n) || s_uint(s, "ttl_ms", 0, &ttl, NULL) ||
        s_bool(s, "if_absent", 0, &if_absent, NULL))
        return R_CHECK;
    if (!v) return fail("cache_put needs value");
    if (if_absent && iv) return fail("if_absent and if_version are exclusive");
    if (iv && sc_version_of(r, iv, &version)) return R_CHECK;
    uint32_t cond = if_absent ? FELIX_PUT_CONDITION_IF_ABSENT : iv ? FELIX_PUT_CONDITION_IF_VERSION : FELIX_PUT_CONDITION_ALWAYS;
    uint8_t *p;
    size_t l;
    if (payload(v, "value", &p, &l)) return R_CHECK;
    FelixBytes value = {p, l};
    FelixError *e = NULL;
    FelixResult *res = NULL;
    uint64_t t = token();
    int rc = finish(r, felix_cache_put_start(c, ns, n[0], n[1], value, ttl, cond, version, r->q, t, &e), e, t, &res);
    free(p);
    if (rc == R_OK) {
        uint64_t got = res->value;
        rc = sc_check_version(r, s, got);
        if (rc == R_OK) rc = sc_store_version(r, s, got);
    }
    felix_result_free(res);
    return rc;
}

/* One cache read: R_OK with *hit and the item (owned by *res). */
static int get(Run *r, FelixClient *c, FelixBytes ns, FelixBytes cache, FelixBytes key, FelixResult **res, const FelixItem **hit) {
    FelixError *e = NULL;
    uint64_t t = token();
    int rc = finish(r, felix_cache_get_start(c, ns, cache, key, r->q, t, &e), e, t, res);
    *hit = rc == R_OK && *res && (*res)->len && (*res)->items[0].present ? &(*res)->items[0] : NULL;
    return rc;
}

static int op_cache_get(Run *r, Step *s) {
    FelixClient *c;
    FelixBytes ns, n[2];
    json_t *w = json_object_get(s->m, "expect");
    uint8_t *wp = NULL;
    size_t wl = 0;
    if (sc_names(r, s, &c, &ns, "cache", "key", NULL, n)) return R_CHECK;
    if (w && !json_is_null(w) && payload(w, "expect", &wp, &wl)) return R_CHECK;
    FelixResult *res = NULL;
    const FelixItem *hit;
    int rc = get(r, c, ns, n[0], n[1], &res, &hit);
    if (rc == R_OK && !w) rc = fail("cache_get needs expect (a value, or null for a miss)");
    else if (rc == R_OK && json_is_null(w) && !hit) {
        if (json_object_get(s->m, "expect_version") || json_object_get(s->m, "as")) rc = fail("expect_version and as need a hit");
    } else if (rc == R_OK && wp && hit && sc_eq(wp, wl, hit->payload)) {
        rc = sc_check_version(r, s, hit->offset);
        if (rc == R_OK) rc = sc_store_version(r, s, hit->offset);
    } else if (rc == R_OK) {
        char g[200] = "a miss", x[160] = "a miss";
        if (hit) {
            show(hit->payload.ptr, hit->payload.len, x, sizeof x);
            snprintf(g, sizeof g, "%s (version %llu)", x, (unsigned long long)hit->offset);
            snprintf(x, sizeof x, "a miss");
        }
        if (wp) show(wp, wl, x, sizeof x);
        rc = fail("got %s, expected %s", g, x);
    }
    free(wp);
    felix_result_free(res);
    return rc;
}

static int op_cache_delete(Run *r, Step *s) {
    FelixClient *c;
    FelixBytes ns, n[2];
    int want, has_want;
    if (sc_names(r, s, &c, &ns, "cache", "key", NULL, n) || s_bool(s, "expect_existed", 0, &want, &has_want)) return R_CHECK;
    FelixError *e = NULL;
    FelixResult *res = NULL;
    uint64_t t = token();
    int rc = finish(r, felix_cache_delete_start(c, ns, n[0], n[1], r->q, t, &e), e, t, &res);
    if (rc == R_OK && has_want && (res->value != 0) != want)
        rc = fail("delete reported existed = %s, expected %s", res->value ? "true" : "false", want ? "true" : "false");
    felix_result_free(res);
    return rc;
}

static int op_cache_get_many(Run *r, Step *s) {
    FelixClient *c;
    FelixBytes ns, n[1];
    json_t *keys, *want;
    if (sc_names(r, s, &c, &ns, "cache", NULL, NULL, n) || s_array(s, "keys", &keys) || s_array(s, "expect", &want)) return R_CHECK;
    if (!keys) return fail("cache_get_many needs keys");
    size_t nk = json_array_size(keys);
    FelixBytes *ks = calloc(nk + 1, sizeof *ks);
    int rc = R_OK;
    for (size_t i = 0; i < nk && rc == R_OK; i++) {
        json_t *k = json_array_get(keys, i);
        if (!json_is_string(k)) rc = fail("keys must be strings");
        else ks[i] = (FelixBytes){(const uint8_t *)json_string_value(k), json_string_length(k)};
    }
    if (rc == R_OK && want && json_array_size(want) != nk) rc = fail("expect needs one entry per key");
    for (size_t i = 0; rc == R_OK && want && i < nk; i++) {
        json_t *w = json_array_get(want, i);
        uint8_t *p;
        size_t l;
        char what[32];
        snprintf(what, sizeof what, "expect[%zu]", i);
        if (!json_is_null(w) && (rc = payload(w, what, &p, &l)) == R_OK) free(p);
    }
    FelixResult *res = NULL;
    if (rc == R_OK) {
        FelixError *e = NULL;
        uint64_t t = token();
        rc = finish(r, felix_cache_get_many_start(c, ns, n[0], nk ? ks : NULL, nk, r->q, t, &e), e, t, &res);
    }
    if (rc == R_OK && !want) rc = fail("cache_get_many needs expect");
    if (rc == R_OK && (res ? res->len : 0) != nk) rc = fail("%zu results for %zu keys", res ? res->len : 0, nk);
    for (size_t i = 0; rc == R_OK && i < nk; i++) {
        json_t *w = json_array_get(want, i);
        const FelixItem *g = &res->items[i];
        uint8_t *p = NULL;
        size_t l = 0;
        if (!json_is_null(w)) payload(w, "expect", &p, &l);
        if (!(p ? g->present && sc_eq(p, l, g->payload) : !g->present)) {
            char gs[160] = "a miss", ws[160] = "a miss";
            if (g->present) show(g->payload.ptr, g->payload.len, gs, sizeof gs);
            if (p) show(p, l, ws, sizeof ws);
            rc = fail("key \"%s\": got %s, expected %s", json_string_value(json_array_get(keys, i)), gs, ws);
        }
        free(p);
    }
    felix_result_free(res);
    free(ks);
    return rc;
}

static int op_wait_until_cache_miss(Run *r, Step *s, int64_t own) {
    FelixClient *c;
    FelixBytes ns, n[2];
    if (sc_names(r, s, &c, &ns, "cache", "key", NULL, n)) return R_CHECK;
    int64_t deadline = now_ms() + own;
    for (;;) {
        FelixResult *res = NULL;
        const FelixItem *hit;
        int rc = get(r, c, ns, n[0], n[1], &res, &hit);
        if (rc || !hit) {
            felix_result_free(res);
            return rc;
        }
        if (now_ms() >= deadline) {
            char v[160];
            show(hit->payload.ptr, hit->payload.len, v, sizeof v);
            felix_result_free(res);
            return fail("\"%.*s\" still holds %s after %lld ms", (int)n[1].len, (const char *)n[1].ptr, v, (long long)own);
        }
        felix_result_free(res);
        struct timespec ts = {0, 5 * 1000000}; /* the README's "a few ms apart" */
        nanosleep(&ts, NULL);
    }
}

int op_queue_cache(Run *r, Step *s, int64_t own) {
    const char *op = s->op;
    if (!strncmp(op, "create_", 7)) return op_create(r, s);
    if (!strcmp(op, "queue_pull")) return op_pull(r, s);
    if (!strcmp(op, "queue_ack") || !strcmp(op, "queue_nack") || !strcmp(op, "queue_redrive")) return op_settle(r, s);
    if (!strcmp(op, "dead_letters")) return op_dead_letters(r, s);
    if (!strcmp(op, "cache_put")) return op_cache_put(r, s);
    if (!strcmp(op, "cache_get")) return op_cache_get(r, s);
    if (!strcmp(op, "cache_delete")) return op_cache_delete(r, s);
    if (!strcmp(op, "cache_get_many")) return op_cache_get_many(r, s);
    if (!strcmp(op, "wait_until_cache_miss")) return op_wait_until_cache_miss(r, s, own);
    return fail("unknown op \"%s\"", op);
}
