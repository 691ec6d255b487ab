package main

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"strings"

	"plane/auth"
)

// The controllers of a cluster share their signing key: it signs API
// tokens and connect tokens, and the dashboard's CSRF key derives from it.
// Each controller reads it from a file (--signing-key; by default
// <data>/signing.key, made on first use), so that operators give every
// controller the same file. A rotation adds the new key to the accepted
// ones (--accept-keys), then signs with it while the old one is still
// accepted, then drops the old one; docs/deploy.md walks through it.

// signingKeys are a controller's keys: the one it signs with and the others
// whose tokens it still accepts.
type signingKeys struct {
	sign   ed25519.PrivateKey
	accept []ed25519.PublicKey
}

// loadSigningKeys reads the signing key at signPath, or the data folder's
// (made when missing), and the public halves of the files in acceptPaths.
func loadSigningKeys(data, signPath string, acceptPaths []string) (signingKeys, error) {
	var k signingKeys
	var err error
	if signPath != "" {
		k.sign, err = auth.LoadKey(signPath)
	} else {
		k.sign, err = auth.LoadOrCreateKey(data)
	}
	if err != nil {
		return k, err
	}
	for _, p := range acceptPaths {
		pub, err := auth.LoadPublicKey(p)
		if err != nil {
			return k, err
		}
		if pub.Equal(k.sign.Public()) {
			continue // the signing key is accepted anyway
		}
		k.accept = append(k.accept, pub)
	}
	return k, nil
}

// public is the signing key's public half.
func (k signingKeys) public() ed25519.PublicKey { return k.sign.Public().(ed25519.PublicKey) }

// describe names the keys for the start-up log: never the keys themselves.
func (k signingKeys) describe() (sign string, accept []string) {
	for _, a := range k.accept {
		accept = append(accept, auth.KeyID(a))
	}
	return auth.KeyID(k.public()), accept
}

// runAdminKeyCreate writes a new signing key, for a rotation or for a
// cluster whose controllers share one key from the start.
func runAdminKeyCreate(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("admin key create", "Write a new signing key (Ed25519, PEM, mode 0600) to a file that does not exist yet.", stderr)
	out := fs.String("out", "", "the file to write (required)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if strings.TrimSpace(*out) == "" {
		return usageError{"--out is required"}
	}
	key, err := auth.CreateKey(*out)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "created %s (key %s): copy it to every controller, then see docs/deploy.md for the rotation\n",
		*out, auth.KeyID(key.Public().(ed25519.PublicKey)))
	return nil
}
