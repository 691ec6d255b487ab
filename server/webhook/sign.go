// Package webhook sends a project's webhooks: HTTP POSTs signed as the
// Standard Webhooks specification says (https://www.standardwebhooks.com),
// to addresses checked against server-side request forgery. The
// controller's core (server/controller) decides what to send and when;
// this package only signs, checks and sends one message.
package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"plane"
)

// Headers of a signed message.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// Sign returns the webhook-signature of a message: "v1," and the base64
// HMAC-SHA256, keyed with the secret's key, of "<id>.<timestamp>.<body>",
// the timestamp in unix seconds. A secret without the prefix is read as
// the bare base64 key, as the specification's libraries do.
func Sign(secret, msgID string, timestamp time.Time, body []byte) (string, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, plane.WebhookSecretPrefix))
	if err != nil || len(key) == 0 {
		return "", errors.New("webhook secret: not whsec_ and base64")
	}
	// The id and the timestamp are the store's: a "." in the id would let
	// one message's signed text pass for another's.
	if strings.Contains(msgID, ".") {
		return "", fmt.Errorf("webhook message id %q holds a '.'", msgID)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(msgID))
	mac.Write([]byte{'.'})
	mac.Write([]byte(strconv.FormatInt(timestamp.Unix(), 10)))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil)), nil
}
