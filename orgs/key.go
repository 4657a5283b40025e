package orgs

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"strings"
	"unsafe"
)

// keyPrefix marks a key given as its SHA-256 digest. It is matched case-insensitively, so a
// plain key that itself begins with "sha256:" must be configured by its digest.
const keyPrefix = "sha256:"

// emptySum is the digest of the empty key; no request can present it (ByKey ignores an empty
// key), so configuring it would be a mistake rather than a key.
var emptySum = sha256.Sum256(nil)

// Errors from ParseKey. They never contain the key.
var (
	errKeyEmpty     = errors.New("key is empty")
	errKeyDigest    = errors.New(`key has the "sha256:" prefix but not 64 hex digits after it`)
	errKeyEmptyHash = errors.New("key is the SHA-256 of the empty string")
)

// Key is an API key as the directory holds it: the SHA-256 digest of the plain key. The plain
// key is never kept. The zero Key matches nothing and is rejected by NewDirectory; obtain
// keys from ParseKey. Keys are comparable with ==.
type Key struct{ sum [32]byte }

// ParseKey parses one configured key: either "sha256:" followed by the 64 hex digits of the
// digest of the plain key (hex in either case), or the plain key itself, which is hashed here.
// The key is used as given (not trimmed). An empty key is an error. Error messages never
// contain the key.
func ParseKey(s string) (Key, error) {
	if s == "" {
		return Key{}, errKeyEmpty
	}
	if len(s) < len(keyPrefix) || !strings.EqualFold(s[:len(keyPrefix)], keyPrefix) {
		return Key{sum: sha256.Sum256([]byte(s))}, nil
	}
	digest := s[len(keyPrefix):]
	var k Key
	if len(digest) != hex.EncodedLen(len(k.sum)) {
		return Key{}, errKeyDigest
	}
	if _, err := hex.Decode(k.sum[:], []byte(digest)); err != nil {
		// err quotes the offending byte of the digest; the digest is not secret, but keep
		// every key error free of key material.
		return Key{}, errKeyDigest
	}
	if k.sum == emptySum {
		return Key{}, errKeyEmptyHash
	}
	return k, nil
}

// String returns a short fingerprint of the key, "sha256:" and the first 8 hex digits of the
// digest, to tell keys apart in logs. It is neither the key nor its full digest.
func (k Key) String() string {
	if k == (Key{}) {
		return "sha256:none"
	}
	return keyPrefix + hex.EncodeToString(k.sum[:4]) + "…"
}

// sumOf returns the digest of a presented plain key without allocating: sha256.Sum256 only
// reads its argument, so it may alias the string's bytes (a []byte(s) conversion would copy
// any key longer than 32 bytes to the heap).
func sumOf(plain string) [32]byte {
	return sha256.Sum256(unsafe.Slice(unsafe.StringData(plain), len(plain)))
}

// Matches reports whether plain is the key k holds, in time that does not depend on where the
// two differ. It serves single secrets such as admin tokens; org lookup uses Directory.ByKey.
func (k Key) Matches(plain string) bool {
	sum := sumOf(plain)
	return k != (Key{}) && subtle.ConstantTimeCompare(sum[:], k.sum[:]) == 1
}
