"""The federation: community charter and membership, the sans-I/O protocol, the in-memory
network."""
