package felix_test

// Go's error table (error.go: the Code constants, codeNames, the Err sentinels) is typed by
// hand; this test holds it to include/felix.h, which cbindgen generates from the one table in
// felix-wire (ffi/tests/header.rs keeps the header current). Both directions: every
// FELIX_STATUS_* has a Code constant of the same number, name and string, and every Code
// constant is in the header. Retryable is checked against ErrorCode::retryable in
// wire/src/error.rs (the header does not carry it).

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	felix "github.com/felix-rs/felix/bindings/go"
)

// headerStatuses reads the FelixStatus enum of felix.h: lower-case name -> number.
func headerStatuses(t *testing.T) map[string]uint64 {
	text, err := os.ReadFile(filepath.Join("..", "..", "include", "felix.h"))
	if err != nil {
		t.Fatal(err)
	}
	body := regexp.MustCompile(`(?s)typedef enum \{([^}]*)\} FelixStatus;`).FindSubmatch(text)
	if body == nil {
		t.Fatal("felix.h has no FelixStatus enum")
	}
	out := map[string]uint64{}
	for _, m := range regexp.MustCompile(`(?m)^\s*FELIX_STATUS_([A-Z_]+)\s*=\s*(\d+),`).FindAllSubmatch(body[1], -1) {
		n, _ := strconv.ParseUint(string(m[2]), 10, 16)
		out[strings.ToLower(string(m[1]))] = n
	}
	if len(out) < 2 || out["ok"] != 0 {
		t.Fatalf("felix.h FelixStatus parsed to %v", out)
	}
	return out
}

// camel turns invalid_argument into InvalidArgument.
func camel(s string) string {
	parts := strings.Split(s, "_")
	for i, p := range parts {
		parts[i] = strings.ToUpper(p[:1]) + p[1:]
	}
	return strings.Join(parts, "")
}

// goCodes reads error.go: the Code constants (name -> number) and the Err sentinels
// (name -> the Code constant they are built from).
func goCodes(t *testing.T) (codes map[string]uint64, sentinels map[string]string) {
	f, err := parser.ParseFile(token.NewFileSet(), "error.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	codes, sentinels = map[string]uint64{}, map[string]string{}
	ast.Inspect(f, func(n ast.Node) bool {
		vs, ok := n.(*ast.ValueSpec)
		if !ok || len(vs.Names) != 1 || len(vs.Values) != 1 {
			return true
		}
		name := vs.Names[0].Name
		switch v := vs.Values[0].(type) {
		case *ast.BasicLit:
			if id, ok := vs.Type.(*ast.Ident); ok && id.Name == "Code" && v.Kind == token.INT {
				codes[name], _ = strconv.ParseUint(v.Value, 0, 16)
			}
		case *ast.CallExpr:
			if fn, ok := v.Fun.(*ast.Ident); ok && fn.Name == "sentinel" && len(v.Args) == 1 {
				if arg, ok := v.Args[0].(*ast.Ident); ok {
					sentinels[name] = arg.Name
				}
			}
		}
		return true
	})
	return codes, sentinels
}

// wireRetryable reads the codes ErrorCode::retryable in wire/src/error.rs names.
func wireRetryable(t *testing.T) map[string]bool {
	text, err := os.ReadFile(filepath.Join("..", "..", "wire", "src", "error.rs"))
	if err != nil {
		t.Fatal(err)
	}
	body := regexp.MustCompile(`(?s)fn retryable\(self\) -> bool \{(.*?)\n    \}`).FindSubmatch(text)
	if body == nil {
		t.Fatal("wire/src/error.rs has no ErrorCode::retryable")
	}
	out := map[string]bool{}
	for _, m := range regexp.MustCompile(`ErrorCode::([A-Za-z]+)`).FindAllSubmatch(body[1], -1) {
		out[string(m[1])] = true
	}
	if len(out) == 0 {
		t.Fatal("ErrorCode::retryable names no code")
	}
	return out
}

func TestErrorTableMatchesHeader(t *testing.T) {
	header := headerStatuses(t)
	codes, sentinels := goCodes(t)
	retryable := wireRetryable(t)
	for name, n := range header {
		if n == 0 {
			continue
		}
		c := "Code" + camel(name)
		got, ok := codes[c]
		switch {
		case !ok:
			t.Errorf("felix.h has FELIX_STATUS_%s = %d; error.go has no %s", strings.ToUpper(name), n, c)
		case got != n:
			t.Errorf("%s = %d in error.go, FELIX_STATUS_%s = %d in felix.h", c, got, strings.ToUpper(name), n)
		}
		if s := felix.Code(n).String(); s != name {
			t.Errorf("Code(%d).String() = %q, felix.h names it %q", n, s, name)
		}
		if e := "Err" + camel(name); sentinels[e] != c {
			t.Errorf("error.go: want %s = sentinel(%s), have sentinel(%q)", e, c, sentinels[e])
		}
		if got, want := felix.Code(n).Retryable(), retryable[camel(name)]; got != want {
			t.Errorf("Code(%d) %s: Retryable() = %t, wire's ErrorCode::retryable says %t", n, name, got, want)
		}
	}
	for c, n := range codes {
		if name := strings.ToLower(regexp.MustCompile(`([a-z])([A-Z])`).ReplaceAllString(strings.TrimPrefix(c, "Code"), "${1}_${2}")); header[name] != n || n == 0 {
			t.Errorf("error.go has %s = %d; felix.h has no FELIX_STATUS_%s = %d", c, n, strings.ToUpper(name), n)
		}
	}
	for e, c := range sentinels {
		if _, ok := codes[c]; !ok {
			t.Errorf("error.go: %s = sentinel(%s), which is no Code constant", e, c)
		}
	}
	// codeNames has one string per number (0 "ok" .. the last code), none beyond.
	if s := felix.Code(uint16(len(header))).String(); !strings.HasPrefix(s, "code(") {
		t.Errorf("Code(%d).String() = %q: codeNames has more entries than felix.h has codes", len(header), s)
	}
	if len(codes) != len(header)-1 {
		t.Errorf("error.go has %d Code constants, felix.h %d error codes", len(codes), len(header)-1)
	}
}
