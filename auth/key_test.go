package auth_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"plane/auth"
)

func TestLoadOrCreateKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data") // does not exist yet
	key, err := auth.LoadOrCreateKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, auth.KeyFileName)
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" {
		if mode := info.Mode().Perm(); mode != 0o600 {
			t.Errorf("key file mode = %o, want 600", mode)
		}
	}
	data, _ := os.ReadFile(path)
	if !strings.HasPrefix(string(data), "-----BEGIN PRIVATE KEY-----") {
		t.Errorf("key file is not PEM PKCS#8:\n%s", data)
	}

	again, err := auth.LoadOrCreateKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !key.Equal(again) {
		t.Fatal("second load returned another key")
	}
	data2, _ := os.ReadFile(path)
	if string(data) != string(data2) {
		t.Fatal("second load rewrote the key file")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("data folder holds %d entries, want only the key", len(entries))
	}
}

func TestLoadOrCreateKeyConcurrent(t *testing.T) {
	dir := t.TempDir()
	keys := make([][]byte, 10)
	var wg sync.WaitGroup
	for i := range keys {
		wg.Go(func() {
			k, err := auth.LoadOrCreateKey(dir)
			if err != nil {
				t.Error(err)
				return
			}
			keys[i] = k
		})
	}
	wg.Wait()
	for i := range keys {
		if string(keys[i]) != string(keys[0]) {
			t.Fatal("concurrent first uses got different keys")
		}
	}
}

func TestLoadOrCreateKeyRejectsBadFiles(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalPKCS8PrivateKey(ec)
	tests := []struct {
		name    string
		content string
		want    string
	}{
		{"empty", "", "not a PEM file"},
		{"garbage", "hello", "not a PEM file"},
		{"wrong block", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}})), `"CERTIFICATE"`},
		{"bad DER", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}})), "not a PKCS#8 private key"},
		{"ECDSA key", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ecDER})), "want an Ed25519 key"},
		{"trailing data", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ecDER})) + "junk", "data after its key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, auth.KeyFileName)
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := auth.LoadOrCreateKey(dir)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), path) {
				t.Fatalf("err = %v, want one naming %s and saying %q", err, path, tt.want)
			}
			if data, _ := os.ReadFile(path); string(data) != tt.content {
				t.Fatal("a bad key file was overwritten")
			}
		})
	}

	t.Run("no folder", func(t *testing.T) {
		if _, err := auth.LoadOrCreateKey(""); err == nil {
			t.Fatal("want an error")
		}
	})
	t.Run("unwritable folder", func(t *testing.T) {
		if os.Getuid() == 0 {
			t.Skip("root writes anywhere")
		}
		dir := t.TempDir()
		os.Chmod(dir, 0o500)
		defer os.Chmod(dir, 0o700)
		if _, err := auth.LoadOrCreateKey(dir); err == nil {
			t.Fatal("want an error")
		}
	})
}
