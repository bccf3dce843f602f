"""The internal scanner: MIME format checks, bounded unpacking and policy rules.

Qmail-Scanner's "perlscan" engine, rebuilt: ``scanner.py`` holds the flow,
``checks.py`` the named checks, ``policy.py`` the rules language. This package
file imports nothing, so the config loader can read ``checks`` without pulling
in libmagic, libarchive or RE2.
"""
