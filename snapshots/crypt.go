package snapshots

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"filippo.io/age"

	"github.com/lawsker/lawsker-deploy/config"
)

// EncryptionAge marks an artifact encrypted with age (filippo.io/age) to
// the manifest's recipient.
const EncryptionAge = "age"

// sealFor returns the writer that encrypts to the configured recipient
// (nil: artifacts are stored as they are).
func sealFor(cfg *config.Config) (age.Recipient, error) {
	rcpt := cfg.Snapshots.AgeRecipient
	if rcpt == "" {
		return nil, nil
	}
	r, err := age.ParseX25519Recipient(rcpt)
	if err != nil {
		return nil, fmt.Errorf("snapshots.age_recipient: %w", err)
	}
	return r, nil
}

// Identity parses the configured age identity for restores (nil when none
// is configured).
func Identity(cfg *config.Config, res *config.Resolver) (age.Identity, error) {
	ref := cfg.Snapshots.AgeIdentity
	if ref.IsZero() {
		return nil, nil
	}
	text, err := res.Resolve(ref)
	if err != nil {
		return nil, fmt.Errorf("snapshots.age_identity: %w", err)
	}
	id, err := age.ParseX25519Identity(strings.TrimSpace(text))
	if err != nil {
		// age's message may quote the input: say what is wrong, not what it is.
		return nil, errors.New("snapshots.age_identity: not an age X25519 identity (AGE-SECRET-KEY-1...)")
	}
	return id, nil
}

// openSealed decrypts an artifact's stream when it is encrypted.
func openSealed(a Artifact, r io.Reader, id age.Identity, snapshot string) (io.Reader, error) {
	if a.Encryption == "" {
		return r, nil
	}
	if a.Encryption != EncryptionAge {
		return nil, fmt.Errorf("snapshot %s: %s is encrypted with %q, which this lawsker-deploy does not read", snapshot, a.Key, a.Encryption)
	}
	if id == nil {
		return nil, fmt.Errorf("snapshot %s: %s is encrypted to %s: set snapshots.age_identity (a secret reference to its AGE-SECRET-KEY-1... identity); nothing was changed", snapshot, a.Key, a.Recipient)
	}
	dr, err := age.Decrypt(r, id)
	var nm *age.NoIdentityMatchError
	if errors.As(err, &nm) {
		return nil, fmt.Errorf("snapshot %s: %s is encrypted to %s, and snapshots.age_identity is not its identity; nothing was changed", snapshot, a.Key, a.Recipient)
	}
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: %s: %w", snapshot, a.Key, err)
	}
	return dr, nil
}
