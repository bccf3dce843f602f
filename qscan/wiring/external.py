"""Config sections -> the external scanners (clamd, spamd, rspamd, cmdline, cymru).

The scanners take plain option dataclasses and know nothing of the config file;
this is where one becomes the other. ``qscan/wiring/pipeline.py``'s SCANNERS registers these
factories.
"""

from __future__ import annotations

from qscan.config import Config, SpamThresholdsConfig
from scanners.clamd import ClamdOptions, ClamdScanner
from scanners.cmdline import CmdlineOptions, CmdlineScanner
from scanners.cymru import CymruOptions, CymruScanner
from scanners.rspamd import RspamdOptions, RspamdScanner
from scanners.spam_policy import SpamPolicy
from scanners.spamd import SpamdOptions, SpamdScanner

_THRESHOLDS = tuple(SpamThresholdsConfig.model_fields)


def spam_policy(section: SpamThresholdsConfig) -> SpamPolicy:
    return SpamPolicy(**{name: getattr(section, name) for name in _THRESHOLDS})


def clamd(cfg: Config) -> ClamdScanner:
    c = cfg.clamd
    return ClamdScanner(ClamdOptions(
        socket=c.socket or None, host=c.host, port=c.port, connect_timeout=c.connect_timeout,
        timeout=c.timeout, redundant=c.redundant, max_stream_size=c.max_stream_size,
        failure_policy=c.failure_policy, size_limit_policy=c.size_limit_policy, action=c.action,
        version_refresh=c.version_refresh,
    ))


def spamd(cfg: Config) -> SpamdScanner:
    c = cfg.spamd
    return SpamdScanner(SpamdOptions(
        socket=c.socket or None, host=c.host, port=c.port, connect_timeout=c.connect_timeout,
        timeout=c.timeout, command=c.command, user=c.user, max_size=c.max_size,
        skip_relay=c.skip_relay, failure_policy=c.failure_policy, version_refresh=c.version_refresh,
        policy=spam_policy(c),
    ))


def rspamd(cfg: Config) -> RspamdScanner:
    c = cfg.rspamd
    return RspamdScanner(RspamdOptions(
        host=c.host, port=c.port, path=c.path,
        password=c.password.get_secret_value() if c.password else None, timeout=c.timeout,
        max_size=c.max_size, skip_relay=c.skip_relay, failure_policy=c.failure_policy,
        follow_actions=c.follow_actions, reject_action=c.reject_action, policy=spam_policy(c),
    ))


def cmdline(cfg: Config) -> CmdlineScanner:
    c = cfg.cmdline
    if not c.argv:
        raise ValueError("scanner 'cmdline' is enabled but cmdline.argv is empty")
    return CmdlineScanner(CmdlineOptions(
        argv=tuple(c.argv), name=c.name, target=c.target, exit_codes=dict(c.exit_codes),
        virus_regex=c.virus_regex, timeout=c.timeout, redundant=c.redundant,
        failure_policy=c.failure_policy, action=c.action, version=c.version,
        version_argv=tuple(c.version_argv), tmp_dir=str(c.tmp_dir) if c.tmp_dir else None,
    ))


def cymru(cfg: Config) -> CymruScanner:
    c = cfg.cymru
    return CymruScanner(CymruOptions(
        zone=c.zone, nameservers=tuple(c.nameservers), port=c.port, timeout=c.timeout,
        threshold=c.threshold, hash=c.hash, cache_ttl=c.cache_ttl, cache_size=c.cache_size,
        max_lookups=c.max_lookups, attachments_only=c.attachments_only,
        failure_policy=c.failure_policy, action=c.action,
    ))

