package proxy

import (
	"bytes"
	"strings"
	"testing"
)

func TestQueryToken(t *testing.T) {
	t.Parallel()
	tests := []struct {
		target string
		tok    string
		rest   string
		ok     bool
	}{
		{target: "/", ok: false},
		{target: "/?a=1", ok: false},
		{target: "/?plane_token", ok: false},
		{target: "/?xplane_token=abc", ok: false},
		{target: "/plane_token=abc", ok: false},
		{target: "/a/plane_token=abc?b=1", ok: false},
		{target: "/?plane_token=pc1.abc.def", tok: "pc1.abc.def", rest: "/", ok: true},
		{target: "/app/page?plane_token=t", tok: "t", rest: "/app/page", ok: true},
		{target: "/p?a=1&plane_token=t&b=2", tok: "t", rest: "/p?a=1&b=2", ok: true},
		{target: "/p?plane_token=t&b=2&c=3", tok: "t", rest: "/p?b=2&c=3", ok: true},
		{target: "/p?a=1&b=2&plane_token=t", tok: "t", rest: "/p?a=1&b=2", ok: true},
		{target: "/p?z=9&a=1&plane_token=t&m=%20x&a=2", tok: "t", rest: "/p?z=9&a=1&m=%20x&a=2", ok: true},
		{target: "/p?flag&plane_token=t&x=", tok: "t", rest: "/p?flag&x=", ok: true},
		{target: "/p?a=1&&plane_token=t", tok: "t", rest: "/p?a=1", ok: true},
		{target: "/?plane_token=pc1.ab%2Ecd%2Def", tok: "pc1.ab.cd-ef", rest: "/", ok: true},
		{target: "/?plane_token=a%2Bb+c", tok: "a+b c", rest: "/", ok: true},
		{target: "/?plane_token=", tok: "", rest: "/", ok: true},
		{target: "/?a=plane_token=x", ok: false},
		{target: "/?plane_token=%zz", ok: false},
		// A repeated parameter must not survive into the redirect either.
		{target: "/?plane_token=a&plane_token=b", tok: "a", rest: "/", ok: true},
		{target: "/?plane_token=a&x=1&plane_token=a", tok: "a", rest: "/?x=1", ok: true},
	}
	for _, tt := range tests {
		tok, rest, ok := queryToken([]byte(tt.target))
		if ok != tt.ok || ok && (tok != tt.tok || string(rest) != tt.rest) {
			t.Errorf("queryToken(%q) = %q, %q, %v; want %q, %q, %v", tt.target, tok, rest, ok, tt.tok, tt.rest, tt.ok)
		}
	}
}

// headWith parses a request head carrying the given header lines.
func headWith(t *testing.T, lines ...string) *head {
	t.Helper()
	h, err := readReq("GET / HTTP/1.1\r\nHost: a\r\n" + strings.Join(lines, "\r\n") + "\r\n\r\n")
	if len(lines) == 0 {
		h, err = readReq("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	}
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestCookieToken(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		lines []string
		tok   string
		ok    bool
	}{
		{name: "no cookie"},
		{name: "other cookies", lines: []string{"Cookie: a=1; b=2"}},
		{name: "only ours", lines: []string{"Cookie: plane_token=T"}, tok: "T", ok: true},
		{name: "among others", lines: []string{"Cookie: a=1; plane_token=T; b=2"}, tok: "T", ok: true},
		{name: "no spaces", lines: []string{"Cookie: a=1;plane_token=T;b=2"}, tok: "T", ok: true},
		{name: "in the second Cookie header", lines: []string{"Cookie: a=1", "cookie: plane_token=T"}, tok: "T", ok: true},
		{name: "first of two", lines: []string{"Cookie: plane_token=A; plane_token=B"}, tok: "A", ok: true},
		{name: "empty value", lines: []string{"Cookie: plane_token="}, tok: "", ok: true},
		{name: "value with =", lines: []string{"Cookie: plane_token=a=b"}, tok: "a=b", ok: true},
		{name: "name is case-sensitive", lines: []string{"Cookie: Plane_Token=T"}},
		{name: "longer name", lines: []string{"Cookie: xplane_token=T; plane_tokenx=U"}},
		{name: "not in another header", lines: []string{"X-Cookie: plane_token=T"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, ok := cookieToken(headWith(t, tt.lines...))
			if tok != tt.tok || ok != tt.ok {
				t.Fatalf("cookieToken = %q, %v; want %q, %v", tok, ok, tt.tok, tt.ok)
			}
		})
	}
}

func TestStripTokenCookie(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"plane_token=T", ""},
		{"a=1; plane_token=T; b=2", "a=1; b=2"},
		{"plane_token=T; a=1", "a=1"},
		{"a=1;plane_token=T", "a=1"},
		{"a=1; plane_token=A; plane_token=B", "a=1"},
		{"  a=1 ;; ; b=2  ", "a=1; b=2"},
		{"a=1; xplane_token=T; Plane_Token=U", "a=1; xplane_token=T; Plane_Token=U"},
		{"plane_token", ""},
		{"", ""},
	}
	for _, tt := range tests {
		if got := string(stripTokenCookie([]byte(tt.in))); got != tt.want {
			t.Errorf("stripTokenCookie(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestBearerToken(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		lines []string
		tok   string
		ok    bool
	}{
		{name: "none"},
		{name: "connect token", lines: []string{"Authorization: Bearer pc1.abc.def"}, tok: "pc1.abc.def", ok: true},
		{name: "lowercase scheme", lines: []string{"authorization: bearer pc1.x"}, tok: "pc1.x", ok: true},
		{name: "extra spaces", lines: []string{"Authorization: BEARER    pc1.x  "}, tok: "pc1.x", ok: true},
		{name: "app's own bearer token", lines: []string{"Authorization: Bearer eyJhbGciOi"}},
		{name: "basic", lines: []string{"Authorization: Basic pc1.x"}},
		{name: "scheme only", lines: []string{"Authorization: Bearer"}},
		{name: "no space", lines: []string{"Authorization: Bearerpc1.x"}},
		{name: "other header", lines: []string{"X-Authorization: Bearer pc1.x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, ok := bearerToken(headWith(t, tt.lines...))
			if tok != tt.tok || ok != tt.ok {
				t.Fatalf("bearerToken = %q, %v; want %q, %v", tok, ok, tt.tok, tt.ok)
			}
		})
	}
}

// queryKeys lists the raw keys of a target's query.
func queryKeys(target []byte) [][]byte {
	_, q, found := bytes.Cut(target, []byte{'?'})
	if !found {
		return nil
	}
	var keys [][]byte
	for kv := range bytes.SplitSeq(q, []byte{'&'}) {
		k, _, _ := bytes.Cut(kv, []byte{'='})
		keys = append(keys, k)
	}
	return keys
}

func FuzzQueryToken(f *testing.F) {
	for _, s := range []string{
		"/", "/?plane_token=abc", "/p?a=1&plane_token=pc1.x.y&b=2", "/?plane_token=%41%zz",
		"/?plane_token=a&plane_token=b", "/?&&plane_token=&&", "/?plane_token=a+b%20c#frag",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, target []byte) {
		tok, rest, ok := queryToken(target)
		if !ok {
			return
		}
		path, _, _ := bytes.Cut(target, []byte{'?'})
		if !bytes.HasPrefix(rest, path) {
			t.Fatalf("queryToken(%q): rest %q lost the path %q", target, rest, path)
		}
		// The redirect must not carry a token again.
		for _, k := range queryKeys(rest) {
			if string(k) == tokenParam {
				t.Fatalf("queryToken(%q) = %q: rest %q still holds %s", target, tok, rest, k)
			}
		}
		// The other parameters are kept, in order.
		var want [][]byte
		for _, k := range queryKeys(target) {
			if len(k) > 0 && string(k) != tokenParam {
				want = append(want, k)
			}
		}
		var got [][]byte
		for _, k := range queryKeys(rest) {
			if len(k) > 0 {
				got = append(got, k)
			}
		}
		if string(bytes.Join(got, []byte{'&'})) != string(bytes.Join(want, []byte{'&'})) {
			t.Fatalf("queryToken(%q): rest %q keeps keys %q, want %q", target, rest, got, want)
		}
	})
}

func FuzzStripTokenCookie(f *testing.F) {
	for _, s := range []string{
		"plane_token=T", "a=1; plane_token=T; b=2", ";;plane_token=;", " plane_token=T ;a", "plane_token=a; plane_token=b",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		out := stripTokenCookie(v)
		if bytes.ContainsAny(out, "\r\n") && !bytes.ContainsAny(v, "\r\n") {
			t.Fatalf("stripTokenCookie(%q) = %q added a line break", v, out)
		}
		// The app must not find our cookie in what is left.
		h := &head{buf: append([]byte("Cookie"), out...), headers: []header{{name: span{0, 6}, value: span{6, 6 + len(out)}}}}
		if tok, ok := cookieToken(h); ok {
			t.Fatalf("stripTokenCookie(%q) = %q still holds plane_token=%q", v, out, tok)
		}
		// Every other cookie is kept, in order.
		var want []string
		for pair := range bytes.SplitSeq(v, []byte{';'}) {
			pair = bytes.TrimSpace(pair)
			if name, _, _ := bytes.Cut(pair, []byte{'='}); len(pair) > 0 && string(name) != tokenCookie {
				want = append(want, string(pair))
			}
		}
		if got := string(out); got != strings.Join(want, "; ") {
			t.Fatalf("stripTokenCookie(%q) = %q, want %q", v, got, strings.Join(want, "; "))
		}
		// Stripping twice changes nothing more.
		if again := stripTokenCookie(out); !bytes.Equal(again, out) {
			t.Fatalf("stripTokenCookie not idempotent on %q: %q then %q", v, out, again)
		}
	})
}
