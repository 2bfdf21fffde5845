/*
 * Shared parts of the C scenario runner (scenarios.c: loading, the step loop, strictness,
 * self-test; scenario_ops.c: the operations). Format: tests/scenarios/README.md.
 */
#ifndef FELIX_SCENARIOS_H
#define FELIX_SCENARIOS_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "felix.h"

/* Outcome of a step or a call. */
enum { R_OK = 0, R_CHECK, R_CALL, R_TIMEOUT };

#define MAX_ALIASES 64

typedef struct {
    char *name;
    void *ptr;       /* FelixClient* or FelixSubscription* */
    uint64_t *offs;  /* offset aliases */
    size_t n;
    uint64_t version; /* version aliases */
} Alias;

typedef struct {
    Alias items[MAX_ALIASES];
    int len;
} Aliases;

typedef struct {
    char ns[96];
    const char *stem;
    Aliases clients, subs, offsets, versions;
    FelixCompletionQueue *q;
    int64_t scenario_deadline; /* monotonic ms */
    int64_t step_deadline;     /* monotonic ms: the step's outer deadline */
    char unsupported[32][128];
    int n_unsupported;
} Run;

/* A step: its op and object. */
typedef struct {
    const char *op;
    json_t *m;
} Step;

/* The last failure: a check's reason, or a call's status and message. */
extern char why[4096];
extern FelixStatus call_status;
extern char call_msg[1024];
extern const char *broker_addr, *broker_ca;

int64_t now_ms(void);
int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int call_error(FelixStatus st, FelixError *e);
FelixBytes B(const char *s);

Alias *alias_get(Aliases *a, const char *name);
Alias *alias_put(Aliases *a, const char *name);

/* Typed, strict accessors: R_OK, or R_CHECK with why set. */
int s_str(Step *s, const char *k, const char *def, const char **out);
int s_req_str(Step *s, const char *k, const char **out);
int s_uint(Step *s, const char *k, uint64_t def, uint64_t *out, int *present);
int s_bool(Step *s, const char *k, int def, int *out, int *present);
int s_array(Step *s, const char *k, json_t **out);
int uint_of(json_t *v, uint64_t *out);

/* Payload values (README "Payloads"): *out is malloc'd (free it). */
int payload(json_t *v, const char *what, uint8_t **out, size_t *len);
int entry(json_t *v, const char *what, const char *const *keys, uint8_t **p, size_t *len);
void show(const uint8_t *b, size_t len, char *out, size_t cap);

/* Waits for the call started under tok (start status st) until r->step_deadline. */
int finish(Run *r, FelixStatus st, FelixError *e, uint64_t tok, FelixResult **out);
uint64_t token(void);

int exec_op(Run *r, Step *s, int64_t own_ms, int expect_error);

/* scenario_ops.c helpers used by the queue, cache and create operations. */
int sc_names(Run *r, Step *s, FelixClient **c, FelixBytes *ns, const char *k1, const char *k2, const char *k3, FelixBytes *out);
int sc_offset_refs(Run *r, json_t *v, uint64_t **out, size_t *n);
int sc_version_of(Run *r, json_t *v, uint64_t *out);
int sc_check_version(Run *r, Step *s, uint64_t got);
int sc_store_offsets(Run *r, Step *s, const FelixResult *res);
int sc_store_version(Run *r, Step *s, uint64_t v);
int sc_eq(const uint8_t *a, size_t al, FelixBytes b);

/* scenario_queue_cache.c: create, queue and cache operations. */
int op_queue_cache(Run *r, Step *s, int64_t own_ms);

#endif
