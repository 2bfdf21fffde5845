package felix_test

// The scenario runner itself must fail where a scenario is wrong (the Go counterpart of
// broker/tests/scenarios/runner_checks.rs), and accept exactly the keys schema.json allows.

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// runnerCases: steps after a connect at index 0, and "index|text" of the expected failure.
var runnerCases = [][2]string{
	{`{"op":"subscribe","as":"s","stream":"x"},{"op":"publish","stream":"x","payload":"a"},
	  {"op":"expect_events","subscription":"s","payloads":["b"]}`, "3|event 0 is"},
	{`{"op":"subscribe","as":"s","stream":"x"},{"op":"publish","stream":"x","payload":"a"},
	  {"op":"expect_events","subscription":"s","events":[{"payload":"a","offset":1}]}`, "3|expected *@1"},
	{`{"op":"subscribe","as":"s","stream":"x"},{"op":"publish","stream":"x","payload":"a"},
	  {"op":"expect_events","subscription":"s","events":[{"payload":"a","stream":"y"}]}`, "3|expected y@*"},
	{`{"op":"subscribe","as":"s","stream":"x"},{"op":"publish","stream":"x","payloads":["a","b"]},
	  {"op":"expect_events","subscription":"s","any_order":true,"payloads":["b","c"]}`, "3|unexpected event"},
	{`{"op":"subscribe","as":"s","stream":"x"},
	  {"op":"expect_events","subscription":"s","payloads":["a"],"timeout_ms":100}`, "2|timed out after 100 ms: 0 of 1"},
	{`{"op":"subscribe","as":"s","stream":"x"},{"op":"publish","stream":"x","payload":"a"},
	  {"op":"expect_no_event","subscription":"s","within_ms":2000}`, "3|unexpected event"},
	// An error before the expected events fails the step, even one expect_error names: the
	// C ABI reports an ended subscription as closed, so this is how it shows here.
	{`{"op":"subscribe","as":"s","stream":"x"},{"op":"close","client":"default"},
	  {"op":"expect_events","subscription":"s","payloads":["a"],"expect_error":{"code":"closed"}}`, "3|subscription error (closed)"},
	{`{"op":"subscribe","as":"s","stream":"x"},{"op":"publish","stream":"x","payloads":["a","b"]},
	  {"op":"expect_events","subscription":"s","payloads":["a"],"expect_error":{"code":"closed"}}`, "3|expected an error, got event x@1"},
	{`{"op":"publish","stream":"x","payload":"a","expect_error":{"code":"invalid_argument"}}`, "1|but the step succeeded"},
	{`{"op":"publish","stream":"x y","payload":"a","expect_error":{"code":"conflict"}}`, "1|expected error conflict, got (invalid_argument)"},
	{`{"op":"publish","stream":"x y","payload":"a"}`, "1|unexpected error (invalid_argument)"},
	{`{"op":"publish","stream":"x","payload":"a"},
	  {"op":"queue_pull","stream":"x","group":"g","expect":[{"payload":"a","attempt":2}]}`, "2|message 0 is"},
	{`{"op":"queue_pull","stream":"x","group":"g","expect":[{"payload":"a"}]}`, "1|pulled 0 messages, expected 1"},
	{`{"op":"publish","stream":"x","payload":"a"},
	  {"op":"queue_pull","stream":"x","group":"g","as":"m"},
	  {"op":"queue_ack","stream":"x","group":"g","offsets":"m","expect_count":2}`, "3|count is 1, expected 2"},
	{`{"op":"queue_ack","stream":"x","group":"g","offsets":"nope"}`, "1|unknown offset alias"},
	{`{"op":"publish","stream":"x","payload":"a"},
	  {"op":"queue_pull","stream":"x","group":"g","as":"m"},
	  {"op":"queue_ack","stream":"x","group":"g","offsets":"m[1]"}`, "3|holds 1 offsets"},
	{`{"op":"dead_letters","stream":"x","group":"g","expect":[{"payload":"a"}]}`, "1|0 dead letters, expected 1"},
	{`{"op":"cache_put","cache":"c","key":"k","value":"v"},
	  {"op":"cache_get","cache":"c","key":"k","expect":"w"}`, `2|got "v"`},
	{`{"op":"cache_put","cache":"c","key":"k","value":"v"},
	  {"op":"cache_get","cache":"c","key":"k","expect":null}`, "2|expected a miss"},
	{`{"op":"cache_get","cache":"c","key":"k","expect":"v"}`, "1|got a miss"},
	{`{"op":"cache_put","cache":"c","key":"k","value":"v","as":"v1"},
	  {"op":"cache_put","cache":"c","key":"k","value":"w","expect_version":{"lt":"v1"}}`, "2|is not lt"},
	{`{"op":"cache_delete","cache":"c","key":"k","expect_existed":true}`, "1|existed = false, expected true"},
	{`{"op":"cache_get_many","cache":"c","keys":["a"],"expect":["x"]}`, `1|key "a": got a miss`},
	{`{"op":"cache_put","cache":"c","key":"k","value":"v"},
	  {"op":"wait_until_cache_miss","cache":"c","key":"k","timeout_ms":100}`, "2|still holds"},
	{`{"op":"publish","stream":"x","payload":"a","typo":1}`, `1|does not take key "typo"`},
	{`{"op":"publish","stream":"x","payload":{"b64":"AA==","typo":1}}`, "1|payload must be"},
	{`{"op":"publish","stream":"x","payload":"a"},
	  {"op":"queue_pull","stream":"x","group":"g","expect":[{"payload":"a","atempt":1}]}`, `2|does not take key "atempt"`},
	{`{"op":"subscribe","as":"s","stream":"x"},{"op":"publish","stream":"x","payload":"a"},
	  {"op":"expect_events","subscription":"s","events":[{"payload":"a","ofset":0}]}`, `3|does not take key "ofset"`},
	{`{"op":"publish","stream":"x","payload":"a","expect_error":{"code":"closed","why":1}}`, "1|expect_error must be"},
	{`{"op":"cache_put","cache":"c","key":"k","value":"v","expect_version":{"gte":1}}`, "1|unknown version relation"},
	{`{"op":"cache_get","cache":"c","key":"k"}`, "1|needs expect"},
	{`{"op":"cache_get","cache":"c","key":"k","expect":null,"expect_error":{"code":"closed"}}`, "1|cannot be combined with expect_error"},
	{`{"op":"publish","client":"ghost","stream":"x","payload":"a"}`, "1|unknown client alias"},
	{`{"op":"publish","stream":"x","payload":"a","timeout_ms":"5"}`, "1|timeout_ms must be"},
	{`{"op":"queue_pull","stream":"x","group":"g","wait_ms":3000,"timeout_ms":200}`, "1|timed out after 200 ms"},
	{`{"op":"fly"}`, "1|unknown op"},
	{`{"op":"expect_error_typo","expect_error":{"code":"nonsense"}}`, "1|unknown op"},
	{`{"op":"publish","stream":"x","payload":"a","expect_error":{"code":"nonsense"}}`, "1|unknown code"},
	// Starts: latest skips history, earliest replays it (what a swapped constant breaks).
	{`{"op":"publish","stream":"x","payload":"old"},{"op":"subscribe","as":"s","stream":"x","from":"earliest"},
	  {"op":"expect_events","subscription":"s","payloads":["new"],"timeout_ms":2000}`, `3|event 0 is x@0 "old", expected *@* "new"`},
	{`{"op":"publish","stream":"x","payload":"old"},{"op":"subscribe","as":"s","stream":"x"},
	  {"op":"expect_events","subscription":"s","payloads":["old"],"timeout_ms":300}`, "3|timed out after 300 ms: 0 of 1"},
}

func TestScenarioRunnerReportsFailures(t *testing.T) {
	for i, c := range runnerCases {
		at, text, _ := strings.Cut(c[1], "|")
		doc := fmt.Sprintf(`{"name":"case","description":"runner self-test","steps":[{"op":"connect"},%s]}`, c[0])
		_, err := runText("case", doc, 1000+i)
		switch {
		case err == nil:
			t.Errorf("case %d passed; expected a failure at %s", i, c[1])
		case !strings.HasPrefix(err.Error(), "step "+at+" (") || !strings.Contains(err.Error(), text):
			t.Errorf("case %d: expected %s, got %v", i, c[1], err)
		}
	}
	top := [][3]string{
		{"other", `{"name":"case","description":"d","steps":[{"op":"connect"}]}`, "differs from the file name"},
		{"case", `{"name":"case","description":"d","steps":[]}`, "non-empty"},
		{"case", `{"name":"case","description":"","steps":[{"op":"connect"}]}`, "missing description"},
		{"case", `{"name":"case","description":"d","steps":[{"op":"connect"}],"extra":1}`, "unknown top-level key"},
		{"case", `{"name":"case","description":"d","steps":[{"op":"connect"}]} {}`, "trailing data"},
		{"case", `{"name":"case","description":"d","timeout_ms":300,"steps":[{"op":"connect"},
		  {"op":"subscribe","as":"s","stream":"x"},
		  {"op":"expect_events","subscription":"s","payloads":["never"],"timeout_ms":5000}]}`,
			"step 2 (expect_events): scenario timed out after 300 ms"},
	}
	for i, c := range top {
		_, err := runText(c[0], c[1], 2000+i)
		if err == nil || !strings.Contains(err.Error(), c[2]) {
			t.Errorf("top case %d: expected %q, got %v", i, c[2], err)
		}
	}
	// A step giving 0 where the C ABI means "default" is reported, not run.
	un, err := runText("case", `{"name":"case","description":"d","steps":[{"op":"connect"},
		{"op":"cache_put","cache":"c","key":"k","value":"v","ttl_ms":0,"expect_error":{"code":"invalid_argument"}}]}`, 2500)
	if err != nil || !slices.Equal(un, []string{"case 1 cache_put ttl_ms"}) {
		t.Errorf("unsupported step: got %q, %v", un, err)
	}
	// And a correct one passes, with ${ns} substituted.
	ok := `{"name":"case","description":"d","steps":[{"op":"connect"},
		{"op":"subscribe","as":"s","namespace":"${ns}","stream":"x"},
		{"op":"publish","stream":"x","payload":{"b64":"AP8="}},
		{"op":"expect_events","subscription":"s","events":[{"payload":{"b64":"AP8="},"stream":"x","offset":0}]}]}`
	if _, err := runText("case", ok, 3000); err != nil {
		t.Errorf("the correct case failed: %v", err)
	}
}

// TestScenarioSchemaMatchesRunner: schema.json and this runner accept exactly the same ops and
// keys, so a scenario the schema passes is never refused here (or the other way round).
func TestScenarioSchemaMatchesRunner(t *testing.T) {
	text, err := os.ReadFile(filepath.Join(scenarioDir(), "schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	var schema struct {
		Properties map[string]any `json:"properties"`
		Defs       map[string]struct {
			Properties map[string]struct {
				Enum []string `json:"enum"`
			} `json:"properties"`
		} `json:"$defs"`
	}
	if err := json.Unmarshal(text, &schema); err != nil {
		t.Fatal(err)
	}
	keys := func(m map[string]any) []string { return sortedKeys(m) }
	if got, want := keys(schema.Properties), sortedStrs(topKeys); !slices.Equal(got, want) {
		t.Errorf("top-level keys: schema %q, runner %q", got, want)
	}
	ops := sortedStrs(schema.Defs["step"].Properties["op"].Enum)
	var runnerOps []string
	for op := range opKeys {
		runnerOps = append(runnerOps, op)
	}
	sort.Strings(runnerOps)
	if !slices.Equal(ops, runnerOps) {
		t.Fatalf("ops: schema %q, runner %q", ops, runnerOps)
	}
	for _, op := range ops {
		def, ok := schema.Defs["step_"+op]
		if !ok {
			t.Errorf("schema has no step_%s", op)
			continue
		}
		var got []string
		for k := range def.Properties {
			got = append(got, k)
		}
		sort.Strings(got)
		want := sortedStrs(append(slices.Clone(commonKeys), opKeys[op]...))
		if !slices.Equal(got, want) {
			t.Errorf("keys of %s: schema %q, runner %q", op, got, want)
		}
	}
}

func sortedStrs(s []string) []string {
	out := slices.Clone(s)
	sort.Strings(out)
	return out
}

// wrongCorpus reads tests/scenarios/wrong/: its scenario files (sorted), the failure each must
// produce (failures.json "failures") and the files this runner is excused from
// (failures.json "exceptions"[runner], each with the reason it cannot be expressed here).
type wrongWant struct {
	Step   *int   `json:"step"`
	Reason string `json:"reason"`
}

func wrongCorpus(t *testing.T, runner string) (dir string, files []string, want map[string]wrongWant, excused map[string]string) {
	t.Helper()
	dir = filepath.Join(scenarioDir(), "wrong")
	text, err := os.ReadFile(filepath.Join(dir, "failures.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Failures   map[string]wrongWant         `json:"failures"`
		Exceptions map[string]map[string]string `json:"exceptions"`
	}
	if err := json.Unmarshal(text, &doc); err != nil {
		t.Fatalf("wrong/failures.json: %v", err)
	}
	paths, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		if filepath.Base(p) != "failures.json" {
			files = append(files, p)
		}
	}
	sort.Strings(files)
	var stems, listed []string
	for _, p := range files {
		stems = append(stems, stemOf(p))
	}
	for s := range doc.Failures {
		listed = append(listed, s)
	}
	sort.Strings(listed)
	if !slices.Equal(stems, listed) {
		t.Fatalf("wrong/*.json and failures.json differ:\n files  %q\n listed %q", stems, listed)
	}
	if len(files) < 40 {
		t.Fatalf("only %d wrong scenarios in %s", len(files), dir)
	}
	for s, why := range doc.Exceptions[runner] {
		if _, ok := doc.Failures[s]; !ok || why == "" {
			t.Fatalf("failures.json exceptions.%s.%s: no such wrong scenario, or no reason", runner, s)
		}
	}
	return dir, files, doc.Failures, doc.Exceptions[runner]
}

// TestRunnerFailsEverySharedWrongScenario: the self-check every language's runner runs (the
// Rust runner_fails_every_shared_wrong_scenario): each scenario of tests/scenarios/wrong/ must
// fail at the step, and with a reason containing the text, that wrong/failures.json gives. A
// file in failures.json's exceptions.go is one this runner cannot see as wrong (the reason is
// given there): it must then pass here, so the list never holds a file that no longer needs it.
func TestRunnerFailsEverySharedWrongScenario(t *testing.T) {
	_, files, want, excused := wrongCorpus(t, "go")
	var misjudged []string
	for i, p := range files {
		stem := stemOf(p)
		text, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		w := want[stem]
		un, err := runText(stem, string(text), 4000+i)
		if len(un) > 0 {
			t.Logf("UNSUPPORTED in wrong/%s: %q", stem, un)
		}
		if why, ok := excused[stem]; ok {
			if err != nil {
				misjudged = append(misjudged, fmt.Sprintf("%s is in exceptions.go (%s) but failed: %v; remove the exception", stem, why, err))
			} else {
				t.Logf("EXCEPTION %s passes here, as failures.json says: %s", stem, why)
			}
			continue
		}
		switch {
		case err == nil:
			misjudged = append(misjudged, fmt.Sprintf("%s passed; expected a failure at step %v with %q", stem, stepOf(w), w.Reason))
		case (w.Step != nil && !strings.HasPrefix(err.Error(), fmt.Sprintf("step %d (", *w.Step))) || !strings.Contains(err.Error(), w.Reason):
			misjudged = append(misjudged, fmt.Sprintf("%s: expected step %v with %q, got %v", stem, stepOf(w), w.Reason, err))
		}
	}
	if len(misjudged) > 0 {
		t.Errorf("the runner misjudged %d of %d wrong scenarios:\n  %s", len(misjudged), len(files), strings.Join(misjudged, "\n  "))
	}
}

func stepOf(w wrongWant) string {
	if w.Step == nil {
		return "null"
	}
	return strconv.Itoa(*w.Step)
}
