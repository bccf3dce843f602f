"""MIME: the parser and its fast splitter, total part accessors, content types, crypto use.

``parse`` builds the stdlib message tree (``split`` is the fast path that reproduces the
feedparser's tree exactly), with the total accessors every walk over it uses;
``filetype`` says what a payload is by its signature (and libmagic); ``crypto`` which
S/MIME and OpenPGP formats a message uses. This package file imports nothing: a module
pays only for what it imports.
"""
