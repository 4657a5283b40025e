package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

// jwtSetup writes a JWK set with one ES256 key into dir and returns the settings of a
// gateway in jwt org mode that trusts it, and the credential of org "bench": a day-long
// access token, as the header line the load generators send.
func jwtSetup(dir string) (env []string, header string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, "", err
	}
	jwk, err := jwkset.NewJWKFromKey(key.Public(), jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{
		KID: "bench", ALG: jwkset.AlgES256, USE: jwkset.UseSig}})
	if err != nil {
		return nil, "", err
	}
	set, err := json.Marshal(jwkset.JWKSMarshal{Keys: []jwkset.JWKMarshal{jwk.Marshal()}})
	if err != nil {
		return nil, "", err
	}
	file := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(file, set, 0o600); err != nil {
		return nil, "", err
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{
		"iss": "https://issuer.bench/", "aud": "bench-api", "org_id": "bench",
		"exp": time.Now().Add(24 * time.Hour).Unix(),
	})
	tok.Header["kid"] = "bench"
	signed, err := tok.SignedString(key)
	if err != nil {
		return nil, "", err
	}
	return []string{
		"CREDITGATE_ORG_MODE=jwt",
		"CREDITGATE_JWT_JWKS_FILE=" + file,
		"CREDITGATE_JWT_ISSUER=https://issuer.bench/",
		"CREDITGATE_JWT_AUDIENCE=bench-api",
	}, "Authorization: Bearer " + signed, nil
}
