// Package auth issues and verifies Plane's API tokens: JWTs signed with the
// controller's Ed25519 key, backed by a token record in the store so that a
// token can be revoked and its last use shown.
package auth

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
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
	block, err := readPEM(path)
	if err != nil {
		return nil, err
	}
	if block.Type != pemTypePrivateKey {
		return nil, fmt.Errorf("signing key: %s holds a PEM block of type %q, want %q", path, block.Type, pemTypePrivateKey)
	}
	return parsePrivate(path, block)
}

// readPEM reads the one PEM block of the file at path.
func readPEM(path string) (*pem.Block, error) {
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
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("signing key: %s holds data after its key", path)
	}
	return block, nil
}

func parsePrivate(path string, block *pem.Block) (ed25519.PrivateKey, error) {
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

// LoadKey reads the Ed25519 signing key at path (PEM, PKCS#8): a key
// shared by the controllers of a cluster, given with --signing-key.
func LoadKey(path string) (ed25519.PrivateKey, error) {
	key, err := readKey(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("signing key: %s does not exist (plane admin key create makes one)", path)
	}
	return key, err
}

// CreateKey writes a new signing key to path, readable by its owner only;
// it refuses to replace a file that exists.
func CreateKey(path string) (ed25519.PrivateKey, error) {
	key, err := createKey(path)
	if errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("signing key: %s exists already", path)
	}
	return key, err
}

// LoadPublicKey reads the Ed25519 public key of the file at path: a signing
// key (its public half) or a public key (PEM "PUBLIC KEY", PKIX). Such keys
// are accepted during a rotation (--accept-keys).
func LoadPublicKey(path string) (ed25519.PublicKey, error) {
	block, err := readPEM(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("signing key: %s does not exist", path)
	}
	if err != nil {
		return nil, err
	}
	switch block.Type {
	case pemTypePrivateKey:
		key, err := parsePrivate(path, block)
		if err != nil {
			return nil, err
		}
		return key.Public().(ed25519.PublicKey), nil
	case "PUBLIC KEY":
		parsed, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("signing key: %s is not a PKIX public key: %w", path, err)
		}
		pub, ok := parsed.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("signing key: %s holds a %T, want an Ed25519 key", path, parsed)
		}
		return pub, nil
	}
	return nil, fmt.Errorf("signing key: %s holds a PEM block of type %q, want a private or a public key", path, block.Type)
}

// KeyID names a public key in logs and messages: the start of its SHA-256.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:6])
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
