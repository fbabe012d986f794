"""Trust: canonical encoding, identities, signed envelopes, source chains, mutual credit,
reputation and their storage."""
