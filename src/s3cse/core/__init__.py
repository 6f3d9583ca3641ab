"""The sans-IO core: format, keys and ciphers. No network (but the KMS keyring's
injected client) and no files."""
