package felix_test

// Runs the language-neutral behaviour scenarios of tests/scenarios/ (format and rules:
// tests/scenarios/README.md) through this package against the broker TestMain started, as
// the Rust reference runner (broker/tests/scenarios/) does through the client core.
//
// As strict as the reference: an unknown key at any level, a missing required key or a value
// of the wrong type fails the scenario; each step has its deadline (timeout_ms); an error
// before the expected events fails expect_events. TestScenarioRunnerReportsFailures feeds it
// deliberately wrong scenarios that must each fail, so a green run is never a vacuous one.
//
// One difference the C ABI forces: a few numbers mean "the broker default" when 0 there
// (ttl_ms, default_ttl_ms, max_deliveries, ...) and a few strings when empty (tenant, token),
// so a step giving 0 or "" for them cannot be expressed. Such steps are not run and are
// reported as UNSUPPORTED; TestScenarios fails unless the list of them is exactly
// expectedUnsupported, so none is ever skipped silently.
//
// Files: scenarios_test.go (loading, the step loop, strictness), scenarios_ops_test.go (the
// operations), scenarios_check_test.go (self-test and schema check).

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	felix "github.com/felix-rs/felix/bindings/go"
)

const (
	defaultStepMs     = 10_000 // a step without timeout_ms
	defaultEventsMs   = 5_000  // expect_events without timeout_ms
	defaultScenarioMs = 60_000 // a scenario without timeout_ms
	safetyMs          = 5_000  // slack of the outer deadline over a step's own
	maxNoEventMs      = 10_000 // longest expect_no_event window
)

var (
	topKeys = []string{"$schema", "name", "description", "timeout_ms", "broker", "steps"}
	// brokerProfiles are the brokers a scenario may ask for with "broker" (README, "Brokers").
	brokerProfiles = []string{"dev", "jwt"}
	commonKeys     = []string{"op", "comment", "expect_error", "timeout_ms"}
	// Keys that check or store a result, so make no sense on a step expected to fail.
	resultKeys = []string{"as", "expect", "expect_count", "expect_existed", "expect_version"}
	// Ops whose expect is required unless the step has expect_error.
	expectRequired = []string{"cache_get", "cache_get_many", "dead_letters"}
	nsKeys         = []string{"client", "namespace"}
	// Keys each op takes besides commonKeys (README order).
	opKeys = map[string][]string{
		"connect":               {"as", "tenant", "token"},
		"close":                 {"client", "subscription"},
		"publish":               append(nsKeys, "stream", "payload", "payloads", "ack"),
		"subscribe":             append(nsKeys, "as", "stream", "from"),
		"expect_events":         {"subscription", "payloads", "events", "any_order"},
		"expect_no_event":       {"subscription", "within_ms"},
		"create_stream":         append(nsKeys, "stream", "max_records", "max_bytes", "subscriber_buffer", "full_policy"),
		"create_cache":          append(nsKeys, "cache", "max_bytes", "default_ttl_ms"),
		"create_group":          append(nsKeys, "stream", "group", "from", "ack_timeout_ms", "max_deliveries"),
		"queue_pull":            append(nsKeys, "stream", "group", "max", "wait_ms", "expect", "as"),
		"queue_ack":             append(nsKeys, "stream", "group", "offsets", "expect_count"),
		"queue_nack":            append(nsKeys, "stream", "group", "offsets", "delay_ms", "expect_count"),
		"queue_redrive":         append(nsKeys, "stream", "group", "offsets", "expect_count"),
		"dead_letters":          append(nsKeys, "stream", "group", "max", "expect", "as"),
		"cache_put":             append(nsKeys, "cache", "key", "value", "ttl_ms", "if_absent", "if_version", "expect_version", "as"),
		"cache_get":             append(nsKeys, "cache", "key", "expect", "expect_version", "as"),
		"cache_delete":          append(nsKeys, "cache", "key", "expect_existed"),
		"cache_get_many":        append(nsKeys, "cache", "keys", "expect"),
		"wait_until_cache_miss": append(nsKeys, "cache", "key"),
	}
	// Numbers the C ABI reads as "the broker default" when 0: a step giving 0 for one of them
	// cannot be expressed through this package (see the file comment).
	zeroIsDefault = map[string][]string{
		"create_stream": {"max_records", "max_bytes", "subscriber_buffer"},
		"create_cache":  {"max_bytes", "default_ttl_ms"},
		"create_group":  {"ack_timeout_ms", "max_deliveries"},
		"cache_put":     {"ttl_ms"},
	}
	// Strings the C ABI reads as "the default" when empty.
	emptyIsDefault = map[string][]string{"connect": {"tenant", "token"}}
	// The steps of tests/scenarios this runner cannot express ("scenario step index op key").
	expectedUnsupported = []string{
		"conflicts_and_limits 8 create_stream subscriber_buffer",
		"conflicts_and_limits 14 create_cache default_ttl_ms",
		"conflicts_and_limits 18 cache_put ttl_ms",
		"conflicts_and_limits 23 create_group max_deliveries",
		"invalid_names 1 connect tenant",
	}
	errorCodes = []string{"invalid_argument", "not_found", "already_exists", "conflict", "unauthorized",
		"forbidden", "overloaded", "frame_too_large", "unsupported", "timeout", "unavailable", "protocol",
		"slow_consumer", "cancelled", "closed", "internal", "quota_exceeded", "storage"}
)

// checkErr is a failed expectation or a malformed scenario (never an error a step expects).
type checkErr struct{ msg string }

func (e *checkErr) Error() string { return e.msg }

func fail(format string, a ...any) error { return &checkErr{fmt.Sprintf(format, a...)} }

// run is the state of one scenario run.
type run struct {
	broker      *broker // the one the scenario runs against (its "broker")
	ns          string
	stem        string
	clients     map[string]*felix.Client
	subs        map[string]*felix.Subscription
	offsets     map[string][]uint64
	versions    map[string]uint64
	unsupported []string
}

// step is one step's object with typed, strict accessors.
type step struct {
	op string
	m  map[string]any
}

func (s step) has(k string) bool { _, ok := s.m[k]; return ok }

func (s step) str(k string) (string, bool, error) {
	v, ok := s.m[k]
	if !ok {
		return "", false, nil
	}
	t, isStr := v.(string)
	if !isStr {
		return "", false, fail("%s must be a string", k)
	}
	return t, true, nil
}

func (s step) strOr(k, def string) (string, error) {
	v, ok, err := s.str(k)
	if !ok {
		return def, err
	}
	return v, err
}

func (s step) reqStr(k string) (string, error) {
	v, ok, err := s.str(k)
	if err == nil && !ok {
		err = fail("%s needs %s", s.op, k)
	}
	return v, err
}

// uint reads a non-negative integer (json.Number), ok false when absent.
func uintOf(v any, what string) (uint64, error) {
	n, isNum := v.(json.Number)
	if !isNum {
		return 0, fail("%s must be a non-negative integer", what)
	}
	u, err := strconv.ParseUint(string(n), 10, 64)
	if err != nil {
		return 0, fail("%s must be a non-negative integer", what)
	}
	return u, nil
}

func (s step) uint(k string) (uint64, bool, error) {
	v, ok := s.m[k]
	if !ok {
		return 0, false, nil
	}
	u, err := uintOf(v, k)
	return u, err == nil, err
}

func (s step) uintOr(k string, def uint64) (uint64, error) {
	u, ok, err := s.uint(k)
	if !ok {
		return def, err
	}
	return u, nil
}

func (s step) u32(k string, def uint32) (uint32, error) {
	u, err := s.uintOr(k, uint64(def))
	if err == nil && u > 1<<32-1 {
		err = fail("%s must fit in 32 bits", k)
	}
	return uint32(u), err
}

func (s step) boolean(k string) (bool, bool, error) {
	v, ok := s.m[k]
	if !ok {
		return false, false, nil
	}
	b, isBool := v.(bool)
	if !isBool {
		return false, false, fail("%s must be true or false", k)
	}
	return b, true, nil
}

func (s step) array(k string) ([]any, bool, error) {
	v, ok := s.m[k]
	if !ok {
		return nil, false, nil
	}
	a, isArr := v.([]any)
	if !isArr {
		return nil, false, fail("%s must be an array", k)
	}
	return a, true, nil
}

func (s step) reqArray(k string) ([]any, error) {
	a, ok, err := s.array(k)
	if err == nil && !ok {
		err = fail("%s needs %s", s.op, k)
	}
	return a, err
}

// timeout is the step's own deadline: timeout_ms, or the op's default.
func (s step) timeout() (time.Duration, error) {
	ms, ok, err := s.uint("timeout_ms")
	if err != nil {
		return 0, err
	}
	if !ok {
		switch s.op {
		case "expect_events":
			ms = defaultEventsMs
		case "wait_until_cache_miss":
			return 0, fail("wait_until_cache_miss needs timeout_ms")
		case "queue_pull":
			w, err := s.uintOr("wait_ms", 0)
			if err != nil {
				return 0, err
			}
			ms = w + defaultStepMs
		case "expect_no_event":
			w, err := s.uintOr("within_ms", 0)
			if err != nil {
				return 0, err
			}
			ms = w + defaultStepMs
		default:
			ms = defaultStepMs
		}
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// payload decodes a payload value (README "Payloads").
func payload(v any, what string) ([]byte, error) {
	switch p := v.(type) {
	case string:
		return []byte(p), nil
	case map[string]any:
		if b, ok := p["b64"]; ok && len(p) == 1 {
			s, isStr := b.(string)
			if !isStr {
				return nil, fail("%s.b64 must be a string", what)
			}
			out, err := base64.StdEncoding.Strict().DecodeString(s)
			if err != nil {
				return nil, fail("%s.b64 is not standard base64: %v", what, err)
			}
			return out, nil
		}
		r, okR := p["repeat"]
		c, okC := p["count"]
		if okR && okC && len(p) == 2 {
			s, isStr := r.(string)
			n, err := uintOf(c, what+".count")
			if !isStr || s == "" || err != nil {
				return nil, fail("%s: repeat must be a non-empty string and count a non-negative integer", what)
			}
			return bytes.Repeat([]byte(s), int(n)), nil
		}
	}
	return nil, fail(`%s must be a string, {"b64": ...} or {"repeat": ..., "count": n}`, what)
}

func payloadOrNull(v any, what string) ([]byte, bool, error) {
	if v == nil {
		return nil, false, nil
	}
	p, err := payload(v, what)
	return p, true, err
}

// entry reads an entry of an expected list: an object whose keys are all in keys, with a
// required payload, returned decoded.
func entry(v any, what string, keys ...string) (map[string]any, []byte, error) {
	o, ok := v.(map[string]any)
	if !ok {
		return nil, nil, fail("%s must be an object", what)
	}
	for _, k := range sortedKeys(o) {
		if !slices.Contains(keys, k) {
			return nil, nil, fail("%s does not take key %q", what, k)
		}
	}
	p, ok := o["payload"]
	if !ok {
		return nil, nil, fail("%s needs payload", what)
	}
	b, err := payload(p, what+".payload")
	return o, b, err
}

func sortedKeys(m map[string]any) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// show renders bytes for a report: text when UTF-8, base64 otherwise, long ones truncated.
func show(b []byte) string {
	const max = 48
	if utf8.Valid(b) {
		if len(b) <= max {
			return strconv.Quote(string(b))
		}
		cut := max
		for cut > 0 && !utf8.RuneStart(b[cut]) {
			cut--
		}
		return fmt.Sprintf("%s... (%d bytes)", strconv.Quote(string(b[:cut])), len(b))
	}
	more := ""
	if len(b) > max {
		more = "..."
	}
	return fmt.Sprintf("b64:%s%s (%d bytes)", base64.StdEncoding.EncodeToString(b[:min(len(b), max)]), more, len(b))
}

func showEvent(e felix.Event) string {
	off := "?"
	if e.HasOffset {
		off = strconv.FormatUint(e.Offset, 10)
	}
	return fmt.Sprintf("%s@%s %s", e.Stream, off, show(e.Payload))
}

// substitute replaces ${ns} in every string value (not in keys).
func substitute(v any, ns string) any {
	switch t := v.(type) {
	case string:
		return strings.ReplaceAll(t, "${ns}", ns)
	case []any:
		for i := range t {
			t[i] = substitute(t[i], ns)
		}
	case map[string]any:
		for k := range t {
			t[k] = substitute(t[k], ns)
		}
	}
	return v
}

// runText runs one scenario given as JSON text; stem is its file name without .json. The
// error is the report line of its failure; unsupported lists the steps it could not express.
func runText(stem, text string, index int) (unsupported []string, err error) {
	dec := json.NewDecoder(strings.NewReader(text))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("invalid JSON: %v", err)
	}
	if dec.More() {
		return nil, errors.New("invalid JSON: trailing data")
	}
	top, ok := doc.(map[string]any)
	if !ok {
		return nil, errors.New("a scenario must be a JSON object")
	}
	for _, k := range sortedKeys(top) {
		if !slices.Contains(topKeys, k) {
			return nil, fmt.Errorf("unknown top-level key %q", k)
		}
	}
	switch name, _ := top["name"].(string); {
	case name == "":
		return nil, errors.New("missing name")
	case name != stem:
		return nil, fmt.Errorf("name %q differs from the file name %q", name, stem)
	}
	if d, _ := top["description"].(string); d == "" {
		return nil, errors.New("missing description")
	}
	timeoutMs := uint64(defaultScenarioMs)
	if v, ok := top["timeout_ms"]; ok {
		if timeoutMs, err = uintOf(v, "timeout_ms"); err != nil {
			return nil, errors.New("timeout_ms must be an integer")
		}
	}
	target := shared
	if v, ok := top["broker"]; ok {
		p, _ := v.(string)
		if !slices.Contains(brokerProfiles, p) {
			return nil, fmt.Errorf("unknown broker %v (one of %v)", v, brokerProfiles)
		}
		if p == "jwt" {
			if target, err = jwtBroker(); err != nil {
				return nil, fmt.Errorf("the jwt broker: %v", err)
			}
		}
	}
	ns := fmt.Sprintf("sc_%d_%x", index, time.Now().UnixNano())
	substitute(top, ns)
	steps, ok := top["steps"].([]any)
	if !ok || len(steps) == 0 {
		return nil, errors.New("steps must be a non-empty array")
	}
	r := &run{broker: target, ns: ns, stem: stem, clients: map[string]*felix.Client{}, subs: map[string]*felix.Subscription{},
		offsets: map[string][]uint64{}, versions: map[string]uint64{}}
	defer func() {
		for _, s := range r.subs {
			s.Close()
		}
		for _, c := range r.clients {
			c.Close()
		}
	}()
	scenarioTimeout := time.Duration(timeoutMs) * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), scenarioTimeout)
	defer cancel()
	for i, v := range steps {
		if err := r.step(ctx, i, v); err != nil {
			if ctx.Err() != nil {
				err = fmt.Errorf("scenario timed out after %d ms", timeoutMs)
			}
			op := "?"
			if m, ok := v.(map[string]any); ok {
				if o, ok := m["op"].(string); ok {
					op = o
				}
			}
			return r.unsupported, fmt.Errorf("step %d (%s): %v", i, op, err)
		}
	}
	return r.unsupported, nil
}

// step runs one step; nil when it behaved as the scenario says (including expected errors).
func (r *run) step(ctx context.Context, index int, v any) error {
	m, ok := v.(map[string]any)
	if !ok {
		return errors.New("a step must be an object")
	}
	op, ok := m["op"].(string)
	if !ok {
		return errors.New("a step needs a string op")
	}
	keys, ok := opKeys[op]
	if !ok {
		return fmt.Errorf("unknown op %q", op)
	}
	for _, k := range sortedKeys(m) {
		if !slices.Contains(commonKeys, k) && !slices.Contains(keys, k) {
			return fmt.Errorf("%s does not take key %q", op, k)
		}
	}
	s := step{op: op, m: m}
	expected := ""
	if e, ok := m["expect_error"]; ok {
		o, isObj := e.(map[string]any)
		code, isStr := o["code"].(string)
		if !isObj || len(o) != 1 || !isStr {
			return errors.New(`expect_error must be {"code": "..."}`)
		}
		if !slices.Contains(errorCodes, code) {
			return fmt.Errorf("expect_error names unknown code %q", code)
		}
		for _, k := range resultKeys {
			if s.has(k) && !(k == "as" && (op == "connect" || op == "subscribe")) {
				return fmt.Errorf("%q cannot be combined with expect_error", k)
			}
		}
		if op == "expect_no_event" {
			return errors.New("expect_no_event cannot expect an error")
		}
		expected = code
	}
	if expected == "" && slices.Contains(expectRequired, op) && !s.has("expect") {
		return fmt.Errorf("%s needs expect (unless it has expect_error)", op)
	}
	own, err := s.timeout()
	if err != nil {
		return err
	}
	for _, k := range zeroIsDefault[op] {
		if n, ok, err := s.uint(k); err != nil {
			return err
		} else if ok && n == 0 {
			r.unsupported = append(r.unsupported, fmt.Sprintf("%s %d %s %s", r.stem, index, op, k))
			return nil
		}
	}
	for _, k := range emptyIsDefault[op] {
		if v, ok, err := s.str(k); err != nil {
			return err
		} else if ok && v == "" {
			r.unsupported = append(r.unsupported, fmt.Sprintf("%s %d %s %s", r.stem, index, op, k))
			return nil
		}
	}
	outer := own
	switch op {
	case "expect_events", "expect_no_event", "wait_until_cache_miss":
		outer += safetyMs * time.Millisecond
	}
	sctx, cancel := context.WithTimeout(ctx, outer)
	defer cancel()
	started := time.Now()
	err = r.exec(sctx, s, own, expected != "")
	if err != nil && ctx.Err() != nil {
		return ctx.Err() // the scenario's deadline: runText reports it
	}
	// Admin calls block past their context once started: the elapsed time is the net.
	if sctx.Err() != nil || time.Since(started) > outer {
		return fmt.Errorf("timed out after %d ms", outer.Milliseconds())
	}
	var ce *checkErr
	var fe *felix.Error
	switch {
	case errors.As(err, &ce):
		return err
	case err == nil && expected == "":
		return nil
	case err == nil:
		return fmt.Errorf("expected error %s, but the step succeeded", expected)
	case !errors.As(err, &fe):
		return fmt.Errorf("unexpected non-felix error %v", err)
	case expected == "":
		return fmt.Errorf("unexpected error (%s) %s", fe.Code, fe.Message)
	case fe.Code.String() == expected:
		return nil
	default:
		return fmt.Errorf("expected error %s, got (%s) %s", expected, fe.Code, fe.Message)
	}
}

func scenarioDir() string { return filepath.Join("..", "..", "tests", "scenarios") }

func scenarioFiles(t *testing.T) []string {
	files, err := filepath.Glob(filepath.Join(scenarioDir(), "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	files = slices.DeleteFunc(files, func(p string) bool { return filepath.Base(p) == "schema.json" })
	sort.Strings(files)
	return files
}

func stemOf(p string) string { return strings.TrimSuffix(filepath.Base(p), ".json") }

func TestScenarios(t *testing.T) {
	files := scenarioFiles(t)
	if only := os.Getenv("FELIX_SCENARIOS"); only != "" {
		var names []string
		for _, n := range strings.Split(only, ",") {
			if n = strings.TrimSpace(n); n != "" {
				names = append(names, n)
			}
		}
		for _, n := range names {
			if !slices.ContainsFunc(files, func(p string) bool { return stemOf(p) == n }) {
				t.Fatalf("FELIX_SCENARIOS names %q, which is not in %s", n, scenarioDir())
			}
		}
		files = slices.DeleteFunc(files, func(p string) bool { return !slices.Contains(names, stemOf(p)) })
	}
	if len(files) == 0 {
		t.Fatalf("no scenario found in %s", scenarioDir())
	}
	var failed, unsupported []string
	for i, p := range files {
		text, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		started := time.Now()
		un, err := runText(stemOf(p), string(text), i)
		for _, u := range un {
			t.Logf("UNSUPPORTED %s (0 or \"\" means the default in the C ABI)", u)
		}
		unsupported = append(unsupported, un...)
		if err != nil {
			t.Logf("FAIL %s: %v", stemOf(p), err)
			failed = append(failed, fmt.Sprintf("%s: %v", stemOf(p), err))
		} else {
			t.Logf("PASS %s (%d ms)", stemOf(p), time.Since(started).Milliseconds())
		}
	}
	t.Logf("%d scenarios: %d passed, %d failed; %d steps unsupported", len(files), len(files)-len(failed), len(failed), len(unsupported))
	if len(failed) > 0 {
		t.Errorf("%d of %d scenarios failed:\n  %s", len(failed), len(files), strings.Join(failed, "\n  "))
	}
	want := slices.DeleteFunc(slices.Clone(expectedUnsupported), func(u string) bool {
		return !slices.ContainsFunc(files, func(p string) bool { return strings.HasPrefix(u, stemOf(p)+" ") })
	})
	if !slices.Equal(unsupported, want) {
		t.Errorf("unsupported steps differ from expectedUnsupported:\n got  %q\n want %q", unsupported, want)
	}
}
