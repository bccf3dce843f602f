"""Scanners: bytes in, findings out. Nothing here knows about qmail, logs or databases."""
