"""Building the pieces from a Config: the only place that knows every package.

``pipeline``: the daemon's scanners and processor, the consumers' sinks, Kafka settings;
``internal``, ``external``, ``dlp``: the scanners from their config sections; ``notify``: the
notify consumer; ``compliance``: the compliance commands' view of copies, journal and log;
``kafka_anchor``: where Kafka-fed consumers keep their anchors."""
