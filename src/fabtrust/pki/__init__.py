"""Device PKI: CA hierarchy, root ceremony, certificate profiles, issuance, revocation, EST."""
