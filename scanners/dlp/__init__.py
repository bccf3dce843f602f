"""Data loss prevention: validated detectors, text extraction, rules, the engine and the scanner.

``detectors`` find and mask values, ``extract`` gets text out of a message,
``rules`` loads the rules file, ``engine`` evaluates one message (inline and in
retro-hunts alike), ``scanner`` turns evaluations into ScanResults. See docs/dlp.md.
"""
