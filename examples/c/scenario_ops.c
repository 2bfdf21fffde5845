/*
 * The step accessors, payloads and operations of the C scenario runner (see scenarios.c).
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "scenarios.h"

/* ---- typed, strict accessors ---- */

int uint_of(json_t *v, uint64_t *out) {
    if (!json_is_integer(v) || json_integer_value(v) < 0) return R_CHECK;
    *out = (uint64_t)json_integer_value(v);
    return R_OK;
}

int s_str(Step *s, const char *k, const char *def, const char **out) {
    json_t *v = json_object_get(s->m, k);
    *out = def;
    if (!v) return R_OK;
    if (!json_is_string(v)) return fail("%s must be a string", k);
    *out = json_string_value(v);
    return R_OK;
}

int s_req_str(Step *s, const char *k, const char **out) {
    if (s_str(s, k, NULL, out)) return R_CHECK;
    return *out ? R_OK : fail("%s needs %s", s->op, k);
}

int s_uint(Step *s, const char *k, uint64_t def, uint64_t *out, int *present) {
    json_t *v = json_object_get(s->m, k);
    *out = def;
    if (present) *present = v != NULL;
    if (!v) return R_OK;
    if (uint_of(v, out)) return fail("%s must be a non-negative integer", k);
    return R_OK;
}

int s_bool(Step *s, const char *k, int def, int *out, int *present) {
    json_t *v = json_object_get(s->m, k);
    *out = def;
    if (present) *present = v != NULL;
    if (!v) return R_OK;
    if (!json_is_boolean(v)) return fail("%s must be true or false", k);
    *out = json_is_true(v);
    return R_OK;
}

int s_array(Step *s, const char *k, json_t **out) {
    *out = json_object_get(s->m, k);
    if (*out && !json_is_array(*out)) return fail("%s must be an array", k);
    return R_OK;
}

/* ---- payloads ---- */

static int b64(const char *s, uint8_t **out, size_t *len) {
    static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = strlen(s);
    if (n % 4) return -1;
    uint8_t *b = malloc(n / 4 * 3 + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        uint32_t v = 0;
        int pad = 0;
        for (int j = 0; j < 4; j++) {
            const char *p = s[i + j] ? strchr(A, s[i + j]) : NULL;
            if (s[i + j] == '=' && i + 4 == n && j >= 2) {
                pad++;
                v <<= 6;
            } else if (p && !pad) {
                v = v << 6 | (uint32_t)(p - A);
            } else {
                free(b);
                return -1;
            }
        }
        b[o++] = (uint8_t)(v >> 16);
        if (pad < 2) b[o++] = (uint8_t)(v >> 8);
        if (pad < 1) b[o++] = (uint8_t)v;
    }
    *out = b;
    *len = o;
    return 0;
}

int payload(json_t *v, const char *what, uint8_t **out, size_t *len) {
    *out = NULL;
    *len = 0;
    if (json_is_string(v)) {
        *len = json_string_length(v);
        *out = malloc(*len + 1);
        memcpy(*out, json_string_value(v), *len);
        return R_OK;
    }
    json_t *x = json_object_get(v, "b64");
    if (json_is_object(v) && x && json_object_size(v) == 1) {
        if (!json_is_string(x)) return fail("%s.b64 must be a string", what);
        if (b64(json_string_value(x), out, len)) return fail("%s.b64 is not standard base64", what);
        return R_OK;
    }
    json_t *rep = json_object_get(v, "repeat"), *cnt = json_object_get(v, "count");
    uint64_t n;
    if (json_is_object(v) && rep && cnt && json_object_size(v) == 2) {
        if (!json_is_string(rep) || json_string_length(rep) == 0 || uint_of(cnt, &n))
            return fail("%s: repeat must be a non-empty string and count a non-negative integer", what);
        size_t l = json_string_length(rep);
        *len = l * n;
        *out = malloc(*len + 1);
        for (uint64_t i = 0; i < n; i++) memcpy(*out + i * l, json_string_value(rep), l);
        return R_OK;
    }
    return fail("%s must be a string, {\"b64\": ...} or {\"repeat\": ..., \"count\": n}", what);
}

int entry(json_t *v, const char *what, const char *const *keys, uint8_t **p, size_t *len) {
    *p = NULL;
    if (!json_is_object(v)) return fail("%s must be an object", what);
    const char *k;
    json_t *x;
    json_object_foreach(v, k, x) {
        int ok = 0;
        for (const char *const *w = keys; *w; w++) ok |= strcmp(*w, k) == 0;
        if (!ok) return fail("%s does not take key \"%s\"", what, k);
    }
    json_t *pv = json_object_get(v, "payload");
    if (!pv) return fail("%s needs payload", what);
    char w[64];
    snprintf(w, sizeof w, "%s.payload", what);
    return payload(pv, w, p, len);
}

void show(const uint8_t *b, size_t len, char *out, size_t cap) {
    int text = 1;
    for (size_t i = 0; i < len; i++) text &= b[i] >= 0x20 && b[i] < 0x7f;
    if (text && len <= 48)
        snprintf(out, cap, "\"%.*s\"", (int)len, (const char *)b);
    else if (text)
        snprintf(out, cap, "\"%.48s\"... (%zu bytes)", (const char *)b, len);
    else {
        static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        char enc[80];
        size_t o = 0, n = len < 48 ? len : 48;
        for (size_t i = 0; i < n; i += 3) {
            uint32_t v = (uint32_t)b[i] << 16 | (i + 1 < n ? (uint32_t)b[i + 1] << 8 : 0) | (i + 2 < n ? b[i + 2] : 0);
            enc[o++] = A[v >> 18 & 63];
            enc[o++] = A[v >> 12 & 63];
            enc[o++] = i + 1 < n ? A[v >> 6 & 63] : '=';
            enc[o++] = i + 2 < n ? A[v & 63] : '=';
        }
        enc[o] = 0;
        snprintf(out, cap, "b64:%s%s (%zu bytes)", enc, len > 48 ? "..." : "", len);
    }
}

static int eq(const uint8_t *a, size_t al, FelixBytes b) { return al == b.len && (al == 0 || memcmp(a, b.ptr, al) == 0); }

/* ---- aliases and names ---- */

static int client_of(Run *r, Step *s, FelixClient **c) {
    const char *alias;
    if (s_str(s, "client", "default", &alias)) return R_CHECK;
    Alias *a = alias_get(&r->clients, alias);
    if (!a) return fail("unknown client alias \"%s\" (connect it first)", alias);
    *c = a->ptr;
    return R_OK;
}

/* The client, namespace and up to 3 required names of a step. */
static int names(Run *r, Step *s, FelixClient **c, FelixBytes *ns, const char *k1, const char *k2, const char *k3, FelixBytes *out) {
    const char *n;
    if (client_of(r, s, c) || s_str(s, "namespace", r->ns, &n)) return R_CHECK;
    *ns = B(n);
    const char *ks[3] = {k1, k2, k3};
    for (int i = 0; i < 3 && ks[i]; i++) {
        if (s_req_str(s, ks[i], &n)) return R_CHECK;
        out[i] = B(n);
    }
    return R_OK;
}

static int sub_of(Run *r, Step *s, FelixSubscription **out) {
    const char *alias;
    if (s_req_str(s, "subscription", &alias)) return R_CHECK;
    Alias *a = alias_get(&r->subs, alias);
    if (!a) return fail("unknown subscription alias \"%s\"", alias);
    *out = a->ptr;
    return R_OK;
}

/* Resolves an offset reference (README "Offset references") into a malloc'd list. */
static int offset_refs(Run *r, json_t *v, uint64_t **out, size_t *n) {
    json_t *one = json_array();
    if (json_is_array(v))
        json_array_extend(one, v);
    else
        json_array_append(one, v);
    if (!json_is_array(v) && !json_is_string(v)) {
        json_decref(one);
        return fail("offsets must be an offset reference or an array of them");
    }
    *out = malloc(sizeof(uint64_t) * 1024);
    *n = 0;
    size_t i;
    json_t *item;
    json_array_foreach(one, i, item) {
        uint64_t lit;
        if (!uint_of(item, &lit)) {
            (*out)[(*n)++] = lit;
            continue;
        }
        if (!json_is_string(item)) goto bad;
        char name[128];
        const char *s = json_string_value(item);
        long idx = -1;
        snprintf(name, sizeof name, "%s", s);
        char *open = strchr(name, '[');
        if (open && name[strlen(name) - 1] == ']') {
            char *end;
            idx = strtol(open + 1, &end, 10);
            if (end != name + strlen(name) - 1 || idx < 0 || end == open + 1) {
                fail("bad offset reference \"%s\"", s);
                goto out;
            }
            *open = 0;
        }
        Alias *a = alias_get(&r->offsets, name);
        if (!a) {
            fail("unknown offset alias \"%s\"", name);
            goto out;
        }
        if (idx >= (long)a->n) {
            fail("offset reference \"%s\": alias \"%s\" holds %zu offsets", s, name, a->n);
            goto out;
        }
        for (size_t j = 0; j < a->n && *n < 1024; j++)
            if (idx < 0 || (long)j == idx) (*out)[(*n)++] = a->offs[j];
    }
    json_decref(one);
    return R_OK;
bad:
    fail("an offset reference is an alias, \"alias[i]\" or an integer");
out:
    json_decref(one);
    free(*out);
    *out = NULL;
    return R_CHECK;
}

static int version_of(Run *r, json_t *v, uint64_t *out) {
    if (json_is_string(v)) {
        Alias *a = alias_get(&r->versions, json_string_value(v));
        if (!a) return fail("unknown version alias \"%s\"", json_string_value(v));
        *out = a->version;
        return R_OK;
    }
    return uint_of(v, out) ? fail("a version reference is an alias or an integer") : R_OK;
}

static int check_version(Run *r, Step *s, uint64_t got) {
    json_t *rel = json_object_get(s->m, "expect_version");
    if (!rel) return R_OK;
    if (!json_is_object(rel) || json_object_size(rel) == 0)
        return fail("expect_version must be an object with eq, ne, gt and/or lt");
    const char *k;
    json_t *v;
    json_object_foreach(rel, k, v) {
        uint64_t want;
        if (version_of(r, v, &want)) return R_CHECK;
        int holds;
        if (!strcmp(k, "eq")) holds = got == want;
        else if (!strcmp(k, "ne")) holds = got != want;
        else if (!strcmp(k, "gt")) holds = got > want;
        else if (!strcmp(k, "lt")) holds = got < want;
        else return fail("unknown version relation \"%s\"", k);
        if (!holds)
            return fail("version %llu is not %s %llu (%s)", (unsigned long long)got, k, (unsigned long long)want,
                        json_is_string(v) ? json_string_value(v) : "literal");
    }
    return R_OK;
}

static int store_offsets(Run *r, Step *s, const FelixResult *res) {
    const char *alias;
    if (s_str(s, "as", NULL, &alias)) return R_CHECK;
    if (!alias) return R_OK;
    Alias *a = alias_put(&r->offsets, alias);
    if (!a) return fail("too many aliases");
    free(a->offs);
    a->n = res ? res->len : 0;
    a->offs = malloc(sizeof(uint64_t) * (a->n + 1));
    for (size_t i = 0; i < a->n; i++) a->offs[i] = res->items[i].offset;
    return R_OK;
}

static int store_version(Run *r, Step *s, uint64_t v) {
    const char *alias;
    if (s_str(s, "as", NULL, &alias)) return R_CHECK;
    if (!alias) return R_OK;
    Alias *a = alias_put(&r->versions, alias);
    if (!a) return fail("too many aliases");
    a->version = v;
    return R_OK;
}

/* ---- connections and pub/sub ---- */

static int op_connect(Run *r, Step *s) {
    const char *alias, *tenant, *tok;
    if (s_str(s, "as", "default", &alias) || s_str(s, "tenant", "default", &tenant) || s_str(s, "token", "", &tok))
        return R_CHECK;
    FelixConnectOptions o;
    felix_connect_options_init(&o);
    FelixBytes addr = B(broker_addr);
    o.addresses = &addr;
    o.addresses_len = 1;
    o.ca_file = B(broker_ca);
    o.tenant = B(tenant);
    o.token = B(tok);
    o.request_timeout_ms = 5000; /* as the reference runner's clients */
    FelixError *e = NULL;
    uint64_t t = token();
    FelixResult *res;
    int rc = finish(r, felix_client_connect_start(&o, r->q, t, &e), e, t, &res);
    if (rc) return rc;
    FelixClient *c = felix_result_take_client(res);
    felix_result_free(res);
    Alias *a = alias_put(&r->clients, alias);
    if (!a) return fail("too many aliases");
    if (a->ptr) felix_client_free(a->ptr);
    a->ptr = c;
    return R_OK;
}

static int op_close(Run *r, Step *s) {
    const char *client, *sub;
    if (s_str(s, "client", NULL, &client) || s_str(s, "subscription", NULL, &sub)) return R_CHECK;
    if (client && !sub) {
        Alias *a = alias_get(&r->clients, client);
        if (!a) return fail("unknown client alias \"%s\" (connect it first)", client);
        felix_client_close(a->ptr);
        return R_OK;
    }
    if (sub && !client) {
        Alias *a = alias_get(&r->subs, sub);
        if (!a) return fail("unknown subscription alias \"%s\"", sub);
        felix_subscription_free(a->ptr);
        free(a->name);
        *a = r->subs.items[--r->subs.len];
        return R_OK;
    }
    return fail("close needs exactly one of client, subscription");
}

static int op_publish(Run *r, Step *s) {
    FelixClient *c;
    FelixBytes ns, n[1];
    json_t *one = json_object_get(s->m, "payload"), *many;
    const char *ack;
    if (names(r, s, &c, &ns, "stream", NULL, NULL, n) || s_array(s, "payloads", &many) ||
        s_str(s, "ack", "per_batch", &ack))
        return R_CHECK;
    if (!one == !many) return fail("publish needs exactly one of payload, payloads");
    uint32_t mode;
    if (!strcmp(ack, "per_batch")) mode = FELIX_ACK_MODE_PER_BATCH;
    else if (!strcmp(ack, "per_message")) mode = FELIX_ACK_MODE_PER_MESSAGE;
    else if (!strcmp(ack, "none")) mode = FELIX_ACK_MODE_NONE;
    else return fail("unknown ack mode \"%s\"", ack);
    size_t count = one ? 1 : json_array_size(many);
    FelixBytes *ps = calloc(count + 1, sizeof *ps);
    uint8_t **bufs = calloc(count + 1, sizeof *bufs);
    int rc = R_OK;
    for (size_t i = 0; i < count && rc == R_OK; i++) {
        char what[32];
        snprintf(what, sizeof what, one ? "payload" : "payloads[%zu]", i);
        rc = payload(one ? one : json_array_get(many, i), what, &bufs[i], &ps[i].len);
        ps[i].ptr = bufs[i];
    }
    if (rc == R_OK) {
        FelixError *e = NULL;
        uint64_t t = token();
        rc = finish(r, felix_client_publish_start(c, ns, n[0], count ? ps : NULL, count, mode, r->q, t, &e), e, t, NULL);
    }
    for (size_t i = 0; i < count; i++) free(bufs[i]);
    free(bufs);
    free(ps);
    return rc;
}

/* The FelixStart of a subscribe's from. */
static const uint32_t START_LATEST = FELIX_START_LATEST, START_EARLIEST = FELIX_START_EARLIEST;

static int op_subscribe(Run *r, Step *s) {
    FelixClient *c;
    FelixBytes ns, n[2];
    if (names(r, s, &c, &ns, "as", "stream", NULL, n)) return R_CHECK;
    json_t *from = json_object_get(s->m, "from");
    uint32_t kind = START_LATEST;
    uint64_t offset = 0;
    if (from && json_is_string(from) && !strcmp(json_string_value(from), "earliest"))
        kind = START_EARLIEST;
    else if (from && !uint_of(from, &offset))
        kind = FELIX_START_OFFSET;
    else if (from && !(json_is_string(from) && !strcmp(json_string_value(from), "latest")))
        return fail("from must be \"latest\", \"earliest\" or an offset");
    FelixError *e = NULL;
    uint64_t t = token();
    FelixResult *res;
    int rc = finish(r, felix_subscribe_start(c, ns, n[1], kind, offset, r->q, t, &e), e, t, &res);
    if (rc) return rc;
    FelixSubscription *sub = felix_result_take_subscription(res);
    felix_result_free(res);
    const char *alias = json_string_value(json_object_get(s->m, "as"));
    Alias *a = alias_put(&r->subs, alias);
    if (!a) return fail("too many aliases");
    if (a->ptr) felix_subscription_free(a->ptr);
    a->ptr = sub;
    return R_OK;
}

typedef struct {
    uint8_t *payload;
    size_t len;
    const char *stream; /* NULL: any */
    int has_offset;
    uint64_t offset;
} Want;

static int matches(const Want *w, const FelixItem *it) {
    return eq(w->payload, w->len, it->payload) &&
           (!w->stream || eq((const uint8_t *)w->stream, strlen(w->stream), it->text)) &&
           (!w->has_offset || (it->present && it->offset == w->offset));
}

static void show_want(const Want *w, char *out, size_t cap) {
    char p[160], o[24] = "*";
    show(w->payload, w->len, p, sizeof p);
    if (w->has_offset) snprintf(o, sizeof o, "%llu", (unsigned long long)w->offset);
    snprintf(out, cap, "%s@%s %s", w->stream ? w->stream : "*", o, p);
}

static void show_item(const FelixItem *it, char *out, size_t cap) {
    char p[160], o[24] = "?";
    show(it->payload.ptr, it->payload.len, p, sizeof p);
    if (it->present) snprintf(o, sizeof o, "%llu", (unsigned long long)it->offset);
    snprintf(out, cap, "%.*s@%s %s", (int)it->text.len, (const char *)it->text.ptr, o, p);
}

/* Next event of sub until deadline: R_OK with *res (one item), R_TIMEOUT, or R_CALL. */
static int next_event(FelixSubscription *sub, int64_t deadline, FelixResult **res) {
    int64_t left = deadline - now_ms();
    FelixError *e = NULL;
    FelixStatus st = felix_subscription_next(sub, 1, left < 0 ? 0 : left, res, &e);
    if (st == FELIX_STATUS_TIMEOUT) {
        felix_error_free(e);
        return R_TIMEOUT;
    }
    return st == FELIX_STATUS_OK ? R_OK : call_error(st, e);
}

static int op_expect_events(Run *r, Step *s, int64_t own, int expect_error) {
    json_t *ps, *es;
    int any_order;
    FelixSubscription *sub;
    if (s_array(s, "payloads", &ps) || s_array(s, "events", &es) || s_bool(s, "any_order", 0, &any_order, NULL))
        return R_CHECK;
    if (!ps == !es) return fail("expect_events needs exactly one of payloads, events");
    size_t n = json_array_size(ps ? ps : es);
    Want *want = calloc(n + 1, sizeof *want);
    FelixResult **got = calloc(n + 1, sizeof *got);
    int *used = calloc(n + 1, sizeof *used);
    int rc = R_OK;
    static const char *const EV_KEYS[] = {"payload", "stream", "offset", NULL};
    for (size_t i = 0; i < n && rc == R_OK; i++) {
        char what[32];
        json_t *v = json_array_get(ps ? ps : es, i);
        if (ps) {
            snprintf(what, sizeof what, "payloads[%zu]", i);
            rc = payload(v, what, &want[i].payload, &want[i].len);
            continue;
        }
        snprintf(what, sizeof what, "events[%zu]", i);
        if ((rc = entry(v, what, EV_KEYS, &want[i].payload, &want[i].len))) break;
        json_t *st = json_object_get(v, "stream"), *off = json_object_get(v, "offset");
        if (st && !json_is_string(st)) rc = fail("%s.stream must be a string", what);
        want[i].stream = st ? json_string_value(st) : NULL;
        if (off && uint_of(off, &want[i].offset)) rc = fail("%s.offset must be an integer", what);
        want[i].has_offset = off != NULL;
    }
    if (rc == R_OK) rc = sub_of(r, s, &sub);
    int64_t deadline = now_ms() + own;
    if (deadline > r->scenario_deadline) deadline = r->scenario_deadline;
    size_t have = 0;
    char progress[2048] = "", buf[256];
#define PROGRESS()                                                                           \
    do {                                                                                     \
        size_t o_ = (size_t)snprintf(progress, sizeof progress, "%zu of %zu events received [", have, n); \
        for (size_t j = 0; j < have && o_ < sizeof progress - 300; j++) {                    \
            show_item(&got[j]->items[0], buf, sizeof buf);                                   \
            o_ += (size_t)snprintf(progress + o_, sizeof progress - o_, "%s%s", j ? ", " : "", buf); \
        }                                                                                    \
        snprintf(progress + o_, sizeof progress - o_, "]");                                  \
    } while (0)
    while (rc == R_OK && have < n) {
        int x = next_event(sub, deadline, &got[have]);
        if (x == R_TIMEOUT) {
            PROGRESS();
            rc = now_ms() >= r->scenario_deadline ? R_TIMEOUT : fail("timed out after %lld ms: %s", (long long)own, progress);
        } else if (x == R_CALL) {
            PROGRESS();
            rc = fail("subscription error (%s) %s: %s", felix_status_name(call_status), call_msg, progress);
        } else if (!any_order && !matches(&want[have], &got[have]->items[0])) {
            char w[256];
            show_item(&got[have]->items[0], buf, sizeof buf);
            show_want(&want[have], w, sizeof w);
            rc = fail("event %zu is %s, expected %s", have, buf, w);
            have++;
        } else {
            have++;
        }
    }
    for (size_t g = 0; rc == R_OK && any_order && g < n; g++) {
        size_t i = 0;
        while (i < n && (used[i] || !matches(&want[i], &got[g]->items[0]))) i++;
        if (i < n) {
            used[i] = 1;
            continue;
        }
        char missing[1024] = "", w[256];
        size_t o = 0;
        for (size_t j = 0; j < n && o < sizeof missing - 300; j++)
            if (!used[j]) {
                show_want(&want[j], w, sizeof w);
                o += (size_t)snprintf(missing + o, sizeof missing - o, "%s%s", o ? ", " : "", w);
            }
        show_item(&got[g]->items[0], buf, sizeof buf);
        rc = fail("unexpected event %s (still expected: %s)", buf, missing);
    }
    if (rc == R_OK && expect_error) {
        FelixResult *extra = NULL;
        int x = next_event(sub, deadline, &extra);
        if (x == R_TIMEOUT)
            rc = now_ms() >= r->scenario_deadline ? R_TIMEOUT : fail("timed out after %lld ms waiting for the error", (long long)own);
        else if (x == R_CALL)
            rc = R_CALL; /* compared with expect_error by the step */
        else {
            show_item(&extra->items[0], buf, sizeof buf);
            rc = fail("expected an error, got event %s", buf);
        }
        felix_result_free(extra);
    }
    for (size_t i = 0; i < n; i++) {
        free(want[i].payload);
        felix_result_free(got[i]);
    }
    free(want);
    free(got);
    free(used);
    return rc;
}

static int op_expect_no_event(Run *r, Step *s) {
    uint64_t within;
    int present;
    FelixSubscription *sub;
    if (s_uint(s, "within_ms", 0, &within, &present)) return R_CHECK;
    if (!present) return fail("expect_no_event needs within_ms");
    if (within == 0 || within > 10000) return fail("within_ms must be in 1..=10000");
    if (sub_of(r, s, &sub)) return R_CHECK;
    /* next returns an event already buffered at once. */
    FelixResult *res = NULL;
    int x = next_event(sub, now_ms() + (int64_t)within, &res);
    if (x == R_TIMEOUT) return R_OK;
    if (x == R_CALL) return fail("unexpected subscription error (%s) %s", felix_status_name(call_status), call_msg);
    char buf[256];
    show_item(&res->items[0], buf, sizeof buf);
    felix_result_free(res);
    return fail("unexpected event %s", buf);
}

int exec_op(Run *r, Step *s, int64_t own, int expect_error) {
    why[0] = 0;
    if (!strcmp(s->op, "connect")) return op_connect(r, s);
    if (!strcmp(s->op, "close")) return op_close(r, s);
    if (!strcmp(s->op, "publish")) return op_publish(r, s);
    if (!strcmp(s->op, "subscribe")) return op_subscribe(r, s);
    if (!strcmp(s->op, "expect_events")) return op_expect_events(r, s, own, expect_error);
    if (!strcmp(s->op, "expect_no_event")) return op_expect_no_event(r, s);
    return op_queue_cache(r, s, own);
}

/* Shared with scenario_queue_cache.c. */
int sc_names(Run *r, Step *s, FelixClient **c, FelixBytes *ns, const char *k1, const char *k2, const char *k3, FelixBytes *out) {
    return names(r, s, c, ns, k1, k2, k3, out);
}
int sc_offset_refs(Run *r, json_t *v, uint64_t **out, size_t *n) { return offset_refs(r, v, out, n); }
int sc_version_of(Run *r, json_t *v, uint64_t *out) { return version_of(r, v, out); }
int sc_check_version(Run *r, Step *s, uint64_t got) { return check_version(r, s, got); }
int sc_store_offsets(Run *r, Step *s, const FelixResult *res) { return store_offsets(r, s, res); }
int sc_store_version(Run *r, Step *s, uint64_t v) { return store_version(r, s, v); }
int sc_eq(const uint8_t *a, size_t al, FelixBytes b) { return eq(a, al, b); }
