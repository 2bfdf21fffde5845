/*
 * Scenario runner for the Felix C ABI: runs the language-neutral scenarios of tests/scenarios/
 * (format: tests/scenarios/README.md) against a broker, as the Rust reference runner
 * (broker/tests/scenarios/) does through the client core.
 *
 *   scenarios HOST:PORT CA_PEM SCENARIO_DIR              run every scenario (FELIX_SCENARIOS=a,b: those)
 *   scenarios HOST:PORT CA_PEM SCENARIO_DIR SELFTEST_JSON  feed it the wrong scenarios of
 *                                                        SELFTEST_JSON, each of which must fail
 *   scenarios HOST:PORT CA_PEM SCENARIO_DIR WRONG_DIR      the shared wrong scenarios
 *                                                        (tests/scenarios/wrong/, failures.json)
 *
 * As strict as the reference: unknown keys at any level, missing required keys and values of
 * the wrong type fail the scenario; every step has its deadline (timeout_ms); an error before
 * the expected events fails expect_events. Steps the C ABI cannot express (a 0 or "" that
 * means "the default" there) are reported as UNSUPPORTED, and the run fails unless they are
 * exactly expected_unsupported below: none is skipped silently.
 *
 * Build: make -C examples/c scenarios (links libjansson; apt-get install libjansson-dev).
 */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "scenarios.h"

#define DEFAULT_STEP_MS 10000
#define DEFAULT_EVENTS_MS 5000
#define DEFAULT_SCENARIO_MS 60000
#define SAFETY_MS 5000

char why[4096];
FelixStatus call_status;
char call_msg[1024];
const char *broker_addr, *broker_ca;

static const char *const TOP_KEYS[] = {"$schema", "name", "description", "timeout_ms", "broker", "steps", NULL};
/* The brokers a scenario may ask for with "broker" (tests/scenarios/README.md, "Brokers"); the
 * jwt one's address and CA come from FELIX_JWT_BROKER and FELIX_JWT_BROKER_CA. */
static const char *const BROKERS[] = {"dev", "jwt", NULL};
static const char *const COMMON_KEYS[] = {"op", "comment", "expect_error", "timeout_ms", NULL};
static const char *const RESULT_KEYS[] = {"as", "expect", "expect_count", "expect_existed", "expect_version", NULL};
static const char *const EXPECT_REQUIRED[] = {"cache_get", "cache_get_many", "dead_letters", NULL};
static const char *const CODES[] = {"invalid_argument", "not_found", "already_exists", "conflict",
    "unauthorized", "forbidden", "overloaded", "frame_too_large", "unsupported", "timeout",
    "unavailable", "protocol", "slow_consumer", "cancelled", "closed", "internal",
    "quota_exceeded", "storage", NULL};

/* Keys each op takes besides COMMON_KEYS. */
static const struct { const char *op; const char *keys[12]; } OPS[] = {
    {"connect", {"as", "tenant", "token"}},
    {"close", {"client", "subscription"}},
    {"publish", {"client", "namespace", "stream", "payload", "payloads", "ack"}},
    {"subscribe", {"client", "namespace", "as", "stream", "from"}},
    {"expect_events", {"subscription", "payloads", "events", "any_order"}},
    {"expect_no_event", {"subscription", "within_ms"}},
    {"create_stream", {"client", "namespace", "stream", "max_records", "max_bytes", "subscriber_buffer", "full_policy"}},
    {"create_cache", {"client", "namespace", "cache", "max_bytes", "default_ttl_ms"}},
    {"create_group", {"client", "namespace", "stream", "group", "from", "ack_timeout_ms", "max_deliveries"}},
    {"queue_pull", {"client", "namespace", "stream", "group", "max", "wait_ms", "expect", "as"}},
    {"queue_ack", {"client", "namespace", "stream", "group", "offsets", "expect_count"}},
    {"queue_nack", {"client", "namespace", "stream", "group", "offsets", "delay_ms", "expect_count"}},
    {"queue_redrive", {"client", "namespace", "stream", "group", "offsets", "expect_count"}},
    {"dead_letters", {"client", "namespace", "stream", "group", "max", "expect", "as"}},
    {"cache_put", {"client", "namespace", "cache", "key", "value", "ttl_ms", "if_absent", "if_version", "expect_version", "as"}},
    {"cache_get", {"client", "namespace", "cache", "key", "expect", "expect_version", "as"}},
    {"cache_delete", {"client", "namespace", "cache", "key", "expect_existed"}},
    {"cache_get_many", {"client", "namespace", "cache", "keys", "expect"}},
    {"wait_until_cache_miss", {"client", "namespace", "cache", "key"}},
};
#define N_OPS (sizeof OPS / sizeof OPS[0])

/* Numbers that mean "the broker default" when 0 in the C ABI, strings when empty. */
static const struct { const char *op, *key; int string; } DEFAULTED[] = {
    {"create_stream", "max_records", 0}, {"create_stream", "max_bytes", 0},
    {"create_stream", "subscriber_buffer", 0}, {"create_cache", "max_bytes", 0},
    {"create_cache", "default_ttl_ms", 0}, {"create_group", "ack_timeout_ms", 0},
    {"create_group", "max_deliveries", 0}, {"cache_put", "ttl_ms", 0},
    {"connect", "tenant", 1}, {"connect", "token", 1},
};

/* The steps of tests/scenarios this runner cannot express ("scenario step op key"). */
static const char *const expected_unsupported[] = {
    "conflicts_and_limits 8 create_stream subscriber_buffer",
    "conflicts_and_limits 14 create_cache default_ttl_ms",
    "conflicts_and_limits 18 cache_put ttl_ms",
    "conflicts_and_limits 23 create_group max_deliveries",
    "invalid_names 1 connect tenant",
    NULL,
};

int64_t now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

int fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    return R_CHECK;
}

int call_error(FelixStatus st, FelixError *e) {
    call_status = st;
    snprintf(call_msg, sizeof call_msg, "%s", e ? e->message : felix_status_name(st));
    felix_error_free(e);
    return R_CALL;
}

FelixBytes B(const char *s) {
    FelixBytes x = {(const uint8_t *)s, s ? strlen(s) : 0};
    return x;
}

static int in(const char *const *list, const char *s) {
    for (; *list; list++)
        if (strcmp(*list, s) == 0) return 1;
    return 0;
}

Alias *alias_get(Aliases *a, const char *name) {
    for (int i = 0; i < a->len; i++)
        if (strcmp(a->items[i].name, name) == 0) return &a->items[i];
    return NULL;
}

/* The alias `name`, made empty if it existed (the caller releases what it held first). */
Alias *alias_put(Aliases *a, const char *name) {
    Alias *x = alias_get(a, name);
    if (x) return x;
    if (a->len == MAX_ALIASES) return NULL;
    x = &a->items[a->len++];
    memset(x, 0, sizeof *x);
    x->name = strdup(name);
    return x;
}

uint64_t token(void) {
    static uint64_t next = 1;
    return next++;
}

int finish(Run *r, FelixStatus st, FelixError *e, uint64_t tok, FelixResult **out) {
    if (out) *out = NULL;
    if (st != FELIX_STATUS_OK) return call_error(st, e);
    FelixCompletion c;
    size_t n = 0;
    int64_t left = r->step_deadline - now_ms();
    if (left < 0) left = 0;
    if (left > 0x7fffffff) left = 0x7fffffff;
    felix_completion_queue_wait(r->q, &c, 1, (int32_t)left, &n, NULL);
    if (n == 0) {
        /* Past the deadline: cancel; exactly one completion still comes, promptly. */
        felix_completion_queue_cancel(r->q, tok);
        felix_completion_queue_wait(r->q, &c, 1, -1, &n, NULL);
        if (n == 1) {
            felix_result_free(c.result);
            felix_error_free(c.error);
        }
        return R_TIMEOUT;
    }
    if (c.status != FELIX_STATUS_OK) {
        felix_result_free(c.result);
        return call_error(c.status, c.error);
    }
    felix_error_free(c.error);
    if (out)
        *out = c.result;
    else
        felix_result_free(c.result);
    return R_OK;
}

/* Replaces ${ns} in every string value (not in keys). */
static void substitute(json_t *v, const char *ns) {
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        if (!strstr(s, "${ns}")) return;
        size_t cap = strlen(s) * (strlen(ns) + 1) + 1, o = 0;
        char *buf = malloc(cap);
        for (const char *p = s; *p;) {
            if (strncmp(p, "${ns}", 5) == 0) {
                o += (size_t)sprintf(buf + o, "%s", ns);
                p += 5;
            } else {
                buf[o++] = *p++;
            }
        }
        buf[o] = 0;
        json_string_set(v, buf);
        free(buf);
    } else if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) substitute(x, ns);
    } else if (json_is_object(v)) {
        const char *k;
        json_t *x;
        json_object_foreach(v, k, x) substitute(x, ns);
    }
}

static const char *const *op_keys(const char *op) {
    for (size_t i = 0; i < N_OPS; i++)
        if (strcmp(OPS[i].op, op) == 0) return OPS[i].keys;
    return NULL;
}

/* The step's own deadline in ms (README "Steps"), or -1 with why set. */
static int64_t own_timeout(Step *s) {
    uint64_t ms, w;
    int present;
    if (s_uint(s, "timeout_ms", 0, &ms, &present)) return -1;
    if (present) return (int64_t)ms;
    if (strcmp(s->op, "expect_events") == 0) return DEFAULT_EVENTS_MS;
    if (strcmp(s->op, "wait_until_cache_miss") == 0) {
        fail("wait_until_cache_miss needs timeout_ms");
        return -1;
    }
    if (strcmp(s->op, "queue_pull") == 0) {
        if (s_uint(s, "wait_ms", 0, &w, NULL)) return -1;
        return (int64_t)w + DEFAULT_STEP_MS;
    }
    if (strcmp(s->op, "expect_no_event") == 0) {
        if (s_uint(s, "within_ms", 0, &w, NULL)) return -1;
        return (int64_t)w + DEFAULT_STEP_MS;
    }
    return DEFAULT_STEP_MS;
}

/* Runs one step: R_OK when it behaved as the scenario says, else R_CHECK with why set. */
static int step(Run *r, int index, json_t *v) {
    if (!json_is_object(v)) return fail("a step must be an object");
    json_t *opv = json_object_get(v, "op");
    if (!json_is_string(opv)) return fail("a step needs a string op");
    Step s = {json_string_value(opv), v};
    const char *const *keys = op_keys(s.op);
    if (!keys) return fail("unknown op \"%s\"", s.op);
    const char *k;
    json_t *x;
    json_object_foreach(v, k, x) {
        int ok = in(COMMON_KEYS, k);
        for (int i = 0; !ok && i < 12 && keys[i]; i++) ok = strcmp(keys[i], k) == 0;
        if (!ok) return fail("%s does not take key \"%s\"", s.op, k);
    }
    const char *expected = NULL;
    json_t *ee = json_object_get(v, "expect_error");
    if (ee) {
        json_t *code = json_object_get(ee, "code");
        if (!json_is_object(ee) || json_object_size(ee) != 1 || !json_is_string(code))
            return fail("expect_error must be {\"code\": \"...\"}");
        expected = json_string_value(code);
        if (!in(CODES, expected)) return fail("expect_error names unknown code \"%s\"", expected);
        for (const char *const *rk = RESULT_KEYS; *rk; rk++) {
            int handle = strcmp(*rk, "as") == 0 && (!strcmp(s.op, "connect") || !strcmp(s.op, "subscribe"));
            if (json_object_get(v, *rk) && !handle)
                return fail("\"%s\" cannot be combined with expect_error", *rk);
        }
        if (strcmp(s.op, "expect_no_event") == 0) return fail("expect_no_event cannot expect an error");
    }
    if (!expected && in(EXPECT_REQUIRED, s.op) && !json_object_get(v, "expect"))
        return fail("%s needs expect (unless it has expect_error)", s.op);
    int64_t own = own_timeout(&s);
    if (own < 0) return R_CHECK;
    for (size_t i = 0; i < sizeof DEFAULTED / sizeof DEFAULTED[0]; i++) {
        if (strcmp(DEFAULTED[i].op, s.op) != 0) continue;
        json_t *val = json_object_get(v, DEFAULTED[i].key);
        int is_default = DEFAULTED[i].string ? (json_is_string(val) && !*json_string_value(val))
                                             : (json_is_integer(val) && json_integer_value(val) == 0);
        if (is_default && r->n_unsupported < 32) {
            snprintf(r->unsupported[r->n_unsupported++], 128, "%s %d %s %s", r->stem, index, s.op, DEFAULTED[i].key);
            return R_OK;
        }
    }
    int64_t outer = own;
    if (!strcmp(s.op, "expect_events") || !strcmp(s.op, "expect_no_event") || !strcmp(s.op, "wait_until_cache_miss"))
        outer += SAFETY_MS;
    int64_t started = now_ms();
    r->step_deadline = started + outer < r->scenario_deadline ? started + outer : r->scenario_deadline;
    int res = exec_op(r, &s, own, expected != NULL);
    int64_t now = now_ms();
    if (res != R_OK && now >= r->scenario_deadline) return R_TIMEOUT;
    /* Admin calls block past the deadline once started: the elapsed time is the net. */
    if (res == R_TIMEOUT || now - started > outer) return fail("timed out after %lld ms", (long long)outer);
    if (res == R_CHECK) return R_CHECK;
    if (res == R_OK && !expected) return R_OK;
    if (res == R_OK) return fail("expected error %s, but the step succeeded", expected);
    const char *got = felix_status_name(call_status);
    if (!expected) return fail("unexpected error (%s) %s", got, call_msg);
    if (strcmp(got, expected) == 0) return R_OK;
    return fail("expected error %s, got (%s) %s", expected, got, call_msg);
}

static void run_free(Run *r) {
    for (int i = 0; i < r->subs.len; i++) felix_subscription_free(r->subs.items[i].ptr);
    for (int i = 0; i < r->clients.len; i++) felix_client_free(r->clients.items[i].ptr);
    Aliases *all[] = {&r->clients, &r->subs, &r->offsets, &r->versions};
    for (int a = 0; a < 4; a++)
        for (int i = 0; i < all[a]->len; i++) {
            free(all[a]->items[i].name);
            free(all[a]->items[i].offs);
        }
    felix_completion_queue_free(r->q);
}

/* Runs one scenario document. R_OK, or R_CHECK with the report line in why. */
static int run_doc(const char *stem, json_t *doc, int index, Run *r) {
    memset(r, 0, sizeof *r);
    r->stem = stem;
    if (!json_is_object(doc)) return fail("a scenario must be a JSON object");
    const char *k;
    json_t *x;
    json_object_foreach(doc, k, x) if (!in(TOP_KEYS, k)) return fail("unknown top-level key \"%s\"", k);
    json_t *name = json_object_get(doc, "name");
    if (!json_is_string(name)) return fail("missing name");
    if (strcmp(json_string_value(name), stem) != 0)
        return fail("name \"%s\" differs from the file name \"%s\"", json_string_value(name), stem);
    json_t *d = json_object_get(doc, "description");
    if (!json_is_string(d) || !*json_string_value(d)) return fail("missing description");
    uint64_t timeout = DEFAULT_SCENARIO_MS;
    json_t *t = json_object_get(doc, "timeout_ms");
    if (t && uint_of(t, &timeout)) return fail("timeout_ms must be an integer");
    json_t *b = json_object_get(doc, "broker");
    if (b && (!json_is_string(b) || !in(BROKERS, json_string_value(b))))
        return fail("unknown broker %.60s (one of dev, jwt)", json_is_string(b) ? json_string_value(b) : "(not a string)");
    const char *addr = broker_addr, *ca = broker_ca;
    if (b && strcmp(json_string_value(b), "jwt") == 0) {
        addr = getenv("FELIX_JWT_BROKER");
        ca = getenv("FELIX_JWT_BROKER_CA");
        if (!addr || !ca) return fail("the scenario needs the jwt broker: set FELIX_JWT_BROKER and FELIX_JWT_BROKER_CA");
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(r->ns, sizeof r->ns, "sc_%d_%llx", index, (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec);
    substitute(doc, r->ns);
    json_t *steps = json_object_get(doc, "steps");
    if (!json_is_array(steps) || json_array_size(steps) == 0) return fail("steps must be a non-empty array");
    r->q = felix_completion_queue_new();
    r->scenario_deadline = now_ms() + (int64_t)timeout;
    /* connect steps read the broker from these globals: point them at this scenario's. */
    const char *dev_addr = broker_addr, *dev_ca = broker_ca;
    broker_addr = addr;
    broker_ca = ca;
    int res = R_OK;
    size_t i;
    json_t *sv;
    json_array_foreach(steps, i, sv) {
        res = step(r, (int)i, sv);
        if (res == R_OK) continue;
        if (res == R_TIMEOUT || now_ms() >= r->scenario_deadline)
            snprintf(why, sizeof why, "scenario timed out after %llu ms", (unsigned long long)timeout);
        json_t *op = json_object_get(sv, "op");
        char reason[sizeof why];
        snprintf(reason, sizeof reason, "%s", why);
        snprintf(why, sizeof why, "step %zu (%.40s): %.3900s", i, json_is_string(op) ? json_string_value(op) : "?", reason);
        break;
    }
    broker_addr = dev_addr;
    broker_ca = dev_ca;
    run_free(r);
    return res == R_OK ? R_OK : R_CHECK;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Whether a report names step `at` (absent: any step). */
static int step_prefix(const char *report, json_t *at) {
    char p[32];
    if (!at) return 1;
    snprintf(p, sizeof p, "step %lld (", (long long)json_integer_value(at));
    return strncmp(report, p, strlen(p)) == 0;
}

/* Feeds the runner the cases of path ({"doc", "stem"?, "at"?, "fails"?}): each with "fails"
 * must fail (at step "at") with a report containing that text; one without must pass. */
static int self_test(const char *path) {
    json_error_t err;
    json_t *cases = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
    if (!json_is_array(cases) || json_array_size(cases) == 0) {
        fprintf(stderr, "%s: %s\n", path, err.text);
        return 1;
    }
    int wrong = 0;
    size_t i;
    json_t *c;
    json_array_foreach(cases, i, c) {
        const char *stem = json_string_value(json_object_get(c, "stem"));
        const char *want = json_string_value(json_object_get(c, "fails"));
        json_t *doc = json_deep_copy(json_object_get(c, "doc"));
        Run r;
        int res = run_doc(stem ? stem : "case", doc, 1000 + (int)i, &r);
        json_decref(doc);
        if (!want) {
            if (res != R_OK) {
                printf("WRONG case %zu: the correct case failed: %s\n", i, why);
                wrong++;
            }
        } else if (res == R_OK) {
            printf("WRONG case %zu passed; expected a failure with \"%s\"\n", i, want);
            wrong++;
        } else if (!strstr(why, want) || !step_prefix(why, json_object_get(c, "at"))) {
            printf("WRONG case %zu: expected \"%s\", got %s\n", i, want, why);
            wrong++;
        } else {
            printf("ok case %zu: %s\n", i, why);
        }
    }
    printf("self-test: %zu cases, %d misjudged\n", json_array_size(cases), wrong);
    json_decref(cases);
    return wrong != 0;
}

static int has_suffix(const char *s, const char *suf) {
    size_t l = strlen(s), m = strlen(suf);
    return l > m && strcmp(s + l - m, suf) == 0;
}

/* The shared self-check (tests/scenarios/wrong/, as the Rust runner_fails_every_shared_wrong_
 * scenario): each scenario of dir must fail at the step, and with a reason containing the text,
 * that dir/failures.json gives ("step" null: any). A file listed in failures.json's
 * exceptions.c is one the C ABI cannot see as wrong (the reason is given there): it must pass
 * here instead, so the list never keeps a file that no longer needs it. */
static int wrong_corpus(const char *dir_path) {
    char path[4096];
    snprintf(path, sizeof path, "%s/failures.json", dir_path);
    json_error_t err;
    json_t *doc = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
    json_t *failures = json_object_get(doc, "failures");
    json_t *excused = json_object_get(json_object_get(doc, "exceptions"), "c");
    if (!json_is_object(failures)) {
        fprintf(stderr, "%s: no \"failures\" object (%s)\n", path, err.text);
        return 1;
    }
    DIR *dir = opendir(dir_path);
    if (!dir) {
        fprintf(stderr, "cannot list %s\n", dir_path);
        return 1;
    }
    char *files[256];
    int n = 0, wrong = 0;
    for (struct dirent *de; (de = readdir(dir)) && n < 256;)
        if (has_suffix(de->d_name, ".json") && strcmp(de->d_name, "failures.json") != 0)
            files[n++] = strndup(de->d_name, strlen(de->d_name) - 5);
    closedir(dir);
    qsort(files, (size_t)n, sizeof files[0], cmp_str);
    if ((size_t)n != json_object_size(failures) || n < 40) {
        printf("WRONG %d files in %s, %zu entries in failures.json (and at least 40 are needed)\n", n, dir_path,
               json_object_size(failures));
        wrong++;
    }
    const char *k;
    json_t *x;
    json_object_foreach(excused, k, x) if (!json_object_get(failures, k) || !json_is_string(x) || !*json_string_value(x)) {
        printf("WRONG exceptions.c.%s: no such wrong scenario, or no reason\n", k);
        wrong++;
    }
    for (int i = 0; i < n; i++) {
        json_t *want = json_object_get(failures, files[i]);
        const char *text = json_string_value(json_object_get(want, "reason"));
        json_t *at = json_object_get(want, "step");
        if (!text) {
            printf("WRONG %s has no entry (with a reason) in failures.json\n", files[i]);
            wrong++;
            free(files[i]);
            continue;
        }
        snprintf(path, sizeof path, "%s/%s.json", dir_path, files[i]);
        json_t *sc = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
        Run r;
        int res = sc ? run_doc(files[i], sc, 4000 + i, &r) : fail("invalid JSON: %s", err.text);
        json_decref(sc);
        const char *why_excused = json_string_value(json_object_get(excused, files[i]));
        if (why_excused) {
            if (res == R_OK) {
                printf("EXCEPTION %s passes here, as failures.json says: %s\n", files[i], why_excused);
            } else {
                printf("WRONG %s is in exceptions.c but failed: %s; remove the exception\n", files[i], why);
                wrong++;
            }
        } else if (res == R_OK) {
            printf("WRONG %s passed; expected a failure with \"%s\"\n", files[i], text);
            wrong++;
        } else if (!strstr(why, text) || !step_prefix(why, json_is_integer(at) ? at : NULL)) {
            printf("WRONG %s: expected \"%s\" at step %lld, got %s\n", files[i], text,
                   json_is_integer(at) ? (long long)json_integer_value(at) : -1ll, why);
            wrong++;
        } else {
            printf("ok %s: %s\n", files[i], why);
        }
        fflush(stdout);
        free(files[i]);
    }
    printf("wrong scenarios: %d files, %d misjudged\n", n, wrong);
    json_decref(doc);
    return wrong != 0;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s HOST:PORT CA_PEM SCENARIO_DIR [SELFTEST_JSON | WRONG_DIR]\n", argv[0]);
        return 2;
    }
    if (felix_abi_version() != FELIX_ABI_VERSION) {
        fprintf(stderr, "ABI mismatch\n");
        return 1;
    }
    broker_addr = argv[1];
    broker_ca = argv[2];
    if (argc > 4) {
        DIR *d = opendir(argv[4]);
        if (d) closedir(d);
        return d ? wrong_corpus(argv[4]) : self_test(argv[4]);
    }
    DIR *dir = opendir(argv[3]);
    if (!dir) {
        fprintf(stderr, "cannot list %s\n", argv[3]);
        return 1;
    }
    char *files[256];
    int n = 0;
    for (struct dirent *de; (de = readdir(dir)) && n < 256;) {
        size_t l = strlen(de->d_name);
        if (l > 5 && strcmp(de->d_name + l - 5, ".json") == 0 && strcmp(de->d_name, "schema.json") != 0)
            files[n++] = strndup(de->d_name, l - 5);
    }
    closedir(dir);
    qsort(files, (size_t)n, sizeof files[0], cmp_str);
    const char *only = getenv("FELIX_SCENARIOS");
    if (only && *only) {
        char *list = strdup(only), *save = NULL;
        int kept = 0;
        char *keep[256];
        for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            int found = 0;
            for (int i = 0; i < n; i++)
                if (strcmp(files[i], t) == 0) found = 1, keep[kept++] = files[i];
            if (!found) {
                fprintf(stderr, "FELIX_SCENARIOS names \"%s\", which is not in %s\n", t, argv[3]);
                return 1;
            }
        }
        memcpy(files, keep, sizeof keep[0] * (size_t)kept);
        n = kept;
    }
    if (n == 0) {
        fprintf(stderr, "no scenario found in %s\n", argv[3]);
        return 1;
    }
    int failed = 0, unsupported_ok = 1;
    char unsupported[64][128];
    int n_un = 0;
    for (int i = 0; i < n; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s.json", argv[3], files[i]);
        json_error_t err;
        json_t *doc = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
        int64_t started = now_ms();
        Run r;
        int res = doc ? run_doc(files[i], doc, i, &r) : fail("invalid JSON: %s", err.text);
        json_decref(doc);
        for (int u = 0; doc && u < r.n_unsupported && n_un < 64; u++) {
            printf("UNSUPPORTED %s (0 or \"\" means the default in the C ABI)\n", r.unsupported[u]);
            snprintf(unsupported[n_un++], 128, "%s", r.unsupported[u]);
        }
        if (res == R_OK) {
            printf("PASS %s (%lld ms)\n", files[i], (long long)(now_ms() - started));
        } else {
            printf("FAIL %s: %s\n", files[i], why);
            failed++;
        }
        fflush(stdout);
    }
    /* The unsupported steps must be exactly the expected ones of the scenarios that ran. */
    int want = 0;
    for (const char *const *u = expected_unsupported; *u; u++) {
        int ran = 0;
        for (int i = 0; i < n; i++) {
            size_t l = strlen(files[i]);
            if (strncmp(*u, files[i], l) == 0 && (*u)[l] == ' ') ran = 1;
        }
        if (!ran) continue;
        if (want >= n_un || strcmp(unsupported[want], *u) != 0) unsupported_ok = 0;
        want++;
    }
    if (want != n_un) unsupported_ok = 0;
    if (!unsupported_ok) printf("the unsupported steps differ from expected_unsupported in scenarios.c\n");
    printf("%d scenarios: %d passed, %d failed; %d steps unsupported\n", n, n - failed, failed, n_un);
    return failed || !unsupported_ok;
}
