"""Licensed operators: principals, roles, API tokens, Ed25519 keys and signed job submissions."""
