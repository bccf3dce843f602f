"""Operations: start-up checks (``preflight``), ``qscan status`` (``status``, ``kafka_status``),
Prometheus metrics (``metrics``), ``qscan report`` (``report``), ``qscan install --check``
(``install_check``), ``qscan run`` (``supervisor``) and the journal's disk budget
(``journal_budget``)."""
