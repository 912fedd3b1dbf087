"""Usage contracts: documents, canonical form, signatures, lifecycle and scope checks."""
