// Command example shows the Go binding: cache, pub/sub and a work queue against a broker.
//
//	cargo run --release -p felix-broker &        # dev broker on 127.0.0.1:5000
//	cargo build -p felix-ffi && cd examples/go && go run . 127.0.0.1:5000 /tmp/felix-dev-<uid>/ca.pem
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	felix "github.com/felix-rs/felix/bindings/go"
)

func main() {
	addr, ca := "127.0.0.1:5000", filepath.Join(os.TempDir(), fmt.Sprintf("felix-dev-%d", os.Geteuid()), "ca.pem")
	if len(os.Args) > 2 {
		addr, ca = os.Args[1], os.Args[2]
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := felix.Connect(ctx, felix.Options{Addresses: []string{addr}, CAFile: ca})
	check(err)
	defer c.Close()

	_, err = c.CachePut(ctx, "default", "sessions", "alice", []byte(`{"cart":3}`), time.Minute)
	check(err)
	v, found, err := c.CacheGet(ctx, "default", "sessions", "alice")
	check(err)
	fmt.Printf("cache: found=%v value=%s version=%d\n", found, v.Value, v.Version)

	sub, err := c.Subscribe(ctx, "default", "orders", felix.StartLatest)
	check(err)
	defer sub.Close()
	check(c.PublishBatch(ctx, "default", "orders", [][]byte{[]byte("order-1"), []byte("order-2")}, felix.AckPerBatch))
	for i := 0; i < 2; i++ {
		ev := <-sub.Chan()
		fmt.Printf("event: %s offset=%d\n", ev.Payload, ev.Offset)
	}

	q, err := c.Consumer("default", "orders", "workers")
	check(err)
	defer q.Close()
	msgs, err := q.Pull(ctx, 10, time.Second)
	check(err)
	for _, m := range msgs {
		_, err := q.Ack(ctx, m.Offset)
		check(err)
	}
	fmt.Printf("queue: pulled and acked %d\n", len(msgs))

	if _, err := c.CachePutIfAbsent(ctx, "default", "sessions", "alice", []byte("x"), 0); errors.Is(err, felix.ErrConflict) {
		fmt.Println("put-if-absent on an existing key: conflict")
	}
	fmt.Println("example ok")
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "example:", err)
		os.Exit(1)
	}
}
