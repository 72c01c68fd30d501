"""The cramp diary: the SQLite store and the keeper that never loses a record."""
