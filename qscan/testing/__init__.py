"""The demo and test kit, shipped so that ``tests/``, ``bench/`` and ``qscan demo`` share it.

``corpus``: the demo corpus (``qscan/demo/corpus/``) with envelopes; ``injector``: drive a QMAILQUEUE
program exactly as qmail-smtpd does; ``standin``: a stand-in qmail-queue that records what it
was given; ``clients``: the native qscan-queue (built when not installed), its sanitized build and
the Python reference; ``fake_daemon``: a scripted daemon for the clients' protocol tests;
``rawclient``: QSCAN/1 straight over the socket; ``demo``: the end-to-end demo (``qscan demo``)."""
