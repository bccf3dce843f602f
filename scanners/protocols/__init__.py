"""Sans-I/O protocol cores for the external scanners: bytes in, requests and replies out.

Nothing here opens a socket, so every parser can be fuzzed and tested without a server;
the scanners in ``scanners/`` own the connections and timeouts.
"""


class ProtocolError(ValueError):
    """The peer said something this protocol does not allow: the scan did not happen."""
