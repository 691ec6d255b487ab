// Package auth issues and verifies Plane's API tokens: JWTs signed with the
// controller's Ed25519 key, backed by a token record in the store so that a
// token can be revoked and its last use shown.
package auth

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// KeyFileName is the signing key's file name in the data folder.
const KeyFileName = "signing.key"

const pemTypePrivateKey = "PRIVATE KEY"

// LoadOrCreateKey reads the Ed25519 signing key from <dir>/signing.key (PEM,
// PKCS#8), or creates it, readable by its owner only, on first use. Every
// controller of a cluster must share this key: drones verify connect tokens
// with its public half, and tokens signed by one controller must pass another.
func LoadOrCreateKey(dir string) (ed25519.PrivateKey, error) {
	if dir == "" {
		return nil, errors.New("signing key: no data folder given")
	}
	path := filepath.Join(dir, KeyFileName)
	key, err := readKey(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("signing key: create folder: %w", err)
	}
	key, err = createKey(path)
	if errors.Is(err, fs.ErrExist) {
		// Another process created it between our read and our write: use theirs.
		return readKey(path)
	}
	return key, err
}

func readKey(path string) (ed25519.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("signing key: read %s: %w", path, err)
	}
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("signing key: %s is not a PEM file", path)
	}
	if block.Type != pemTypePrivateKey {
		return nil, fmt.Errorf("signing key: %s holds a PEM block of type %q, want %q", path, block.Type, pemTypePrivateKey)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("signing key: %s holds data after its key", path)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("signing key: %s is not a PKCS#8 private key: %w", path, err)
	}
	key, ok := parsed.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("signing key: %s holds a %T, want an Ed25519 key", path, parsed)
	}
	return key, nil
}

// createKey writes a new key to a temporary file and links it into place, so
// that no reader ever sees a half-written key and a concurrent creator's key
// is never overwritten (os.Link fails when path exists).
func createKey(path string) (ed25519.PrivateKey, error) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("signing key: generate: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("signing key: encode: %w", err)
	}
	data := pem.EncodeToMemory(&pem.Block{Type: pemTypePrivateKey, Bytes: der})

	tmp, err := os.CreateTemp(filepath.Dir(path), "."+KeyFileName+".*")
	if err != nil {
		return nil, fmt.Errorf("signing key: create: %w", err)
	}
	defer os.Remove(tmp.Name())
	// CreateTemp already uses 0600; Chmod makes it explicit and independent of that detail.
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("signing key: chmod: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("signing key: write: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("signing key: sync: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("signing key: close: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, err
		}
		return nil, fmt.Errorf("signing key: install %s: %w", path, err)
	}
	return key, nil
}
