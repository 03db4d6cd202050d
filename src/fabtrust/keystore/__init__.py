"""Key stores: a small protocol, software and PKCS#11 backends chosen by URI scheme, and auditing."""
