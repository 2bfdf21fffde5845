/*
 * Smoke program for the Felix C ABI: connect, cache put/get, subscribe + publish, queue
 * pull + ack, and one error. Usage: smoke HOST:PORT CA_PEM_PATH
 * Build: see Makefile (links target/<profile>/libfelix_ffi.a statically).
 */
#include <stdio.h>
#include <string.h>
#include "felix.h"

static FelixBytes b(const char *s) { FelixBytes x = {(const uint8_t *)s, strlen(s)}; return x; }

static int check(const char *what, FelixStatus st, FelixError *e) {
    if (st == FELIX_STATUS_OK) return 0;
    fprintf(stderr, "%s failed: %s (%s)\n", what, felix_status_name(st), e ? e->message : "");
    felix_error_free(e);
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: %s HOST:PORT CA_PEM\n", argv[0]); return 2; }
    if (felix_abi_version() != FELIX_ABI_VERSION) { fprintf(stderr, "ABI mismatch\n"); return 1; }
    printf("felix %s abi %u\n", felix_version(), felix_abi_version());

    FelixConnectOptions o;
    felix_connect_options_init(&o);
    FelixBytes addr = b(argv[1]);
    o.addresses = &addr;
    o.addresses_len = 1;
    o.ca_file = b(argv[2]);
    FelixClient *c = NULL;
    FelixError *e = NULL;
    if (check("connect", felix_client_connect(&o, &c, &e), e)) return 1;

    uint64_t version = 0;
    if (check("cache put", felix_cache_put(c, b("default"), b("smoke"), b("k"), b("hello cache"), 60000, &version, &e), e)) return 1;
    FelixResult *r = NULL;
    if (check("cache get", felix_cache_get(c, b("default"), b("smoke"), b("k"), &r, &e), e)) return 1;
    printf("cache get: present=%d value=%.*s version=%llu\n", r->items[0].present,
           (int)r->items[0].payload.len, (const char *)r->items[0].payload.ptr,
           (unsigned long long)r->items[0].offset);
    felix_result_free(r);

    FelixSubscription *s = NULL;
    if (check("subscribe", felix_subscribe(c, b("default"), b("smoke-stream"), FELIX_START_LATEST, 0, &s, &e), e)) return 1;
    FelixBytes msgs[3] = {b("m1"), b("m2"), b("m3")};
    if (check("publish", felix_client_publish_batch(c, b("default"), b("smoke-stream"), msgs, 3, FELIX_ACK_MODE_PER_BATCH, &e), e)) return 1;
    int got = 0;
    while (got < 3) {
        if (check("next", felix_subscription_next(s, 16, 5000, &r, &e), e)) return 1;
        for (size_t i = 0; i < r->len; i++, got++)
            printf("event: %.*s offset=%llu\n", (int)r->items[i].payload.len,
                   (const char *)r->items[i].payload.ptr, (unsigned long long)r->items[i].offset);
        felix_result_free(r);
    }
    felix_subscription_free(s);

    FelixConsumer *q = NULL;
    if (check("consumer", felix_consumer_new(c, b("default"), b("smoke-stream"), b("workers"), &q, &e), e)) return 1;
    if (check("pull", felix_consumer_pull(q, 10, 2000, &r, &e), e)) return 1;
    uint64_t offsets[16], acked = 0;
    size_t n = r->len < 16 ? r->len : 16;
    for (size_t i = 0; i < n; i++) offsets[i] = r->items[i].offset;
    printf("pulled: %zu\n", r->len);
    felix_result_free(r);
    if (check("ack", felix_consumer_ack(q, offsets, n, &acked, &e), e)) return 1;
    printf("acked: %llu\n", (unsigned long long)acked);
    felix_consumer_free(q);

    FelixStatus st = felix_cache_get(c, b("default"), b(""), b("k"), &r, &e);
    printf("empty cache name: %s retryable=%d\n", felix_status_name(st), e ? e->retryable : -1);
    felix_error_free(e);

    felix_client_free(c);
    felix_client_free(NULL);
    printf("smoke ok\n");
    return 0;
}
