package felix

// #include "felix.h"
import "C"

import (
	"context"
	"runtime"
	"time"
)

// CacheValue is a cached value and its version (for PutIfVersion).
type CacheValue struct {
	Value   []byte
	Version uint64
}

func ttlMs(ttl time.Duration) C.uint64_t {
	if ttl <= 0 {
		return 0
	}
	return C.uint64_t(max(ttl/time.Millisecond, 1))
}

// CacheGet reads a key; found is false when it is missing or expired.
func (c *Client) CacheGet(ctx context.Context, namespace, cache, key string) (v CacheValue, found bool, err error) {
	r, err := c.start(ctx, func(p *C.FelixClient, cq *C.FelixCompletionQueue, tok C.uint64_t, e **C.FelixError) C.FelixStatus {
		return C.FelixStatus(C.felix_cache_get_start(p, cstr(namespace), cstr(cache), cstr(key), cq, tok, e))
	})
	if err != nil {
		return CacheValue{}, false, err
	}
	defer C.felix_result_free(r)
	it := items(r)
	if len(it) == 0 || !bool(it[0].present) {
		return CacheValue{}, false, nil
	}
	return CacheValue{Value: goBytes(it[0].payload), Version: uint64(it[0].offset)}, true, nil
}

func (c *Client) put(ctx context.Context, namespace, cache, key string, value []byte, ttl time.Duration, cond C.uint32_t, version uint64) (uint64, error) {
	r, err := c.start(ctx, func(p *C.FelixClient, cq *C.FelixCompletionQueue, tok C.uint64_t, e **C.FelixError) C.FelixStatus {
		return C.FelixStatus(C.felix_cache_put_start(p, cstr(namespace), cstr(cache), cstr(key), cbytes(value), ttlMs(ttl), cond, C.uint64_t(version), cq, tok, e))
	})
	runtime.KeepAlive(value)
	if err != nil {
		return 0, err
	}
	defer C.felix_result_free(r)
	return uint64(r.value), nil
}

// CachePut writes a key and returns its new version; ttl 0 uses the cache's default.
func (c *Client) CachePut(ctx context.Context, namespace, cache, key string, value []byte, ttl time.Duration) (uint64, error) {
	return c.put(ctx, namespace, cache, key, value, ttl, C.FELIX_PUT_CONDITION_ALWAYS, 0)
}

// CachePutIfAbsent writes a key only if it has no live entry (else ErrConflict).
func (c *Client) CachePutIfAbsent(ctx context.Context, namespace, cache, key string, value []byte, ttl time.Duration) (uint64, error) {
	return c.put(ctx, namespace, cache, key, value, ttl, C.FELIX_PUT_CONDITION_IF_ABSENT, 0)
}

// CachePutIfVersion writes a key only if its live entry has version (compare-and-set; else
// ErrConflict).
func (c *Client) CachePutIfVersion(ctx context.Context, namespace, cache, key string, value []byte, ttl time.Duration, version uint64) (uint64, error) {
	return c.put(ctx, namespace, cache, key, value, ttl, C.FELIX_PUT_CONDITION_IF_VERSION, version)
}

// CacheDelete deletes a key and reports whether a live entry existed.
func (c *Client) CacheDelete(ctx context.Context, namespace, cache, key string) (bool, error) {
	r, err := c.start(ctx, func(p *C.FelixClient, cq *C.FelixCompletionQueue, tok C.uint64_t, e **C.FelixError) C.FelixStatus {
		return C.FelixStatus(C.felix_cache_delete_start(p, cstr(namespace), cstr(cache), cstr(key), cq, tok, e))
	})
	if err != nil {
		return false, err
	}
	defer C.felix_result_free(r)
	return r.value != 0, nil
}

// CacheGetMany reads several keys in one round trip; entries are in the order of keys, nil
// where a key is missing.
func (c *Client) CacheGetMany(ctx context.Context, namespace, cache string, keys []string) ([]*CacheValue, error) {
	var pin runtime.Pinner
	defer pin.Unpin()
	ks := cstrs(&pin, keys)
	r, err := c.start(ctx, func(p *C.FelixClient, cq *C.FelixCompletionQueue, tok C.uint64_t, e **C.FelixError) C.FelixStatus {
		return C.FelixStatus(C.felix_cache_get_many_start(p, cstr(namespace), cstr(cache), firstOrNil(ks), C.size_t(len(ks)), cq, tok, e))
	})
	if err != nil {
		return nil, err
	}
	defer C.felix_result_free(r)
	out := make([]*CacheValue, 0, len(keys))
	for _, it := range items(r) {
		if bool(it.present) {
			out = append(out, &CacheValue{Value: goBytes(it.payload), Version: uint64(it.offset)})
		} else {
			out = append(out, nil)
		}
	}
	return out, nil
}
