"""Names the adversarial suites share: the base64url alphabet and every claim the verifier reads."""

from __future__ import annotations

B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

# Every claim the verifier interprets, in both token generations.
CLAIM_NAMES = ("iss", "sub", "aud", "iat", "exp", "nbf", "jti", "client_id", "scope", "cnf",
               "act", "authorization_details", "urn:grantex:grant", "agt", "dev", "scp", "grnt",
               "parentAgt", "parentGrnt", "delegationDepth", "bdg")
