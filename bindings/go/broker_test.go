package felix_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	felix "github.com/felix-rs/felix/bindings/go"
)

// broker is a felix-broker process started by the tests.
type broker struct {
	addr  string
	dir   string
	args  []string
	cmd   *exec.Cmd
	ready chan struct{}
}

var shared *broker

// The JWT-mode broker of "broker": "jwt" scenarios (tests/scenarios/README.md, "Brokers"),
// started on first use with the auth fixture's key; stopped by TestMain.
var (
	jwtOnce   sync.Once
	jwtShared *broker
	jwtErr    error
)

func jwtBroker() (*broker, error) {
	jwtOnce.Do(func() {
		keys, err := filepath.Abs("../../tests/scenarios/auth/jwks.json")
		if err != nil {
			jwtErr = err
			return
		}
		// The fixture tokens live until 2100 (tests/scenarios/auth/principals.json).
		jwtShared, jwtErr = startBroker("--jwt-keys-file", keys, "--auth-issuer", "felix-scenarios",
			"--auth-max-token-lifetime-s", "4000000000")
	})
	return jwtShared, jwtErr
}

func brokerBin() string {
	if b := os.Getenv("FELIX_BROKER_BIN"); b != "" {
		return b
	}
	return "../../target/debug/felix-broker"
}

func freePort() string {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer c.Close()
	return c.LocalAddr().String()
}

// startBroker starts a broker on a free port with its own CA directory.
func startBroker(extra ...string) (*broker, error) {
	dir, err := os.MkdirTemp("", "felix-go-test-")
	if err != nil {
		return nil, err
	}
	b := &broker{addr: freePort(), dir: dir, args: extra}
	return b, b.start()
}

func (b *broker) ca() string { return filepath.Join(b.dir, "ca.pem") }

func (b *broker) start() error {
	args := append([]string{"--listen", b.addr, "--no-metrics", "--dev-ca-path", b.ca()}, b.args...)
	b.cmd = exec.Command(brokerBin(), args...)
	stderr, err := b.cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := b.cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w (build it with cargo build -p felix-broker)", brokerBin(), err)
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64*1024), 1<<20)
		signalled := false
		for sc.Scan() {
			if !signalled && strings.Contains(sc.Text(), "felix broker serving") {
				close(ready)
				signalled = true
			}
		}
	}()
	select {
	case <-ready:
		return nil
	case <-time.After(20 * time.Second):
		b.stop()
		return fmt.Errorf("broker did not start within 20s")
	}
}

func (b *broker) stop() {
	if b.cmd != nil && b.cmd.Process != nil {
		_ = b.cmd.Process.Kill()
		_, _ = b.cmd.Process.Wait()
	}
}

func (b *broker) options() felix.Options {
	return felix.Options{Addresses: []string{b.addr}, CAFile: b.ca()}
}

func TestMain(m *testing.M) {
	var err error
	shared, err = startBroker()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	if jwtShared != nil {
		jwtShared.stop()
		os.RemoveAll(jwtShared.dir)
	}
	shared.stop()
	os.RemoveAll(shared.dir)
	os.Exit(code)
}

func connect(t testing.TB, b *broker) *felix.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := felix.Connect(ctx, b.options())
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// eventually polls cond until it holds or the deadline passes (no fixed sleeps).
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for wait := time.Millisecond; !cond(); wait = min(wait*2, 100*time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true within %v", what, within)
		}
		time.Sleep(wait)
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// restartCtx is ctxT for a test that restarts a broker: stopping it, starting it again and
// waiting up to 20 s for the client to come back fit in it on a loaded machine.
func restartCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func unique(t *testing.T) string {
	return strings.NewReplacer("/", "-", " ", "-").Replace(t.Name()) + fmt.Sprint(time.Now().UnixNano()%1e6)
}
